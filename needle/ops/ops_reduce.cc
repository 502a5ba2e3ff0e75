// Reductions and the softmax family (see ops_reduce.h).
#include "needle/ops/ops_reduce.h"

#include <algorithm>
#include <limits>

#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {
Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

// out_grad of a reduction, reshaped so that it broadcasts back over the reduced axes.
Tensor unreduce(const Tensor& out_grad, const Shape& in_shape, const Axes& reduced, bool keepdims) {
  if (keepdims) return out_grad;
  Shape kd = keepdims_shape(in_shape, reduced);
  return out_grad.shape() == kd ? out_grad : reshape(out_grad, kd);
}

// The largest finite value of a floating dtype.
double finite_limit(DType dtype) {
  return dtype == DType::float64 ? std::numeric_limits<double>::max()
                                 : double(std::numeric_limits<float>::max());
}

// The max over `axes` (kept), raised to the dtype's lowest finite value: the shift of
// logsumexp, logsoftmax and softmax, so that a slice of all -inf shifts by a finite number.
NDArray shift_max(const NDArray& a, const Axes& axes) {
  return a.max(axes, true).maximum(-finite_limit(a.dtype()));
}
}  // namespace

Axes reduction_axes(const char* op, const std::optional<Axes>& axes, int64_t ndim) {
  Axes out;
  if (!axes) {
    for (int64_t i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : *axes) out.push_back(NDArray::normalize_axis(op, a, ndim));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    fail<ValueError>("[", op, "] repeated axis in ", shape_str(*axes));
  return out;
}

Shape keepdims_shape(const Shape& shape, const Axes& reduced) {
  Shape out = shape;
  for (int64_t a : reduced) out[size_t(a)] = 1;
  return out;
}

NDArray Summation::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].sum(axes, keepdims);
  // END SOLUTION
}
std::vector<Tensor> Summation::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  const Shape& shape = node.input(0).shape();
  Axes reduced = reduction_axes("summation", axes, int64_t(shape.size()));
  return {broadcast_to(unreduce(out_grad, shape, reduced, keepdims), shape)};
  // END SOLUTION
}

NDArray Max::compute(const Args& args) const {
  return args[0].max(axes, keepdims);
}
std::vector<Tensor> Max::gradient(const Tensor& out_grad, const Tensor& node) const {
  const NDArray& a = node.input(0).data();
  Axes reduced = reduction_axes("max", axes, a.ndim());
  NDArray is_max = a == a.max(reduced, true);
  NDArray share = is_max / is_max.sum(reduced, true);
  Tensor g = broadcast_to(unreduce(out_grad, a.shape(), reduced, keepdims), a.shape());
  return {g * Tensor(share)};
}

NDArray LogSumExp::compute(const Args& args) const {
  // BEGIN SOLUTION hw2
  const NDArray& a = args[0];
  Axes reduced = reduction_axes("logsumexp", axes, a.ndim());
  // Shift by the max, kept finite: an all -inf slice gives -inf, and (lowered to the
  // dtype's largest value) a slice holding +inf gives +inf, not nan (inf - inf).
  NDArray m = shift_max(a, reduced).scalar(BinaryOp::minimum, finite_limit(a.dtype()));
  NDArray out = (a - m).exp().sum(reduced, true).log() + m;
  if (keepdims) return out;
  Shape shape;
  for (int64_t i = 0; i < a.ndim(); ++i)
    if (!std::binary_search(reduced.begin(), reduced.end(), i))
      shape.push_back(a.shape()[size_t(i)]);
  return out.reshape(shape);
  // END SOLUTION
}
std::vector<Tensor> LogSumExp::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw2
  Tensor a = node.input(0);
  const Shape& shape = a.shape();
  Axes reduced = reduction_axes("logsumexp", axes, int64_t(shape.size()));
  Tensor lse = broadcast_to(unreduce(node, shape, reduced, keepdims), shape);
  Tensor g = broadcast_to(unreduce(out_grad, shape, reduced, keepdims), shape);
  return {g * exp(a - lse)};
  // END SOLUTION
}

NDArray LogSoftmax::compute(const Args& args) const {
  // BEGIN SOLUTION hw2
  const NDArray& a = args[0];
  Axes ax{NDArray::normalize_axis("logsoftmax", axis, a.ndim())};
  NDArray shifted = a - shift_max(a, ax);
  return shifted - shifted.exp().sum(ax, true).log();
  // END SOLUTION
}
std::vector<Tensor> LogSoftmax::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw2
  const Shape& shape = node.shape();
  Axes ax{NDArray::normalize_axis("logsoftmax", axis, int64_t(shape.size()))};
  return {out_grad - exp(node) * broadcast_to(summation(out_grad, ax, true), shape)};
  // END SOLUTION
}

NDArray Softmax::compute(const Args& args) const {
  const NDArray& a = args[0];
  Axes ax{NDArray::normalize_axis("softmax", axis, a.ndim())};
  // The shift of logsumexp and logsoftmax: rows of all -inf, or holding +inf, give nan as in
  // PyTorch.
  NDArray e = (a - shift_max(a, ax)).exp();
  return e / e.sum(ax, true);
}
std::vector<Tensor> Softmax::gradient(const Tensor& out_grad, const Tensor& node) const {
  const Shape& shape = node.shape();
  Axes ax{NDArray::normalize_axis("softmax", axis, int64_t(shape.size()))};
  return {node * (out_grad - broadcast_to(summation(out_grad * node, ax, true), shape))};
}

// --- Functions ---

Tensor summation(const Tensor& a, const std::optional<Axes>& axes, bool keepdims) {
  return apply_op(std::make_shared<Summation>(axes, keepdims), {a.node()});
}
Tensor mean(const Tensor& a, const std::optional<Axes>& axes, bool keepdims) {
  Axes reduced = reduction_axes("mean", axes, a.ndim());
  int64_t count = 1;
  for (int64_t ax : reduced) count *= a.shape()[size_t(ax)];
  return divide_scalar(summation(a, axes, keepdims), double(count));
}
Tensor max(const Tensor& a, const std::optional<Axes>& axes, bool keepdims) {
  return apply_op(std::make_shared<Max>(axes, keepdims), {a.node()});
}
Tensor logsumexp(const Tensor& a, const std::optional<Axes>& axes, bool keepdims) {
  return apply_op(std::make_shared<LogSumExp>(axes, keepdims), {a.node()});
}
Tensor logsoftmax(const Tensor& a, int64_t axis) {
  return apply_op(std::make_shared<LogSoftmax>(axis), {a.node()});
}
Tensor softmax(const Tensor& a, int64_t axis) {
  return apply_op(std::make_shared<Softmax>(axis), {a.node()});
}

}  // namespace needle
