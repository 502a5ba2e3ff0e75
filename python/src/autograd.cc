// _needle.autograd: the C++ side of needle.autograd (python/needle/autograd.py): the
// topological sort, backward, the end-of-backward callback queue that grad hooks use, the
// grad and lazy modes, and the live-tensor count.
#include <pybind11/functional.h>

#include "tensor_bindings.h"

namespace py = pybind11;

namespace needle::python {

void init_autograd(py::module_& m) {
  py::module_ ag = m.def_submodule("autograd", "The C++ side of needle.autograd.");
  ag.def(
      "find_topo_sort",
      [](py::handle node_list) {
        std::vector<NodePtr> order = find_topo_sort(nodes_from(node_list));
        py::list out(order.size());
        for (size_t i = 0; i < order.size(); ++i) out[i] = py::cast(Value(order[i]));
        return out;
      },
      py::arg("node_list"), "Post-order DFS: every node after its inputs.");
  ag.def("compute_gradient_of_variables", &compute_gradient_of_variables, py::arg("output_tensor"),
         py::arg("out_grad"),
         "Sets (or accumulates) .grad on every node the output depends on that requires grad.");
  ag.def("queue_backward_callback", &queue_backward_callback, py::arg("callback"),
         "callback() runs when the backward pass now running ends (from a grad hook).");
  ag.def("live_tensor_count", [] {
    collect_garbage();
    return live_node_count();
  });
  ag.def("collect_garbage", &collect_garbage, "Frees graphs kept alive only by .grad cycles.");
  ag.def("set_grad_enabled", &set_grad_enabled, py::arg("enabled"), "Returns the previous mode.");
  ag.def("is_grad_enabled", &is_grad_enabled);
  ag.def("set_lazy_mode", &set_lazy_mode, py::arg("lazy"));
  ag.def("is_lazy_mode", &is_lazy_mode);
}

}  // namespace needle::python
