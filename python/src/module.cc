// The _needle extension module: maps needle::Error subclasses to Python exceptions and
// calls each area's init function.
#include "bindings.h"
#include "needle/error.h"

namespace py = pybind11;

PYBIND11_MODULE(_needle, m) {
  m.doc() = "Needle's C++ core: NDArray on pluggable backends, Tensor and autograd.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const needle::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const needle::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const needle::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const needle::MemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const needle::NotImplemented& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const needle::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  needle::python::init_device(m);
  needle::python::init_ndarray(m);
  needle::python::init_tensor(m);
  needle::python::init_autograd(m);
  needle::python::init_ops(m);
  needle::python::init_serialize(m);
  needle::python::init_kernels(m);
  needle::python::init_text(m);
  needle::python::init_distributed(m);
}
