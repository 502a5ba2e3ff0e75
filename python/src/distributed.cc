// _needle.distributed: needle::distributed on Tensors (their data, in place) and NDArrays;
// python/needle/distributed.py adds the exception hook and atexit. Blocking calls release
// the GIL, so other Python threads run while a collective waits for the other ranks.
#include "needle/distributed/distributed.h"

#include "tensor_bindings.h"

namespace py = pybind11;

namespace needle::python {

namespace {

// The array a collective works on in place: a Tensor's data, or the NDArray itself.
NDArray array_of(py::handle x, const char* op) {
  if (is_tensor(x)) return as_tensor(x).data();
  if (py::isinstance<NDArray>(x)) return x.cast<NDArray>();
  fail<TypeError>("[", op, "] expected a needle Tensor or NDArray, got ",
                  std::string(py::str(py::type::handle_of(x).attr("__name__"))));
}

}  // namespace

void init_distributed(py::module_& m) {
  namespace dist = needle::distributed;
  py::module_ d = m.def_submodule("distributed", "Collectives across the ranks of an MPI job.");
  d.def("mpi_available", &dist::mpi_available, "Whether this build has MPI.");
  d.def("init", &dist::init, py::arg("timeout") = 300.0,
        "Join the job that mpirun started (or a world of one process without mpirun).");
  d.def("is_initialized", &dist::is_initialized);
  d.def("rank", &dist::rank);
  d.def("world_size", &dist::world_size);
  d.def("local_rank", &dist::local_rank);
  d.def("finalize", &dist::finalize, py::call_guard<py::gil_scoped_release>());
  d.def("abort", &dist::abort, py::arg("message"), py::arg("exit_code") = 1);
  d.def("barrier", &dist::barrier, py::call_guard<py::gil_scoped_release>());
  // Each takes a Tensor (its data, in place) or an NDArray, and returns it.
  d.def(
      "all_reduce",
      [](py::object x, const std::string& op) {
        NDArray a = array_of(x, "all_reduce");
        dist::CollectiveOp o = dist::collective_op(op);
        {
          py::gil_scoped_release release;
          dist::all_reduce(a, o);
        }
        return x;
      },
      py::arg("tensor"), py::arg("op") = "sum",
      "In place: every rank's tensor becomes op ('sum', 'mean', 'max', 'min') over all ranks'.");
  d.def(
      "broadcast",
      [](py::object x, int root) {
        NDArray a = array_of(x, "broadcast");
        {
          py::gil_scoped_release release;
          dist::broadcast(a, root);
        }
        return x;
      },
      py::arg("tensor"), py::arg("root") = 0, "In place: every rank's tensor becomes rank root's.");
  py::class_<dist::Work, std::shared_ptr<dist::Work>>(d, "Work",
                                                      "A queued collective: wait() finishes it.")
      .def("wait", &dist::Work::wait, py::call_guard<py::gil_scoped_release>())
      .def("is_completed", &dist::Work::is_completed);
  d.def(
      "all_reduce_async",
      [](py::handle x, const std::string& op) {
        return dist::all_reduce_async(array_of(x, "all_reduce_async"), dist::collective_op(op));
      },
      py::arg("tensor"), py::arg("op") = "sum",
      "Queues an all_reduce on the communication thread; wait() on the result finishes it.");
}

}  // namespace needle::python
