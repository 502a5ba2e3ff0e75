// Fused softmax cross-entropy kernels (contracts in needle/kernels.h): the forward reads
// each row of logits once for its shifted logsumexp and picks the label's logit, writing one
// loss per row; the backward recomputes the row's softmax and writes (softmax - one_hot) *
// dloss in the same pass. The composite builds a one-hot matrix and runs a logsumexp, a
// product and two sums over the whole (N, C) array; backward, as many again. Rows split over
// the CPU team. Registered as the "cpu" kernels kernel::kSoftmaxCrossEntropy and
// kSoftmaxCrossEntropyGrad.
#include <cmath>
#include <limits>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

// The logsumexp's shift: the row's finite-raised max (vec::row_shift) lowered to the largest
// finite value too, as LogSumExp's composite does, so a row holding +inf gives +inf.
template <class T>
T lse_shift(const T* z, int64_t c) {
  return std::min(vec::row_shift(z, c), std::numeric_limits<T>::max());
}

// The sum of exp(z[0, c) - shift), through a stack chunk.
template <class T>
T sum_exp_shifted(const T* z, T shift, int64_t c) {
  T e[vec::kChunk];
  T s = 0;
  for (int64_t j = 0; j < c; j += vec::kChunk) {
    const int64_t m = std::min(vec::kChunk, c - j);
    s += vec::exp_shifted_into(z + j, shift, e, m);
  }
  return s;
}

template <class T>
void softmax_cross_entropy_typed(const View& zv, const View& yv, const View& lv) {
  const int64_t rows = zv.shape[0], c = zv.shape[1];
  const T* z = zv.ptr<T>();
  const int64_t* y = yv.ptr<int64_t>();
  T* loss = lv.ptr<T>();
  parallel_for_rows(rows, c, kParallelGrainHeavy, [&](int64_t r) {
    const T* zr = z + r * c;
    const T m = lse_shift(zr, c);
    loss[r] = (std::log(sum_exp_shifted(zr, m, c)) + m) - zr[y[r]];
  });
}

template <class T>
void softmax_cross_entropy_grad_typed(const View& zv, const View& yv, const View& dlv,
                                      const View& dzv) {
  const int64_t rows = zv.shape[0], c = zv.shape[1];
  const T* z = zv.ptr<T>();
  const int64_t* y = yv.ptr<int64_t>();
  const T* dloss = dlv.ptr<T>();
  T* dz = dzv.ptr<T>();
  parallel_for_rows(rows, c, kParallelGrainHeavy, [&](int64_t r) {
    const T* zr = z + r * c;
    T* dr = dz + r * c;
    // The softmax's shift (not lowered at +inf: a row holding +inf gives nan, as softmax).
    const T s = vec::exp_shifted_into(zr, vec::row_shift(zr, c), dr, c);
    const T g = dloss[r], scale = g / s;
    for (int64_t j = 0; j < c; ++j) dr[j] *= scale;
    dr[y[r]] -= g;
  });
}

void softmax_cross_entropy(const View& logits, const View& labels, const View& loss) {
  dispatch_floating(logits.dtype, kernel::kSoftmaxCrossEntropy, [&](auto t) {
    softmax_cross_entropy_typed<decltype(t)>(logits, labels, loss);
  });
}
void softmax_cross_entropy_grad(const View& logits, const View& labels, const View& dloss,
                                const View& dlogits) {
  dispatch_floating(logits.dtype, kernel::kSoftmaxCrossEntropyGrad, [&](auto t) {
    softmax_cross_entropy_grad_typed<decltype(t)>(logits, labels, dloss, dlogits);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxCrossEntropy, "cpu", softmax_cross_entropy);
NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxCrossEntropyGrad, "cpu", softmax_cross_entropy_grad);

}  // namespace

}  // namespace needle::cpu
