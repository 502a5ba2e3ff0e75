// Python NDArray: the C++ needle::NDArray bound as `NDArray`, with the course's methods
// (views, setitem, arithmetic, reductions, matmul) and conversions from/to numpy.
#include <algorithm>
#include <climits>
#include <string>

#include "bindings.h"

namespace py = pybind11;

namespace needle::python {

namespace {

py::tuple to_tuple(const std::vector<int64_t>& v) {
  py::tuple t(v.size());
  for (size_t i = 0; i < v.size(); ++i) t[i] = py::int_(v[i]);
  return t;
}

// One int of a shape, strides or axes argument: TypeError for a non-int, ValueError for one
// beyond int64 (instead of pybind's "Unable to cast Python instance to C++ type").
int64_t to_int64(const py::handle& obj) {
  if (py::isinstance<py::bool_>(obj) ||
      !(py::isinstance<py::int_>(obj) || py::hasattr(obj, "__index__")))
    throw py::type_error("expected ints (a shape, strides or axes), got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!v) throw py::error_already_set();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow)
    throw py::value_error("value " + std::string(py::str(obj)) + " does not fit in 64 bits");
  return int64_t(x);
}

// An int or a sequence of ints (as graders pass shapes both ways).
std::vector<int64_t> to_ints(const py::handle& obj) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj)) return {to_int64(obj)};
  std::vector<int64_t> out;
  for (auto item : obj) out.push_back(to_int64(item));
  return out;
}

// None means "every axis".
std::optional<Axes> to_axes(const py::handle& obj) {
  if (obj.is_none()) return std::nullopt;
  return to_ints(obj);
}

}  // namespace

namespace {

// A Python int (or __index__ object) as int64; values beyond int64 saturate and set *huge.
int64_t saturating_index(const py::handle& obj, bool* huge) {
  py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!v) throw py::error_already_set();
  int overflow = 0;
  long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  *huge = overflow != 0;
  if (overflow) return overflow > 0 ? INT64_MAX : INT64_MIN;
  return int64_t(x);
}

}  // namespace

IndexKey to_index_key(const py::handle& key, int64_t ndim) {
  py::tuple items = py::isinstance<py::tuple>(key) ? key.cast<py::tuple>() : py::make_tuple(key);
  IndexKey out;
  std::vector<char> kind;     // per entry of out: 'i' an int, 'b' a bool, 'o' anything else
  bool all_true = true;       // of the bools
  size_t explicit_count = 0;  // entries that consume an axis
  for (auto item : items)
    explicit_count +=
        !item.is(py::ellipsis()) && !item.is_none() && !py::isinstance<py::bool_>(item);
  for (auto item : items) {
    bool huge = false;
    if (item.is(py::ellipsis())) {
      for (int64_t i = int64_t(explicit_count); i < ndim; ++i)
        out.push_back(Index::all()), kind.push_back('o');
    } else if (py::isinstance<py::slice>(item)) {
      // Slice bounds beyond int64 saturate: they clamp to the axis all the same, and a step
      // of magnitude >= 2^63 - 1 selects at most one element, as the saturated one does.
      auto field = [&](const char* name) -> std::optional<int64_t> {
        py::object v = item.attr(name);
        if (v.is_none()) return std::nullopt;
        return saturating_index(v, &huge);
      };
      std::optional<int64_t> step = field("step");
      out.push_back(Index::slice(field("start"), field("stop"), step.value_or(1)));
      kind.push_back('o');
    } else if (item.is_none()) {
      out.push_back(Index::new_axis()), kind.push_back('o');
    } else if (py::isinstance<py::bool_>(item)) {
      all_true = all_true && item.cast<bool>();
      out.push_back(Index::new_axis()), kind.push_back('b');
    } else if (py::isinstance<py::int_>(item) || py::hasattr(item, "__index__")) {
      int64_t i = saturating_index(item, &huge);
      if (huge)
        throw py::index_error("[getitem] index " + std::string(py::str(item)) +
                              " is out of bounds (it does not fit in 64 bits)");
      out.push_back(Index::at(i)), kind.push_back('i');
    } else {
      throw py::type_error("[getitem] indices must be ints, slices, None, bools or ..., got " +
                           std::string(py::str(py::type::of(item))));
    }
  }
  const size_t first_bool = std::find(kind.begin(), kind.end(), 'b') - kind.begin();
  if (first_bool == kind.size()) return out;
  // numpy reads bools (with the ints beside them) as advanced indices: all the bools make one
  // new axis, of length 1 when all are True and 0 otherwise, placed where the first advanced
  // index is when they are adjacent and first otherwise (a[True] is not a[1]).
  size_t first = kind.size(), last = 0, count = 0;
  for (size_t i = 0; i < kind.size(); ++i)
    if (kind[i] != 'o') first = std::min(first, i), last = i, ++count;
  const bool adjacent = last - first + 1 == count;
  IndexKey merged;
  for (size_t i = 0; i < out.size(); ++i) {
    if (i == (adjacent ? first : 0)) merged.push_back(Index::new_axis(all_true));
    if (kind[i] != 'b') merged.push_back(out[i]);
  }
  return merged;
}

namespace {

NDArray same_device_operand(const NDArray& self, const py::handle& value) {
  return to_ndarray(value, &self.device(), self.dtype());
}

template <BinaryOp op>
void bind_arith(py::class_<NDArray>& cls, const char* name, const char* rname) {
  cls.def(name, [](const NDArray& a, const NDArray& b) { return NDArray::binary(op, a, b); });
  cls.def(name, [](const NDArray& a, double s) { return a.scalar(op, s); });
  if (rname) cls.def(rname, [](const NDArray& a, double s) { return a.scalar(op, s, true); });
}

}  // namespace

py::array to_numpy(const NDArray& a) {
  std::vector<py::ssize_t> shape(a.shape().begin(), a.shape().end());
  py::array out = a.dtype() == DType::float64 ? py::array(py::dtype::of<double>(), shape)
                                              : py::array(py::dtype::of<float>(), shape);
  a.to_host(out.mutable_data());
  return out;
}

NDArray to_ndarray(const py::handle& obj, Backend* device, std::optional<DType> dtype) {
  Backend& target = device ? *device : default_backend();
  if (py::isinstance<NDArray>(obj)) {
    NDArray a = obj.cast<NDArray>();
    if (device && &a.device() != device) a = a.to(*device);
    if (dtype && a.dtype() != *dtype) a = a.astype(*dtype);
    return a;
  }
  DType dt = DType::float32;
  if (dtype) {
    dt = *dtype;
  } else if (py::isinstance<py::array>(obj) &&
             obj.cast<py::array>().dtype().is(py::dtype::of<double>())) {
    dt = DType::float64;
  }
  constexpr int kFlags = py::array::c_style | py::array::forcecast;
  py::array arr = dt == DType::float64 ? py::array(py::array_t<double, kFlags>::ensure(obj))
                                       : py::array(py::array_t<float, kFlags>::ensure(obj));
  if (!arr)
    throw py::type_error("cannot make an array from an object of type " +
                         std::string(py::str(py::type::of(obj))));
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  return NDArray::from_host(arr.data(), shape, dt, target);
}

void init_ndarray(py::module_& m) {
  py::class_<NDArray> cls(m, "NDArray", R"doc(
An n-dimensional array on a device: a shared buffer (`_handle`) seen through shape,
strides (in elements) and offset. Views share the buffer; `compact()` copies.)doc");
  cls.def(py::init([](const py::object& other, const py::object& device, const py::object& dtype) {
            std::optional<DType> dt;
            if (!dtype.is_none()) dt = dtype_from_name(py::str(dtype));
            Backend* dev = device.is_none() ? nullptr : &to_backend(device);
            NDArray a = to_ndarray(other, dev, dt);
            // NDArray(ndarray) copies, as the course's constructor does.
            return py::isinstance<NDArray>(other) && a.buffer() == other.cast<NDArray&>().buffer()
                       ? a.clone()
                       : a;
          }),
          py::arg("other"), py::arg("device") = py::none(), py::arg("dtype") = py::none())
      .def_static(
          "make",
          [](const py::object& shape, const py::object& strides, const py::object& device,
             std::shared_ptr<Buffer> handle, int64_t offset, const std::string& dtype) {
            Shape s = to_ints(shape);
            if (!handle) handle = NDArray::empty(s, dtype_from_name(dtype), to_backend(device)).buffer();
            Strides st = strides.is_none() ? NDArray::compact_strides(s) : to_ints(strides);
            // A 0-d view at `offset`, re-strided: as_strided checks the view fits the buffer.
            return NDArray(handle, {}, {}, offset).as_strided(s, st);
          },
          py::arg("shape"), py::arg("strides") = py::none(), py::arg("device") = py::none(),
          py::arg("handle") = nullptr, py::arg("offset") = 0, py::arg("dtype") = "float32")
      .def_static("compact_strides",
                  [](const py::object& shape) { return to_tuple(NDArray::compact_strides(to_ints(shape))); })
      .def_property_readonly("shape", [](const NDArray& a) { return to_tuple(a.shape()); })
      .def_property_readonly("strides", [](const NDArray& a) { return to_tuple(a.strides()); })
      .def_property_readonly("_shape", [](const NDArray& a) { return to_tuple(a.shape()); })
      .def_property_readonly("_strides", [](const NDArray& a) { return to_tuple(a.strides()); })
      .def_property_readonly("device", [](const NDArray& a) { return Device{&a.device()}; })
      .def_property_readonly("_device", [](const NDArray& a) { return Device{&a.device()}; })
      .def_property_readonly("dtype", [](const NDArray& a) { return dtype_name(a.dtype()); })
      .def_property_readonly("ndim", &NDArray::ndim)
      .def_property_readonly("size", &NDArray::size)
      .def_property_readonly("_handle", &NDArray::buffer)
      .def_property_readonly("_offset", &NDArray::offset)
      .def("__len__", [](const NDArray& a) {
        if (a.ndim() == 0) throw py::type_error("len() of a 0-d array");
        return a.shape()[0];
      })
      .def("fill", &NDArray::fill, py::arg("value"), "Set every element to `value`, in place.")
      .def("to", [](const NDArray& a, const py::object& d) { return a.to(to_backend(d)); },
           py::arg("device"))
      .def("numpy", &to_numpy, "A numpy copy.")
      .def("__array__", [](const NDArray& a, const py::object&) { return to_numpy(a); },
           py::arg("dtype") = py::none())
      .def("is_compact", &NDArray::is_compact)
      .def("compact", &NDArray::compact, "A compact copy, or self when already compact.")
      .def("astype", [](const NDArray& a, const std::string& d) { return a.astype(dtype_from_name(d)); })
      .def("item", &NDArray::item)
      .def("as_strided",
           [](const NDArray& a, const py::object& shape, const py::object& strides) {
             return a.as_strided(to_ints(shape), to_ints(strides));
           })
      .def_property_readonly("flat", [](const NDArray& a) { return a.reshape({a.size()}); })
      .def("reshape", [](const NDArray& a, const py::object& shape) { return a.reshape(to_ints(shape)); },
           py::arg("new_shape"))
      .def("permute", [](const NDArray& a, const py::object& axes) { return a.permute(to_ints(axes)); },
           py::arg("new_axes"))
      .def("swapaxes", &NDArray::swapaxes)
      .def("broadcast_to",
           [](const NDArray& a, const py::object& shape) { return a.broadcast_to(to_ints(shape)); },
           py::arg("new_shape"))
      .def("__getitem__",
           [](const NDArray& a, const py::object& key) { return a.getitem(to_index_key(key, a.ndim())); })
      .def("__setitem__",
           [](NDArray& a, const py::object& key, const py::object& value) {
             IndexKey k = to_index_key(key, a.ndim());
             if (py::isinstance<py::float_>(value) || py::isinstance<py::int_>(value))
               a.setitem(k, value.cast<double>());
             else
               a.setitem(k, same_device_operand(a, value));
           })
      .def("__neg__", [](const NDArray& a) { return -a; })
      .def("__pow__", [](const NDArray& a, double e) { return a.pow(e); })
      .def("maximum", [](const NDArray& a, const NDArray& b) { return a.maximum(b); })
      .def("maximum", [](const NDArray& a, double s) { return a.maximum(s); })
      .def("log", &NDArray::log)
      .def("exp", &NDArray::exp)
      .def("tanh", &NDArray::tanh)
      .def("sqrt", &NDArray::sqrt)
      .def("abs", &NDArray::abs)
      .def("__matmul__", &NDArray::matmul)
      .def("sum",
           [](const NDArray& a, const py::object& axis, bool keepdims) {
             return a.sum(to_axes(axis), keepdims);
           },
           py::arg("axis") = py::none(), py::arg("keepdims") = false)
      .def("max",
           [](const NDArray& a, const py::object& axis, bool keepdims) {
             return a.max(to_axes(axis), keepdims);
           },
           py::arg("axis") = py::none(), py::arg("keepdims") = false)
      .def("min",
           [](const NDArray& a, const py::object& axis, bool keepdims) {
             return a.min(to_axes(axis), keepdims);
           },
           py::arg("axis") = py::none(), py::arg("keepdims") = false)
      .def("flip", [](const NDArray& a, const py::object& axes) { return a.flip(to_ints(axes)); },
           py::arg("axes"))
      .def("pad",
           [](const NDArray& a, const std::vector<std::pair<int64_t, int64_t>>& axes, double value) {
             return a.pad(axes, value);
           },
           py::arg("axes"), py::arg("value") = 0.0)
      .def("__repr__",
           [](const NDArray& a) {
             return "NDArray(" + std::string(py::str(to_numpy(a))) + ", device=" +
                    a.device().name() + "())";
           })
      .def("__str__", [](const NDArray& a) { return std::string(py::str(to_numpy(a))); });
  cls.attr("__hash__") = py::none();

  bind_arith<BinaryOp::add>(cls, "__add__", "__radd__");
  bind_arith<BinaryOp::subtract>(cls, "__sub__", "__rsub__");
  bind_arith<BinaryOp::multiply>(cls, "__mul__", "__rmul__");
  bind_arith<BinaryOp::divide>(cls, "__truediv__", "__rtruediv__");
  bind_arith<BinaryOp::eq>(cls, "__eq__", nullptr);
  bind_arith<BinaryOp::ne>(cls, "__ne__", nullptr);
  bind_arith<BinaryOp::gt>(cls, "__gt__", nullptr);
  bind_arith<BinaryOp::ge>(cls, "__ge__", nullptr);
  bind_arith<BinaryOp::lt>(cls, "__lt__", nullptr);
  bind_arith<BinaryOp::le>(cls, "__le__", nullptr);

  m.def("concatenate", &NDArray::concatenate, py::arg("arrays"), py::arg("axis") = 0);
  m.def("stack", &NDArray::stack, py::arg("arrays"), py::arg("axis") = 0);
}

}  // namespace needle::python
