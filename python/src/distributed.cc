// _needle.distributed: needle::distributed on NDArrays (python/needle/distributed.py adds
// Tensors, the exception hook and atexit). Blocking calls release the GIL, so other Python
// threads run while a collective waits for the other ranks.
#include "needle/distributed/distributed.h"

#include "bindings.h"

namespace py = pybind11;

namespace needle::python {

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
  d.def(
      "all_reduce",
      [](NDArray& array, const std::string& op) {
        dist::CollectiveOp o = dist::collective_op(op);
        py::gil_scoped_release release;
        dist::all_reduce(array, o);
      },
      py::arg("array"), py::arg("op") = "sum");
  d.def(
      "broadcast",
      [](NDArray& array, int root) {
        py::gil_scoped_release release;
        dist::broadcast(array, root);
      },
      py::arg("array"), py::arg("root") = 0);
  py::class_<dist::Work, std::shared_ptr<dist::Work>>(d, "Work",
                                                      "A queued collective: wait() finishes it.")
      .def("wait", &dist::Work::wait, py::call_guard<py::gil_scoped_release>())
      .def("is_completed", &dist::Work::is_completed);
  d.def(
      "all_reduce_async",
      [](const NDArray& array, const std::string& op) {
        return dist::all_reduce_async(array, dist::collective_op(op));
      },
      py::arg("array"), py::arg("op") = "sum");
}

}  // namespace needle::python
