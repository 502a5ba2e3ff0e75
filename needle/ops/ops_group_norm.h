// Group normalization, the diffusion U-Net's norm, one fused op each way as layer_norm is
// (needle/ops/ops_norm.h). x is (N, C, ...) with C = G * (C / G): per sample n and group g
// the statistics run over the group's C / G channels and every spatial position, so a group
// is one contiguous row of M = (C / G) * spatial elements of a compact NCHW array.
//
//   group_norm(x, w, b, G, eps) -> (y, mean, rstd)
//       w and b (C,); per (n, g) mean = mean(x), rstd = 1 / sqrt(var(x) + eps) (biased
//       variance), y = (x - mean) * rstd * w[c] + b[c]; mean and rstd (N, G), saved for the
//       backward (and differentiable: their adjoints reach x too).
//   group_norm_grad(x, w, mean, rstd, dy, dmean, drstd, G) -> (dx, dw, db)
//       its adjoint (kernel::GroupNormGrad in needle/kernels.h has the formula).
//
// Where the device has kernel::GroupNorm / GroupNormGrad each is one pass over the groups;
// elsewhere both compose the same result from NDArray ops on the (N, G, C / G, spatial)
// view (the kernels' test oracle). The gradient of group_norm_grad (second order) is made of
// Tensor ops.
#pragma once

#include "needle/ops/op.h"

namespace needle {

class GroupNorm final : public Op {
 public:
  explicit GroupNorm(int64_t num_groups, double eps = 1e-5) : num_groups(num_groups), eps(eps) {}
  std::string name() const override { return "group_norm"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 3; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const int64_t num_groups;
  const double eps;
};

// (x, w, mean, rstd, dy, dmean, drstd) -> (dx, dw, db): GroupNorm's adjoint.
class GroupNormGrad final : public Op {
 public:
  explicit GroupNormGrad(int64_t num_groups) : num_groups(num_groups) {}
  std::string name() const override { return "group_norm_grad"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 7; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const int64_t num_groups;
};

// (y, mean, rstd): y normalized over each group of num_groups channel groups of x (N, C, ...),
// scaled by weight and shifted by bias, both (C,); mean and rstd (N, num_groups).
TensorTuple group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       int64_t num_groups, double eps = 1e-5);
// (dx, dw, db) for the adjoints dy, dmean, drstd of group_norm's three outputs.
TensorTuple group_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& mean,
                            const Tensor& rstd, const Tensor& dy, const Tensor& dmean,
                            const Tensor& drstd, int64_t num_groups);

}  // namespace needle
