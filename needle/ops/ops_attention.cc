// The attention op and its adjoint (see ops_attention.h): the fused FlashAttention kernels
// where the device has them, NDArray composites over the whole (Tq, Tk) logits elsewhere.
// Both share the checks below, which run before either path: kernels trust their operands.
#include "needle/ops/ops_attention.h"

#include <cmath>
#include <limits>

#include "needle/ops/ops_tuple.h"

namespace needle {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Dims {
  int64_t b, h, tq, tk, d;
  bool empty() const { return b * h * tq * tk * d == 0; }
};

void check_dropout(double dropout) {
  if (!(dropout >= 0.0 && dropout < 1.0))
    fail<ValueError>("[", kOp, "] dropout must be in [0, 1), got ", dropout);
}

// Checks q (B, H, Tq, D), k and v (B, H, Tk, D): one float dtype, one device.
Dims check_qkv(const NDArray& q, const NDArray& k, const NDArray& v) {
  for (const NDArray* a : {&q, &k, &v}) {
    if (!is_floating(a->dtype()))
      fail<TypeError>("[", kOp, "] needs float32 or float64 q, k and v, got dtype ",
                      dtype_name(a->dtype()));
    if (a->dtype() != q.dtype())
      fail<TypeError>("[", kOp, "] q, k and v must share a dtype, got ", dtype_name(q.dtype()), ", ",
                      dtype_name(k.dtype()), " and ", dtype_name(v.dtype()));
    if (&a->device() != &q.device())
      fail<RuntimeError>("[", kOp, "] inputs are on different devices: ", q.device().name(),
                         " and ", a->device().name());
  }
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4)
    fail<ValueError>("[", kOp, "] expects q (B, H, Tq, D), k and v (B, H, Tk, D), got shapes ",
                     shape_str(q.shape()), ", ", shape_str(k.shape()), " and ",
                     shape_str(v.shape()));
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  if (ks != vs)
    fail<ValueError>("[", kOp, "] k of shape ", shape_str(ks), " and v of shape ", shape_str(vs),
                     " differ (both must be (B, H, Tk, D))");
  if (qs[0] != ks[0] || qs[1] != ks[1] || qs[3] != ks[3])
    fail<ValueError>("[", kOp, "] q of shape ", shape_str(qs), " and k, v of shape ",
                     shape_str(ks), " disagree in B, H or D (q (B, H, Tq, D), k (B, H, Tk, D))");
  return {qs[0], qs[1], qs[2], ks[2], qs[3]};
}

// The mask as an additive mask of `dtype` seen as (B, H, Tq, Tk) (broadcast views, no copy of
// the broadcast): bool becomes 0 / -inf, a float mask is cast. An undefined array for none.
NDArray additive_mask(const NDArray* mask, const Dims& d, DType dtype) {
  if (!mask) return NDArray();
  const Shape full{d.b, d.h, d.tq, d.tk};
  const Shape& s = mask->shape();
  bool ok = s.size() <= 4;
  for (size_t i = 0; ok && i < s.size(); ++i) {
    const int64_t want = full[4 - s.size() + i];
    ok = s[i] == want || s[i] == 1;
  }
  if (!ok)
    fail<ValueError>("[", kOp, "] mask of shape ", shape_str(s),
                     " does not broadcast to (B, H, Tq, Tk) = ", shape_str(full));
  NDArray m;
  if (mask->dtype() == DType::bool_) {
    m = NDArray::where(*mask, NDArray::full({}, 0.0, dtype, mask->device()),
                       NDArray::full({}, -kInf, dtype, mask->device()));
  } else if (is_floating(mask->dtype())) {
    m = mask->dtype() == dtype ? mask->compact() : mask->astype(dtype);
  } else {
    fail<TypeError>("[", kOp, "] mask must be bool (true = attend) or an additive float mask, got ",
                    dtype_name(mask->dtype()));
  }
  return m.broadcast_to(full);
}

// The forward's operands, checked: q, k, v, and the (B, H, Tq, Tk) additive mask if any.
struct Operands {
  Dims d;
  NDArray mask;
  double scale;
};
Operands check_operands(const NDArray& q, const NDArray& k, const NDArray& v, const NDArray* mask,
                        const std::optional<double>& scale) {
  Operands o;
  o.d = check_qkv(q, k, v);
  if (mask && &mask->device() != &q.device())
    fail<RuntimeError>("[", kOp, "] mask is on ", mask->device().name(), ", q on ",
                       q.device().name());
  o.mask = additive_mask(mask, o.d, q.dtype());
  o.scale = scale.value_or(o.d.d > 0 ? 1.0 / std::sqrt(double(o.d.d)) : 1.0);
  return o;
}

kernel::AttentionParams params_of(double scale, bool causal, double dropout, uint64_t seed) {
  kernel::AttentionParams p;
  p.scale = scale;
  p.causal = causal;
  p.dropout = dropout;
  p.seed = seed;
  return p;
}

View mask_view(const NDArray& mask) { return mask.defined() ? mask.view() : View{}; }

// --- The composite: every (Tq, Tk) array materialized, from NDArray methods. ---

NDArray scalar_array(double value, const NDArray& like) {
  return NDArray::full({}, value, like.dtype(), like.device());
}

// scale * q @ k^T + mask, -inf above the causal diagonal: (B, H, Tq, Tk).
NDArray composite_logits(const NDArray& q, const NDArray& k, const Operands& o, bool causal) {
  NDArray s = q.matmul(k.swapaxes(2, 3)) * o.scale;
  if (o.mask.defined()) s = s + o.mask;
  if (causal) {
    std::vector<double> bias(size_t(o.d.tq * o.d.tk), 0.0);
    for (int64_t i = 0; i < o.d.tq; ++i)
      for (int64_t j = 0; j < o.d.tk; ++j)
        if (j > i + o.d.tk - o.d.tq) bias[size_t(i * o.d.tk + j)] = -kInf;
    s = s + NDArray::from_vector(bias, {o.d.tq, o.d.tk}, q.device()).astype(q.dtype());
  }
  return s;
}

// The dropout factors keep / (1 - p) of every (b, h, i, j), drawn on the host with the
// kernels' hash (kernel::attention_keep); undefined when dropout is 0.
NDArray composite_dropout(const Dims& d, double dropout, uint64_t seed, const NDArray& like) {
  if (dropout == 0.0) return NDArray();
  const uint32_t threshold = kernel::attention_dropout_threshold(dropout);
  std::vector<double> keep(size_t(d.b * d.h * d.tq * d.tk));
  for (size_t i = 0; i < keep.size(); ++i)
    keep[i] = kernel::attention_keep(seed, i, threshold) ? 1.0 / (1.0 - dropout) : 0.0;
  return NDArray::from_vector(keep, {d.b, d.h, d.tq, d.tk}, like.device()).astype(like.dtype());
}

NDArray is_finite(const NDArray& a) { return a.abs().scalar(BinaryOp::lt, kInf); }

// (out, lse) from the whole logits: the masked softmax with its edge cases made explicit.
std::vector<NDArray> composite_forward(const NDArray& q, const NDArray& k, const NDArray& v,
                                       const Operands& o, bool causal, double dropout,
                                       uint64_t seed) {
  const NDArray s = composite_logits(q, k, o, causal);
  const NDArray m = s.max(Axes{3}, true);
  const NDArray zero = scalar_array(0.0, q), one = scalar_array(1.0, q);
  const NDArray m_safe = NDArray::where(is_finite(m), m, zero);
  // Rows with a +inf logit split their weight over those logits; -inf logits weigh 0.
  const NDArray e = NDArray::where(m.scalar(BinaryOp::eq, kInf), s.scalar(BinaryOp::eq, kInf),
                                   (s - m_safe).exp());
  const NDArray l = e.sum(Axes{3}, true);
  const NDArray empty_row = l.scalar(BinaryOp::eq, 0.0);
  const NDArray l_safe = NDArray::where(empty_row, one, l);
  NDArray p = e / l_safe;
  const NDArray keep = composite_dropout(o.d, dropout, seed, q);
  if (keep.defined()) p = p * keep;
  const NDArray lse = NDArray::where(empty_row, scalar_array(-kInf, q), m + l_safe.log());
  return {p.matmul(v), lse.reshape({o.d.b, o.d.h, o.d.tq})};
}

// (dq, dk, dv) from the whole logits, P recomputed from lse.
std::vector<NDArray> composite_backward(const NDArray& q, const NDArray& k, const NDArray& v,
                                        const Operands& o, const NDArray& out, const NDArray& lse,
                                        const NDArray& dout, const NDArray& dlse, bool causal,
                                        double dropout, uint64_t seed) {
  const Dims& d = o.d;
  const NDArray s = composite_logits(q, k, o, causal);
  const NDArray lse4 = lse.reshape({d.b, d.h, d.tq, 1});
  const NDArray finite = is_finite(lse4), zero = scalar_array(0.0, q);
  const NDArray p = NDArray::where(finite, (s - NDArray::where(finite, lse4, zero)).exp(), zero);
  const NDArray keep = composite_dropout(d, dropout, seed, q);
  const NDArray pd = keep.defined() ? p * keep : p;
  NDArray dp = dout.matmul(v.swapaxes(2, 3));
  if (keep.defined()) dp = dp * keep;
  const NDArray delta = (dout * out).sum(Axes{3}, true) - dlse.reshape({d.b, d.h, d.tq, 1});
  const NDArray ds = p * (dp - delta) * o.scale;
  return {ds.matmul(k), ds.swapaxes(2, 3).matmul(q), pd.swapaxes(2, 3).matmul(dout)};
}

}  // namespace

AttentionOp::AttentionOp(bool causal, std::optional<double> scale, double dropout, uint64_t seed)
    : causal_(causal), scale_(scale), dropout_(dropout), seed_(seed) {
  check_dropout(dropout);
}

std::vector<NDArray> ScaledDotProductAttention::compute_tuple(const Args& args) const {
  if (args.size() != 3 && args.size() != 4)
    fail<ValueError>("[", kOp, "] takes q, k, v and an optional mask, got ", args.size(),
                     " arrays");
  const NDArray &q = args[0], &k = args[1], &v = args[2];
  const Operands o = check_operands(q, k, v, args.size() == 4 ? &args[3] : nullptr, scale_);
  const Dims& d = o.d;
  if (d.empty()) {  // no logits: zeros, and lse -inf (every row sees no key) or 0 (D = 0)
    return {NDArray::full(q.shape(), 0.0, q.dtype(), q.device()),
            NDArray::full({d.b, d.h, d.tq}, d.tk == 0 ? -kInf : 0.0, q.dtype(), q.device())};
  }
  if (auto* fused = find_kernel<kernel::Attention>(kernel::kAttention, q.device())) {
    const NDArray qc = q.compact(), kc = k.compact(), vc = v.compact();
    NDArray out = NDArray::empty(q.shape(), q.dtype(), q.device());
    NDArray lse = NDArray::empty({d.b, d.h, d.tq}, q.dtype(), q.device());
    if (run_fused_kernel([&] {
          fused(qc.view(), kc.view(), vc.view(), mask_view(o.mask),
                params_of(o.scale, causal_, dropout_, seed_), out.view(), lse.view());
        }))
      return {out, lse};
  }
  return composite_forward(q, k, v, o, causal_, dropout_, seed_);
}

std::vector<Value> ScaledDotProductAttention::gradient_values(const Value& out_grad,
                                                              const Value& node) const {
  // The adjoints of (out, lse): lse's arrives as zeros when only out was used.
  const TensorTuple g = out_grad.tuple();
  const TensorTuple outputs = node.tuple();
  const auto& inputs = node.node()->inputs();
  std::vector<Value> grad_inputs;
  for (const NodePtr& in : inputs) grad_inputs.emplace_back(in);
  grad_inputs.push_back(outputs[0]);
  grad_inputs.push_back(outputs[1]);
  grad_inputs.push_back(g[0]);
  grad_inputs.push_back(g[1]);
  const OpPtr op =
      std::make_shared<ScaledDotProductAttentionGrad>(causal_, scale_, dropout_, seed_);
  const TensorTuple grads = TensorTuple::make_from_op(op, grad_inputs);
  std::vector<Value> result(inputs.size());  // the mask (input 3) is a constant
  for (size_t i = 0; i < 3; ++i)
    if (inputs[i]->requires_grad()) result[i] = grads[int64_t(i)];
  return result;
}

std::vector<NDArray> ScaledDotProductAttentionGrad::compute_tuple(const Args& args) const {
  if (args.size() != 7 && args.size() != 8)
    fail<ValueError>("[", kOp, "_grad] takes q, k, v, an optional mask, out, lse, dout and dlse, "
                     "got ", args.size(), " arrays");
  const bool has_mask = args.size() == 8;
  const size_t base = has_mask ? 4 : 3;
  const NDArray &q = args[0], &k = args[1], &v = args[2];
  const NDArray &out = args[base], &lse = args[base + 1], &dout = args[base + 2],
                &dlse = args[base + 3];
  const Operands o = check_operands(q, k, v, has_mask ? &args[3] : nullptr, scale_);
  const Dims& d = o.d;
  const Shape lse_shape{d.b, d.h, d.tq};
  for (const NDArray* a : {&out, &dout})
    if (a->shape() != q.shape() || a->dtype() != q.dtype())
      fail<ValueError>("[", kOp, "_grad] out and dout must match q (", shape_str(q.shape()), ", ",
                       dtype_name(q.dtype()), "), got ", shape_str(a->shape()), " ",
                       dtype_name(a->dtype()));
  for (const NDArray* a : {&lse, &dlse})
    if (a->shape() != lse_shape || a->dtype() != q.dtype())
      fail<ValueError>("[", kOp, "_grad] lse and dlse must be ", shape_str(lse_shape), " ",
                       dtype_name(q.dtype()), ", got ", shape_str(a->shape()), " ",
                       dtype_name(a->dtype()));
  if (d.empty()) {
    return {NDArray::full(q.shape(), 0.0, q.dtype(), q.device()),
            NDArray::full(k.shape(), 0.0, q.dtype(), q.device()),
            NDArray::full(v.shape(), 0.0, q.dtype(), q.device())};
  }
  if (auto* fused = find_kernel<kernel::AttentionGrad>(kernel::kAttentionGrad, q.device())) {
    NDArray dq = NDArray::empty(q.shape(), q.dtype(), q.device());
    NDArray dk = NDArray::empty(k.shape(), q.dtype(), q.device());
    NDArray dv = NDArray::empty(v.shape(), q.dtype(), q.device());
    if (run_fused_kernel([&] {
          fused(q.compact().view(), k.compact().view(), v.compact().view(), mask_view(o.mask),
                out.compact().view(), lse.compact().view(), dout.compact().view(),
                dlse.compact().view(), params_of(o.scale, causal_, dropout_, seed_), dq.view(),
                dk.view(), dv.view());
        }))
      return {dq, dk, dv};
  }
  return composite_backward(q, k, v, o, out, lse, dout, dlse, causal_, dropout_, seed_);
}

std::vector<Value> ScaledDotProductAttentionGrad::gradient_values(const Value&,
                                                                  const Value&) const {
  fail<RuntimeError>("[", kOp, "] the gradient of its gradient (second order) is not implemented");
}

// --- Functions ---

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const std::optional<Tensor>& mask, bool causal,
                                    std::optional<double> scale, double dropout, uint64_t seed) {
  const OpPtr op = std::make_shared<ScaledDotProductAttention>(causal, scale, dropout, seed);
  std::vector<Value> inputs{q, k, v};
  if (mask) inputs.push_back(*mask);
  return TensorTuple::make_from_op(op, inputs)[0];
}

}  // namespace needle
