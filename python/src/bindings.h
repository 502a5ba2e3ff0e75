// Declarations of the per-area binding functions that module.cc calls, in layer order.
#pragma once

#include <pybind11/pybind11.h>

namespace needle::python {
void init_ndarray(pybind11::module_& m);   // devices, NDArray, raw kernels (ndarray.cc)
void init_tensor(pybind11::module_& m);    // Value, Tensor, TensorTuple, autograd (tensor.cc)
void init_ops(pybind11::module_& m);       // op classes and functions (ops.cc)
void init_nn(pybind11::module_& m);        // RNG hook, checkpoints, C++ nn helpers (nn.cc)
}  // namespace needle::python
