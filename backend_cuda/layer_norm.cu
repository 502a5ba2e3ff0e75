// Fused layer-normalization kernels on the GPU (contracts in needle/kernels.h). Forward: one
// block per row (backend_cuda/rows.cuh) reduces the mean, then the centred mean square (two
// passes, as the CPU's), and writes y, mean and rstd. Backward: one block per row reduces
// sum(g) and sum(g * xhat) and writes dx; dw and db are column sums over the rows, one
// thread per column of a slab of rows, added into zeroed outputs atomically.
// Registered as the "cuda" kernels kernel::kLayerNorm and kLayerNormGrad.
#include "backend_cuda/rows.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

template <class T>
__global__ void layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ b, T eps, T* __restrict__ y,
                                  T* __restrict__ mean, T* __restrict__ rstd, int64_t rows,
                                  int64_t d) {
  __shared__ T shared[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    T s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
    const T mu = block_sum(s, shared) / T(d);
    T q = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) q += (xr[j] - mu) * (xr[j] - mu);
    const T rs = T(1) / sqrt(block_sum(q, shared) / T(d) + eps);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) yr[j] = (xr[j] - mu) * rs * w[j] + b[j];
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

template <class T>
__global__ void layer_norm_dx_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                     const T* __restrict__ mean, const T* __restrict__ rstd,
                                     const T* __restrict__ dy, const T* __restrict__ dmean,
                                     const T* __restrict__ drstd, T* __restrict__ dx, int64_t rows,
                                     int64_t d) {
  __shared__ T shared[kWarps];
  const T inv_d = T(1) / T(d);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * d, *dyr = dy + r * d;
    T* dxr = dx + r * d;
    const T mu = mean[r], rs = rstd[r];
    T sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const T g = dyr[j] * w[j];
      sg += g;
      sgx += g * (xr[j] - mu) * rs;
    }
    const T a = block_sum(sg, shared) * inv_d, bm = block_sum(sgx, shared) * inv_d;
    const T shift = dmean[r] * inv_d, coef = drstd[r] * rs * rs * inv_d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const T xh = (xr[j] - mu) * rs;
      dxr[j] = rs * (dyr[j] * w[j] - a - xh * bm) + shift - coef * xh;
    }
  }
}

// Rows per slab of the column sums: each thread adds this many rows of its column, then one
// atomic add per slab.
constexpr int64_t kSlabRows = 64;

template <class T>
__global__ void layer_norm_dwdb_kernel(const T* __restrict__ x, const T* __restrict__ mean,
                                       const T* __restrict__ rstd, const T* __restrict__ dy,
                                       T* __restrict__ dw, T* __restrict__ db, int64_t rows,
                                       int64_t d) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  for (int64_t r0 = int64_t(blockIdx.y) * kSlabRows; r0 < rows;
       r0 += int64_t(gridDim.y) * kSlabRows) {
    const int64_t r1 = min(rows, r0 + kSlabRows);
    T sw = 0, sb = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const T g = dy[r * d + j];
      sw += g * (x[r * d + j] - mean[r]) * rstd[r];
      sb += g;
    }
    atomicAdd(dw + j, sw);
    atomicAdd(db + j, sb);
  }
}

void layer_norm(const View& x, const View& w, const View& b, double eps, const View& y,
                const View& mean, const View& rstd) {
  const int64_t d = x.shape.back(), rows = d ? x.size() / d : 0;
  dispatch_floating(x.dtype, kernel::kLayerNorm, [&](auto t) {
    using T = decltype(t);
    if (rows * d == 0) return;
    layer_norm_kernel<T><<<row_grid(rows), kRowThreads>>>(x.ptr<T>(), w.ptr<T>(), b.ptr<T>(),
                                                          T(eps), y.ptr<T>(), mean.ptr<T>(),
                                                          rstd.ptr<T>(), rows, d);
    check_launch(kernel::kLayerNorm);
  });
}

void layer_norm_grad(const View& x, const View& w, const View& mean, const View& rstd,
                     const View& dy, const View& dmean, const View& drstd, const View& dx,
                     const View& dw, const View& db) {
  const int64_t d = x.shape.back(), rows = d ? x.size() / d : 0;
  dispatch_floating(x.dtype, kernel::kLayerNormGrad, [&](auto t) {
    using T = decltype(t);
    if (d == 0) return;
    NEEDLE_CUDA_CHECK(kernel::kLayerNormGrad, cudaMemsetAsync(dw.ptr<T>(), 0, sizeof(T) * d));
    NEEDLE_CUDA_CHECK(kernel::kLayerNormGrad, cudaMemsetAsync(db.ptr<T>(), 0, sizeof(T) * d));
    if (rows == 0) return;
    layer_norm_dx_kernel<T><<<row_grid(rows), kRowThreads>>>(
        x.ptr<T>(), w.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), dy.ptr<T>(), dmean.ptr<T>(),
        drstd.ptr<T>(), dx.ptr<T>(), rows, d);
    check_launch(kernel::kLayerNormGrad);
    const dim3 grid(unsigned((d + kRowThreads - 1) / kRowThreads),
                    unsigned(std::min<int64_t>((rows + kSlabRows - 1) / kSlabRows, 1024)));
    layer_norm_dwdb_kernel<T><<<grid, kRowThreads>>>(x.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(),
                                                     dy.ptr<T>(), dw.ptr<T>(), db.ptr<T>(), rows,
                                                     d);
    check_launch(kernel::kLayerNormGrad);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kLayerNorm, "cuda", layer_norm);
NEEDLE_REGISTER_KERNEL(kernel::kLayerNormGrad, "cuda", layer_norm_grad);

}  // namespace
}  // namespace needle::cuda
