// Python NDArray: the C++ needle::NDArray bound as `NDArray`, with the course's methods
// (views, setitem, arithmetic, reductions, matmul) and conversions from/to numpy.
#include <algorithm>
#include <climits>
#include <string>

#include "bindings.h"
#include "needle/tensor.h"

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

bool is_index_array(const py::handle& item) {
  return py::isinstance<NDArray>(item) || py::isinstance<Node>(item) ||
         py::isinstance<py::array>(item) || py::isinstance<py::list>(item);
}

bool is_full_slice(const py::handle& item) {
  if (!py::isinstance<py::slice>(item)) return false;
  return item.attr("start").is_none() && item.attr("stop").is_none() &&
         item.attr("step").is_none();
}

}  // namespace

std::optional<ArrayIndex> array_index(const py::handle& key, int64_t ndim) {
  if (!py::isinstance<py::tuple>(key)) {
    if (!is_index_array(key)) return std::nullopt;
    return ArrayIndex{py::reinterpret_borrow<py::object>(key), 0};
  }
  auto items = key.cast<py::tuple>();
  std::optional<size_t> pos, ellipsis;
  bool others_full = true;
  for (size_t i = 0; i < items.size(); ++i) {
    py::object item = items[i];
    if (is_index_array(item)) {
      if (pos) others_full = false;  // a second index array
      pos = i;
    } else if (item.is(py::ellipsis())) {
      ellipsis = i;
    } else if (!is_full_slice(item)) {
      others_full = false;
    }
  }
  if (!pos) return std::nullopt;
  if (!others_full)
    fail<IndexError>("[getitem] integer-array indexing takes one index array, with only ':' or "
                     "'...' beside it");
  // Entries after an ellipsis count from the last axis.
  int64_t axis = ellipsis && *ellipsis < *pos ? ndim - int64_t(items.size() - *pos)
                                               : int64_t(*pos);
  if (axis < 0 || axis >= ndim)
    fail<IndexError>("[getitem] too many indices for an array of ", ndim, " dimensions");
  return ArrayIndex{py::reinterpret_borrow<py::object>(items[*pos]), axis};
}

NDArray index_array(const py::handle& indices, Backend& device) {
  // (A Tensor's data through Python: Tensor's pybind11 caster lives in tensor_bindings.h.)
  NDArray idx = py::isinstance<Node>(indices)
                    ? indices.attr("realize_cached_data")().cast<NDArray>()
                    : to_ndarray(indices, &device, std::nullopt);
  if (&idx.device() != &device) idx = idx.to(device);
  if (is_bool(idx.dtype()))
    fail<IndexError>("[getitem] boolean masks are not supported as indices; use where()");
  if (is_floating(idx.dtype()))
    fail<IndexError>("[getitem] index arrays must hold integers, got ", dtype_name(idx.dtype()));
  if (idx.dtype() == DType::uint8) idx = idx.astype(DType::int64);
  return idx;
}

namespace {

NDArray same_device_operand(const NDArray& self, const py::handle& value) {
  return to_ndarray(value, &self.device(), self.dtype());
}

// bool < integers < floats: numpy's scalar rules compare these kinds.
int kind_rank(DType d) { return is_bool(d) ? 0 : is_floating(d) ? 2 : 1; }

py::object not_implemented() { return py::reinterpret_borrow<py::object>(Py_NotImplemented); }

// a (op) other, or other (op) a when reflected: an NDArray or numpy array operand (a numpy
// array keeps its dtype and moves to a's device), or a Python or numpy scalar, whose kind
// steers numpy's promotion (int array + 1 stays int, + 1.5 is float64). NotImplemented for
// anything else. NDArray's __array_priority__ makes numpy defer to these reflected operators,
// so numpy (op) NDArray is an NDArray too.
template <BinaryOp op>
py::object arith(const NDArray& a, const py::handle& other, bool reflected) {
  auto binary = [&](const NDArray& b) {
    return py::cast(reflected ? NDArray::binary(op, b, a) : NDArray::binary(op, a, b));
  };
  if (py::isinstance<NDArray>(other)) return binary(other.cast<const NDArray&>());
  if (auto s = to_scalar(other)) {
    // A numpy scalar of a higher kind than the array (np.float32(2) with an int array) gives
    // its own dtype, as numpy does; otherwise it acts as the Python number it holds.
    if (is_numpy_scalar(other)) {
      DType sd = dtype_of_numpy(py::dtype::from_args(other.attr("dtype")), op_name(op));
      if (kind_rank(sd) > kind_rank(a.dtype())) return binary(to_ndarray(other, &a.device(), sd));
    }
    return py::cast(a.scalar(op, *s, reflected));
  }
  if (py::isinstance<py::array>(other)) return binary(to_ndarray(other, &a.device(), std::nullopt));
  return not_implemented();
}

template <BinaryOp op>
void bind_arith(py::class_<NDArray>& cls, const char* name, const char* rname) {
  cls.def(name, [](const NDArray& a, const py::object& b) { return arith<op>(a, b, false); });
  if (rname)
    cls.def(rname, [](const NDArray& a, const py::object& b) { return arith<op>(a, b, true); });
}

Scalar scalar_arg(const char* op, const py::handle& value) {
  if (auto s = to_scalar(value)) return *s;
  fail<TypeError>("[", op, "] expected a number, got ",
                  std::string(py::str(py::type::of(value).attr("__name__"))));
}

}  // namespace

namespace {

// __array__(dtype=None, copy=None): numpy 2 passes copy; copy=False asks for no copy.
py::object array_protocol(const NDArray& a, const py::object& dtype, const py::object& copy) {
  bool no_copy = !copy.is_none() && !copy.cast<bool>();
  py::array out = no_copy ? numpy_view(a) : to_numpy(a);
  if (dtype.is_none()) return std::move(out);
  return out.attr("astype")(dtype, py::arg("copy") = !no_copy);
}

py::object item(const NDArray& a) {
  if (is_floating(a.dtype()) || a.size() != 1) return py::float_(a.item());  // item() checks
  return to_numpy(a).attr("item")();  // int or bool, exactly
}

py::object flat(const NDArray& a) {
  if (is_host_memory(a)) {
    py::array view = numpy_view(a);
    return a.is_compact() ? view.attr("reshape")(-1) : view.attr("flat");
  }
  if (!a.is_compact())
    fail<ValueError>("[flat] a non-compact ", a.device().name(),
                     " array has no flat view; call compact() first");
  return py::cast(a.reshape({a.size()}));
}

}  // namespace

void init_ndarray(py::module_& m) {
  py::class_<NDArray> cls(m, "NDArray", R"doc(
An n-dimensional array on a device: a shared buffer (`_handle`) seen through shape,
strides (in elements) and offset. Views share the buffer; `compact()` copies.)doc");
  cls.def(py::init([](const py::object& other, const py::object& device, const py::object& dtype) {
            std::optional<DType> dt = to_dtype(dtype, "NDArray");
            Backend* dev = device.is_none() ? nullptr : &to_backend(device);
            NDArray a = to_ndarray(other, dev, dt, Infer::float32_unless_array);
            // NDArray(ndarray) copies, as the course's constructor does.
            return py::isinstance<NDArray>(other) && a.buffer() == other.cast<NDArray&>().buffer()
                       ? a.clone()
                       : a;
          }),
          py::arg("other"), py::arg("device") = py::none(), py::arg("dtype") = py::none())
      .def_static(
          "make",
          [](const py::object& shape, const py::object& strides, const py::object& device,
             std::shared_ptr<Buffer> handle, int64_t offset, const py::object& dtype) {
            Shape s = to_ints(shape);
            if (!handle) handle = NDArray::empty(s, *to_dtype(dtype, "make"), to_backend(device)).buffer();
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
      .def_property_readonly("dtype", [](const NDArray& a) { return dtype_object(a.dtype()); })
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
      .def("__array__", &array_protocol, py::arg("dtype") = py::none(),
           py::arg("copy") = py::none(),
           "numpy's conversion hook (np.asarray, np.testing, ...): a copy; with copy=False a "
           "view of host memory (ValueError for device memory).")
      .def("is_compact", &NDArray::is_compact)
      .def("compact", &NDArray::compact, "A compact copy, or self when already compact.")
      .def("astype",
           [](const NDArray& a, const py::object& d) {
             if (d.is_none()) fail<TypeError>("[astype] expected a dtype, got None");
             return a.astype(*to_dtype(d, "astype"));
           },
           py::arg("dtype"), "A copy in `dtype`: a name (\"int64\"), a numpy dtype or type.")
      .def("item", &item, "The single element as a Python float, int or bool.")
      .def("as_strided",
           [](const NDArray& a, const py::object& shape, const py::object& strides) {
             return a.as_strided(to_ints(shape), to_ints(strides));
           })
      .def_property_readonly("flat", &flat, R"doc(
The elements in row-major order, writable in place (`a.flat[j] += eps` changes `a`): on the
CPU a numpy view of the buffer (1-D when `a` is compact, else numpy's flat iterator); on
another device a 1-D NDArray view, which needs a compact array.)doc")
      .def("reshape", [](const NDArray& a, const py::object& shape) { return a.reshape(to_ints(shape)); },
           py::arg("new_shape"))
      .def("permute", [](const NDArray& a, const py::object& axes) { return a.permute(to_ints(axes)); },
           py::arg("new_axes"))
      .def("swapaxes", &NDArray::swapaxes)
      .def("broadcast_to",
           [](const NDArray& a, const py::object& shape) { return a.broadcast_to(to_ints(shape)); },
           py::arg("new_shape"))
      .def("__getitem__",
           [](const NDArray& a, const py::object& key) {
             if (auto ai = array_index(key, a.ndim()))  // a[idx]: numpy's take
               return a.take(index_array(ai->indices, a.device()), ai->axis);
             return a.getitem(to_index_key(key, a.ndim()));
           })
      .def("__setitem__",
           [](NDArray& a, const py::object& key, const py::object& value) {
             if (array_index(key, a.ndim()))
               fail<TypeError>("[setitem] assignment through an index array is not supported");
             IndexKey k = to_index_key(key, a.ndim());
             if (py::isinstance<py::float_>(value) || py::isinstance<py::int_>(value))
               a.setitem(k, value.cast<double>());
             else
               a.setitem(k, same_device_operand(a, value));
           })
      .def("__neg__", [](const NDArray& a) { return -a; })
      .def("__pow__", [](const NDArray& a, const py::object& e) { return a.pow(scalar_arg("pow", e)); })
      .def("maximum", [](const NDArray& a, const NDArray& b) { return a.maximum(b); })
      .def("maximum",
           [](const NDArray& a, const py::object& s) { return a.maximum(scalar_arg("maximum", s)); })
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
      .def("argmax",
           [](const NDArray& a, std::optional<int64_t> axis, bool keepdims) {
             return a.argmax(axis, keepdims);
           },
           py::arg("axis") = py::none(), py::arg("keepdims") = false,
           "Index of the first largest element (of the flattened array when axis is None), "
           "int64.")
      .def("argmin",
           [](const NDArray& a, std::optional<int64_t> axis, bool keepdims) {
             return a.argmin(axis, keepdims);
           },
           py::arg("axis") = py::none(), py::arg("keepdims") = false)
      .def("take",
           [](const NDArray& a, const py::object& indices, int64_t axis) {
             return a.take(index_array(indices, a.device()), axis);
           },
           py::arg("indices"), py::arg("axis") = 0, "numpy's take: a gather along `axis`.")
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
  cls.attr("__array_priority__") = 1000;  // numpy defers to NDArray's reflected operators

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

  m.def("_set_dtype_class", &set_dtype_class, py::arg("cls"),
        "Registers the str subclass that `.dtype` returns (needle.backend_ndarray.DType).");
  m.def(
      "where",
      [](const py::object& cond, const py::object& a, const py::object& b) {
        // Operands go to the first NDArray's device; a scalar value takes the dtype numpy's
        // scalar rule gives it beside the other value (where(c, f32, 0.0) stays float32).
        Backend* dev = nullptr;
        for (const py::object* x : {&cond, &a, &b})
          if (!dev && py::isinstance<NDArray>(*x)) dev = &x->cast<const NDArray&>().device();
        auto arr = [&](const py::object& x) { return to_ndarray(x, dev, std::nullopt); };
        auto value = [&](const py::object& x, const py::object& other) {
          auto s = to_scalar(x);
          if (!s || to_scalar(other)) return arr(x);
          NDArray o = arr(other);
          return to_ndarray(x, dev, NDArray::scalar_operand_dtype(o.dtype(), *s));
        };
        return NDArray::where(arr(cond), value(a, b), value(b, a));
      },
      py::arg("condition"), py::arg("a"), py::arg("b"),
      "numpy's where: `a` where `condition` is nonzero, else `b` (broadcast, promoted).");
  m.def("concatenate", &NDArray::concatenate, py::arg("arrays"), py::arg("axis") = 0);
  m.def("stack", &NDArray::stack, py::arg("arrays"), py::arg("axis") = 0);
}

}  // namespace needle::python
