// Fused softmax cross-entropy kernels on the GPU (contracts in needle/kernels.h): one block
// per row (backend_cuda/rows.cuh) reduces the row's shift and exp-sum; thread 0 writes the
// row's loss (forward), or every thread writes its columns of (softmax - one_hot) * dloss
// (backward). Registered as the "cuda" kernels kernel::kSoftmaxCrossEntropy and
// kSoftmaxCrossEntropyGrad.
#include "backend_cuda/rows.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

template <class T>
__global__ void sce_kernel(const T* __restrict__ z, const int64_t* __restrict__ labels,
                           T* __restrict__ loss, int64_t rows, int64_t c) {
  __shared__ T shared[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* zr = z + r * c;
    // logsumexp's shift: also lowered to the largest finite value (a +inf logit gives +inf).
    const T m = min(block_row_shift(zr, c, shared), Limits<T>::max());
    const T s = block_sum_exp(zr, m, c, shared);
    if (threadIdx.x == 0) loss[r] = (log(s) + m) - zr[labels[r]];
  }
}

template <class T>
__global__ void sce_grad_kernel(const T* __restrict__ z, const int64_t* __restrict__ labels,
                                const T* __restrict__ dloss, T* __restrict__ dz, int64_t rows,
                                int64_t c) {
  __shared__ T shared[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* zr = z + r * c;
    T* dr = dz + r * c;
    const T m = block_row_shift(zr, c, shared);
    const T s = block_sum_exp(zr, m, c, shared);
    const T g = dloss[r];
    const int64_t y = labels[r];
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
      dr[j] = exp(zr[j] - m) / s * g - (j == y ? g : T(0));
  }
}

void softmax_cross_entropy(const View& logits, const View& labels, const View& loss) {
  const int64_t rows = logits.shape[0], c = logits.shape[1];
  dispatch_floating(logits.dtype, kernel::kSoftmaxCrossEntropy, [&](auto t) {
    using T = decltype(t);
    if (rows * c == 0) return;
    sce_kernel<T><<<row_grid(rows), kRowThreads>>>(logits.ptr<T>(), labels.ptr<int64_t>(),
                                                   loss.ptr<T>(), rows, c);
    check_launch(kernel::kSoftmaxCrossEntropy);
  });
}

void softmax_cross_entropy_grad(const View& logits, const View& labels, const View& dloss,
                                const View& dlogits) {
  const int64_t rows = logits.shape[0], c = logits.shape[1];
  dispatch_floating(logits.dtype, kernel::kSoftmaxCrossEntropyGrad, [&](auto t) {
    using T = decltype(t);
    if (rows * c == 0) return;
    sce_grad_kernel<T><<<row_grid(rows), kRowThreads>>>(
        logits.ptr<T>(), labels.ptr<int64_t>(), dloss.ptr<T>(), dlogits.ptr<T>(), rows, c);
    check_launch(kernel::kSoftmaxCrossEntropyGrad);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxCrossEntropy, "cuda", softmax_cross_entropy);
NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxCrossEntropyGrad, "cuda", softmax_cross_entropy_grad);

}  // namespace
}  // namespace needle::cuda
