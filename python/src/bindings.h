// Declarations of the per-area binding functions that module.cc calls, in layer order,
// and the conversions every area shares.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "needle/ndarray.h"

namespace needle::python {
void init_device(pybind11::module_& m);     // Device, raw kernels on handles (device.cc)
void init_ndarray(pybind11::module_& m);    // NDArray (ndarray.cc)
void init_tensor(pybind11::module_& m);     // Value, Tensor, TensorTuple, autograd (tensor.cc)
void init_ops(pybind11::module_& m);        // op classes and functions (ops.cc)
void init_serialize(pybind11::module_& m);  // safetensors checkpoints (serialize.cc)
void init_kernels(pybind11::module_& m);    // the fused-kernel registry (kernels.cc)

// The Python device object (`nd.cpu()`) is the bound class `Device`, a handle to a Backend.
struct Device {
  Backend* backend;
};

// None -> the default device ("cpu"); a Device -> its backend; a str -> that backend.
Backend& to_backend(const pybind11::handle& device);
// An NDArray from an NDArray (moved to `device`/cast to `dtype` when given, else shared),
// a numpy array (float64 stays float64 unless `dtype` says otherwise; other dtypes become
// float32), or any nested sequence / scalar numpy accepts (float32 unless `dtype`).
NDArray to_ndarray(const pybind11::handle& obj, Backend* device, std::optional<DType> dtype);
// A Python indexing key (int, slice, ..., or a tuple of them) for a value of rank ndim.
IndexKey to_index_key(const pybind11::handle& key, int64_t ndim);
// A numpy copy of the array (dtype kept).
pybind11::array to_numpy(const NDArray& a);
}  // namespace needle::python
