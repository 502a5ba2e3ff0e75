// Bindings of the fused-kernel registry (needle/kernels.h): which (kernel, device) pairs
// are registered, `disabled(*names, device=...)`, a context manager under which those
// kernels are off, so the ops run their composites (the op tests compare the two), and
// `strict()`, under which a kernel that is a homework stub fails instead of composing.
#include "needle/kernels.h"

#include <memory>
#include <string>
#include <vector>

#include "bindings.h"

namespace py = pybind11;

namespace needle::python {

namespace {
struct Disabled {
  std::vector<std::string> names;
  std::string device;
  std::vector<std::unique_ptr<KernelDisabled>> guards;
};
struct Strict {
  bool saved = true;
};
}  // namespace

void init_kernels(py::module_& parent) {
  py::module_ m = parent.def_submodule("kernels", "The fused-kernel registry (needle/kernels.h).");
  m.def("registered", &registered_kernels,
        "(kernel name, device name) of every registered fused kernel and device setting.");
  m.def(
      "has",
      [](const std::string& name, const py::object& device) {
        const std::string dev = device.is_none() ? default_backend().name() : to_backend(device).name();
        for (const auto& [kernel_name, kernel_device] : registered_kernels())
          if (kernel_name == name && kernel_device == dev) return true;
        return false;
      },
      py::arg("name"), py::arg("device") = py::none(),
      "Whether kernel `name` is registered (and not disabled) for the device.");
  py::class_<Disabled>(m, "disabled",
                       "with disabled('conv2d', device='cpu'): ops compose instead of fusing")
      .def(py::init([](const py::args& names, const py::object& device) {
             Disabled d;
             for (auto n : names) d.names.push_back(n.cast<std::string>());
             d.device = device.is_none() ? default_backend().name() : to_backend(device).name();
             return d;
           }),
           py::arg("device") = py::none())
      .def("__enter__",
           [](Disabled& d) {
             for (auto& n : d.names)
               d.guards.push_back(std::make_unique<KernelDisabled>(n, d.device));
           })
      .def("__exit__", [](Disabled& d, const py::args&) { d.guards.clear(); });
  py::class_<Strict>(m, "strict",
                     "with strict(): a fused kernel that is a homework stub raises "
                     "NotImplementedError instead of the op composing (the tests grading it)")
      .def(py::init<>())
      .def("__enter__",
           [](Strict& s) {
             s.saved = kernel_stub_fallback();
             set_kernel_stub_fallback(false);
           })
      .def("__exit__", [](Strict& s, const py::args&) { set_kernel_stub_fallback(s.saved); });
}

}  // namespace needle::python
