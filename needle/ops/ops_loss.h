// Loss ops: softmax cross-entropy of logits against integer class labels, fused.
//
//   softmax_cross_entropy(logits (N, C), labels (N,), reduction = "mean")
//       loss_i = logsumexp(logits[i, :]) - logits[i, labels[i]], then their mean ("mean",
//       SoftmaxLoss's), sum ("sum") or the (N,) vector itself ("none").
//   softmax_cross_entropy_grad(logits, labels, dloss (N,))
//       its adjoint in the logits: (softmax(logits) - one_hot(labels)) * dloss[:, None].
//
// Where the device has the fused kernels (kernel::SoftmaxCrossEntropy and its Grad in
// needle/kernels.h) each direction is one pass over the logits that writes only its result:
// no one-hot matrix, no (N, C) temporaries. Elsewhere both compose the same result from
// NDArray ops (the kernels' test oracle). The labels are any integer dtype with values in
// [0, C) (a ValueError otherwise: the op reads them once to check) and get no gradient; the
// gradient of softmax_cross_entropy_grad (second order) is made of Tensor ops.
#pragma once

#include <string>

#include "needle/ops/op.h"

namespace needle {

// (logits (N, C), labels (N,)) -> per-row losses (N,), in the logits' float dtype.
class SoftmaxCrossEntropy final : public TensorOp {
 public:
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("softmax_cross_entropy")
};

// (logits (N, C), labels (N,), dloss (N,)) -> dlogits (N, C).
class SoftmaxCrossEntropyGrad final : public TensorOp {
 public:
  int arity() const override { return 3; }
  NEEDLE_DECLARE_OP_BODY("softmax_cross_entropy_grad")
};

// --- Functions ---
// reduction: "mean" (the default, nn.SoftmaxLoss's), "sum" or "none" (the (N,) losses).
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                             const std::string& reduction = "mean");
Tensor softmax_cross_entropy_grad(const Tensor& logits, const Tensor& labels, const Tensor& dloss);

}  // namespace needle
