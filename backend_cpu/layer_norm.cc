// Fused layer-normalization kernels (contracts in needle/kernels.h). Forward: per row, the
// mean, the centred values (written to y), their mean square, then y = centred * rstd * w + b
// in place: three passes over a row that stays in L1, and the row's mean and rstd saved for
// the backward. Backward: per row, xhat and g = dy * w into per-thread scratch, two row sums,
// then dx in one pass; dw and db accumulate per thread and are added up at the end (the
// composite runs some fifteen whole-array kernels for the same). Rows split over the CPU
// team. Registered as the "cpu" kernels kernel::kLayerNorm and kLayerNormGrad.
#include <cmath>
#include <vector>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

template <class T>
void layer_norm_typed(const View& xv, const View& wv, const View& bv, double eps, const View& yv,
                      const View& mv, const View& rv) {
  const int64_t d = xv.shape.back(), rows = d ? xv.size() / d : 0;
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *b = bv.ptr<T>();
  T *y = yv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  if (rows == 0) return;
  parallel_row_ranges(threads_rows(rows, d, kParallelGrain / 8), rows,
                      [&](int64_t r0, int64_t r1, int64_t) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      const T mu = vec::sum(xr, d) / T(d);
      for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] - mu;
      const T rs = T(1) / std::sqrt(vec::dot(yr, yr, d) / T(d) + T(eps));
      for (int64_t i = 0; i < d; ++i) yr[i] = yr[i] * rs * w[i] + b[i];
      mean[r] = mu;
      rstd[r] = rs;
    }
  });
}

template <class T>
void layer_norm_grad_typed(const View& xv, const View& wv, const View& mv, const View& rv,
                           const View& dyv, const View& dmv, const View& drv, const View& dxv,
                           const View& dwv, const View& dbv) {
  const int64_t d = xv.shape.back(), rows = d ? xv.size() / d : 0;
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  const T *dy = dyv.ptr<T>(), *dmean = dmv.ptr<T>(), *drstd = drv.ptr<T>();
  T *dx = dxv.ptr<T>(), *dw = dwv.ptr<T>(), *db = dbv.ptr<T>();
  const int nt = rows ? threads_rows(rows, d, kParallelGrain / 8) : 1;
  // Per thread: xhat and g of the current row, then its partial dw and db.
  std::vector<T> scratch(size_t(nt) * size_t(4 * d), T(0));
  const T inv_d = T(1) / T(d);
  if (rows)
    parallel_row_ranges(nt, rows, [&](int64_t r0, int64_t r1, int64_t t) {
      T* xh = scratch.data() + t * 4 * d;
      T* g = xh + d;
      T* pdw = g + d;
      T* pdb = pdw + d;
      for (int64_t r = r0; r < r1; ++r) {
        const T *xr = x + r * d, *dyr = dy + r * d;
        T* dxr = dx + r * d;
        const T mu = mean[r], rs = rstd[r];
        for (int64_t i = 0; i < d; ++i) {
          xh[i] = (xr[i] - mu) * rs;
          g[i] = dyr[i] * w[i];
          pdw[i] += dyr[i] * xh[i];
          pdb[i] += dyr[i];
        }
        const T a = vec::sum(g, d) * inv_d, bm = vec::dot(g, xh, d) * inv_d;
        const T shift = dmean[r] * inv_d, coef = drstd[r] * rs * rs * inv_d;
        for (int64_t i = 0; i < d; ++i)
          dxr[i] = rs * (g[i] - a - xh[i] * bm) + shift - coef * xh[i];
      }
    });
  for (int64_t i = 0; i < d; ++i) {
    T sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += scratch[size_t(t * 4 * d + 2 * d + i)];
      sb += scratch[size_t(t * 4 * d + 3 * d + i)];
    }
    dw[i] = sw;
    db[i] = sb;
  }
}

void layer_norm(const View& x, const View& w, const View& b, double eps, const View& y,
                const View& mean, const View& rstd) {
  dispatch_floating(x.dtype, kernel::kLayerNorm,
                    [&](auto t) { layer_norm_typed<decltype(t)>(x, w, b, eps, y, mean, rstd); });
}
void layer_norm_grad(const View& x, const View& w, const View& mean, const View& rstd,
                     const View& dy, const View& dmean, const View& drstd, const View& dx,
                     const View& dw, const View& db) {
  dispatch_floating(x.dtype, kernel::kLayerNormGrad, [&](auto t) {
    layer_norm_grad_typed<decltype(t)>(x, w, mean, rstd, dy, dmean, drstd, dx, dw, db);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kLayerNorm, "cpu", layer_norm);
NEEDLE_REGISTER_KERNEL(kernel::kLayerNormGrad, "cpu", layer_norm_grad);

}  // namespace

}  // namespace needle::cpu
