// Group normalization and its adjoint (ops_group_norm.h): the fused kernels where the device
// has them, else composites on the (N, G, C / G, spatial) view of x, whose axes 2 and 3 are
// one group's elements and whose axes 0 and 3 are what a channel's dw and db sum over.
#include "needle/ops/ops_group_norm.h"

#include <optional>

#include "needle/kernels.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_norm.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {

// The sizes of an (N, C, ...) input in groups: n, c, groups, channels per group, spatial.
struct GroupLayout {
  int64_t n, c, g, cg, s;
  Shape grouped() const { return {n, g, cg, s}; }  // one group per (n, g): axes 2 and 3
  Shape flat() const { return {n, c, s}; }         // what the kernels read
  Shape stats() const { return {n, g}; }
  Shape stats4() const { return {n, g, 1, 1}; }
  Shape weight4() const { return {1, g, cg, 1}; }
  int64_t group_size() const { return cg * s; }
};

// Checks x (N, C, ...) of a float dtype, num_groups dividing C and a (C,) weight.
GroupLayout check_group_norm(const char* op, const NDArray& x, const NDArray& w, int64_t groups) {
  const Shape& s = x.shape();
  if (s.size() < 2)
    fail<ValueError>("[", op, "] expects an (N, C, ...) input of rank >= 2, got shape ",
                     shape_str(s));
  if (!is_floating(x.dtype()))
    fail<TypeError>("[", op, "] needs float32 or float64 inputs, got ", dtype_name(x.dtype()));
  if (groups <= 0) fail<ValueError>("[", op, "] num_groups must be positive, got ", groups);
  if (s[1] % groups != 0)
    fail<ValueError>("[", op, "] x of shape ", shape_str(s), " has ", s[1],
                     " channels, not divisible by num_groups = ", groups);
  check_norm_operand(op, "weight", w, x, {s[1]});
  int64_t spatial = 1;
  for (size_t i = 2; i < s.size(); ++i) spatial *= s[i];
  return {s[0], s[1], groups, s[1] / groups, spatial};
}

// Which fused kernel reads x, and how: for the NCHW view of an NHWC array (a convolution's
// output) the channels-last kernel, with no copy and a result in the same memory order; else
// the NCHW kernel on a compact copy. The channels-last kernel is a variant of the NCHW one:
// with that one off (kernels.disabled("group_norm")) the op composes.
template <class Fn>
struct FusedLayout {
  Fn* kernel;                 // null: the device has none, compose
  std::optional<Axes> order;  // set for channels last

  Shape rows(const GroupLayout& l) const { return order ? Shape{l.n, l.s, l.c} : l.flat(); }
  // a (x's shape) as the compact rows the kernel reads: a copy unless a is laid out as x.
  NDArray rows_of(const NDArray& a, const GroupLayout& l) const {
    return (order ? a.permute(*order).compact() : a.compact()).reshape(rows(l));
  }
  NDArray result(const NDArray& stored, const Shape& shape) const {
    return order ? NDArray::from_memory_order(stored, shape, *order) : stored.reshape(shape);
  }
};

template <class Fn>
FusedLayout<Fn> fused_layout(const NDArray& x, const char* nchw, const char* channels_last) {
  Fn* kernel = find_kernel<Fn>(nchw, x.device());
  if (kernel == nullptr) return {nullptr, std::nullopt};
  if (auto order = channels_last_order(x))
    if (Fn* variant = find_kernel<Fn>(channels_last, x.device())) return {variant, order};
  return {kernel, std::nullopt};
}

}  // namespace

std::vector<NDArray> GroupNorm::compute_tuple(const Args& args) const {
  const NDArray &x = args[0], &w = args[1], &b = args[2];
  const GroupLayout l = check_group_norm("group_norm", x, w, num_groups);
  check_norm_operand("group_norm", "bias", b, x, {l.c});
  const auto f =
      fused_layout<kernel::GroupNorm>(x, kernel::kGroupNorm, kernel::kGroupNormChannelsLast);
  if (f.kernel && x.size()) {
    NDArray y = NDArray::empty(f.rows(l), x.dtype(), x.device());
    NDArray mean = NDArray::empty(l.stats(), x.dtype(), x.device());
    NDArray rstd = NDArray::empty(l.stats(), x.dtype(), x.device());
    f.kernel(f.rows_of(x, l).view(), w.compact().view(), b.compact().view(), l.g, eps, y.view(),
             mean.reshape({l.n * l.g}).view(), rstd.reshape({l.n * l.g}).view());
    return {f.result(y, x.shape()), mean, rstd};
  }
  const Axes group{2, 3};
  const double m = double(l.group_size());
  const NDArray x4 = x.compact().reshape(l.grouped());
  NDArray mean = x4.sum(group, true) / m;
  NDArray xc = x4 - mean;
  NDArray rstd = 1.0 / ((xc * xc).sum(group, true) / m + eps).sqrt();
  NDArray y = xc * rstd * w.compact().reshape(l.weight4()) + b.compact().reshape(l.weight4());
  return {y.compact().reshape(x.shape()), mean.reshape(l.stats()), rstd.reshape(l.stats())};
}

std::vector<Value> GroupNorm::gradient_values(const Value& out_grad, const Value& node) const {
  // The adjoints of (y, mean, rstd): an output the consumer did not use arrives as zeros.
  const auto& inputs = node.node()->inputs();
  TensorTuple grads = group_norm_grad(
      input_tensor(node, 0), input_tensor(node, 1), tuple_item(node, 1), tuple_item(node, 2),
      tuple_item(out_grad, 0), tuple_item(out_grad, 1), tuple_item(out_grad, 2), num_groups);
  std::vector<Value> out(3);
  for (size_t i = 0; i < 3; ++i)
    if (inputs[i]->requires_grad()) out[i] = grads[int64_t(i)];
  return out;
}

std::vector<NDArray> GroupNormGrad::compute_tuple(const Args& args) const {
  const NDArray &x = args[0], &w = args[1], &mean = args[2], &rstd = args[3];
  const NDArray &dy = args[4], &dmean = args[5], &drstd = args[6];
  const GroupLayout l = check_group_norm("group_norm_grad", x, w, num_groups);
  check_norm_operand("group_norm_grad", "mean", mean, x, l.stats());
  check_norm_operand("group_norm_grad", "rstd", rstd, x, l.stats());
  check_norm_operand("group_norm_grad", "dy", dy, x, x.shape());
  check_norm_operand("group_norm_grad", "dmean", dmean, x, l.stats());
  check_norm_operand("group_norm_grad", "drstd", drstd, x, l.stats());
  const auto f = fused_layout<kernel::GroupNormGrad>(x, kernel::kGroupNormGrad,
                                                     kernel::kGroupNormGradChannelsLast);
  if (f.kernel && x.size()) {
    NDArray dx = NDArray::empty(f.rows(l), x.dtype(), x.device());
    NDArray dw = NDArray::empty({l.c}, x.dtype(), x.device());
    NDArray db = NDArray::empty({l.c}, x.dtype(), x.device());
    auto vec = [&](const NDArray& a) { return a.compact().reshape({l.n * l.g}); };
    f.kernel(f.rows_of(x, l).view(), w.compact().view(), vec(mean).view(), vec(rstd).view(),
             f.rows_of(dy, l).view(), vec(dmean).view(), vec(drstd).view(), l.g, dx.view(),
             dw.view(), db.view());
    return {f.result(dx, x.shape()), dw, db};
  }
  const Axes group{2, 3}, per_channel{0, 3};
  const double m = double(l.group_size());
  auto grouped = [&](const NDArray& a) { return a.compact().reshape(l.grouped()); };
  auto stat = [&](const NDArray& a) { return a.compact().reshape(l.stats4()); };
  const NDArray r = stat(rstd), dy4 = grouped(dy);
  const NDArray xh = (grouped(x) - stat(mean)) * r;
  const NDArray g = dy4 * w.compact().reshape(l.weight4());
  const NDArray a = g.sum(group, true) / m, bm = (g * xh).sum(group, true) / m;
  NDArray dx = r * (g - a - xh * bm) + stat(dmean) / m - stat(drstd) * r * r * xh / m;
  return {dx.compact().reshape(x.shape()), (dy4 * xh).sum(per_channel).reshape({l.c}),
          dy4.sum(per_channel).reshape({l.c})};
}

std::vector<Value> GroupNormGrad::gradient_values(const Value& out_grad, const Value& node) const {
  // LayerNormGrad's second order (ops_norm.cc) on the (N, G, C / G, spatial) view, a group
  // for a row and M = (C / G) * spatial for D: the first-order map contracted with the
  // cotangent (ux, uw, ub) of (dx, dw, db), with xh = (x - m) r, g = dy w, A = mean(g),
  // B = mean(g xh) per group, Sux = sum(ux) and Suxh = sum(ux xh):
  //   L = r (sum(ux g) - A Sux - B Suxh) + dmean Sux / M - drstd r^2 Suxh / M
  //       + sum(uw dy xh) + sum(ub dy),
  // summed over groups. H = dL/dxh (at fixed m, r) carries x, m and r's share through xh.
  const auto& inputs = node.node()->inputs();
  Tensor x = input_tensor(node, 0), w = input_tensor(node, 1), m = input_tensor(node, 2);
  Tensor r = input_tensor(node, 3), dy = input_tensor(node, 4), drstd = input_tensor(node, 6);
  Tensor ux = tuple_item(out_grad, 0), uw = tuple_item(out_grad, 1), ub = tuple_item(out_grad, 2);
  const GroupLayout l = check_group_norm("group_norm_grad", x.data(), w.data(), num_groups);
  const Shape shape = l.grouped(), x_shape = x.shape();
  const double d = double(l.group_size());
  const Axes group{2, 3}, per_channel{0, 3};
  auto full = [&](const Tensor& t) { return broadcast_to(t, shape); };
  auto grouped = [&](const Tensor& t) { return reshape(t, shape); };
  auto stat = [&](const Tensor& t) { return reshape(t, l.stats4()); };
  auto channel = [&](const Tensor& t) { return full(reshape(t, l.weight4())); };
  auto gsum = [&](const Tensor& t) { return summation(t, group, true); };  // (N, G, 1, 1)
  auto over_groups = [&](const Tensor& t) { return reshape(summation(t, per_channel), {l.c}); };
  Tensor r4 = stat(r), dr4 = stat(drstd), x4 = grouped(x), dy4 = grouped(dy), ux4 = grouped(ux);
  Tensor br = full(r4), xm = x4 - full(stat(m)), bw = channel(w);
  Tensor xh = xm * br, g = dy4 * bw;
  Tensor a = gsum(g) / d, b = gsum(g * xh) / d;
  Tensor sux = gsum(ux4), suxh = gsum(ux4 * xh);
  Tensor p = ux4 - full(sux) / d - xh * full(suxh) / d;
  Tensor h = -(br * g * full(suxh)) / d - br * full(b) * ux4 - full(dr4 * r4 * r4) * ux4 / d +
             channel(uw) * dy4;
  std::vector<Value> grads(7);
  if (inputs[0]->requires_grad()) grads[0] = reshape(h * br, x_shape);
  if (inputs[1]->requires_grad()) grads[1] = over_groups(br * dy4 * p);
  if (inputs[2]->requires_grad()) grads[2] = reshape(-(r4 * gsum(h)), l.stats());
  if (inputs[3]->requires_grad())
    grads[3] = reshape(
        gsum(ux4 * g) - a * sux - b * suxh - 2.0 * dr4 * r4 * suxh / d + gsum(h * xm), l.stats());
  if (inputs[4]->requires_grad())
    grads[4] = reshape(br * bw * p + channel(uw) * xh + channel(ub), x_shape);
  if (inputs[5]->requires_grad()) grads[5] = reshape(sux / d, l.stats());
  if (inputs[6]->requires_grad()) grads[6] = reshape(-(r4 * r4 * suxh) / d, l.stats());
  return grads;
}

TensorTuple group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       int64_t num_groups, double eps) {
  return TensorTuple::make_from_op(std::make_shared<GroupNorm>(num_groups, eps), {x, weight, bias});
}

TensorTuple group_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& mean,
                            const Tensor& rstd, const Tensor& dy, const Tensor& dmean,
                            const Tensor& drstd, int64_t num_groups) {
  return TensorTuple::make_from_op(std::make_shared<GroupNormGrad>(num_groups),
                                   {x, weight, mean, rstd, dy, dmean, drstd});
}

}  // namespace needle
