// Reductions: summation, max, logsumexp, and the softmax family built on them.
// softmax and logsoftmax over the last axis of a float array run one fused kernel each way
// where the device has them (kernel::Softmax / SoftmaxGrad in needle/kernels.h); their
// backward is its own op (SoftmaxGrad, LogSoftmaxGrad: dx from the forward's output y and
// dy), fused or composed, with a Tensor-op gradient of its own for the second order.
// Axes are optional (none = every axis), may be negative, and may name several axes.
#pragma once

#include "needle/ops/op.h"

namespace needle {

class Summation final : public TensorOp {
 public:
  explicit Summation(std::optional<Axes> axes = std::nullopt, bool keepdims = false)
      : axes(std::move(axes)), keepdims(keepdims) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("summation")
  const std::optional<Axes> axes;
  const bool keepdims;
};

// The gradient goes to the maximal entries, split evenly between ties (as PyTorch's amax).
class Max final : public TensorOp {
 public:
  explicit Max(std::optional<Axes> axes = std::nullopt, bool keepdims = false)
      : axes(std::move(axes)), keepdims(keepdims) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("max")
  const std::optional<Axes> axes;
  const bool keepdims;
};

// log(sum(exp(a))) over `axes`, computed as max + log(sum(exp(a - max))).
class LogSumExp final : public TensorOp {
 public:
  explicit LogSumExp(std::optional<Axes> axes = std::nullopt, bool keepdims = false)
      : axes(std::move(axes)), keepdims(keepdims) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("logsumexp")
  const std::optional<Axes> axes;
  const bool keepdims;
};

class LogSoftmax final : public TensorOp {
 public:
  explicit LogSoftmax(int64_t axis = -1) : axis(axis) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("logsoftmax")
  const int64_t axis;
};

class Softmax final : public TensorOp {
 public:
  explicit Softmax(int64_t axis = -1) : axis(axis) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("softmax")
  const int64_t axis;
};

// (y, dy) -> dx = y * (dy - sum(dy * y)) along `axis`: Softmax's adjoint, y its output.
class SoftmaxGrad final : public TensorOp {
 public:
  explicit SoftmaxGrad(int64_t axis = -1) : axis(axis) {}
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("softmax_grad")
  const int64_t axis;
};

// (y, dy) -> dx = dy - exp(y) * sum(dy) along `axis`: LogSoftmax's adjoint, y its output.
class LogSoftmaxGrad final : public TensorOp {
 public:
  explicit LogSoftmaxGrad(int64_t axis = -1) : axis(axis) {}
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("logsoftmax_grad")
  const int64_t axis;
};

// --- Functions ---
Tensor summation(const Tensor& a, const std::optional<Axes>& axes = std::nullopt,
                 bool keepdims = false);
Tensor mean(const Tensor& a, const std::optional<Axes>& axes = std::nullopt, bool keepdims = false);
Tensor max(const Tensor& a, const std::optional<Axes>& axes = std::nullopt, bool keepdims = false);
Tensor logsumexp(const Tensor& a, const std::optional<Axes>& axes = std::nullopt,
                 bool keepdims = false);
Tensor logsoftmax(const Tensor& a, int64_t axis = -1);
Tensor softmax(const Tensor& a, int64_t axis = -1);
Tensor softmax_grad(const Tensor& y, const Tensor& dy, int64_t axis = -1);
Tensor logsoftmax_grad(const Tensor& y, const Tensor& dy, int64_t axis = -1);

// The largest finite value of a floating dtype.
double finite_limit(DType dtype);
// The max over `axes` (kept), raised to the dtype's lowest finite value: the shift of
// logsumexp, logsoftmax and softmax (and of their fused kernels), so that a slice of all
// -inf shifts by a finite number.
NDArray shift_max(const NDArray& a, const Axes& axes);

// Sorted, non-negative axes of a reduction over an array of rank `ndim` (all when nullopt).
Axes reduction_axes(const char* op, const std::optional<Axes>& axes, int64_t ndim);
// `shape` with each reduced axis set to 1 (the keepdims shape).
Shape keepdims_shape(const Shape& shape, const Axes& reduced);

}  // namespace needle
