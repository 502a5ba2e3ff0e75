// Convolution (im2col + matmul) and pooling (windows + reduction), NHWC (see ops_nn.h).
#include "needle/ops/ops_nn.h"

#include <limits>

#include "needle/autograd.h"
#include "needle/checked.h"
#include "needle/kernels.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_linalg.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {

Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

void check_nhwc(const char* op, const Shape& shape) {
  if (shape.size() != 4)
    fail<ValueError>("[", op, "] expects an NHWC input of rank 4, got shape ", shape_str(shape));
}

// n + 2 * padding, checked: a huge padding is a ValueError, not a wrapped-around size.
int64_t padded_size(const char* op, int64_t n, int64_t padding) {
  return checked_add(op, checked_add(op, n, padding, "the padded size"), padding,
                     "the padded size");
}

int64_t out_size(const char* op, int64_t in, int64_t kernel, int64_t stride) {
  if (stride < 1) fail<ValueError>("[", op, "] stride must be >= 1, got ", stride);
  if (in < kernel)
    fail<ValueError>("[", op, "] kernel of size ", kernel, " does not fit an input of size ", in);
  return (in - kernel) / stride + 1;
}

// The (N, Ho, Wo, kh, kw, C) window view of an NHWC array, Ho = (H - kh) / stride + 1 (Wo
// likewise): compact the array, then view it with as_strided, no copy: window (y, x) starts
// `stride` rows and columns after window (y - 1, x - 1), and its entries step as x's do.
NDArray windows(const char* op, const NDArray& x, int64_t kh, int64_t kw, int64_t stride) {
  out_size(op, x.shape()[1], kh, stride);  // the window fits (a ValueError naming op if not)
  out_size(op, x.shape()[2], kw, stride);
  // BEGIN SOLUTION hw4
  NDArray c = x.compact();
  const Shape& s = c.shape();
  const Strides& st = c.strides();
  int64_t ho = (s[1] - kh) / stride + 1, wo = (s[2] - kw) / stride + 1;
  return c.as_strided({s[0], ho, wo, kh, kw, s[3]},
                      {st[0], st[1] * stride, st[2] * stride, st[1], st[2], st[3]});
  // END SOLUTION
}

// Validates conv's operands, an NHWC input and a (kh, kw, Cin, Cout) weight, and returns
// the output shape (N, Ho, Wo, Cout).
Shape conv_output_shape(const char* op, const Shape& x, const Shape& w, int64_t stride,
                        int64_t padding) {
  check_nhwc(op, x);
  if (w.size() != 4 || w[2] != x[3])
    fail<ValueError>("[", op, "] weight of shape ", shape_str(w),
                     " does not match (K, K, Cin, Cout) for an input of shape ", shape_str(x));
  if (padding < 0) fail<ValueError>("[", op, "] padding must be >= 0, got ", padding);
  return {x[0], out_size(op, padded_size(op, x[1], padding), w[0], stride),
          out_size(op, padded_size(op, x[2], padding), w[1], stride), w[3]};
}

// Checks that an output gradient has the shape conv gives for this input and weight.
void check_out_grad(const char* op, const Shape& out_grad, const Shape& x, const Shape& w,
                    int64_t stride, int64_t padding) {
  if (out_grad != conv_output_shape(op, x, w, stride, padding))
    fail<ValueError>("[", op, "] output gradient of shape ", shape_str(out_grad),
                     " does not match an input of shape ", shape_str(x), " and a weight of shape ",
                     shape_str(w), " at stride ", stride, ", padding ", padding);
}

}  // namespace

Tensor conv_input_grad(const Tensor& out_grad, const Tensor& w, int64_t h, int64_t wd,
                       int64_t stride, int64_t padding) {
  const Shape x_shape{out_grad.ndim() ? out_grad.shape()[0] : 0, h, wd,
                      w.ndim() == 4 ? w.shape()[2] : 0};
  check_out_grad("conv_input_grad", out_grad.shape(), x_shape, w.shape(), stride, padding);
  if (is_floating(promote_types(out_grad.dtype(), w.dtype())) &&
      find_kernel<kernel::Conv2dInputGrad>(kernel::kConv2dInputGrad, out_grad.device()))
    return apply_op(std::make_shared<ConvInputGrad>(h, wd, stride, padding),
                    {out_grad.node(), w.node()});
  // BEGIN SOLUTION hw4
  int64_t kh = w.shape()[0], kw = w.shape()[1];
  // Undo the stride: dilate, then drop trailing zeros beyond the stride-1 output size.
  Tensor g = stride > 1 ? dilate(out_grad, {1, 2}, stride - 1) : out_grad;
  int64_t th = h + 2 * padding - kh + 1, tw = wd + 2 * padding - kw + 1;
  if (g.shape()[1] != th || g.shape()[2] != tw)
    g = getitem(g, {Index::all(), Index::slice(0, th), Index::slice(0, tw), Index::all()});
  // (kh, kw, Cout, Cin)
  Tensor w_flip = transpose(flip(w, {0, 1}), Axes{2, 3});
  if (kh == kw && padding <= kh - 1) return conv(g, w_flip, 1, kh - 1 - padding);
  Tensor full = conv(pad(g, {{0, 0}, {kh - 1, kh - 1}, {kw - 1, kw - 1}, {0, 0}}), w_flip, 1, 0);
  return getitem(full, {Index::all(), Index::slice(padding, padding + h),
                        Index::slice(padding, padding + wd), Index::all()});
  // END SOLUTION
}

void ConvInputGrad::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("conv_input_grad", inputs);
  if (!inputs.empty()) inputs[0] = compact_node(inputs[0]);  // shared with conv_weight_grad
}

NDArray ConvInputGrad::compute(const Args& args) const {
  const NDArray g = args[0].compact(), w = args[1].compact();
  auto* fused = find_kernel<kernel::Conv2dInputGrad>(kernel::kConv2dInputGrad, g.device());
  if (fused == nullptr)
    fail<RuntimeError>("[conv_input_grad] the ", g.device().name(),
                       " device has no fused kernel conv2d_input_grad any more (it was disabled "
                       "after the graph was built)");
  NDArray out = NDArray::empty({g.shape()[0], height, width, w.shape()[2]}, g.dtype(), g.device());
  fused(g.view(), w.view(), stride, padding, out.view());
  return out;
}

std::vector<Tensor> ConvInputGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // Linear in each input: <conv_input_grad(g, w), G> = <g, conv(G, w)>, so the adjoint in g
  // is conv(G, w), and in w the weight gradient of that conv.
  Tensor g = node.input(0), w = node.input(1);
  return {conv(out_grad, w, stride, padding),
          conv_weight_grad(out_grad, g, w.shape()[0], w.shape()[1], stride, padding)};
}

Tensor conv_weight_grad(const Tensor& x, const Tensor& out_grad, int64_t kh, int64_t kw,
                        int64_t stride, int64_t padding) {
  return apply_op(std::make_shared<ConvWeightGrad>(kh, kw, stride, padding),
                  {x.node(), out_grad.node()});
}

void Conv::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("conv", inputs);
  // The image is usually a permuted view (nn.Conv's NCHW -> NHWC): the forward and the
  // weight gradient (which reads the same input) then share one NHWC copy. (promote_dtypes
  // has refused tuples; the arity is checked after prepare.)
  if (!inputs.empty()) inputs[0] = compact_node(inputs[0]);
}

NDArray Conv::compute(const Args& args) const {
  const NDArray x = args[0].compact(), w = args[1].compact();
  Shape out_shape = conv_output_shape("conv", x.shape(), w.shape(), stride, padding);
  // A device with a fused kernel convolves without building the column matrix.
  if (auto* fused = find_kernel<kernel::Conv2d>(kernel::kConv2d, x.device())) {
    NDArray out = NDArray::empty(out_shape, x.dtype(), x.device());
    fused(x.view(), w.view(), stride, padding, out.view());
    return out;
  }
  // BEGIN SOLUTION hw4
  int64_t kh = w.shape()[0], kw = w.shape()[1], cout = w.shape()[3];
  NDArray xp = padding ? x.pad({{0, 0}, {padding, padding}, {padding, padding}, {0, 0}}) : x;
  // im2col: one row per output pixel, holding its kh x kw x Cin window; then one GEMM.
  NDArray cols = windows("conv", xp, kh, kw, stride).compact();
  const Shape& cs = cols.shape();
  NDArray out = cols.reshape({cs[0] * cs[1] * cs[2], kh * kw * cs[5]})
                    .matmul(w.reshape({kh * kw * cs[5], cout}));
  return out.reshape(out_shape);
  // END SOLUTION
}

std::vector<Tensor> Conv::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw4
  Tensor x = node.input(0), w = node.input(1);
  Tensor grad_x, grad_w;
  if (x.requires_grad())
    grad_x = conv_input_grad(out_grad, w, x.shape()[1], x.shape()[2], stride, padding);
  if (w.requires_grad())
    grad_w = conv_weight_grad(x, out_grad, w.shape()[0], w.shape()[1], stride, padding);
  return {grad_x, grad_w};
  // END SOLUTION
}

void ConvWeightGrad::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("conv_weight_grad", inputs);
  // In Conv's backward the output gradient is a permuted view (of nn.Conv's NCHW result's
  // gradient), which conv_input_grad reads too: one compact copy serves both.
  for (NodePtr& input : inputs) input = compact_node(input);
}

NDArray ConvWeightGrad::compute(const Args& args) const {
  const NDArray x = args[0].compact(), g = args[1].compact();
  check_nhwc("conv_weight_grad", x.shape());
  int64_t cin = x.shape()[3], cout = g.ndim() == 4 ? g.shape()[3] : -1;
  check_out_grad("conv_weight_grad", g.shape(), x.shape(), {kh, kw, cin, cout}, stride, padding);
  if (auto* fused = find_kernel<kernel::Conv2dWeightGrad>(kernel::kConv2dWeightGrad, x.device())) {
    NDArray out = NDArray::empty({kh, kw, cin, cout}, x.dtype(), x.device());
    fused(x.view(), g.view(), stride, padding, out.view());
    return out;
  }
  // BEGIN SOLUTION hw4
  // Every output pixel's input window times its gradient, summed over pixels:
  // im2col(x)^T @ out_grad, as (K*K*Cin, N*Ho*Wo) @ (N*Ho*Wo, Cout).
  NDArray xp = padding ? x.pad({{0, 0}, {padding, padding}, {padding, padding}, {0, 0}}) : x;
  NDArray cols = windows("conv", xp, kh, kw, stride).compact().reshape({-1, kh * kw * cin});
  NDArray out = cols.permute({1, 0}).matmul(g.reshape({-1, cout}));
  return out.reshape({kh, kw, cin, cout});
  // END SOLUTION
}

std::vector<Tensor> ConvWeightGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // The weight gradient is bilinear in (x, g): <dW, G> = <conv_input_grad(g, G), x> =
  // <conv(x, G), g>, so its adjoints are conv's own two directions.
  Tensor x = node.input(0), g = node.input(1);
  return {conv_input_grad(g, out_grad, x.shape()[1], x.shape()[2], stride, padding),
          conv(x, out_grad, stride, padding)};
}

NDArray Im2Col::compute(const Args& args) const {
  check_nhwc("im2col", args[0].shape());
  return windows("im2col", args[0], kh, kw, stride).compact();
}
std::vector<Tensor> Im2Col::gradient(const Tensor& out_grad, const Tensor& node) const {
  const Shape& s = node.input(0).shape();
  return {apply_op(std::make_shared<Col2Im>(stride, s[1], s[2]), {out_grad.node()})};
}

NDArray Col2Im::compute(const Args& args) const {
  const NDArray& cols = args[0];
  if (cols.ndim() != 6)
    fail<ValueError>("[col2im] expects (N, Ho, Wo, kh, kw, C), got ", shape_str(cols.shape()));
  const Shape& s = cols.shape();
  int64_t ho = s[1], wo = s[2], kh = s[3], kw = s[4];
  NDArray out = NDArray::full({s[0], height, width, s[5]}, 0.0, cols.dtype(), cols.device());
  for (int64_t i = 0; i < kh; ++i) {
    for (int64_t j = 0; j < kw; ++j) {
      IndexKey key{Index::all(), Index::slice(i, i + stride * (ho - 1) + 1, stride),
                   Index::slice(j, j + stride * (wo - 1) + 1, stride), Index::all()};
      NDArray piece = cols.getitem(
          {Index::all(), Index::all(), Index::all(), Index::at(i), Index::at(j), Index::all()});
      out.setitem(key, out.getitem(key) + piece);
    }
  }
  return out;
}
std::vector<Tensor> Col2Im::gradient(const Tensor& out_grad, const Tensor& node) const {
  const Shape& s = node.input(0).shape();
  return {im2col(out_grad, s[3], s[4], stride)};
}

// --- Functions ---

Tensor conv(const Tensor& a, const Tensor& b, int64_t stride, int64_t padding) {
  return apply_op(std::make_shared<Conv>(stride, padding), {a.node(), b.node()});
}

Tensor im2col(const Tensor& a, int64_t kh, int64_t kw, int64_t stride) {
  return apply_op(std::make_shared<Im2Col>(kh, kw, stride), {a.node()});
}

namespace {
// Checks a pooling's operands: an NHWC input, and a kernel that fits the padded input.
void check_pool(const char* op, const Shape& s, int64_t kernel, int64_t stride, int64_t padding) {
  check_nhwc(op, s);
  if (kernel < 1) fail<ValueError>("[", op, "] kernel size must be >= 1, got ", kernel);
  if (padding < 0) fail<ValueError>("[", op, "] padding must be >= 0, got ", padding);
  if (stride < 0)
    fail<ValueError>("[", op, "] stride must be >= 1 (or 0 for the kernel size), got ", stride);
  // Check the window here, so that a misfit names this op rather than the im2col inside it.
  out_size(op, padded_size(op, s[1], padding), kernel, stride ? stride : kernel);
  out_size(op, padded_size(op, s[2], padding), kernel, stride ? stride : kernel);
}
}  // namespace

namespace {
const char* pool_kernel(bool max) { return max ? kernel::kMaxPool2d : kernel::kAvgPool2d; }
const char* pool_grad_kernel(bool max) {
  return max ? kernel::kMaxPool2dGrad : kernel::kAvgPool2dGrad;
}

// Whether a's device pools a's dtype with fused kernels, forward and backward.
bool fused_pooling(bool max, const Tensor& a) {
  return is_floating(a.dtype()) && find_kernel<kernel::Pool2d>(pool_kernel(max), a.device()) &&
         find_kernel<kernel::Pool2dGrad>(pool_grad_kernel(max), a.device());
}

// The fused kernel (name, device), or a RuntimeError: Pool2d nodes are only built where
// fused_pooling() found both kernels, so this fails only if one was disabled since.
template <class Fn>
Fn* require_kernel(const char* name, const Backend& device) {
  Fn* fn = find_kernel<Fn>(name, device);
  if (fn == nullptr)
    fail<RuntimeError>("[", name, "] the ", device.name(), " device has no fused kernel ", name,
                       " any more (it was disabled after the graph was built)");
  return fn;
}
}  // namespace

NDArray Pool2d::compute(const Args& args) const {
  const NDArray x = args[0].compact();
  const Shape& s = x.shape();
  const int64_t k = window.kernel, st = window.stride, p = window.padding;
  NDArray out = NDArray::empty(
      {s[0], (s[1] + 2 * p - k) / st + 1, (s[2] + 2 * p - k) / st + 1, s[3]}, x.dtype(), x.device());
  require_kernel<kernel::Pool2d>(pool_kernel(max), x.device())(x.view(), window, out.view());
  return out;
}

std::vector<Tensor> Pool2d::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {apply_op(std::make_shared<Pool2dGrad>(max, window), {node.input(0).node(), out_grad.node()})};
}

NDArray Pool2dGrad::compute(const Args& args) const {
  const NDArray x = args[0].compact(), g = args[1].compact();
  NDArray out = NDArray::empty(x.shape(), x.dtype(), x.device());
  require_kernel<kernel::Pool2dGrad>(pool_grad_kernel(max), x.device())(x.view(), g.view(), window,
                                                                        out.view());
  return out;
}

std::vector<Tensor> Pool2dGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // Linear in the output gradient g, and piecewise constant in x (no gradient there): the
  // adjoint takes each window's share-weighted sum of out_grad, which for the mean is
  // average pooling itself and for the max needs the shares of x's windows.
  const int64_t k = window.kernel, st = window.stride, p = window.padding;
  if (!max) return {Tensor(), avg_pool2d(out_grad, k, st, p)};
  const std::vector<std::pair<int64_t, int64_t>> hw_pad{{0, 0}, {p, p}, {p, p}, {0, 0}};
  NDArray x = node.input(0).data();
  NDArray xw = windows("max_pool2d_grad", x.pad(hw_pad, -std::numeric_limits<double>::infinity()),
                       k, k, st);
  NDArray is_max = xw == xw.max(Axes{3, 4}, true);
  NDArray share = is_max / is_max.sum(Axes{3, 4}, true);
  Tensor vw = im2col(pad(out_grad, hw_pad), k, k, st);
  return {Tensor(), summation(vw * Tensor(share.astype(out_grad.dtype())), Axes{3, 4})};
}

// Pooling: pad H and W (max pooling with -inf, so padding never wins), take every
// kernel x kernel window with im2col, and reduce each window over its two window axes;
// or, where the device has them, the fused kernels (Pool2d).
Tensor max_pool2d(const Tensor& a, int64_t kernel, int64_t stride, int64_t padding) {
  check_pool("max_pool2d", a.shape(), kernel, stride, padding);
  if (fused_pooling(true, a))
    return apply_op(std::make_shared<Pool2d>(true, kernel::PoolWindow{kernel, stride ? stride : kernel, padding}),
                    {a.node()});
  // BEGIN SOLUTION hw4
  const double lowest = -std::numeric_limits<double>::infinity();
  Tensor x = padding ? pad(a, {{0, 0}, {padding, padding}, {padding, padding}, {0, 0}}, lowest) : a;
  return max(im2col(x, kernel, kernel, stride ? stride : kernel), Axes{3, 4});
  // END SOLUTION
}

Tensor avg_pool2d(const Tensor& a, int64_t kernel, int64_t stride, int64_t padding) {
  check_pool("avg_pool2d", a.shape(), kernel, stride, padding);
  if (fused_pooling(false, a))
    return apply_op(std::make_shared<Pool2d>(false, kernel::PoolWindow{kernel, stride ? stride : kernel, padding}),
                    {a.node()});
  // BEGIN SOLUTION hw4
  Tensor x = padding ? pad(a, {{0, 0}, {padding, padding}, {padding, padding}, {0, 0}}) : a;
  return mean(im2col(x, kernel, kernel, stride ? stride : kernel), Axes{3, 4});
  // END SOLUTION
}

Tensor upsample_nearest(const Tensor& a, int64_t scale) {
  if (a.ndim() < 2)
    fail<ValueError>("[upsample_nearest] expects an input of rank >= 2 (N, C, H, W), got shape ",
                     shape_str(a.shape()));
  if (scale < 1) fail<ValueError>("[upsample_nearest] scale must be >= 1, got ", scale);
  Shape s = a.shape();
  const int64_t h = s[s.size() - 2], w = s.back();
  s.resize(s.size() - 2);
  Shape spread = s, wide = s, out = s;
  spread.insert(spread.end(), {h, 1, w, 1});
  wide.insert(wide.end(), {h, scale, w, scale});
  out.insert(out.end(), {h * scale, w * scale});
  return reshape(broadcast_to(reshape(a, spread), wide), out);
}

}  // namespace needle
