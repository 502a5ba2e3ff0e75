// Integer-indexing ops (see ops_index.h): forwards on NDArray's argmax, take and
// scatter_add; gradients route the output gradient back to the entries that were read.
#include "needle/ops/ops_index.h"

namespace needle {

namespace {

Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

}  // namespace

NDArray ArgMax::compute(const Args& args) const {
  return is_min ? args[0].argmin(axis, keepdims) : args[0].argmax(axis, keepdims);
}
std::vector<Tensor> ArgMax::gradient(const Tensor&, const Tensor&) const {
  return {Tensor()};  // piecewise constant: no gradient
}

NDArray Take::compute(const Args& args) const {
  // BEGIN SOLUTION hw2
  return args[0].take(args[1], axis);
  // END SOLUTION
}
std::vector<Tensor> Take::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw2
  const Tensor a = node.input(0), indices = node.input(1);
  const int64_t ax = NDArray::normalize_axis("take", axis, a.ndim());
  return {scatter_add(indices, out_grad, ax, a.shape()), Tensor()};
  // END SOLUTION
}

NDArray ScatterAdd::compute(const Args& args) const {
  // BEGIN SOLUTION hw2
  return NDArray::scatter_add(args[0], args[1], axis, shape);
  // END SOLUTION
}
std::vector<Tensor> ScatterAdd::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw2
  return {Tensor(), take(out_grad, node.input(0), axis)};
  // END SOLUTION
}

Tensor argmax(const Tensor& a, std::optional<int64_t> axis, bool keepdims) {
  return apply_op(std::make_shared<ArgMax>(axis, keepdims), {a.node()});
}
Tensor argmin(const Tensor& a, std::optional<int64_t> axis, bool keepdims) {
  return apply_op(std::make_shared<ArgMax>(axis, keepdims, true), {a.node()});
}
Tensor take(const Tensor& a, const Tensor& indices, int64_t axis) {
  return apply_op(std::make_shared<Take>(axis), {a.node(), indices.node()});
}
Tensor getitem(const Tensor& a, const Tensor& indices, int64_t axis) {
  return take(a, indices, axis);
}
Tensor scatter_add(const Tensor& indices, const Tensor& values, int64_t axis, const Shape& shape) {
  return apply_op(std::make_shared<ScatterAdd>(axis, shape), {indices.node(), values.node()});
}

}  // namespace needle
