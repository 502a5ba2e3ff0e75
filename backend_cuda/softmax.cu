// Fused softmax-family kernels on the GPU (contracts in needle/kernels.h): one block per row
// (backend_cuda/rows.cuh) finds the row's shift and exp-sum with block reductions and writes
// the row in one more pass; the backward passes take one block reduction and one write.
// Registered as the "cuda" kernels kernel::kSoftmax, kLogSoftmax, kSoftmaxGrad and
// kLogSoftmaxGrad.
#include "backend_cuda/rows.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

template <class T, bool Log>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows,
                               int64_t d) {
  __shared__ T shared[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* orow = out + r * d;
    const T m = block_row_shift(xr, d, shared);
    const T s = block_sum_exp(xr, m, d, shared);
    if (Log) {
      const T log_s = log(s);
      for (int64_t j = threadIdx.x; j < d; j += blockDim.x) orow[j] = (xr[j] - m) - log_s;
    } else {
      for (int64_t j = threadIdx.x; j < d; j += blockDim.x) orow[j] = exp(xr[j] - m) / s;
    }
  }
}

template <class T, bool Log>
__global__ void softmax_grad_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                    T* __restrict__ dx, int64_t rows, int64_t d) {
  __shared__ T shared[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *yr = y + r * d, *dyr = dy + r * d;
    T* dxr = dx + r * d;
    T s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += Log ? dyr[j] : dyr[j] * yr[j];
    s = block_sum(s, shared);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
      dxr[j] = Log ? dyr[j] - exp(yr[j]) * s : yr[j] * (dyr[j] - s);
  }
}

// (rows, d) of a view the op shaped as (R, D).
void rows_of(const View& v, int64_t& rows, int64_t& d) {
  d = v.shape.back();
  rows = d ? v.size() / d : 0;
}

template <bool Log>
void softmax_launch(const char* name, const View& x, const View& out) {
  int64_t rows, d;
  rows_of(x, rows, d);
  dispatch_floating(x.dtype, name, [&](auto t) {
    using T = decltype(t);
    if (rows * d == 0) return;
    softmax_kernel<T, Log><<<row_grid(rows), kRowThreads>>>(x.ptr<T>(), out.ptr<T>(), rows, d);
    check_launch(name);
  });
}

template <bool Log>
void softmax_grad_launch(const char* name, const View& y, const View& dy, const View& dx) {
  int64_t rows, d;
  rows_of(y, rows, d);
  dispatch_floating(y.dtype, name, [&](auto t) {
    using T = decltype(t);
    if (rows * d == 0) return;
    softmax_grad_kernel<T, Log>
        <<<row_grid(rows), kRowThreads>>>(y.ptr<T>(), dy.ptr<T>(), dx.ptr<T>(), rows, d);
    check_launch(name);
  });
}

void softmax(const View& x, const View& out) { softmax_launch<false>(kernel::kSoftmax, x, out); }
void logsoftmax(const View& x, const View& out) {
  softmax_launch<true>(kernel::kLogSoftmax, x, out);
}
void softmax_grad(const View& y, const View& dy, const View& dx) {
  softmax_grad_launch<false>(kernel::kSoftmaxGrad, y, dy, dx);
}
void logsoftmax_grad(const View& y, const View& dy, const View& dx) {
  softmax_grad_launch<true>(kernel::kLogSoftmaxGrad, y, dy, dx);
}

NEEDLE_REGISTER_KERNEL(kernel::kSoftmax, "cuda", softmax);
NEEDLE_REGISTER_KERNEL(kernel::kLogSoftmax, "cuda", logsoftmax);
NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxGrad, "cuda", softmax_grad);
NEEDLE_REGISTER_KERNEL(kernel::kLogSoftmaxGrad, "cuda", logsoftmax_grad);

}  // namespace
}  // namespace needle::cuda
