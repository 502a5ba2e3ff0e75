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
#pragma once

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

// --- Functions ---
Tensor channel_sums(const Tensor& a, const Tensor& b);
Tensor channel_affine(const Tensor& a, const Tensor& scale, const Tensor& shift);
// Training-mode batch normalization over every axis but 1: y, and the batch's mean and
// biased variance per channel (constants of x's dtype, for the running statistics).
std::tuple<Tensor, Tensor, Tensor> batch_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps = 1e-5);

}  // namespace needle
