// Softmax cross-entropy and its adjoint (see ops_loss.h): fused kernels where the device has
// them, NDArray composites elsewhere, and a Tensor-op gradient for the second order.
#include "needle/ops/ops_loss.h"

#include <numeric>

#include "needle/kernels.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {

Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

// Checks logits (N, C) of a float dtype and labels (N,) of an integer dtype with every value
// in [0, C), on one device; returns the labels as compact int64 (what the kernels read).
NDArray check_and_cast_labels(const char* op, const NDArray& logits, const NDArray& labels) {
  if (!is_floating(logits.dtype()))
    fail<TypeError>("[", op, "] needs float32 or float64 logits, got dtype ",
                    dtype_name(logits.dtype()));
  if (logits.ndim() != 2)
    fail<ValueError>("[", op, "] expects logits of shape (N, C), got shape ",
                     shape_str(logits.shape()));
  if (!is_integral(labels.dtype()) || labels.dtype() == DType::bool_)
    fail<TypeError>("[", op, "] needs integer class labels, got dtype ",
                    dtype_name(labels.dtype()));
  if (labels.shape() != Shape{logits.shape()[0]})
    fail<ValueError>("[", op, "] labels of shape ", shape_str(labels.shape()),
                     " do not match logits of shape ", shape_str(logits.shape()), ": expected (",
                     logits.shape()[0], ",)");
  if (&labels.device() != &logits.device())
    fail<RuntimeError>("[", op, "] inputs are on different devices: ", logits.device().name(),
                       " and ", labels.device().name());
  NDArray y = labels.astype(DType::int64).compact();
  if (y.size()) {
    const double lo = y.min().item(), hi = y.max().item();
    const int64_t c = logits.shape()[1];
    if (lo < 0 || hi >= double(c))
      fail<ValueError>("[", op, "] class labels must lie in [0, ", c, "), got labels from ",
                       int64_t(lo), " to ", int64_t(hi));
  }
  return y;
}

// one_hot(labels)[i, j] = (j == labels[i]) in `dtype`, (N, C).
NDArray one_hot(const NDArray& labels, int64_t c, DType dtype) {
  std::vector<int64_t> classes(static_cast<size_t>(c));
  std::iota(classes.begin(), classes.end(), int64_t(0));
  NDArray cols = NDArray::from_vector(classes, {1, c}, labels.device());
  return (labels.reshape({labels.shape()[0], 1}) == cols).astype(dtype);
}

void check_dloss(const NDArray& dloss, const NDArray& logits) {
  if (dloss.shape() != Shape{logits.shape()[0]} || dloss.dtype() != logits.dtype())
    fail<ValueError>("[softmax_cross_entropy_grad] dloss must be (", logits.shape()[0],
                     ",) of the logits' dtype ", dtype_name(logits.dtype()), ", got shape ",
                     shape_str(dloss.shape()), " of dtype ", dtype_name(dloss.dtype()));
  if (&dloss.device() != &logits.device())
    fail<RuntimeError>("[softmax_cross_entropy_grad] inputs are on different devices: ",
                       logits.device().name(), " and ", dloss.device().name());
}

}  // namespace

NDArray SoftmaxCrossEntropy::compute(const Args& args) const {
  const NDArray& z = args[0];
  const NDArray y = check_and_cast_labels("softmax_cross_entropy", z, args[1]);
  const int64_t n = z.shape()[0], c = z.shape()[1];
  if (auto* fused =
          find_kernel<kernel::SoftmaxCrossEntropy>(kernel::kSoftmaxCrossEntropy, z.device())) {
    NDArray loss = NDArray::empty({n}, z.dtype(), z.device());
    if (n) fused(z.compact().view(), y.view(), loss.view());
    return loss;
  }
  // logsumexp's shift (ops_reduce.h), also lowered to the largest finite value, minus the
  // label's logit, picked with a where so that an infinite logit elsewhere stays out.
  const Axes row{1};
  NDArray m = shift_max(z, row).scalar(BinaryOp::minimum, finite_limit(z.dtype()));
  NDArray lse = (z - m).exp().sum(row, true).log() + m;
  NDArray picked = NDArray::where(one_hot(y, c, DType::bool_), z, NDArray::full({1}, 0.0, z.dtype(),
                                                                                 z.device()))
                       .sum(row, true);
  return (lse - picked).reshape({n});
}

std::vector<Tensor> SoftmaxCrossEntropy::gradient(const Tensor& out_grad,
                                                  const Tensor& node) const {
  return {softmax_cross_entropy_grad(node.input(0), node.input(1), out_grad), Tensor()};
}

NDArray SoftmaxCrossEntropyGrad::compute(const Args& args) const {
  const NDArray& z = args[0];
  const NDArray y = check_and_cast_labels("softmax_cross_entropy_grad", z, args[1]);
  const NDArray& dloss = args[2];
  check_dloss(dloss, z);
  const int64_t n = z.shape()[0], c = z.shape()[1];
  if (auto* fused = find_kernel<kernel::SoftmaxCrossEntropyGrad>(kernel::kSoftmaxCrossEntropyGrad,
                                                                 z.device())) {
    NDArray dz = NDArray::empty(z.shape(), z.dtype(), z.device());
    if (dz.size()) fused(z.compact().view(), y.view(), dloss.compact().view(), dz.view());
    return dz;
  }
  const Axes row{1};
  NDArray e = (z - shift_max(z, row)).exp();
  return (e / e.sum(row, true) - one_hot(y, c, z.dtype())) * dloss.reshape({n, 1});
}

std::vector<Tensor> SoftmaxCrossEntropyGrad::gradient(const Tensor& out_grad,
                                                      const Tensor& node) const {
  // dz = (p - h) * g with p = softmax(z), h the one-hot labels and g = dloss per row. For the
  // cotangent u: dL/dz = softmax_grad(p, u * g) and dL/dg = sum over the row of u * (p - h).
  Tensor z = node.input(0), labels = node.input(1), g = node.input(2);
  const Shape& shape = z.shape();
  const int64_t n = shape[0], c = shape[1];
  Tensor p = softmax(z, 1);
  Tensor gb = broadcast_to(reshape(g, {n, 1}), shape);
  Tensor h(one_hot(labels.data().astype(DType::int64), c, z.dtype()));
  return {softmax_grad(p, out_grad * gb, 1), Tensor(), summation(out_grad * (p - h), Axes{1})};
}

// --- Functions ---

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                             const std::string& reduction) {
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    fail<ValueError>("[softmax_cross_entropy] reduction must be 'mean', 'sum' or 'none', got '",
                     reduction, "'");
  static const OpPtr op = std::make_shared<SoftmaxCrossEntropy>();
  Tensor rows = apply_op(op, {logits.node(), labels.node()});
  if (reduction == "none") return rows;
  Tensor total = summation(rows);
  return reduction == "sum" ? total : divide_scalar(total, double(rows.shape()[0]));
}

Tensor softmax_cross_entropy_grad(const Tensor& logits, const Tensor& labels, const Tensor& dloss) {
  static const OpPtr op = std::make_shared<SoftmaxCrossEntropyGrad>();
  return apply_op(op, {logits.node(), labels.node(), dloss.node()});
}

}  // namespace needle
