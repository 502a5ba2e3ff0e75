// Shared by the Tensor and op bindings (tensor.cc, ops.cc, and any binding file that takes
// or returns tensors): pybind11 casters that let bound functions take and return the C++
// handles `needle::Tensor`, `needle::TensorTuple` and `needle::Value` directly (a Python
// Tensor *is* its node, so conversion copies one shared_ptr and keeps object identity),
// plus small argument conversions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "needle/needle.h"

namespace pybind11::detail {

// A handle type H around std::shared_ptr<N>, converted through the node's holder.
template <class H, class N>
struct node_handle_caster {
  PYBIND11_TYPE_CASTER(H, const_name("Value"));
  bool load(handle src, bool convert) {
    if (src.is_none()) {  // None is the undefined handle (e.g. "no gradient")
      value = H();
      return true;
    }
    copyable_holder_caster<N, std::shared_ptr<N>> inner;
    if (!inner.load(src, convert)) return false;
    value = H(static_cast<std::shared_ptr<N>&>(inner));
    return true;
  }
  static handle cast(const H& src, return_value_policy policy, handle parent) {
    return copyable_holder_caster<N, std::shared_ptr<N>>::cast(src.node(), policy, parent);
  }
};

template <>
struct type_caster<needle::Tensor> : node_handle_caster<needle::Tensor, needle::TensorNode> {};
template <>
struct type_caster<needle::TensorTuple>
    : node_handle_caster<needle::TensorTuple, needle::TupleNode> {};
template <>
struct type_caster<needle::Value> : node_handle_caster<needle::Value, needle::Node> {};

}  // namespace pybind11::detail

namespace needle::python {

// An int or a sequence of ints.
inline std::vector<int64_t> to_ints(const pybind11::handle& obj) {
  if (pybind11::isinstance<pybind11::int_>(obj)) return {obj.cast<int64_t>()};
  return obj.cast<std::vector<int64_t>>();
}

// None -> every axis; an int or a sequence of ints.
inline std::optional<Axes> to_opt_axes(const pybind11::handle& obj) {
  if (obj.is_none()) return std::nullopt;
  return to_ints(obj);
}

// Whether `h` is a needle Tensor, and its handle (a fast path for hot bindings).
bool is_tensor(pybind11::handle h);
Tensor as_tensor(pybind11::handle h);
// The nodes of a sequence of Tensors / TensorTuples (TypeError for anything else).
std::vector<NodePtr> nodes_from(const pybind11::handle& inputs);

// The Python object for an op: a Python-defined op's own object, else the bound C++ op.
pybind11::object op_to_python(const OpPtr& op);

}  // namespace needle::python
