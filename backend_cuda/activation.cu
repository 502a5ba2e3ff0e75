// Fused SiLU kernels on the GPU (contracts in needle/kernels.h): one grid-stride pass over
// contiguous views, the forward reading x and the backward reading x and dy, with the
// sigmoid recomputed (cuda_common.cuh's sigmoid_of) rather than saved. Registered as the
// "cuda" kernels kernel::kSilu and kSiluGrad.
#include "backend_cuda/cuda_common.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

template <class T>
__global__ void silu_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    y[i] = x[i] * sigmoid_of(x[i]);
}

template <class T>
__global__ void silu_grad_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                 T* __restrict__ dx, int64_t n) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const T s = sigmoid_of(x[i]);
    dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
  }
}

void silu(const View& x, const View& y) {
  dispatch_floating(x.dtype, kernel::kSilu, [&](auto t) {
    using T = decltype(t);
    const int64_t n = x.size();
    if (n == 0) return;
    silu_kernel<T><<<grid_for(n), kThreads>>>(x.ptr<T>(), y.ptr<T>(), n);
    check_launch(kernel::kSilu);
  });
}

void silu_grad(const View& x, const View& dy, const View& dx) {
  dispatch_floating(x.dtype, kernel::kSiluGrad, [&](auto t) {
    using T = decltype(t);
    const int64_t n = x.size();
    if (n == 0) return;
    silu_grad_kernel<T><<<grid_for(n), kThreads>>>(x.ptr<T>(), dy.ptr<T>(), dx.ptr<T>(), n);
    check_launch(kernel::kSiluGrad);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kSilu, "cuda", silu);
NEEDLE_REGISTER_KERNEL(kernel::kSiluGrad, "cuda", silu_grad);

}  // namespace
}  // namespace needle::cuda
