// Convolution and pooling on NHWC tensors.
//
// conv: input (N, H, W, Cin), weight (K, K, Cin, Cout), stride and zero padding; forward by
// im2col (a strided window view of the padded input, compacted) and one matmul, so it runs
// on any backend, or by the device's fused kernel where the kernel registry has one
// (kernel::Conv2d in needle/kernels.h; the CPU's never materializes the column matrix).
// Its weight gradient is an op of its own (ConvWeightGrad, fused the same way); its input
// gradient is a conv of the output gradient with the flipped kernel. Pooling takes windows
// like im2col (Im2Col) and reduces them.
#pragma once

#include "needle/kernels.h"
#include "needle/ops/op.h"

namespace needle {

class Conv final : public TensorOp {
 public:
  explicit Conv(int64_t stride = 1, int64_t padding = 1) : stride(stride), padding(padding) {}
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("conv")
  const int64_t stride;
  const int64_t padding;
};

// The weight gradient of Conv: (x, out_grad) -> (kh, kw, Cin, Cout), the sum over output
// pixels of each pixel's (padded) input window times its gradient.
class ConvWeightGrad final : public TensorOp {
 public:
  ConvWeightGrad(int64_t kh, int64_t kw, int64_t stride, int64_t padding)
      : kh(kh), kw(kw), stride(stride), padding(padding) {}
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("conv_weight_grad")
  const int64_t kh, kw, stride, padding;
};

// The input gradient of Conv by the device's fused kernel (kernel::Conv2dInputGrad): (out_grad,
// w) -> (N, height, width, Cin). Built by conv_input_grad only on a device that has the
// kernel; elsewhere conv_input_grad composes the same result from dilate, flip and conv.
class ConvInputGrad final : public TensorOp {
 public:
  ConvInputGrad(int64_t height, int64_t width, int64_t stride, int64_t padding)
      : height(height), width(width), stride(stride), padding(padding) {}
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("conv_input_grad")
  const int64_t height, width, stride, padding;
};

// (N, H, W, C) -> (N, Ho, Wo, kh, kw, C): every kh x kw window at the given stride.
class Im2Col final : public TensorOp {
 public:
  Im2Col(int64_t kh, int64_t kw, int64_t stride) : kh(kh), kw(kw), stride(stride) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("im2col")
  const int64_t kh, kw, stride;
};

// The adjoint of Im2Col: adds each window back into an (N, H, W, C) array.
class Col2Im final : public TensorOp {
 public:
  Col2Im(int64_t stride, int64_t height, int64_t width)
      : stride(stride), height(height), width(width) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("col2im")
  const int64_t stride, height, width;
};

// Pooling by the device's fused kernels (kernel::Pool2d and Pool2dGrad), built by
// max_pool2d / avg_pool2d only on a device that has both; elsewhere they compose the same
// result from im2col and a reduction. `max` picks the reduction; `window` is validated.
class Pool2d final : public TensorOp {
 public:
  Pool2d(bool max, kernel::PoolWindow window) : max(max), window(window) {}
  int arity() const override { return 1; }
  std::string name() const override { return max ? "max_pool2d" : "avg_pool2d"; }
  NDArray compute(const Args& args) const override;
  std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const override;
  const bool max;
  const kernel::PoolWindow window;
};

// Pool2d's input gradient from (x, out_grad): each window's gradient shared out over its
// entries (evenly for the mean; among the entries equal to the max for the max).
class Pool2dGrad final : public TensorOp {
 public:
  Pool2dGrad(bool max, kernel::PoolWindow window) : max(max), window(window) {}
  int arity() const override { return 2; }
  std::string name() const override { return max ? "max_pool2d_grad" : "avg_pool2d_grad"; }
  NDArray compute(const Args& args) const override;
  std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const override;
  const bool max;
  const kernel::PoolWindow window;
};

// --- Functions ---
Tensor conv(const Tensor& a, const Tensor& b, int64_t stride = 1, int64_t padding = 1);
// conv's adjoints: the gradient with respect to its (N, h, w, Cin) input given the output
// gradient and the weight, and with respect to its (kh, kw, Cin, Cout) weight given the
// input and the output gradient.
Tensor conv_input_grad(const Tensor& out_grad, const Tensor& w, int64_t h, int64_t w_size,
                       int64_t stride, int64_t padding);
Tensor conv_weight_grad(const Tensor& x, const Tensor& out_grad, int64_t kh, int64_t kw,
                        int64_t stride, int64_t padding);
Tensor im2col(const Tensor& a, int64_t kh, int64_t kw, int64_t stride = 1);
// Pooling over kernel x kernel windows (stride 0 means stride = kernel), NHWC.
// Max pooling pads with -inf, average pooling with zeros (counted, as PyTorch's default).
Tensor max_pool2d(const Tensor& a, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& a, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// Nearest-neighbour upsampling of the last two axes (H and W of NCHW) by an integer scale:
// a reshape, a broadcast and a reshape, so its gradient sums each scale x scale block.
Tensor upsample_nearest(const Tensor& a, int64_t scale);

}  // namespace needle
