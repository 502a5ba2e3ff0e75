// Fused layer-normalization kernels (contracts in needle/kernels.h). Forward: per row, the
// mean, the centred values (written to y), their mean square, then y = centred * rstd * w + b
// in place: three passes over a row that stays in L1, and the row's mean and rstd saved for
// the backward. Backward: per row, one pass for the two row sums (of g = dy * w and of
// g * xhat), one for dx; dw and db accumulate per thread and are added up at the end (the
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
    const T* __restrict__ w_ = w;
    const T* __restrict__ b_ = b;
    for (int64_t r = r0; r < r1; ++r) {
      const T* __restrict__ xr = x + r * d;
      T* __restrict__ yr = y + r * d;
      const T mu = vec::sum(xr, d) / T(d);
      for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] - mu;
      const T rs = T(1) / std::sqrt(vec::dot(yr, yr, d) / T(d) + T(eps));
      for (int64_t i = 0; i < d; ++i) yr[i] = yr[i] * rs * w_[i] + b_[i];
      mean[r] = mu;
      rstd[r] = rs;
    }
  });
}

// One row's dx, and its share of dw and db, from the row's statistics and sums.
template <class T>
void grad_row(const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ w,
              T* __restrict__ dx, T* __restrict__ pdw, T* __restrict__ pdb, int64_t d, T mu,
              T rs, T a, T bm, T shift, T coef) {
  for (int64_t j = 0; j < d; ++j) {
    const T xh = (x[j] - mu) * rs;
    dx[j] = rs * (dy[j] * w[j] - a - xh * bm) + shift - coef * xh;
    pdw[j] += dy[j] * xh;
    pdb[j] += dy[j];
  }
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
  // Per thread: its partial dw and db.
  std::vector<T> scratch(size_t(nt) * size_t(2 * d), T(0));
  const T inv_d = T(1) / T(d);
  if (rows)
    parallel_row_ranges(nt, rows, [&](int64_t r0, int64_t r1, int64_t t) {
      // Local copies of the captured pointers: through the capture (by reference) every
      // store below could change them, and the loops would not vectorize.
      const T* __restrict__ w_ = w;
      T* __restrict__ pdw = scratch.data() + t * 2 * d;
      T* __restrict__ pdb = pdw + d;
      for (int64_t r = r0; r < r1; ++r) {
        const T* __restrict__ xr = x + r * d;
        const T* __restrict__ dyr = dy + r * d;
        T* __restrict__ dxr = dx + r * d;
        const T mu = mean[r], rs = rstd[r];
        // sum(g) and sum(g * (x - mean)) in lanes, g = dy * w; then one pass for the rest.
        constexpr int64_t lanes = vec::kLanesOf<T>;
        vec::Lanes<T> sg = {}, sgx = {};
        int64_t i = 0;
        for (; i + lanes <= d; i += lanes) {
          const vec::Lanes<T> g = vec::load_lanes(dyr + i) * vec::load_lanes(w_ + i);
          sg += g;
          sgx += g * (vec::load_lanes(xr + i) - mu);
        }
        T a = 0, bm = 0;
        for (; i < d; ++i) {
          a += dyr[i] * w_[i];
          bm += dyr[i] * w_[i] * (xr[i] - mu);
        }
        a += vec::lane_total<T>(sg);
        bm += vec::lane_total<T>(sgx);
        a *= inv_d;
        bm *= rs * inv_d;
        const T shift = dmean[r] * inv_d, coef = drstd[r] * rs * rs * inv_d;
        grad_row(xr, dyr, w_, dxr, pdw, pdb, d, mu, rs, a, bm, shift, coef);
      }
    });
  for (int64_t i = 0; i < d; ++i) {
    T sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += scratch[size_t(t * 2 * d + i)];
      sb += scratch[size_t(t * 2 * d + d + i)];
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
