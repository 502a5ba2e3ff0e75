// Fused NHWC pooling kernels on the GPU, max and average, forward and backward. The
// forward runs one thread per output, reducing its window in place (no window view is
// materialized). The backward runs one thread per input element, which loops over the
// windows holding it and sums its share of each window's gradient, so no two threads
// write one element and no atomics are needed (the result is also deterministic).
// Registered as the "cuda" kernels kernel::Pool2d / kernel::Pool2dGrad (contracts in
// needle/kernels.h): averages count the zero padding (divide by kernel^2); the max is over
// the window's positions inside the input, so padding never wins, and its gradient goes to
// every entry equal to the window's max, split evenly among them.
#include <algorithm>

#include "backend_cuda/cuda_common.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

// An NHWC view's sizes and element strides (any strides: the kernels index each view
// through its own, so a caller's strided view works as well as a compact one).
struct Nhwc {
  int64_t n, h, w, c;
  int64_t sn, sh, sw, sc;
  __device__ int64_t at(int64_t i, int64_t y, int64_t x, int64_t ch) const {
    return i * sn + y * sh + x * sw + ch * sc;
  }
};

Nhwc nhwc(const View& v) {
  return {v.shape[0],   v.shape[1],   v.shape[2],   v.shape[3],
          v.strides[0], v.strides[1], v.strides[2], v.strides[3]};
}

struct Window {
  int64_t kernel, stride, padding;
};

// The window's geometry; a stride of 0 means stride = kernel, as the pooling ops read it.
Window window_of(const kernel::PoolWindow& pw) {
  return {pw.kernel, pw.stride > 0 ? pw.stride : pw.kernel, pw.padding};
}

// Decomposes a row-major linear index over (n, h, w, c) into its coordinates.
struct Coords {
  int64_t i, y, x, c;
};
__device__ inline Coords coords_of(int64_t e, int64_t h, int64_t w, int64_t c) {
  Coords k;
  k.c = e % c;
  e /= c;
  k.x = e % w;
  e /= w;
  k.y = e % h;
  k.i = e / h;
  return k;
}

// The part of a window [start, start + kernel) that lies inside [0, size).
__device__ inline int64_t clip_lo(int64_t start) {
  return start > 0 ? start : 0;
}
__device__ inline int64_t clip_hi(int64_t start, int64_t kernel, int64_t size) {
  return start + kernel < size ? start + kernel : size;
}

// The running max; NaN propagates, as the max reduction's does.
template <class T>
__device__ inline T max_combine(T m, T v) {
  return (m > v || isnan(m)) ? m : v;
}

// Max of x[i, ., ., ch] over the window starting at (y0, x0), its positions inside the
// input only (-inf when none is); `count` gets how many entries equal the max.
template <class T>
__device__ inline T window_max(const T* x, const Nhwc& xs, const Window& win, int64_t i, int64_t ch,
                               int64_t y0, int64_t x0, int64_t* count) {
  const int64_t ylo = clip_lo(y0), yhi = clip_hi(y0, win.kernel, xs.h);
  const int64_t xlo = clip_lo(x0), xhi = clip_hi(x0, win.kernel, xs.w);
  T m = T(-INFINITY);
  for (int64_t y = ylo; y < yhi; ++y)
    for (int64_t xx = xlo; xx < xhi; ++xx) m = max_combine(m, x[xs.at(i, y, xx, ch)]);
  if (count) {
    int64_t k = 0;
    for (int64_t y = ylo; y < yhi; ++y)
      for (int64_t xx = xlo; xx < xhi; ++xx) k += x[xs.at(i, y, xx, ch)] == m;
    *count = k;
  }
  return m;
}

// One thread per output (i, oy, ox, ch): the max or the mean of its window.
template <class T, bool kMax>
__global__ void pool_forward_kernel(const T* __restrict__ x, Nhwc xs, Window win,
                                    T* __restrict__ out, Nhwc os) {
  const int64_t total = os.n * os.h * os.w * os.c;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const Coords o = coords_of(e, os.h, os.w, os.c);
    const int64_t y0 = o.y * win.stride - win.padding, x0 = o.x * win.stride - win.padding;
    T result;
    if constexpr (kMax) {
      result = window_max(x, xs, win, o.i, o.c, y0, x0, nullptr);
    } else {
      T sum = T(0);
      const int64_t yhi = clip_hi(y0, win.kernel, xs.h), xhi = clip_hi(x0, win.kernel, xs.w);
      for (int64_t y = clip_lo(y0); y < yhi; ++y)
        for (int64_t xx = clip_lo(x0); xx < xhi; ++xx) sum += x[xs.at(o.i, y, xx, o.c)];
      result = sum / T(win.kernel * win.kernel);  // the padding's zeros count
    }
    out[os.at(o.i, o.y, o.x, o.c)] = result;
  }
}

// The output rows [lo, hi] whose windows hold input row y: those with
// o * stride - padding <= y < o * stride - padding + kernel, clipped to [0, n_out).
__device__ inline void windows_holding(int64_t y, const Window& win, int64_t n_out, int64_t* lo,
                                       int64_t* hi) {
  const int64_t first = y + win.padding - win.kernel + 1;  // o * stride >= first
  *lo = first > 0 ? (first + win.stride - 1) / win.stride : 0;
  const int64_t last = (y + win.padding) / win.stride;  // y + padding >= 0
  *hi = last < n_out - 1 ? last : n_out - 1;
}

// One thread per input (i, y, x, ch): the sum over the windows holding it of its share of
// each window's gradient. Average: 1 / kernel^2. Max: 1 / (entries equal to the window's
// max) when it equals the max, else 0, computed as (x == max) / count as the composite
// does, so a window whose max is NaN (count 0) gives NaN to all its entries there too.
template <class T, bool kMax>
__global__ void pool_backward_kernel(const T* __restrict__ x, Nhwc xs,
                                     const T* __restrict__ out_grad, Nhwc gs, Window win,
                                     T* __restrict__ in_grad, Nhwc is) {
  const int64_t total = is.n * is.h * is.w * is.c;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const Coords p = coords_of(e, is.h, is.w, is.c);
    int64_t oy_lo, oy_hi, ox_lo, ox_hi;
    windows_holding(p.y, win, gs.h, &oy_lo, &oy_hi);
    windows_holding(p.x, win, gs.w, &ox_lo, &ox_hi);
    T acc = T(0);
    if constexpr (kMax) {
      const T v = x[xs.at(p.i, p.y, p.x, p.c)];
      for (int64_t oy = oy_lo; oy <= oy_hi; ++oy) {
        for (int64_t ox = ox_lo; ox <= ox_hi; ++ox) {
          int64_t count = 0;
          const T m = window_max(x, xs, win, p.i, p.c, oy * win.stride - win.padding,
                                 ox * win.stride - win.padding, &count);
          acc += T(v == m) / T(count) * out_grad[gs.at(p.i, oy, ox, p.c)];
        }
      }
    } else {
      for (int64_t oy = oy_lo; oy <= oy_hi; ++oy)
        for (int64_t ox = ox_lo; ox <= ox_hi; ++ox) acc += out_grad[gs.at(p.i, oy, ox, p.c)];
      acc /= T(win.kernel * win.kernel);
    }
    in_grad[is.at(p.i, p.y, p.x, p.c)] = acc;
  }
}

template <bool kMax>
void pool2d(const char* op, const View& x, const kernel::PoolWindow& window, const View& out) {
  const int64_t total = out.size();
  if (total == 0) return;
  const Window win = window_of(window);
  dispatch_floating(out.dtype, op, [&](auto t) {
    using T = decltype(t);
    pool_forward_kernel<T, kMax>
        <<<grid_for(total), kThreads>>>(x.ptr<T>(), nhwc(x), win, out.ptr<T>(), nhwc(out));
  });
  check_launch(op);
}

template <bool kMax>
void pool2d_grad(const char* op, const View& x, const View& out_grad,
                 const kernel::PoolWindow& window, const View& in_grad) {
  const int64_t total = in_grad.size();
  if (total == 0) return;
  const Window win = window_of(window);
  // The average never reads x (the contract lets a caller pass any view of x's shape);
  // give it in_grad's geometry so that nothing reads an unused view's strides.
  const View& xv = kMax ? x : in_grad;
  dispatch_floating(in_grad.dtype, op, [&](auto t) {
    using T = decltype(t);
    // A window grid of zero outputs (out_grad empty) holds nothing: the gradient is 0.
    pool_backward_kernel<T, kMax>
        <<<grid_for(total), kThreads>>>(xv.ptr<T>(), nhwc(xv), out_grad.ptr<T>(), nhwc(out_grad),
                                        win, in_grad.ptr<T>(), nhwc(in_grad));
  });
  check_launch(op);
}

void max_pool2d(const View& x, const kernel::PoolWindow& window, const View& out) {
  pool2d<true>(kernel::kMaxPool2d, x, window, out);
}
void avg_pool2d(const View& x, const kernel::PoolWindow& window, const View& out) {
  pool2d<false>(kernel::kAvgPool2d, x, window, out);
}
void max_pool2d_grad(const View& x, const View& out_grad, const kernel::PoolWindow& window,
                     const View& in_grad) {
  pool2d_grad<true>(kernel::kMaxPool2dGrad, x, out_grad, window, in_grad);
}
void avg_pool2d_grad(const View& x, const View& out_grad, const kernel::PoolWindow& window,
                     const View& in_grad) {
  pool2d_grad<false>(kernel::kAvgPool2dGrad, x, out_grad, window, in_grad);
}

NEEDLE_REGISTER_KERNEL(kernel::kMaxPool2d, "cuda", max_pool2d);
NEEDLE_REGISTER_KERNEL(kernel::kAvgPool2d, "cuda", avg_pool2d);
NEEDLE_REGISTER_KERNEL(kernel::kMaxPool2dGrad, "cuda", max_pool2d_grad);
NEEDLE_REGISTER_KERNEL(kernel::kAvgPool2dGrad, "cuda", avg_pool2d_grad);

}  // namespace
}  // namespace needle::cuda
