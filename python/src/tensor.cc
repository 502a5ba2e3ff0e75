// Python Value / Tensor / TensorTuple (the C++ graph nodes themselves, so one node is one
// Python object and Python subclasses such as nn.Parameter work), the autograd functions,
// and PyOp: the C++ op that runs a Python-defined TensorOp (compute and gradient call back
// into Python, holding the GIL).
#include <Python.h>
#include <pybind11/functional.h>

#include "tensor_bindings.h"

namespace py = pybind11;

namespace needle::python {

namespace {

using TensorPtr = std::shared_ptr<TensorNode>;
using TuplePtr = std::shared_ptr<TupleNode>;

PyTypeObject* tensor_type = nullptr;  // the bound Tensor class, for fast type checks

}  // namespace

bool is_tensor(py::handle h) {
  return h && PyObject_TypeCheck(h.ptr(), tensor_type);
}
// Reads the node straight from the instance's holder, which skips pybind11's type lookup:
// operators run this on every call.
Tensor as_tensor(py::handle h) {
  auto v_h = reinterpret_cast<py::detail::instance*>(h.ptr())->get_value_and_holder();
  if (!v_h.holder_constructed()) return h.cast<Tensor>();  // raises the usual error
  return Tensor(v_h.holder<TensorPtr>());
}

std::vector<NodePtr> nodes_from(const py::handle& inputs) {
  std::vector<NodePtr> nodes;
  for (auto item : inputs) {
    if (!py::isinstance<Node>(item))
      throw py::type_error("op inputs must be Tensors or TensorTuples, got " +
                           std::string(py::str(py::type::of(item))));
    nodes.push_back(item.cast<Value>().node());
  }
  return nodes;
}

namespace {

// --- PyOp ---

// Runs a Python op object (a needle.autograd.TensorOp / TensorTupleOp subclass instance):
// compute(*ndarrays) and gradient_as_tuple(out_grad, node). It owns a reference to the
// Python object, so the node keeps working after the user's op object goes away.
class PyOp final : public Op {
 public:
  PyOp(py::object op, bool returns_tuple) : op_(std::move(op)), tuple_(returns_tuple) {}
  ~PyOp() override {
    if (Py_IsInitialized()) {
      py::gil_scoped_acquire gil;
      op_ = py::object();
    } else {
      op_.release();  // the interpreter is gone: nothing left to decref
    }
  }

  std::string name() const override {
    py::gil_scoped_acquire gil;
    return py::str(py::type::of(op_).attr("__name__"));
  }
  bool returns_tuple() const override { return tuple_; }

  NDArray evaluate(const std::vector<NodePtr>& inputs) const override {
    py::gil_scoped_acquire gil;
    py::object out = op_.attr("compute")(*call_args(inputs));
    return to_array(out, inputs);
  }

  std::vector<NDArray> evaluate_tuple(const std::vector<NodePtr>& inputs) const override {
    py::gil_scoped_acquire gil;
    py::object out = op_.attr("compute")(*call_args(inputs));
    std::vector<NDArray> arrays;
    for (auto item : out) arrays.push_back(to_array(item, inputs));
    return arrays;
  }

  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override {
    py::gil_scoped_acquire gil;
    py::object grads = py::hasattr(op_, "gradient_as_tuple")
                           ? op_.attr("gradient_as_tuple")(out_grad, node)
                           : op_.attr("gradient")(out_grad, node);
    if (!py::isinstance<py::tuple>(grads) && !py::isinstance<py::list>(grads))
      grads = py::make_tuple(grads);
    std::vector<Value> out;
    for (auto g : grads) {
      if (!g.is_none() && !py::isinstance<Node>(g))
        fail<TypeError>("[", name(), "] gradient must return Tensors (or None), got ",
                        std::string(py::str(py::type::of(g))));
      out.push_back(g.cast<Value>());
    }
    check_gradients(out, node.node()->inputs());
    return out;
  }

  const py::object& object() const { return op_; }

 private:
  // A user-written gradient must give one adjoint per input, each of its input's kind and
  // shape: a wrong one would otherwise be summed into .grad silently (or broadcast there).
  void check_gradients(const std::vector<Value>& grads, const std::vector<NodePtr>& inputs) const {
    if (grads.size() != inputs.size())
      fail<ValueError>("[", name(), "] gradient returned ", grads.size(), " gradient",
                       grads.size() == 1 ? "" : "s", " for ", inputs.size(), " input",
                       inputs.size() == 1 ? "" : "s");
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      if (grads[i].is_tuple() != inputs[i]->is_tuple())
        fail<TypeError>("[", name(), "] gradient ", i, " is a ",
                        grads[i].is_tuple() ? "TensorTuple" : "Tensor", " but input ", i, " is a ",
                        inputs[i]->is_tuple() ? "TensorTuple" : "Tensor");
      if (inputs[i]->is_tuple()) continue;
      const Shape& want = static_cast<TensorNode&>(*inputs[i]).data().shape();
      const Shape& got = static_cast<TensorNode&>(*grads[i].node()).data().shape();
      if (got != want)
        fail<ValueError>("[", name(), "] gradient ", i, " has shape ", shape_str(got),
                         " but input ", i, " has shape ", shape_str(want));
    }
  }

  // One Python argument per input: an NDArray, or a tuple of NDArrays for a tuple input.
  static py::tuple call_args(const std::vector<NodePtr>& inputs) {
    py::tuple args(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i]->is_tuple()) {
        const auto& items = static_cast<TupleNode&>(*inputs[i]).data();
        py::tuple t(items.size());
        for (size_t k = 0; k < items.size(); ++k) t[k] = py::cast(items[k]);
        args[i] = t;
      } else {
        args[i] = py::cast(static_cast<TensorNode&>(*inputs[i]).data());
      }
    }
    return args;
  }

  // An NDArray result as is; anything else (numpy, lists) on the first input's device/dtype.
  static NDArray to_array(py::handle out, const std::vector<NodePtr>& inputs) {
    if (py::isinstance<NDArray>(out)) return out.cast<NDArray>();
    for (auto& in : inputs) {
      if (!in->is_tuple()) {
        const NDArray& d = static_cast<TensorNode&>(*in).data();
        return to_ndarray(out, &d.device(), d.dtype());
      }
    }
    return to_ndarray(out, nullptr, std::nullopt);
  }

  py::object op_;
  bool tuple_;
};

// A bound C++ op as is; any other object is a Python-defined op.
OpPtr op_from_python(const py::handle& op, bool returns_tuple) {
  if (py::isinstance<Op>(op)) return op.cast<std::shared_ptr<Op>>();
  if (!py::hasattr(op, "compute"))
    throw py::type_error("make_from_op: expected an op with compute(), got " +
                         std::string(py::str(py::type::of(op))));
  return std::make_shared<PyOp>(py::reinterpret_borrow<py::object>(op), returns_tuple);
}

py::tuple shape_tuple(const Shape& shape) {
  py::tuple t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t[i] = py::int_(shape[i]);
  return t;
}

// `other` as a Tensor on self's device and dtype, for operators: a Tensor as is; a number,
// NDArray, numpy array or list as a constant. Nothing (NotImplemented) for other types.
std::optional<Tensor> operand(const Tensor& self, py::handle other) {
  if (is_tensor(other)) return as_tensor(other);
  if (py::isinstance<NDArray>(other) || py::isinstance<py::array>(other) ||
      py::isinstance<py::list>(other) || py::isinstance<py::tuple>(other))
    return Tensor(to_ndarray(other, &self.device(), self.dtype()));
  return std::nullopt;
}

bool is_number(py::handle h) {
  PyObject* o = h.ptr();
  return PyFloat_Check(o) || PyLong_Check(o) ||
         (!py::isinstance<py::array>(h) && !py::isinstance<Node>(h) && PyNumber_Check(o) &&
          py::hasattr(h, "__float__"));
}

double number(py::handle h) {
  double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

py::object not_implemented() {
  return py::reinterpret_borrow<py::object>(Py_NotImplemented);
}

// Binds a binary operator: tensor (op) tensor through `tt`, tensor (op) number through `ts`.
template <class TT, class TS>
void def_operator(py::class_<TensorNode, Node, TensorPtr>& cls, const char* name, TT tt, TS ts) {
  cls.def(name, [tt, ts](py::handle self_obj, py::handle other) -> py::object {
    if (!is_tensor(self_obj)) return not_implemented();  // an unbound call with a non-Tensor
    Tensor self = as_tensor(self_obj);
    if (is_tensor(other)) return py::cast(tt(self, as_tensor(other)));
    if (auto s = to_scalar(other)) return py::cast(ts(self, *s));
    if (is_number(other)) return py::cast(ts(self, Scalar(number(other))));
    if (auto t = operand(self, other)) return py::cast(tt(self, *t));
    return not_implemented();
  });
}

// OpT(a, s) for a scalar op that keeps the scalar's kind (int tensor + 1 stays int, + 1.5 is
// float64, as numpy); `value` is the scalar as the op uses it (negated for a - s).
template <class OpT>
Tensor scalar_op(const Tensor& a, const Scalar& s, double value) {
  return Value(make_node(std::make_shared<OpT>(value, s.kind), {a.node()})).tensor();
}
template <class OpT>
Tensor scalar_op(const Tensor& a, const Scalar& s) {
  return scalar_op<OpT>(a, s, s.value);
}

NDArray array_for(const Tensor& like, py::handle value) {
  return to_ndarray(value, &like.device(), like.dtype());
}

// Tensor(array, device, dtype): with dtype=None, numpy's inference (API.md): a Python float
// is float64, Python ints int64, a numpy array keeps its dtype, an NDArray or Tensor too.
Tensor tensor_from_python(py::handle array, py::handle device, py::handle dtype) {
  if (array.is_none()) fail<TypeError>("[Tensor] cannot make a tensor from None");
  std::optional<DType> dt = to_dtype(dtype, "Tensor");
  if (is_tensor(array)) {
    Tensor src = as_tensor(array);
    Backend& dev = device.is_none() ? src.device() : to_backend(device);
    NDArray data = src.data();
    if (&data.device() != &dev) data = data.to(dev);
    if (dt && data.dtype() != *dt) data = data.astype(*dt);
    return Tensor(data);
  }
  Backend* dev = device.is_none() ? nullptr : &to_backend(device);
  return Tensor(to_ndarray(array, dev, dt));
}

py::tuple array_tuple(const std::vector<NDArray>& arrays) {
  py::tuple t(arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i) t[i] = py::cast(arrays[i]);
  return t;
}

std::string tensor_repr(const Tensor& t) {
  return "needle.Tensor(" + std::string(py::str(to_numpy(t.data()))) + ")";
}

}  // namespace

py::object op_to_python(const OpPtr& op) {
  if (!op) return py::none();
  if (auto* p = dynamic_cast<const PyOp*>(op.get())) return p->object();
  return py::cast(std::const_pointer_cast<Op>(op));
}

void init_tensor(py::module_& m) {
  // The op base class is bound here (ops.cc adds the concrete ops) since PyOp and Tensor
  // need it.
  py::class_<Op, std::shared_ptr<Op>>(m, "Op", "Base of the built-in (C++) ops.")
      .def_property_readonly("name", &Op::name)
      .def("__repr__", [](const Op& op) { return "<needle op " + op.name() + ">"; });

  // --- Value ---
  py::class_<Node, std::shared_ptr<Node>> value(m, "Value", R"doc(
A node of the computation graph: its cached data, the op that made it and its inputs.
Tensor and TensorTuple derive from it.)doc");
  value.def_property_readonly("op", [](const Node& n) { return op_to_python(n.op()); })
      .def_property_readonly("inputs",
                             [](const Node& n) {
                               py::list out(n.inputs().size());
                               for (size_t i = 0; i < n.inputs().size(); ++i)
                                 out[i] = py::cast(Value(n.inputs()[i]));
                               return out;
                             })
      .def_property("requires_grad", &Node::requires_grad,
                    [](Node& n, bool r) {
                      // Integer and bool tensors never require grad (as Tensor's constructor).
                      if (r && !n.is_tuple() && n.realized() &&
                          !is_floating(static_cast<TensorNode&>(n).cached_data().dtype()))
                        r = false;
                      n.set_requires_grad(r);
                    })
      .def("is_leaf", &Node::is_leaf)
      .def(
          "register_grad_hook",
          [](Node& n, std::function<void(Value)> hook) {
            n.add_grad_hook([hook = std::move(hook)](const NodePtr& node) { hook(Value(node)); });
          },
          py::arg("hook"),
          "hook(tensor) runs in each backward() right after this tensor's grad is final.")
      .def_property(
          "grad", [](const Node& n) { return Value(n.grad()); },
          [](Node& n, const Value& g) { n.set_grad(g.node()); })
      .def("realize_cached_data",
           [](const std::shared_ptr<Node>& n) -> py::object {
             if (n->is_tuple()) return array_tuple(static_cast<TupleNode&>(*n).data());
             return py::cast(static_cast<TensorNode&>(*n).data());
           })
      .def_property(
          "cached_data",
          [](const std::shared_ptr<Node>& n) -> py::object {
            if (!n->realized()) return py::none();
            if (n->is_tuple()) return array_tuple(static_cast<TupleNode&>(*n).cached_data());
            return py::cast(static_cast<TensorNode&>(*n).cached_data());
          },
          [](const std::shared_ptr<Node>& n, const py::object& data) {
            if (n->is_tuple()) {
              std::vector<NDArray> items;
              for (auto item : data) items.push_back(to_ndarray(item, nullptr, std::nullopt));
              static_cast<TupleNode&>(*n).set_data(std::move(items));
            } else {
              auto& t = static_cast<TensorNode&>(*n);
              const NDArray& old = t.cached_data();
              t.set_data(old.defined() ? to_ndarray(data, &old.device(), old.dtype())
                                       : to_ndarray(data, nullptr, std::nullopt));
            }
          });

  // --- Tensor ---
  py::class_<TensorNode, Node, TensorPtr> tensor(m, "Tensor", R"doc(
Tensor(array, *, device=None, dtype=None, requires_grad=True)

A multi-dimensional array with autograd. `array` is a list, scalar, numpy array, NDArray or
Tensor; with dtype=None the dtype is numpy's (np.asarray(array).dtype): Python floats are
float64, ints int64, arrays, NDArrays and Tensors keep theirs. Integer and bool tensors never
require grad (requires_grad=True is ignored for them).)doc");
  tensor_type = reinterpret_cast<PyTypeObject*>(tensor.ptr());
  // numpy defers to Tensor's reflected operators: ndarray * tensor is a Tensor.
  tensor.attr("__array_ufunc__") = py::none();
  tensor
      .def(py::init([](py::handle array, py::handle device, py::handle dtype, bool requires_grad,
                       const py::kwargs&) {
             Tensor t = tensor_from_python(array, device, dtype);
             t.set_requires_grad(requires_grad);  // false for integer and bool tensors
             return t.node();
           }),
           py::arg("array"), py::kw_only(), py::arg("device") = py::none(),
           py::arg("dtype") = py::none(), py::arg("requires_grad") = true)
      .def_static(
          "make_const",
          [](py::handle data, bool requires_grad) {
            if (is_tensor(data)) return Tensor(as_tensor(data).data(), requires_grad);
            return Tensor(to_ndarray(data, nullptr, std::nullopt), requires_grad);
          },
          py::arg("data"), py::arg("requires_grad") = false,
          "A leaf tensor on `data` (an NDArray, shared; or a Tensor's data).")
      .def_static(
          "make_from_op",
          [](py::handle op, py::handle inputs) {
            OpPtr o = op_from_python(op, false);
            if (o->returns_tuple()) throw py::type_error("this op returns a TensorTuple");
            return Value(make_node(std::move(o), nodes_from(inputs)));
          },
          py::arg("op"), py::arg("inputs"))
      .def_property_readonly("shape",
                             [](const TensorPtr& t) { return shape_tuple(t->data().shape()); })
      .def_property_readonly("dtype",
                             [](const TensorPtr& t) { return dtype_object(t->data().dtype()); })
      .def_property_readonly("device",
                             [](const TensorPtr& t) { return Device{&t->data().device()}; })
      .def_property_readonly("ndim", [](const TensorPtr& t) { return t->data().ndim(); })
      .def_property(
          "data", [](const TensorPtr& t) { return Tensor(t).detach(); },
          [](const TensorPtr& t, py::handle value) {
            NDArray d = is_tensor(value) ? as_tensor(value).data() : array_for(Tensor(t), value);
            if (t->realized() && d.dtype() != t->data().dtype())
              fail<TypeError>("[data] cannot assign ", dtype_name(d.dtype()), " data to a ",
                              dtype_name(t->data().dtype()), " tensor");
            t->set_data(d);
          },
          "A detached tensor sharing this tensor's data; assigning replaces the data.")
      .def("detach", [](const TensorPtr& t) { return Tensor(t).detach(); })
      .def(
          "backward",
          [](const TensorPtr& t, const py::object& out_grad) {
            if (out_grad.is_none()) return Tensor(t).backward();
            Tensor self(t);
            Tensor g =
                is_tensor(out_grad) ? as_tensor(out_grad) : Tensor(array_for(self, out_grad));
            self.backward(g);
          },
          py::arg("out_grad") = py::none())
      .def("numpy", [](const TensorPtr& t) { return to_numpy(t->data()); })
      .def(
          "__array__",
          [](const TensorPtr& t, const py::object& dtype, const py::object& copy) {
            // The NDArray's hook: a copy, or with copy=False a view of host memory.
            return py::cast(t->data()).attr("__array__")(dtype, copy);
          },
          py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("item", [](const TensorPtr& t) { return py::cast(t->data()).attr("item")(); })
      .def("__repr__", [](const TensorPtr& t) { return tensor_repr(Tensor(t)); })
      .def("__str__", [](const TensorPtr& t) { return std::string(py::str(to_numpy(t->data()))); })
      .def("__len__",
           [](const TensorPtr& t) {
             if (t->data().ndim() == 0) throw py::type_error("len() of a 0-d tensor");
             return t->data().shape()[0];
           })
      .def("__bool__", [](const TensorPtr&) { return true; })  // as the course's Tensor
      .def("__getitem__",
           [](const TensorPtr& t, py::handle key) {
             const int64_t ndim = t->data().ndim();
             if (auto ai = array_index(key, ndim)) {  // t[idx]: a gather, scatter-add gradient
               Tensor idx = is_tensor(ai->indices)
                                ? as_tensor(ai->indices)
                                : Tensor(index_array(ai->indices, t->data().device()));
               return getitem(Tensor(t), idx, ai->axis);
             }
             return getitem(Tensor(t), to_index_key(key, ndim));
           })
      .def("__setitem__",
           [](const TensorPtr& t, py::handle key, py::handle value) {
             Tensor self(t);
             Tensor v = is_tensor(value) ? as_tensor(value) : Tensor(array_for(self, value));
             setitem_inplace(self, to_index_key(key, t->data().ndim()), v);
           })
      .def("__neg__", [](const TensorPtr& t) { return negate(Tensor(t)); })
      // Methods (PyTorch-style conveniences included).
      .def(
          "sum",
          [](const TensorPtr& t, py::handle axes, bool keepdims) {
            return summation(Tensor(t), to_opt_axes(axes), keepdims);
          },
          py::arg("axes") = py::none(), py::arg("keepdims") = false)
      .def(
          "mean",
          [](const TensorPtr& t, py::handle axes, bool keepdims) {
            return mean(Tensor(t), to_opt_axes(axes), keepdims);
          },
          py::arg("axes") = py::none(), py::arg("keepdims") = false)
      .def(
          "max",
          [](const TensorPtr& t, py::handle axes, bool keepdims) {
            return max(Tensor(t), to_opt_axes(axes), keepdims);
          },
          py::arg("axes") = py::none(), py::arg("keepdims") = false)
      .def("reshape",
           [](const TensorPtr& t, py::args shape) {
             py::handle s = shape.size() == 1 ? shape[0] : py::handle(shape);
             return reshape(Tensor(t), to_ints(s));
           })
      .def("broadcast_to",
           [](const TensorPtr& t, py::args shape) {
             py::handle s = shape.size() == 1 ? shape[0] : py::handle(shape);
             return broadcast_to(Tensor(t), to_ints(s));
           })
      .def(
          "transpose",
          [](const TensorPtr& t, py::handle axes) {
            return transpose(Tensor(t), to_opt_axes(axes));
          },
          py::arg("axes") = py::none())
      .def("permute",
           [](const TensorPtr& t, py::args axes) {
             py::handle a = axes.size() == 1 ? axes[0] : py::handle(axes);
             return permute(Tensor(t), to_ints(a));
           })
      .def("matmul", [](const TensorPtr& t, const Tensor& o) { return matmul(Tensor(t), o); })
      .def("exp", [](const TensorPtr& t) { return exp(Tensor(t)); })
      .def("log", [](const TensorPtr& t) { return log(Tensor(t)); })
      .def("relu", [](const TensorPtr& t) { return relu(Tensor(t)); })
      .def("tanh", [](const TensorPtr& t) { return tanh(Tensor(t)); })
      .def("sigmoid", [](const TensorPtr& t) { return sigmoid(Tensor(t)); })
      .def("sqrt", [](const TensorPtr& t) { return sqrt(Tensor(t)); })
      .def("astype",
           [](const TensorPtr& t, py::handle d) {
             if (d.is_none()) fail<TypeError>("[astype] expected a dtype, got None");
             return astype(Tensor(t), *to_dtype(d, "astype"));
           })
      .def("to",
           [](const TensorPtr& t, py::handle d) { return to_device(Tensor(t), to_backend(d)); });

  def_operator(
      tensor, "__add__", [](const Tensor& a, const Tensor& b) { return add(a, b); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<AddScalar>(a, s); });
  def_operator(
      tensor, "__radd__", [](const Tensor& a, const Tensor& b) { return add(b, a); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<AddScalar>(a, s); });
  // a - b is a + (-b), as in the course (graders compare topological orders).
  def_operator(
      tensor, "__sub__", [](const Tensor& a, const Tensor& b) { return add(a, negate(b)); },
      [](const Tensor& a, const Scalar& s) {
        // uint8 - 2 stays uint8 in numpy, but uint8 + (-2) widens: -((-a) + 2) wraps alike.
        if (a.dtype() == DType::uint8 && s.kind == Scalar::Kind::integer && s.value > 0)
          return negate(scalar_op<AddScalar>(negate(a), s));
        return scalar_op<AddScalar>(a, s, -s.value);
      });
  def_operator(
      tensor, "__rsub__", [](const Tensor& a, const Tensor& b) { return add(b, negate(a)); },
      [](const Tensor& a, const Scalar& s) {
        // s - a as (-a) + s, negating in the dtype numpy's s - a has (so uint8 does not wrap
        // before a float is added, and bool, which has no negation, counts as int64).
        Tensor b = a;
        if (!is_floating(a.dtype()) && s.kind == Scalar::Kind::floating)
          b = astype(a, DType::float64);
        else if (is_bool(a.dtype()))
          b = astype(a, DType::int64);
        return scalar_op<AddScalar>(negate(b), s);
      });
  def_operator(
      tensor, "__mul__", [](const Tensor& a, const Tensor& b) { return multiply(a, b); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<MulScalar>(a, s); });
  def_operator(
      tensor, "__rmul__", [](const Tensor& a, const Tensor& b) { return multiply(b, a); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<MulScalar>(a, s); });
  def_operator(
      tensor, "__truediv__", [](const Tensor& a, const Tensor& b) { return divide(a, b); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<DivScalar>(a, s); });
  def_operator(
      tensor, "__rtruediv__", [](const Tensor& a, const Tensor& b) { return divide(b, a); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<RDivScalar>(a, s); });
  def_operator(
      tensor, "__pow__", [](const Tensor& a, const Tensor& b) { return power(a, b); },
      [](const Tensor& a, const Scalar& s) { return scalar_op<PowerScalar>(a, s); });
  def_operator(
      tensor, "__rpow__", [](const Tensor& a, const Tensor& b) { return power(b, a); },
      [](const Tensor& a, const Scalar& s) {
        return power(Tensor::full(a.shape(), s.value, a.dtype(), a.device()), a);
      });
  def_operator(
      tensor, "__matmul__", [](const Tensor& a, const Tensor& b) { return matmul(a, b); },
      [](const Tensor&, const Scalar&) -> Tensor {
        fail<TypeError>("[matmul] cannot multiply a tensor by a scalar with @");
      });
  def_operator(
      tensor, "__rmatmul__", [](const Tensor& a, const Tensor& b) { return matmul(b, a); },
      [](const Tensor&, const Scalar&) -> Tensor {
        fail<TypeError>("[matmul] cannot multiply a tensor by a scalar with @");
      });

  // --- TensorTuple ---
  py::class_<TupleNode, Node, TuplePtr>(m, "TensorTuple", "A tuple of tensors as one graph node.")
      .def_static(
          "make_const",
          [](py::handle data, bool requires_grad) {
            std::vector<NDArray> items;
            for (auto item : data)
              items.push_back(is_tensor(item) ? as_tensor(item).data()
                                              : to_ndarray(item, nullptr, std::nullopt));
            return TensorTuple::make_const(std::move(items), requires_grad);
          },
          py::arg("data"), py::arg("requires_grad") = false)
      .def_static(
          "make_from_op",
          [](py::handle op, py::handle inputs) {
            OpPtr o = op_from_python(op, true);
            if (!o->returns_tuple()) throw py::type_error("this op returns a Tensor");
            return Value(make_node(std::move(o), nodes_from(inputs)));
          },
          py::arg("op"), py::arg("inputs"))
      .def("__len__", [](const TuplePtr& t) { return t->data().size(); })
      .def("__getitem__",
           [](const TuplePtr& t, int64_t i) { return tuple_get_item(TensorTuple(t), i); })
      .def("tuple",
           [](const TuplePtr& t) {
             TensorTuple tt(t);
             py::tuple out(tt.size());
             for (size_t i = 0; i < tt.size(); ++i) out[i] = py::cast(tt[int64_t(i)]);
             return out;
           })
      .def("detach", [](const TuplePtr& t) { return TensorTuple(t).detach(); })
      .def("__add__",
           [](const TuplePtr& a, const TensorTuple& b) {
             TensorTuple ta(a);
             if (!b.defined() || b.size() != ta.size())
               fail<ValueError>("[add] TensorTuples of different lengths");
             std::vector<Value> sums;
             for (size_t i = 0; i < ta.size(); ++i)
               sums.push_back(add(ta[int64_t(i)], b[int64_t(i)]));
             return needle::make_tuple(sums);
           })
      .def("__repr__", [](const TuplePtr& t) {
        std::string s = "needle.TensorTuple(";
        const auto& items = t->data();
        for (size_t i = 0; i < items.size(); ++i)
          s += (i ? ", " : "") + tensor_repr(Tensor(items[i]));
        return s + (items.size() == 1 ? ",)" : ")");
      });
}

}  // namespace needle::python
