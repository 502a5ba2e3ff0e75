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
void init_tensor(pybind11::module_& m);     // Value, Tensor, TensorTuple (tensor.cc)
void init_autograd(pybind11::module_& m);   // backward, modes, callbacks (autograd.cc)
void init_ops(pybind11::module_& m);        // op classes and functions (ops.cc)
void init_serialize(pybind11::module_& m);  // safetensors checkpoints (serialize.cc)
void init_kernels(pybind11::module_& m);    // the fused-kernel registry (kernels.cc)
void init_text(pybind11::module_& m);       // the BPE tokenizer (text.cc)
void init_distributed(pybind11::module_& m);  // MPI / NCCL collectives (distributed.cc)

// The Python device object (`nd.cpu()`) is the bound class `Device`, a handle to a Backend.
struct Device {
  Backend* backend;
};

// None -> the default device ("cpu"); a Device -> its backend; a str -> that backend.
Backend& to_backend(const pybind11::handle& device);

// --- numpy interop (numpy_interop.cc) ---
// A dtype the user asked for: None -> nullopt; a name ("int64"), a numpy dtype or scalar type
// (np.uint8, np.dtype("float64")) or a Python type (float, int, bool). An unsupported one
// (float16, complex) raises TypeError naming it and `op`.
std::optional<DType> to_dtype(const pybind11::handle& obj, const char* op = "dtype");
// The supported dtype that holds a numpy dtype's values: itself when supported, else the
// nearest wider one (float16 -> float32, int8/int16/uint16 -> int32, uint32 -> int64);
// TypeError naming it when there is none (uint64, complex, object, strings).
DType dtype_of_numpy(const pybind11::dtype& dt, const char* op);
// What `.dtype` returns: the dtype's name, as an instance of the str subclass that Python
// registers with set_dtype_class (needle.backend_ndarray.DType), so it also equals np.float32.
pybind11::object dtype_object(DType d);
void set_dtype_class(const pybind11::object& cls);
pybind11::dtype numpy_dtype(DType d);
// A numpy copy of the array (dtype kept).
pybind11::array to_numpy(const NDArray& a);
// Whether the array's buffer is host memory (a numpy view of it can exist).
bool is_host_memory(const NDArray& a);
// A writable numpy view of a host array's elements (same shape and strides, no copy) that
// keeps the buffer alive; ValueError for device memory.
pybind11::array numpy_view(const NDArray& a);

// A Python or numpy scalar (bool, int, float) as an op's scalar operand, keeping its kind;
// nullopt for anything else (arrays, lists, None).
std::optional<Scalar> to_scalar(const pybind11::handle& obj);
bool is_numpy_scalar(const pybind11::handle& obj);  // np.float32(1), np.int64(2), np.bool_(1)

// How to pick the dtype of data given without one: as numpy does (np.asarray(x).dtype,
// mapped by dtype_of_numpy: Python floats -> float64, ints -> int64), or as the course's
// NDArray does (numpy arrays keep their dtype, lists and scalars become float32).
enum class Infer { numpy, float32_unless_array };
// An NDArray from an NDArray (moved to `device`/cast to `dtype` when given, else shared), a
// numpy array, or anything numpy accepts; `dtype`, when given, casts. None raises TypeError.
NDArray to_ndarray(const pybind11::handle& obj, Backend* device, std::optional<DType> dtype,
                   Infer infer = Infer::numpy);

// A Python indexing key (int, slice, ..., or a tuple of them) for a value of rank ndim.
IndexKey to_index_key(const pybind11::handle& key, int64_t ndim);
// Integer-array indexing (numpy's take): a key that is an index array (NDArray, Tensor, numpy
// array or list), or a tuple with one index array and only ':' / '...' beside it. Other mixes
// raise IndexError; keys without an index array give nullopt.
struct ArrayIndex {
  pybind11::object indices;
  int64_t axis;
};
std::optional<ArrayIndex> array_index(const pybind11::handle& key, int64_t ndim);
// The indices as an int32/int64 NDArray on `device` (uint8 widens; bool and floats raise).
NDArray index_array(const pybind11::handle& indices, Backend& device);
}  // namespace needle::python
