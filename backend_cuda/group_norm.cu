// Fused group-normalization kernels on the GPU (contracts in needle/kernels.h). A group of
// sample n is one contiguous run of M = (C / G) * S elements, so each (n, g) is a row of
// backend_cuda/rows.cuh: one block per group reduces the mean, then the centred mean square
// (two passes, as the CPU's), and writes y, mean and rstd. Backward: one block per group
// reduces sum(g) and sum(g * xhat) (g = dy * w[c]) and writes dx; then one block per
// channel reduces dw[c] and db[c] over every sample and position of the channel and writes
// them (no atomics, so the sums are deterministic). Sums accumulate in double.
// Registered as the "cuda" kernels kernel::kGroupNorm and kGroupNormGrad.
#include "backend_cuda/rows.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

template <class T>
__global__ void group_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ b, double eps, T* __restrict__ y,
                                  T* __restrict__ mean, T* __restrict__ rstd, int64_t rows,
                                  int64_t groups, int64_t cg, int64_t s) {
  __shared__ double shared[kWarps];
  const int64_t m = cg * s;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * m;
    T* yr = y + r * m;
    const int64_t c0 = (r % groups) * cg;
    double sum = 0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) sum += double(xr[j]);
    const double mu = block_sum(sum, shared) / double(m);
    double q = 0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const double d = double(xr[j]) - mu;
      q += d * d;
    }
    const double rs = 1.0 / sqrt(block_sum(q, shared) / double(m) + eps);
    const T mu_t = T(mu), rs_t = T(rs);
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const int64_t c = c0 + j / s;
      yr[j] = (xr[j] - mu_t) * rs_t * w[c] + b[c];
    }
    if (threadIdx.x == 0) {
      mean[r] = mu_t;
      rstd[r] = rs_t;
    }
  }
}

template <class T>
__global__ void group_norm_dx_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                     const T* __restrict__ mean, const T* __restrict__ rstd,
                                     const T* __restrict__ dy, const T* __restrict__ dmean,
                                     const T* __restrict__ drstd, T* __restrict__ dx, int64_t rows,
                                     int64_t groups, int64_t cg, int64_t s) {
  __shared__ double shared[kWarps];
  const int64_t m = cg * s;
  const double inv_m = 1.0 / double(m);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * m, *dyr = dy + r * m;
    T* dxr = dx + r * m;
    const int64_t c0 = (r % groups) * cg;
    const T mu = mean[r];
    const double rs = double(rstd[r]);
    double sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const double g = double(dyr[j]) * double(w[c0 + j / s]);
      sg += g;
      sgx += g * double(xr[j] - mu);
    }
    const double a = block_sum(sg, shared) * inv_m, bm = block_sum(sgx, shared) * rs * inv_m;
    // dx = dy * rs * w[c] + (x - mean) * beta + gamma (LayerNormGrad's formula regrouped).
    const T beta = T(-(rs * rs * bm + double(drstd[r]) * rs * rs * rs * inv_m));
    const T gamma = T(double(dmean[r]) * inv_m - rs * a);
    const T rs_t = T(rs);
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x)
      dxr[j] = dyr[j] * (rs_t * w[c0 + j / s]) + (xr[j] - mu) * beta + gamma;
  }
}

// dw[c] and db[c]: one block per channel, its threads striding over the channel's N * S
// elements (sample n's run of channel c starts at (n * C + c) * S).
template <class T>
__global__ void group_norm_dwdb_kernel(const T* __restrict__ x, const T* __restrict__ mean,
                                       const T* __restrict__ rstd, const T* __restrict__ dy,
                                       T* __restrict__ dw, T* __restrict__ db, int64_t n, int64_t c,
                                       int64_t groups, int64_t s) {
  __shared__ double shared[kWarps];
  const int64_t cg = c / groups, per_channel = n * s;
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const int64_t g = ch / cg;
    double sw = 0, sb = 0;
    for (int64_t k = threadIdx.x; k < per_channel; k += blockDim.x) {
      const int64_t i = k / s, at = (i * c + ch) * s + k % s, r = i * groups + g;
      const double d = double(dy[at]);
      sw += d * double(x[at] - mean[r]) * double(rstd[r]);
      sb += d;
    }
    sw = block_sum(sw, shared);
    sb = block_sum(sb, shared);
    if (threadIdx.x == 0) {
      dw[ch] = T(sw);
      db[ch] = T(sb);
    }
  }
}

void group_norm(const View& x, const View& w, const View& b, int64_t groups, double eps,
                const View& y, const View& mean, const View& rstd) {
  const int64_t n = x.shape[0], c = x.shape[1], s = x.shape[2], rows = n * groups;
  dispatch_floating(x.dtype, kernel::kGroupNorm, [&](auto t) {
    using T = decltype(t);
    if (rows * c * s == 0) return;
    group_norm_kernel<T><<<row_grid(rows), kRowThreads>>>(x.ptr<T>(), w.ptr<T>(), b.ptr<T>(), eps,
                                                          y.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(),
                                                          rows, groups, c / groups, s);
    check_launch(kernel::kGroupNorm);
  });
}

void group_norm_grad(const View& x, const View& w, const View& mean, const View& rstd,
                     const View& dy, const View& dmean, const View& drstd, int64_t groups,
                     const View& dx, const View& dw, const View& db) {
  const int64_t n = x.shape[0], c = x.shape[1], s = x.shape[2], rows = n * groups;
  dispatch_floating(x.dtype, kernel::kGroupNormGrad, [&](auto t) {
    using T = decltype(t);
    if (c == 0) return;
    if (rows * s == 0) {  // no elements: dw and db are empty sums
      NEEDLE_CUDA_CHECK(kernel::kGroupNormGrad, cudaMemsetAsync(dw.ptr<T>(), 0, sizeof(T) * c));
      NEEDLE_CUDA_CHECK(kernel::kGroupNormGrad, cudaMemsetAsync(db.ptr<T>(), 0, sizeof(T) * c));
      return;
    }
    group_norm_dx_kernel<T><<<row_grid(rows), kRowThreads>>>(
        x.ptr<T>(), w.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), dy.ptr<T>(), dmean.ptr<T>(),
        drstd.ptr<T>(), dx.ptr<T>(), rows, groups, c / groups, s);
    check_launch(kernel::kGroupNormGrad);
    group_norm_dwdb_kernel<T><<<row_grid(c), kRowThreads>>>(x.ptr<T>(), mean.ptr<T>(),
                                                            rstd.ptr<T>(), dy.ptr<T>(), dw.ptr<T>(),
                                                            db.ptr<T>(), n, c, groups, s);
    check_launch(kernel::kGroupNormGrad);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kGroupNorm, "cuda", group_norm);
NEEDLE_REGISTER_KERNEL(kernel::kGroupNormGrad, "cuda", group_norm_grad);

}  // namespace
}  // namespace needle::cuda
