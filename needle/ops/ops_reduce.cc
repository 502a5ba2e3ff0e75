// Reductions and the softmax family (see ops_reduce.h).
#include "needle/ops/ops_reduce.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "needle/kernels.h"
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

// The fused row kernel `name` of type Fn for a softmax-family op along `axis` of `a`: only
// for the last axis of a float array (the kernels read contiguous rows), else nullptr.
template <class Fn>
Fn* row_kernel(const char* name, const NDArray& a, int64_t axis) {
  if (!is_floating(a.dtype()) || axis != a.ndim() - 1) return nullptr;
  return find_kernel<Fn>(name, a.device());
}

// Runs a fused row kernel on compact copies of `inputs` (one shape), into a new array.
template <class Fn>
NDArray run_rows(Fn* fused, std::initializer_list<const NDArray*> inputs) {
  const NDArray& first = **inputs.begin();
  NDArray out = NDArray::empty(first.shape(), first.dtype(), first.device());
  if (out.size() == 0) return out;
  std::vector<NDArray> compact;
  for (const NDArray* a : inputs) compact.push_back(a->compact());
  if constexpr (std::is_same_v<Fn, kernel::Softmax>) {
    fused(compact[0].view(), out.view());
  } else {
    fused(compact[0].view(), compact[1].view(), out.view());
  }
  return out;
}

}  // namespace

double finite_limit(DType dtype) {
  return dtype == DType::float64 ? std::numeric_limits<double>::max()
                                 : double(std::numeric_limits<float>::max());
}

NDArray shift_max(const NDArray& a, const Axes& axes) {
  return a.max(axes, true).maximum(-finite_limit(a.dtype()));
}

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
  const int64_t last = NDArray::normalize_axis("logsoftmax", axis, args[0].ndim());
  if (auto* fused = row_kernel<kernel::Softmax>(kernel::kLogSoftmax, args[0], last))
    return run_rows(fused, {&args[0]});
  // BEGIN SOLUTION hw2
  const NDArray& a = args[0];
  Axes ax{NDArray::normalize_axis("logsoftmax", axis, a.ndim())};
  NDArray shifted = a - shift_max(a, ax);
  return shifted - shifted.exp().sum(ax, true).log();
  // END SOLUTION
}
std::vector<Tensor> LogSoftmax::gradient(const Tensor& out_grad, const Tensor& node) const {
  const int64_t last = NDArray::normalize_axis("logsoftmax", axis, node.ndim());
  if (row_kernel<kernel::SoftmaxGrad>(kernel::kLogSoftmaxGrad, node.data(), last))
    return {logsoftmax_grad(node, out_grad, axis)};
  // BEGIN SOLUTION hw2
  const Shape& shape = node.shape();
  Axes ax{NDArray::normalize_axis("logsoftmax", axis, int64_t(shape.size()))};
  return {out_grad - exp(node) * broadcast_to(summation(out_grad, ax, true), shape)};
  // END SOLUTION
}

NDArray Softmax::compute(const Args& args) const {
  const NDArray& a = args[0];
  Axes ax{NDArray::normalize_axis("softmax", axis, a.ndim())};
  if (auto* fused = row_kernel<kernel::Softmax>(kernel::kSoftmax, a, ax[0]))
    return run_rows(fused, {&a});
  // The shift of logsumexp and logsoftmax: rows of all -inf, or holding +inf, give nan as in
  // PyTorch.
  NDArray e = (a - shift_max(a, ax)).exp();
  return e / e.sum(ax, true);
}
std::vector<Tensor> Softmax::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {softmax_grad(node, out_grad, axis)};
}

NDArray SoftmaxGrad::compute(const Args& args) const {
  const NDArray &y = args[0], &dy = args[1];
  check_operand_pair("softmax_grad", "y", y, "dy", dy);
  Axes ax{NDArray::normalize_axis("softmax_grad", axis, y.ndim())};
  if (auto* fused = row_kernel<kernel::SoftmaxGrad>(kernel::kSoftmaxGrad, y, ax[0]))
    return run_rows(fused, {&y, &dy});
  return y * (dy - (dy * y).sum(ax, true));
}
std::vector<Tensor> SoftmaxGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // L = <u, y * (dy - s)>, s = sum(dy * y): dL/dy = u * (dy - s) - dy * sum(u * y), and
  // dL/d(dy) = y * (u - sum(u * y)), softmax_grad itself (the Jacobian is symmetric).
  Tensor y = node.input(0), dy = node.input(1);
  const Shape& shape = y.shape();
  Axes ax{NDArray::normalize_axis("softmax_grad", axis, int64_t(shape.size()))};
  auto row_sum = [&](const Tensor& t) { return broadcast_to(summation(t, ax, true), shape); };
  return {out_grad * (dy - row_sum(dy * y)) - dy * row_sum(out_grad * y),
          softmax_grad(y, out_grad, axis)};
}

NDArray LogSoftmaxGrad::compute(const Args& args) const {
  const NDArray &y = args[0], &dy = args[1];
  check_operand_pair("logsoftmax_grad", "y", y, "dy", dy);
  Axes ax{NDArray::normalize_axis("logsoftmax_grad", axis, y.ndim())};
  if (auto* fused = row_kernel<kernel::SoftmaxGrad>(kernel::kLogSoftmaxGrad, y, ax[0]))
    return run_rows(fused, {&y, &dy});
  return dy - y.exp() * dy.sum(ax, true);
}
std::vector<Tensor> LogSoftmaxGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // L = <u, dy - exp(y) * S>, S = sum(dy): dL/dy = -u * exp(y) * S and
  // dL/d(dy) = u - sum(u * exp(y)).
  Tensor y = node.input(0), dy = node.input(1);
  const Shape& shape = y.shape();
  Axes ax{NDArray::normalize_axis("logsoftmax_grad", axis, int64_t(shape.size()))};
  auto row_sum = [&](const Tensor& t) { return broadcast_to(summation(t, ax, true), shape); };
  Tensor e = exp(y);
  return {-(out_grad * e * row_sum(dy)), out_grad - row_sum(out_grad * e)};
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
Tensor softmax_grad(const Tensor& y, const Tensor& dy, int64_t axis) {
  return apply_op(std::make_shared<SoftmaxGrad>(axis), {y.node(), dy.node()});
}
Tensor logsoftmax_grad(const Tensor& y, const Tensor& dy, int64_t axis) {
  return apply_op(std::make_shared<LogSoftmaxGrad>(axis), {y.node(), dy.node()});
}

}  // namespace needle
