// Per-channel sums and affine maps, batch normalization built from them, and layer
// normalization with its adjoint (ops_norm.h).
#include "needle/ops/ops_norm.h"

#include <optional>

#include "needle/kernels.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {

Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

// An (N, C, ...) array as (N, C, rest), the layout the kernels and composites see.
Shape channel_layout(const Shape& s) {
  int64_t inner = 1;
  for (size_t i = 2; i < s.size(); ++i) inner *= s[i];
  return {s[0], s[1], inner};
}

void check_channels(const char* op, const Shape& s) {
  if (s.size() < 2)
    fail<ValueError>("[", op, "] expects an (N, C, ...) input of rank >= 2, got shape ",
                     shape_str(s));
}

void check_float(const char* op, DType d) {
  if (!is_floating(d))
    fail<TypeError>("[", op, "] needs float32 or float64 inputs, got ", dtype_name(d));
}

// Row i of a (2, C) tensor, as x's dtype.
Tensor row(const Tensor& sums, int64_t i, DType dtype) {
  return astype(getitem(sums, {Index::at(i), Index::all()}), dtype);
}

// a as the 2-D (rows, C) compact array the per-channel kernels read.
NDArray as_rows(const NDArray& a, const Axes& order) {
  return a.permute(order).reshape({-1, a.shape()[1]});
}

Tensor zeros_vector(int64_t n, DType dtype, Backend& device) {
  return Tensor(NDArray::full({n}, 0.0, dtype, device));
}

}  // namespace

std::optional<Axes> channels_last_order(const NDArray& a) {
  const int64_t r = a.ndim();
  if (r < 3 || a.is_compact()) return std::nullopt;
  Axes order{0};
  for (int64_t k = 2; k < r; ++k) order.push_back(k);
  order.push_back(1);
  if (!a.permute(order).is_compact()) return std::nullopt;
  return order;
}

void ChannelSums::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("channel_sums", inputs);
}

NDArray ChannelSums::compute(const Args& args) const {
  check_channels("channel_sums", args[0].shape());
  check_float("channel_sums", args[0].dtype());
  if (args[0].shape() != args[1].shape())
    fail<ValueError>("[channel_sums] inputs of shapes ", shape_str(args[0].shape()), " and ",
                     shape_str(args[1].shape()), " differ");
  auto order = channels_last_order(args[0]);
  const bool rows = order && args[1].strides() == args[0].strides();
  const NDArray a = rows ? as_rows(args[0], *order) : args[0].compact();
  const NDArray b = rows ? as_rows(args[1], *order) : args[1].compact();
  const int64_t c = a.shape()[1];
  if (auto* fused = find_kernel<kernel::ChannelSums>(kernel::kChannelSums, a.device())) {
    NDArray out = NDArray::empty({2, c}, DType::float64, a.device());
    fused(a.view(), b.view(), out.view());
    return out;
  }
  const Shape layout = channel_layout(a.shape());
  NDArray a3 = a.reshape(layout).astype(DType::float64);
  NDArray b3 = b.reshape(layout).astype(DType::float64);
  NDArray out = NDArray::empty({2, c}, DType::float64, a.device());
  out.setitem({Index::at(0), Index::all()}, a3.sum(Axes{0, 2}));
  out.setitem({Index::at(1), Index::all()}, (a3 * b3).sum(Axes{0, 2}));
  return out;
}

std::vector<Tensor> ChannelSums::gradient(const Tensor& out_grad, const Tensor& node) const {
  // d/da (sum a + sum a b) = g0 + g1 b, d/db = g1 a (when a is b, autograd adds the two).
  Tensor a = node.input(0), b = node.input(1);
  Tensor g0 = row(out_grad, 0, a.dtype()), g1 = row(out_grad, 1, a.dtype());
  if (a.node() == b.node())  // channel_sums(x, x), batch norm's statistics: one pass
    return {channel_affine(a, g1 * 2.0, g0), Tensor()};
  Tensor grad_a, grad_b;
  if (a.requires_grad()) grad_a = channel_affine(b, g1, g0);
  if (b.requires_grad())
    grad_b = channel_affine(a, g1, zeros_vector(g1.shape()[0], a.dtype(), a.device()));
  return {grad_a, grad_b};
}

void ChannelAffine::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("channel_affine", inputs);
}

NDArray ChannelAffine::compute(const Args& args) const {
  const NDArray scale = args[1].compact(), shift = args[2].compact();
  const Shape& shape = args[0].shape();
  check_channels("channel_affine", shape);
  check_float("channel_affine", args[0].dtype());
  const Shape cvec{shape[1]};
  if (scale.shape() != cvec || shift.shape() != cvec)
    fail<ValueError>("[channel_affine] scale of shape ", shape_str(scale.shape()),
                     " and shift of shape ", shape_str(shift.shape()), " must both be (", shape[1],
                     ",) for an input of shape ", shape_str(shape));
  // A channels-last input gives a channels-last result: the same memory order, no copy.
  auto order = channels_last_order(args[0]);
  const NDArray a = order ? as_rows(args[0], *order) : args[0].compact();
  NDArray out;
  if (auto* fused = find_kernel<kernel::ChannelAffine>(kernel::kChannelAffine, a.device())) {
    out = NDArray::empty(a.shape(), a.dtype(), a.device());
    fused(a.view(), scale.view(), shift.view(), out.view());
  } else {
    const Shape layout = channel_layout(a.shape());
    const Shape per_channel{1, layout[1], 1};
    out = (a.reshape(layout) * scale.reshape(per_channel).broadcast_to(layout) +
           shift.reshape(per_channel).broadcast_to(layout))
              .compact();
  }
  return order ? NDArray::from_memory_order(out, shape, *order) : out.reshape(shape);
}

std::vector<Tensor> ChannelAffine::gradient(const Tensor& out_grad, const Tensor& node) const {
  Tensor a = node.input(0), scale = node.input(1), shift = node.input(2);
  Tensor grad_a, grad_scale, grad_shift;
  if (a.requires_grad())
    grad_a = channel_affine(out_grad, scale, zeros_vector(scale.shape()[0], a.dtype(), a.device()));
  if (scale.requires_grad() || shift.requires_grad()) {
    Tensor sums = channel_sums(out_grad, a);  // [sum g, sum g a]: one pass for both
    grad_scale = row(sums, 1, scale.dtype());
    grad_shift = row(sums, 0, shift.dtype());
  }
  return {grad_a, grad_scale, grad_shift};
}

Tensor channel_sums(const Tensor& a, const Tensor& b) {
  static const OpPtr op = std::make_shared<ChannelSums>();
  return apply_op(op, {a.node(), b.node()});
}

Tensor channel_affine(const Tensor& a, const Tensor& scale, const Tensor& shift) {
  static const OpPtr op = std::make_shared<ChannelAffine>();
  return apply_op(op, {a.node(), scale.node(), shift.node()});
}

std::tuple<Tensor, Tensor, Tensor> batch_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps) {
  check_channels("batch_norm", x.shape());
  const int64_t c = x.shape()[1];
  if (weight.shape() != Shape{c} || bias.shape() != Shape{c})
    fail<ValueError>("[batch_norm] weight of shape ", shape_str(weight.shape()),
                     " and bias of shape ", shape_str(bias.shape()), " must both be (", c,
                     ",) for an input of shape ", shape_str(x.shape()));
  if (x.size() == 0)
    fail<ValueError>("[batch_norm] needs a non-empty input, got shape ", shape_str(x.shape()));
  const double m = double(x.size() / c);
  Tensor sums = channel_sums(x, x);
  Tensor mean = getitem(sums, {Index::at(0), Index::all()}) / m;
  Tensor var = getitem(sums, {Index::at(1), Index::all()}) / m - mean * mean;
  Tensor scale = astype(power_scalar(var + eps, -0.5), x.dtype()) * weight;
  Tensor shift = bias - astype(mean, x.dtype()) * scale;
  return {channel_affine(x, scale, shift), astype(mean, x.dtype()).detach(),
          astype(var, x.dtype()).detach()};
}

// --- Layer normalization ---

namespace {

// Checks x (..., D) of a float dtype and a (D,) weight; returns D.
int64_t check_layer_norm(const char* op, const NDArray& x, const NDArray& w) {
  if (x.ndim() < 1)
    fail<ValueError>("[", op, "] normalizes the last axis: x must have rank >= 1, got a 0-d array");
  check_float(op, x.dtype());
  const int64_t d = x.shape().back();
  check_norm_operand(op, "weight", w, x, {d});
  return d;
}

// x's shape with the last axis 1: the shape of the saved mean and rstd.
Shape stats_shape(const Shape& s) {
  Shape out = s;
  out.back() = 1;
  return out;
}

// (rows, D) views of compact copies, what the kernels read.
NDArray rows_of(const NDArray& a, int64_t d) {
  return a.compact().reshape({d ? a.size() / d : 0, d});
}

}  // namespace

void check_norm_operand(const char* op, const char* what, const NDArray& a, const NDArray& x,
                        const Shape& shape) {
  if (a.dtype() != x.dtype())
    fail<TypeError>("[", op, "] ", what, " of dtype ", dtype_name(a.dtype()), " and x of dtype ",
                    dtype_name(x.dtype()), " differ");
  if (&a.device() != &x.device())
    fail<RuntimeError>("[", op, "] inputs are on different devices: ", x.device().name(), " and ",
                       a.device().name());
  if (a.shape() != shape)
    fail<ValueError>("[", op, "] x of shape ", shape_str(x.shape()), " needs ", what, " of shape ",
                     shape_str(shape), ", got shape ", shape_str(a.shape()));
}

std::vector<NDArray> LayerNorm::compute_tuple(const Args& args) const {
  const NDArray &x = args[0], &w = args[1], &b = args[2];
  const int64_t d = check_layer_norm("layer_norm", x, w);
  check_norm_operand("layer_norm", "bias", b, x, {d});
  const Shape st = stats_shape(x.shape());
  if (auto* fused = find_kernel<kernel::LayerNorm>(kernel::kLayerNorm, x.device());
      fused && x.size()) {
    NDArray y = NDArray::empty(x.shape(), x.dtype(), x.device());
    NDArray mean = NDArray::empty(st, x.dtype(), x.device());
    NDArray rstd = NDArray::empty(st, x.dtype(), x.device());
    const int64_t rows = x.size() / d;
    fused(rows_of(x, d).view(), w.compact().view(), b.compact().view(), eps,
          y.reshape({rows, d}).view(), mean.reshape({rows}).view(), rstd.reshape({rows}).view());
    return {y, mean, rstd};
  }
  const Axes last{x.ndim() - 1};
  NDArray mean = x.sum(last, true) / double(d);
  NDArray xc = x - mean;
  NDArray rstd = 1.0 / ((xc * xc).sum(last, true) / double(d) + eps).sqrt();
  return {xc * rstd * w + b, mean, rstd};
}

std::vector<Value> LayerNorm::gradient_values(const Value& out_grad, const Value& node) const {
  // The adjoints of (y, mean, rstd): an output the consumer did not use arrives as zeros.
  const auto& inputs = node.node()->inputs();
  TensorTuple grads = layer_norm_grad(
      input_tensor(node, 0), input_tensor(node, 1), tuple_item(node, 1), tuple_item(node, 2),
      tuple_item(out_grad, 0), tuple_item(out_grad, 1), tuple_item(out_grad, 2));
  std::vector<Value> out(3);
  for (size_t i = 0; i < 3; ++i)
    if (inputs[i]->requires_grad()) out[i] = grads[int64_t(i)];
  return out;
}

std::vector<NDArray> LayerNormGrad::compute_tuple(const Args& args) const {
  const NDArray &x = args[0], &w = args[1], &mean = args[2], &rstd = args[3];
  const NDArray &dy = args[4], &dmean = args[5], &drstd = args[6];
  const int64_t d = check_layer_norm("layer_norm_grad", x, w);
  const Shape st = stats_shape(x.shape());
  check_norm_operand("layer_norm_grad", "mean", mean, x, st);
  check_norm_operand("layer_norm_grad", "rstd", rstd, x, st);
  check_norm_operand("layer_norm_grad", "dy", dy, x, x.shape());
  check_norm_operand("layer_norm_grad", "dmean", dmean, x, st);
  check_norm_operand("layer_norm_grad", "drstd", drstd, x, st);
  if (auto* fused = find_kernel<kernel::LayerNormGrad>(kernel::kLayerNormGrad, x.device());
      fused && x.size()) {
    const int64_t rows = x.size() / d;
    NDArray dx = NDArray::empty(x.shape(), x.dtype(), x.device());
    NDArray dw = NDArray::empty({d}, x.dtype(), x.device());
    NDArray db = NDArray::empty({d}, x.dtype(), x.device());
    auto vec = [&](const NDArray& a) { return a.compact().reshape({rows}); };
    fused(rows_of(x, d).view(), w.compact().view(), vec(mean).view(), vec(rstd).view(),
          rows_of(dy, d).view(), vec(dmean).view(), vec(drstd).view(), dx.reshape({rows, d}).view(),
          dw.view(), db.view());
    return {dx, dw, db};
  }
  const Axes last{x.ndim() - 1};
  Axes batch;
  for (int64_t i = 0; i + 1 < x.ndim(); ++i) batch.push_back(i);
  auto over_rows = [&](const NDArray& a) { return batch.empty() ? a : a.sum(batch); };
  const NDArray xh = (x - mean) * rstd;
  const NDArray g = dy * w;
  const NDArray a = g.sum(last, true) / double(d), bm = (g * xh).sum(last, true) / double(d);
  NDArray dx = rstd * (g - a - xh * bm) + dmean / double(d) - drstd * rstd * rstd * xh / double(d);
  return {dx, over_rows(dy * xh), over_rows(dy)};
}

std::vector<Value> LayerNormGrad::gradient_values(const Value& out_grad, const Value& node) const {
  // The first-order map contracted with the cotangent (ux, uw, ub) of (dx, dw, db), with
  // xh = (x - m) r, g = dy w, A = mean(g), B = mean(g xh) per row, Sux = sum(ux) and
  // Suxh = sum(ux xh):
  //   L = r (sum(ux g) - A Sux - B Suxh) + dmean Sux / D - drstd r^2 Suxh / D
  //       + sum(uw dy xh) + sum(ub dy),
  // summed over rows. H = dL/dxh (at fixed m, r) carries x, m and r's share through xh.
  const auto& inputs = node.node()->inputs();
  Tensor x = input_tensor(node, 0), w = input_tensor(node, 1), m = input_tensor(node, 2);
  Tensor r = input_tensor(node, 3), dy = input_tensor(node, 4), drstd = input_tensor(node, 6);
  Tensor ux = tuple_item(out_grad, 0), uw = tuple_item(out_grad, 1), ub = tuple_item(out_grad, 2);
  const Shape shape = x.shape();
  const int64_t nd = int64_t(shape.size());
  const double d = double(shape.back());
  Axes last{nd - 1}, batch;
  for (int64_t i = 0; i + 1 < nd; ++i) batch.push_back(i);
  auto full = [&](const Tensor& t) { return broadcast_to(t, shape); };
  auto rsum = [&](const Tensor& t) { return summation(t, last, true); };  // (..., 1)
  auto over_rows = [&](const Tensor& t) { return batch.empty() ? t : summation(t, batch); };
  Tensor br = full(r), bm = full(m), bw = full(w), xm = x - bm;
  Tensor xh = xm * br, g = dy * bw;
  Tensor a = rsum(g) / d, b = rsum(g * xh) / d;
  Tensor sux = rsum(ux), suxh = rsum(ux * xh);
  Tensor p = ux - full(sux) / d - xh * full(suxh) / d;
  Tensor h =
      -(br * g * full(suxh)) / d - br * full(b) * ux - full(drstd * r * r) * ux / d + full(uw) * dy;
  std::vector<Value> grads(7);
  if (inputs[0]->requires_grad()) grads[0] = h * br;
  if (inputs[1]->requires_grad()) grads[1] = over_rows(br * dy * p);
  if (inputs[2]->requires_grad()) grads[2] = -(r * rsum(h));
  if (inputs[3]->requires_grad())
    grads[3] = rsum(ux * g) - a * sux - b * suxh - 2.0 * drstd * r * suxh / d + rsum(h * xm);
  if (inputs[4]->requires_grad()) grads[4] = br * bw * p + full(uw) * xh + full(ub);
  if (inputs[5]->requires_grad()) grads[5] = sux / d;
  if (inputs[6]->requires_grad()) grads[6] = -(r * r * suxh) / d;
  return grads;
}

TensorTuple layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return TensorTuple::make_from_op(std::make_shared<LayerNorm>(eps), {x, weight, bias});
}

TensorTuple layer_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& mean,
                            const Tensor& rstd, const Tensor& dy, const Tensor& dmean,
                            const Tensor& drstd) {
  static const OpPtr op = std::make_shared<LayerNormGrad>();
  return TensorTuple::make_from_op(op, {x, weight, mean, rstd, dy, dmean, drstd});
}

}  // namespace needle
