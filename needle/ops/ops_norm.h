// Batch normalization from two per-channel primitives, each fused where the device has a
// kernel (kernel::ChannelSums, kernel::ChannelAffine) and composed from NDArray ops
// elsewhere. "Channel" is axis 1 of an (N, C, ...) array: BatchNorm1d's (B, C) and
// BatchNorm2d's NCHW alike, so NCHW input needs no transposes.
//
//   channel_sums(a, b)           (2, C) float64: [sum of a, sum of a * b] per channel
//   channel_affine(a, s, t)      a * s[c] + t[c] per channel, a's shape
//   batch_norm(x, w, b, eps)     (y, batch mean, batch variance), built from the two:
//       mean = S0 / M, var = S1 / M - mean^2 (in float64, so the difference keeps its
//       digits), scale = w / sqrt(var + eps), y = channel_affine(x, scale, b - mean * scale)
//
// Both primitives have gradients made of the same two primitives, so batch_norm's gradient
// (of any order) is exact with no op of its own: one pass over x for the statistics, one
// for y; backward, two reductions and two affine passes.
//
// Layer normalization over the last axis, one fused op each way:
//
//   layer_norm(x, w, b, eps) -> (y, mean, rstd)
//       x (..., D), w and b (D,); per row mean = mean(x), rstd = 1 / sqrt(var(x) + eps)
//       (biased variance), y = (x - mean) * rstd * w + b; mean and rstd (..., 1), saved
//       for the backward (and differentiable: their adjoints reach x too).
//   layer_norm_grad(x, w, mean, rstd, dy, dmean, drstd) -> (dx, dw, db)
//       its adjoint (kernel::LayerNormGrad in needle/kernels.h has the formula).
//
// Where the device has kernel::LayerNorm / LayerNormGrad each is one pass over the rows;
// elsewhere both compose the same result from NDArray ops (the kernels' test oracle). The
// gradient of layer_norm_grad (second order) is made of Tensor ops.
#pragma once

#include <optional>
#include <tuple>

#include "needle/ops/op.h"

namespace needle {

class ChannelSums final : public TensorOp {
 public:
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("channel_sums")
};

class ChannelAffine final : public TensorOp {
 public:
  int arity() const override { return 3; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("channel_affine")
};

class LayerNorm final : public Op {
 public:
  explicit LayerNorm(double eps = 1e-5) : eps(eps) {}
  std::string name() const override { return "layer_norm"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 3; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const double eps;
};

// (x, w, mean, rstd, dy, dmean, drstd) -> (dx, dw, db): LayerNorm's adjoint.
class LayerNormGrad final : public Op {
 public:
  std::string name() const override { return "layer_norm_grad"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 7; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// Channels last: when a is the (N, C, ...) view of a compact (N, ..., C) array (what a
// convolution's NHWC output is as NCHW), the order with a.permute(order) that compact array,
// which per-channel kernels read as rows of C without a copy; nullopt otherwise (and for a
// compact a). NDArray::from_memory_order(stored, shape, order) is the inverse: a compact
// result in that memory order, seen with `shape`'s axes again.
std::optional<Axes> channels_last_order(const NDArray& a);

// TypeError, RuntimeError or ValueError naming `op` unless the operand `what` (a weight, a
// bias, saved statistics) has x's dtype and device and the given shape.
void check_norm_operand(const char* op, const char* what, const NDArray& a, const NDArray& x,
                        const Shape& shape);

// --- Functions ---
Tensor channel_sums(const Tensor& a, const Tensor& b);
Tensor channel_affine(const Tensor& a, const Tensor& scale, const Tensor& shift);
// Training-mode batch normalization over every axis but 1: y, and the batch's mean and
// biased variance per channel (constants of x's dtype, for the running statistics).
std::tuple<Tensor, Tensor, Tensor> batch_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps = 1e-5);

// (y, mean, rstd): y normalized over the last axis of x, scaled by weight and shifted by
// bias, both (D,); mean and rstd (..., 1).
TensorTuple layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       double eps = 1e-5);
// (dx, dw, db) for the adjoints dy, dmean, drstd of layer_norm's three outputs.
TensorTuple layer_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& mean,
                            const Tensor& rstd, const Tensor& dy, const Tensor& dmean,
                            const Tensor& drstd);

}  // namespace needle
