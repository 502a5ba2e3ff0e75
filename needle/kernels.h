// The fused-kernel registry: kernels outside the Backend interface, keyed by (kernel name,
// device name). A fused kernel runs a composite operation (a convolution, an optimizer
// update) in one pass; each backend registers its own from its own files with
// NEEDLE_REGISTER_KERNEL, so adding one widens neither Backend nor the other backends.
// An op asks find_kernel() and, when the device has none, composes the result from the
// Backend kernels through NDArray; that composite is also the fused kernel's test oracle.
//
// The signatures of the known kernels are declared here (namespace needle::kernel), so the
// op that calls a kernel and the backend that registers it agree on one function type; the
// registry checks that type on every lookup. A kernel trusts its inputs: the op that calls
// it has checked shapes and dtypes (the operands' contract is written next to each type).
#pragma once

#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include "needle/backend.h"
#include "needle/kernel_math.h"

namespace needle {

namespace kernel {

// NHWC convolution with zero padding: x (N, H, W, Cin), w (kh, kw, Cin, Cout) ->
// out (N, Ho, Wo, Cout), Ho = (H + 2 * padding - kh) / stride + 1 (Wo likewise). Every view
// is contiguous and of one dtype.
using Conv2d = void(const View& x, const View& w, int64_t stride, int64_t padding, const View& out);
inline constexpr const char* kConv2d = "conv2d";

// Its weight gradient: x (N, H, W, Cin), grad (N, Ho, Wo, Cout) -> out (kh, kw, Cin, Cout),
// out[i, j, c, d] = sum over n, y, x of
//   xpad[n, y * stride + i, x * stride + j, c] * grad[n, y, x, d].
using Conv2dWeightGrad = void(const View& x, const View& grad, int64_t stride, int64_t padding,
                              const View& out);
inline constexpr const char* kConv2dWeightGrad = "conv2d_weight_grad";

// Its input gradient: grad (N, Ho, Wo, Cout), w (kh, kw, Cin, Cout) -> out (N, H, W, Cin),
// the sum over every output pixel of its gradient times w^T spread back over the pixel's
// (unpadded part of its) input window: col2im(grad @ w^T), exactly the multiply-adds of the
// forward at any stride (no dilated gradient full of zeros).
using Conv2dInputGrad = void(const View& grad, const View& w, int64_t stride, int64_t padding,
                             const View& out);
inline constexpr const char* kConv2dInputGrad = "conv2d_input_grad";

// 2-D pooling over NHWC windows of kernel x kernel at `stride`, the input zero-padded by
// `padding` on every side for averaging (the padding counts toward the mean, as PyTorch's
// default) and -inf-padded for the max (so padding never wins).
struct PoolWindow {
  int64_t kernel, stride, padding;
};
// Forward: x (N, H, W, C) -> out (N, Ho, Wo, C), Ho = (H + 2 * padding - kernel) / stride + 1
// (Wo likewise), each output the max or the mean of its window.
using Pool2d = void(const View& x, const PoolWindow& window, const View& out);
inline constexpr const char* kMaxPool2d = "max_pool2d";
inline constexpr const char* kAvgPool2d = "avg_pool2d";
// Backward: x (N, H, W, C) and out_grad (N, Ho, Wo, C) -> in_grad (N, H, W, C), the sum over
// the windows holding each input of its share of the window's gradient: 1 / kernel^2 for
// the mean; for the max, 1 / (number of window entries equal to the max) to each of them
// (the composite's rule, so ties split evenly) and 0 to the rest. x is read by the max only.
using Pool2dGrad = void(const View& x, const View& out_grad, const PoolWindow& window,
                        const View& in_grad);
inline constexpr const char* kMaxPool2dGrad = "max_pool2d_grad";
inline constexpr const char* kAvgPool2dGrad = "avg_pool2d_grad";

// Per-channel statistics and affine maps over axis 1 of contiguous (N, C, ...) arrays
// (the rest flattened: (N, C, inner)), for batch normalization (needle/ops/ops_norm.h).
// ChannelSums: a and b of one shape and dtype -> out (2, C) float64, out[0, c] = the sum of
// a[:, c, ...] and out[1, c] = the sum of a[:, c, ...] * b[:, c, ...], accumulated in double.
using ChannelSums = void(const View& a, const View& b, const View& out);
inline constexpr const char* kChannelSums = "channel_sums";
// ChannelAffine: out[n, c, i] = a[n, c, i] * scale[c] + shift[c]; scale and shift (C,), all
// of a's dtype, out a's shape.
using ChannelAffine = void(const View& a, const View& scale, const View& shift, const View& out);
inline constexpr const char* kChannelAffine = "channel_affine";

// One LSTM cell step, element-wise over (B, H), for the lstm_cell op (needle/ops/ops_rnn.h).
// gates (B, 4H) holds the pre-activations in the course's order i, f, g, o: columns [0, H)
// are i, [H, 2H) f, [2H, 3H) g and [3H, 4H) o; c_prev is (B, H). With i, f, o the sigmoids
// and g the tanh of their columns: c_new = f * c_prev + i * g and h_new = o * tanh(c_new),
// both (B, H). Every view is contiguous (row-major) and of one float dtype, computed in it.
using LstmCell = void(const View& gates, const View& c_prev, const View& h_new, const View& c_new);
inline constexpr const char* kLstmCell = "lstm_cell";
// Its backward, recomputing the activations (and c_new) from gates and c_prev: dh and dc
// (B, H), the adjoints of h_new and c_new (an output the consumer did not use arrives as
// zeros) -> dgates (B, 4H), the adjoints of the pre-activations in the same column order,
// and dc_prev (B, H). With t = tanh(c_new) and s = dc + dh * o * (1 - t^2):
//   dgates[i] = s * g * i(1 - i)        dgates[f] = s * c_prev * f(1 - f)
//   dgates[g] = s * i * (1 - g^2)       dgates[o] = dh * t * o(1 - o)
//   dc_prev = s * f
// Every view is contiguous and of one float dtype.
using LstmCellGrad = void(const View& gates, const View& c_prev, const View& dh, const View& dc,
                          const View& dgates, const View& dc_prev);
inline constexpr const char* kLstmCellGrad = "lstm_cell_grad";

// Fused scaled dot-product attention (FlashAttention-2), for the scaled_dot_product_attention
// op (needle/ops/ops_attention.h). Per (batch b, head h): logits
//   s[i, j] = scale * q[i] . k[j] + mask[b, h, i, j], and -inf where causal and j > i + Tk - Tq,
// P = softmax over j (row i's -inf logits get weight 0; a row whose logits reach +inf splits
// its weight evenly over those), out = dropout(P) @ v, lse[i] = log sum_j exp(s[i, j]) (-inf
// for a row with no visible key, whose out row is 0; +inf for a row with a +inf logit).
// Neither the (Tq, Tk) logits nor P is ever materialized: tiles of queries and keys, an
// online softmax, O(Tq) extra memory. q (B, H, Tq, D), k and v (B, H, Tk, D), out
// (B, H, Tq, D) and lse (B, H, Tq) are contiguous, of one float dtype; mask is an additive
// mask of that dtype seen as (B, H, Tq, Tk) with any strides (0 where it broadcasts), or has
// data == nullptr for none.
struct AttentionParams {
  double scale = 1.0;
  bool causal = false;
  double dropout = 0.0;  // in [0, 1): P's entries are dropped with this probability
  uint64_t seed = 0;     // and kept entries scaled by 1 / (1 - dropout); see attention_keep
};
using Attention = void(const View& q, const View& k, const View& v, const View& mask,
                       const AttentionParams& p, const View& out, const View& lse);
inline constexpr const char* kAttention = "attention";
// Its backward, recomputing P tile by tile from lse: dout (B, H, Tq, D) and dlse (B, H, Tq)
// (the adjoints of out and lse) -> dq, dk, dv of q's, k's and v's shapes. With
// dP = dropout(dout @ v^T) and delta[i] = sum_d dout[i, d] * out[i, d] - dlse[i]:
//   dS = P * (dP - delta),  dq = scale * dS @ k,  dk = scale * dS^T @ q,  dv = dropout(P)^T @ dout,
// the same dropout mask as the forward (recomputed from the seed); rows with lse = +-inf give
// no gradient. Every view is contiguous but mask (as in the forward).
using AttentionGrad = void(const View& q, const View& k, const View& v, const View& mask,
                           const View& out, const View& lse, const View& dout, const View& dlse,
                           const AttentionParams& p, const View& dq, const View& dk,
                           const View& dv);
inline constexpr const char* kAttentionGrad = "attention_grad";

// The dropout decision for P[b, h, i, j] at flat index ((b * H + h) * Tq + i) * Tk + j: a
// counter-based hash (splitmix64's finalizer) of (seed, index), so the forward, the backward
// and every device draw the same mask without storing it. Keeps the entry when the hash's
// top 24 bits, a uniform integer in [0, 2^24), reach threshold = round(dropout * 2^24).
NEEDLE_HD inline bool attention_keep(uint64_t seed, uint64_t index, uint32_t threshold) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return uint32_t(z >> 40) >= threshold;
}
inline uint32_t attention_dropout_threshold(double dropout) {
  return uint32_t(dropout * double(1 << 24) + 0.5);
}
// Softmax over the last axis of a contiguous (R, D) array, row by row, with the shift of
// the composite (needle/ops/ops_reduce.h, shift_max): the row max, raised to the dtype's
// lowest finite value, so a row of all -inf or one holding +inf gives nan as in PyTorch.
// Softmax: out = exp(x - m) / sum(exp(x - m)). LogSoftmax (same type, kLogSoftmax):
// out = (x - m) - log(sum(exp(x - m))). x and out (R, D), contiguous, one float dtype.
using Softmax = void(const View& x, const View& out);
inline constexpr const char* kSoftmax = "softmax";
inline constexpr const char* kLogSoftmax = "logsoftmax";
// Their backward from the forward's output y and its adjoint dy, row by row:
// softmax_grad: dx = y * (dy - sum(dy * y)); logsoftmax_grad: dx = dy - exp(y) * sum(dy).
// y, dy and dx (R, D), contiguous, one float dtype.
using SoftmaxGrad = void(const View& y, const View& dy, const View& dx);
inline constexpr const char* kSoftmaxGrad = "softmax_grad";
inline constexpr const char* kLogSoftmaxGrad = "logsoftmax_grad";

// SiLU, element-wise, for the silu op (needle/ops/ops_elementwise.h): with s = sigmoid(x),
// silu: y = x * s; silu_grad (its adjoint from x and dy): dx = dy * s * (1 + x * (1 - s)).
// Every view contiguous, of one size and one float dtype (the op hands arrays laid out alike
// in another axis order over as their memory, and gives the result that order back).
using Silu = void(const View& x, const View& y);
inline constexpr const char* kSilu = "silu";
using SiluGrad = void(const View& x, const View& dy, const View& dx);
inline constexpr const char* kSiluGrad = "silu_grad";

// Layer normalization over the last axis of a contiguous (R, D) array, for the layer_norm op
// (needle/ops/ops_norm.h): per row, mean = sum(x) / D, var = sum((x - mean)^2) / D (two
// passes), rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd * w + b. x and y (R, D); w, b
// (D,); mean and rstd (R,) (the op shapes them (..., 1)); one float dtype, contiguous.
using LayerNorm = void(const View& x, const View& w, const View& b, double eps, const View& y,
                       const View& mean, const View& rstd);
inline constexpr const char* kLayerNorm = "layer_norm";
// Its backward from the saved mean and rstd: with xhat = (x - mean) * rstd and g = dy * w,
//   dx = rstd * (g - mean_D(g) - xhat * mean_D(g * xhat)) + dmean / D - drstd * rstd^2 * xhat / D
//   dw = sum over rows of dy * xhat,  db = sum over rows of dy,
// where dmean and drstd (R,) are the adjoints of the saved statistics (zeros unless a caller
// used them). Shapes as in LayerNorm; dx (R, D), dw and db (D,).
using LayerNormGrad = void(const View& x, const View& w, const View& mean, const View& rstd,
                           const View& dy, const View& dmean, const View& drstd, const View& dx,
                           const View& dw, const View& db);
inline constexpr const char* kLayerNormGrad = "layer_norm_grad";

// Group normalization of a contiguous (N, C, S) array (spatial axes flattened into S) in
// `groups` groups of C / groups channels, for the group_norm op (needle/ops/ops_group_norm.h):
// per (n, g), over the group's M = (C / groups) * S elements (one contiguous run), mean =
// sum(x) / M, var = sum((x - mean)^2) / M (two passes), rstd = 1 / sqrt(var + eps), and
// y[n, c, s] = (x[n, c, s] - mean) * rstd * w[c] + b[c]. x and y (N, C, S); w, b (C,); mean
// and rstd (N * groups,) (the op shapes them (N, G)); one float dtype, contiguous; M > 0.
using GroupNorm = void(const View& x, const View& w, const View& b, int64_t groups, double eps,
                       const View& y, const View& mean, const View& rstd);
inline constexpr const char* kGroupNorm = "group_norm";
// Its backward from the saved mean and rstd: per (n, g), with xhat = (x - mean) * rstd and
// g = dy * w[c], LayerNormGrad's formula over the group's M elements,
//   dx = rstd * (g - mean_M(g) - xhat * mean_M(g * xhat)) + dmean / M - drstd * rstd^2 * xhat / M
//   dw[c] = sum over n and s of dy * xhat,  db[c] = sum over n and s of dy,
// where dmean and drstd (N * groups,) are the adjoints of the saved statistics. Shapes as in
// GroupNorm; dx (N, C, S), dw and db (C,).
using GroupNormGrad = void(const View& x, const View& w, const View& mean, const View& rstd,
                           const View& dy, const View& dmean, const View& drstd, int64_t groups,
                           const View& dx, const View& dw, const View& db);
inline constexpr const char* kGroupNormGrad = "group_norm_grad";
// The same two on channels-last data (same types): x, y, dy and dx (N, S, C), a group's
// elements the channels [g * C / G, (g + 1) * C / G) of every one of the S positions. The op
// calls them for the NCHW view of an NHWC array (a convolution's output), so the norm, the
// activation after it and the next convolution all run without a transposing copy.
inline constexpr const char* kGroupNormChannelsLast = "group_norm_channels_last";
inline constexpr const char* kGroupNormGradChannelsLast = "group_norm_grad_channels_last";

// Softmax cross-entropy of logits (N, C) against labels (N,) int64 in [0, C) (the op checked
// them), for the softmax_cross_entropy op (needle/ops/ops_loss.h): loss (N,), row i's
// logsumexp minus logits[i, labels[i]], the logsumexp shifted as Softmax shifts. Contiguous;
// logits and loss of one float dtype.
using SoftmaxCrossEntropy = void(const View& logits, const View& labels, const View& loss);
inline constexpr const char* kSoftmaxCrossEntropy = "softmax_cross_entropy";
// Its backward, recomputing the softmax: dlogits[i, j] = (softmax(logits)[i, j] -
// (j == labels[i])) * dloss[i]; dloss (N,) and dlogits (N, C) of the logits' dtype.
using SoftmaxCrossEntropyGrad = void(const View& logits, const View& labels, const View& dloss,
                                     const View& dlogits);
inline constexpr const char* kSoftmaxCrossEntropyGrad = "softmax_cross_entropy_grad";

// The scalars of one Adam step: bias_correction1 = 1 - beta1^t, bias_correction2 = 1 - beta2^t.
struct AdamScalars {
  double lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
};
// One Adam step for one parameter, element by element: g = grad + weight_decay * param;
// m = beta1 m + (1 - beta1) g and v = beta2 v + (1 - beta2) g^2, both updated in place;
// param_out = param - lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps).
// Five contiguous views of one shape and dtype.
using AdamStep = void(const View& param, const View& grad, const View& m, const View& v,
                      const View& param_out, const AdamScalars& step);
inline constexpr const char* kAdamStep = "adam_step";

// Device settings go through the registry too, so the bindings need no backend header:
// the number of threads the device's kernels may use (n <= 0 restores its default).
using SetNumThreads = void(int n);
inline constexpr const char* kSetNumThreads = "set_num_threads";
using GetNumThreads = int();
inline constexpr const char* kGetNumThreads = "get_num_threads";

}  // namespace kernel

namespace detail {
using AnyKernel = void (*)();
void register_kernel(const std::string& name, const std::string& device, std::type_index type,
                     AnyKernel fn);
// The kernel registered under (name, device), or nullptr; TypeError when it was registered
// with another function type than `type`.
AnyKernel find_kernel(const std::string& name, const std::string& device, std::type_index type);
}  // namespace detail

// Registers fn as kernel `name` of device `device`, replacing any earlier registration;
// a no-op for a name listed in the environment variable NEEDLE_KERNELS_OFF (comma-separated,
// read once), which runs a whole program on the composites.
template <class Fn>
void register_kernel(const std::string& name, const std::string& device, Fn* fn) {
  detail::register_kernel(name, device, std::type_index(typeid(Fn)),
                          reinterpret_cast<detail::AnyKernel>(fn));
}

// Kernel `name` of `device`, or nullptr when the device has none (the caller then composes
// the operation from Backend kernels): find_kernel<kernel::Conv2d>(kernel::kConv2d, backend).
template <class Fn>
Fn* find_kernel(const std::string& name, const std::string& device) {
  return reinterpret_cast<Fn*>(detail::find_kernel(name, device, std::type_index(typeid(Fn))));
}
template <class Fn>
Fn* find_kernel(const std::string& name, const Backend& device) {
  return find_kernel<Fn>(name, device.name());
}

// A fused kernel whose body a homework's student version has cut throws NotImplemented
// (HOMEWORK.md). The op that called it then composes its result instead, so the assignments
// before the one that writes the kernel keep working without it — unless stub fallback is
// off, as in the tests that grade that kernel, where the stub must fail them. Returns
// whether `call` ran the kernel to the end.
bool kernel_stub_fallback();
void set_kernel_stub_fallback(bool on);
template <class Call>
bool run_fused_kernel(Call&& call) {
  try {
    call();
    return true;
  } catch (const NotImplemented&) {
    if (!kernel_stub_fallback()) throw;
    return false;
  }
}

// Removes kernel `name` of `device`; returns whether there was one. For tests that run the
// composite path on a device that has a fused kernel (see KernelDisabled).
bool unregister_kernel(const std::string& name, const std::string& device);

// (kernel name, device name) of every registered kernel, sorted.
std::vector<std::pair<std::string, std::string>> registered_kernels();

// While alive, (name, device) has no kernel; the old one comes back afterwards.
class KernelDisabled {
 public:
  KernelDisabled(std::string name, std::string device);
  ~KernelDisabled();
  KernelDisabled(const KernelDisabled&) = delete;
  KernelDisabled& operator=(const KernelDisabled&) = delete;

 private:
  std::string name_, device_;
  std::type_index type_;
  detail::AnyKernel saved_;
};

namespace detail {
struct KernelRegistrar {
  template <class Fn>
  KernelRegistrar(const char* name, const char* device, Fn* fn) {
    ::needle::register_kernel(name, device, fn);
  }
};
}  // namespace detail

// Registers a kernel at static-initialization time, from the backend's own file:
//   NEEDLE_REGISTER_KERNEL(kernel::kConv2d, "cpu", conv2d);
// The function's type must be the kernel's type declared in namespace needle::kernel.
#define NEEDLE_REGISTER_KERNEL(name, device, fn)                                              \
  static ::needle::detail::KernelRegistrar NEEDLE_CONCAT(needle_kernel_registrar_, __LINE__)( \
      name, device, fn)

}  // namespace needle
