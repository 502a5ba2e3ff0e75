// Conversions between numpy and NDArray shared by every binding file: which DType a Python
// value or a numpy dtype stands for, the dtype objects that `.dtype` returns, numpy copies
// and zero-copy numpy views of host buffers, and NDArrays built from Python data.
#include <array>
#include <string>

#include "bindings.h"

namespace py = pybind11;

namespace needle::python {

namespace {

// The supported names, for messages: "float32, float64, ...".
std::string supported_names() {
  std::string out;
  for (int code = 0; code < kNumDTypes; ++code)
    out += (out.empty() ? "" : ", ") + std::string(dtype_name(DType(code)));
  return out;
}

bool is_supported_name(const std::string& name) {
  for (int code = 0; code < kNumDTypes; ++code)
    if (name == dtype_name(DType(code))) return true;
  return false;
}

[[noreturn]] void unsupported(const char* op, const std::string& name) {
  fail<TypeError>("[", op, "] unsupported dtype '", name, "' (supported: ", supported_names(), ")");
}

// numpy's name for a dtype-like object (np.uint8, np.dtype("int64"), float, "float32").
std::string numpy_name(const py::handle& obj, const char* op) {
  if (py::isinstance<py::str>(obj)) {
    std::string s = obj.cast<std::string>();
    if (is_supported_name(s)) return s;  // the common case, without asking numpy
  }
  try {
    return py::module_::import("numpy").attr("dtype")(obj).attr("name").cast<std::string>();
  } catch (const py::error_already_set&) {
    fail<TypeError>("[", op, "] not a dtype: ", std::string(py::repr(obj)),
                    " (supported: ", supported_names(), ")");
  }
}

// The supported dtype that holds every value of a numpy dtype (by kind and item size), or
// nullopt when none does (uint64, float128, complex, object, strings, ...).
std::optional<DType> nearest_supported(const py::dtype& dt) {
  const auto size = dt.itemsize();
  switch (dt.kind()) {
    case 'b':
      return DType::bool_;
    case 'f':
      if (size <= 4) return DType::float32;  // float16 widens
      if (size == 8) return DType::float64;
      break;
    case 'i':
      if (size <= 4) return DType::int32;  // int8, int16 widen
      if (size == 8) return DType::int64;
      break;
    case 'u':
      if (size == 1) return DType::uint8;
      if (size == 2) return DType::int32;
      if (size == 4) return DType::int64;
      break;
  }
  return std::nullopt;
}

// numpy's dtype object for each DType, made once.
// (Leaked on purpose: Python objects must not be released after the interpreter is gone.)
const py::dtype& numpy_dtype_ref(DType d) {
  static auto* cache = new std::array<py::dtype, kNumDTypes>();
  py::dtype& slot = (*cache)[int(d)];
  if (!slot) slot = py::dtype(std::string(dtype_name(d)));
  return slot;
}

// numpy.asarray, looked up once.
const py::object& numpy_asarray() {
  static auto* fn = new py::object(py::module_::import("numpy").attr("asarray"));
  return *fn;
}

// Objects returned by `.dtype`, one per DType; plain str until Python registers its class.
std::array<PyObject*, kNumDTypes> dtype_objects{};
py::handle dtype_class;

}  // namespace

std::optional<DType> to_dtype(const py::handle& obj, const char* op) {
  if (obj.is_none()) return std::nullopt;
  std::string name = numpy_name(obj, op);
  if (!is_supported_name(name)) unsupported(op, name);
  return dtype_from_name(name);
}

DType dtype_of_numpy(const py::dtype& dt, const char* op) {
  if (auto d = nearest_supported(dt)) return *d;
  unsupported(op, py::str(dt.attr("name")));
}

py::object dtype_object(DType d) {
  int code = int(d);
  if (!dtype_class || code >= kNumDTypes) return py::str(dtype_name(d));
  if (!dtype_objects[code]) {
    // Kept for the life of the process: these few objects must outlive every array.
    dtype_objects[code] = dtype_class(dtype_name(d)).release().ptr();
  }
  return py::reinterpret_borrow<py::object>(dtype_objects[code]);
}

void set_dtype_class(const py::object& cls) {
  for (auto& obj : dtype_objects) {
    Py_XDECREF(obj);
    obj = nullptr;
  }
  if (dtype_class) dtype_class.dec_ref();
  dtype_class = cls.is_none() ? py::handle() : cls.inc_ref();
}

py::dtype numpy_dtype(DType d) {
  return numpy_dtype_ref(d);
}

py::array to_numpy(const NDArray& a) {
  std::vector<py::ssize_t> shape(a.shape().begin(), a.shape().end());
  py::array out(numpy_dtype(a.dtype()), shape);
  a.to_host(out.mutable_data());
  return out;
}

// The CPU backend's buffers are host memory; no other registered backend's are.
bool is_host_memory(const NDArray& a) {
  return a.device().name() == "cpu";
}

py::array numpy_view(const NDArray& a) {
  if (!is_host_memory(a))
    fail<ValueError>("[numpy_view] a ", a.device().name(),
                     " array has no numpy view (its memory is not on the host); use numpy()");
  const auto item = py::ssize_t(dtype_size(a.dtype()));
  std::vector<py::ssize_t> shape(a.shape().begin(), a.shape().end()), strides;
  for (int64_t s : a.strides()) strides.push_back(py::ssize_t(s) * item);
  auto* first = static_cast<char*>(a.buffer()->data()) + a.offset() * item;
  // The base owns a copy of the NDArray, so the buffer lives as long as the view.
  return py::array(numpy_dtype(a.dtype()), shape, strides, first, py::cast(a));
}

bool is_numpy_scalar(const py::handle& obj) {
  static auto* generic = new py::object(py::module_::import("numpy").attr("generic"));
  return py::isinstance(obj, *generic);
}

std::optional<Scalar> to_scalar(const py::handle& obj) {
  PyObject* o = obj.ptr();
  if (PyBool_Check(o)) return Scalar(o == Py_True);
  if (PyLong_Check(o)) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();  // beyond int64
    return Scalar(v);
  }
  if (PyFloat_Check(o)) return Scalar(PyFloat_AS_DOUBLE(o));
  if (!is_numpy_scalar(obj)) return std::nullopt;
  switch (py::dtype::from_args(obj.attr("dtype")).kind()) {  // a numpy scalar: as Python's
    case 'b':
      return Scalar(obj.cast<bool>());
    case 'i':
    case 'u':
      return Scalar(obj.attr("__int__")().cast<long long>());
    case 'f':
      return Scalar(obj.cast<double>());
  }
  return std::nullopt;
}

NDArray to_ndarray(const py::handle& obj, Backend* device, std::optional<DType> dtype,
                   Infer infer) {
  Backend& target = device ? *device : default_backend();
  if (py::isinstance<NDArray>(obj)) {
    NDArray a = obj.cast<NDArray>();
    if (device && &a.device() != device) a = a.to(*device);
    if (dtype && a.dtype() != *dtype) a = a.astype(*dtype);
    return a;
  }
  if (obj.is_none()) fail<TypeError>("[array] cannot make an array from None");
  const bool is_array = py::isinstance<py::array>(obj);
  // numpy's own errors (ragged lists) pass through.
  py::array arr =
      is_array ? py::reinterpret_borrow<py::array>(obj) : py::array(numpy_asarray()(obj));
  DType dt;
  if (dtype) {
    dt = *dtype;
  } else if (infer == Infer::float32_unless_array && !is_array) {
    dt = DType::float32;
  } else {
    dt = dtype_of_numpy(arr.dtype(), "array");
  }
  // C order, in the target dtype (numpy casts as `astype` does); 0-d stays 0-d.
  const py::dtype& want = numpy_dtype_ref(dt);
  if (!arr.dtype().equal(want) || !(arr.flags() & py::array::c_style))
    arr = numpy_asarray()(arr, want, py::arg("order") = "C");
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  return NDArray::from_host(arr.data(), shape, dt, target);
}

}  // namespace needle::python
