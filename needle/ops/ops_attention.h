// Scaled dot-product attention as one op, with its gradient.
//
//   scaled_dot_product_attention(q, k, v, mask, causal, scale, dropout, seed) -> out
//       q (B, H, Tq, D), k and v (B, H, Tk, D) -> out (B, H, Tq, D), per (b, h):
//       out = dropout(softmax(scale * q @ k^T + mask)) @ v, scale 1 / sqrt(D) by default.
//       causal hides key j from query i when j > i + Tk - Tq (aligned to the bottom right, so
//       one new query against a KV cache sees every cached key); mask is bool (true = attend)
//       or additive float, broadcastable to (B, H, Tq, Tk). A row with no visible key gives
//       zeros, never NaN; a row whose logits reach +inf averages the values at those keys
//       (and passes no gradient). dropout (in [0, 1)) drops entries of the softmax with a
//       mask hashed from (seed, b, h, i, j) (kernel::attention_keep), so the backward redraws
//       the same mask without storing it; kept entries are scaled by 1 / (1 - dropout).
//
// The forward op ScaledDotProductAttention returns the TensorTuple (out, lse), lse (B, H, Tq)
// the log-sum-exp of each row of logits, which is all the backward needs besides the inputs
// (the function returns out alone). Where the device has the fused kernels (kernel::Attention,
// kernel::AttentionGrad in needle/kernels.h: FlashAttention-2, tiled, with an online softmax,
// O(T) extra memory) forward and backward run them; elsewhere both compose the same results
// from NDArray matmuls, a masked softmax and reductions over the whole (Tq, Tk) logits, which
// is also the kernels' test oracle. The mask is a constant: it gets no gradient. The gradient
// of the gradient is not implemented (a RuntimeError names the op).
#pragma once

#include <optional>

#include "needle/kernels.h"
#include "needle/ops/op.h"

namespace needle {

// The parameters the forward op and its adjoint share. scale: the logits' factor (nullopt:
// 1 / sqrt(D)); dropout in [0, 1) (checked here), seed its mask's.
class AttentionOp : public Op {
 public:
  AttentionOp(bool causal, std::optional<double> scale, double dropout, uint64_t seed);
  bool returns_tuple() const override { return true; }

  const bool causal_;
  const std::optional<double> scale_;
  const double dropout_;
  const uint64_t seed_;
};

// Inputs (q, k, v) or (q, k, v, mask) -> (out, lse).
class ScaledDotProductAttention final : public AttentionOp {
 public:
  using AttentionOp::AttentionOp;
  std::string name() const override { return "scaled_dot_product_attention"; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// Inputs (q, k, v, out, lse, dout, dlse) or (q, k, v, mask, out, lse, dout, dlse) -> (dq, dk,
// dv): the forward's adjoint for the adjoints dout, dlse of (out, lse), with its parameters.
class ScaledDotProductAttentionGrad final : public AttentionOp {
 public:
  using AttentionOp::AttentionOp;
  std::string name() const override { return "scaled_dot_product_attention_grad"; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// --- Functions ---
// out (B, H, Tq, D). q, k, v of one float dtype on one device; mask bool or float.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const std::optional<Tensor>& mask = std::nullopt,
                                    bool causal = false, std::optional<double> scale = std::nullopt,
                                    double dropout = 0.0, uint64_t seed = 0);

}  // namespace needle
