// Fused group-normalization kernels (contracts in needle/kernels.h). A group of sample n is
// one contiguous run of M = (C / G) * S elements of the (N, C, S) input, so each (n, g) is a
// row as in layer_norm.cc, with the weight constant along each channel's S positions.
// Forward: per group, the sum, then the centred sum of squares (two passes over a run that
// stays in cache), then per channel y = (x - mean) * (rstd * w[c]) + b[c]. Backward: per
// channel of the group, one pass for sum(dy) and sum(dy * (x - mean)), which give dw and db's
// shares and the group's two sums of LayerNormGrad's formula, then one pass for dx as
// dy * alpha[c] + (x - mean) * beta + gamma. Sums run in float lanes over chunks and add up
// in double (so float32 statistics keep their digits over long groups); dw and db accumulate
// per thread in double and are added up at the end. Groups split over the CPU team.
// Registered as the "cpu" kernels kernel::kGroupNorm and kGroupNormGrad.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

// Elements per lane-summed chunk: its partial sum joins the double total.
constexpr int64_t kSumChunk = 2048;

// The sum of a[0, n) and of (a[i] - mu)^2, each in lanes of T per chunk, totalled in double.
template <class T>
double sum_of(const T* a, int64_t n) {
  double s = 0;
  for (int64_t c = 0; c < n; c += kSumChunk)
    s += double(vec::sum(a + c, std::min(kSumChunk, n - c)));
  return s;
}

template <class T>
double centred_squares(const T* __restrict__ a, T mu, int64_t n) {
  double s = 0;
  for (int64_t c = 0; c < n; c += kSumChunk) {
    const int64_t m = std::min(kSumChunk, n - c);
    const T* __restrict__ p = a + c;
    T acc[vec::kLanes] = {};
    int64_t i = 0;
    for (; i + vec::kLanes <= m; i += vec::kLanes)
      for (int64_t k = 0; k < vec::kLanes; ++k) {
        const T d = p[i + k] - mu;
        acc[k] += d * d;
      }
    T t = 0;
    for (; i < m; ++i) t += (p[i] - mu) * (p[i] - mu);
    for (int64_t k = 0; k < vec::kLanes; ++k) t += acc[k];
    s += double(t);
  }
  return s;
}

// sum(dy[0, n)) and sum(dy * (x - mu)) over [0, n), as centred_squares.
template <class T>
void dy_sums(const T* __restrict__ dy, const T* __restrict__ x, T mu, int64_t n, double& sdy,
             double& sdyx) {
  sdy = 0;
  sdyx = 0;
  for (int64_t c = 0; c < n; c += kSumChunk) {
    const int64_t m = std::min(kSumChunk, n - c);
    const T* __restrict__ g = dy + c;
    const T* __restrict__ p = x + c;
    T a1[vec::kLanes] = {}, a2[vec::kLanes] = {};
    int64_t i = 0;
    for (; i + vec::kLanes <= m; i += vec::kLanes)
      for (int64_t k = 0; k < vec::kLanes; ++k) {
        a1[k] += g[i + k];
        a2[k] += g[i + k] * (p[i + k] - mu);
      }
    T t1 = 0, t2 = 0;
    for (; i < m; ++i) {
      t1 += g[i];
      t2 += g[i] * (p[i] - mu);
    }
    for (int64_t k = 0; k < vec::kLanes; ++k) {
      t1 += a1[k];
      t2 += a2[k];
    }
    sdy += double(t1);
    sdyx += double(t2);
  }
}

template <class T>
void group_norm_typed(const View& xv, const View& wv, const View& bv, int64_t groups, double eps,
                      const View& yv, const View& mv, const View& rv) {
  const int64_t n = xv.shape[0], c = xv.shape[1], s = xv.shape[2];
  const int64_t cg = c / groups, m = cg * s, rows = n * groups;
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *b = bv.ptr<T>();
  T *y = yv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  if (rows == 0 || m == 0) return;
  parallel_row_ranges(
      threads_rows(rows, m, kParallelGrain / 8), rows, [&](int64_t r0, int64_t r1, int64_t) {
        for (int64_t r = r0; r < r1; ++r) {
          const T* xr = x + r * m;
          T* yr = y + r * m;
          const double mu = sum_of(xr, m) / double(m);
          const T mu_t = T(mu);
          const double rs = 1.0 / std::sqrt(centred_squares(xr, mu_t, m) / double(m) + eps);
          const int64_t c0 = (r % groups) * cg;
          for (int64_t j = 0; j < cg; ++j) {
            const T* __restrict__ xc = xr + j * s;
            T* __restrict__ yc = yr + j * s;
            const T scale = T(rs * double(w[c0 + j])), shift = b[c0 + j];
            for (int64_t i = 0; i < s; ++i) yc[i] = (xc[i] - mu_t) * scale + shift;
          }
          mean[r] = mu_t;
          rstd[r] = T(rs);
        }
      });
}

template <class T>
void group_norm_grad_typed(const View& xv, const View& wv, const View& mv, const View& rv,
                           const View& dyv, const View& dmv, const View& drv, int64_t groups,
                           const View& dxv, const View& dwv, const View& dbv) {
  const int64_t n = xv.shape[0], c = xv.shape[1], s = xv.shape[2];
  const int64_t cg = c / groups, m = cg * s, rows = n * groups;
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  const T *dy = dyv.ptr<T>(), *dmean = dmv.ptr<T>(), *drstd = drv.ptr<T>();
  T *dx = dxv.ptr<T>(), *dw = dwv.ptr<T>(), *db = dbv.ptr<T>();
  const int nt = rows && m ? threads_rows(rows, 2 * m, kParallelGrain / 8) : 1;
  // Per thread: its partial dw and db (C each), in double.
  std::vector<double> scratch(size_t(nt) * size_t(2 * c), 0.0);
  if (rows && m)
    parallel_row_ranges(nt, rows, [&](int64_t r0, int64_t r1, int64_t t) {
      double* pdw = scratch.data() + t * 2 * c;
      double* pdb = pdw + c;
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * m;
        const T* dyr = dy + r * m;
        T* dxr = dx + r * m;
        const T mu = mean[r];
        const double rs = double(rstd[r]), inv_m = 1.0 / double(m);
        const int64_t c0 = (r % groups) * cg;
        double sg = 0, sgx = 0;             // sum(g) and sum(g * (x - mean)), g = dy * w
        for (int64_t j = 0; j < cg; ++j) {  // per channel: sum(dy) and sum(dy * (x - mean))
          double sdy, sdyx;
          dy_sums(dyr + j * s, xr + j * s, mu, s, sdy, sdyx);
          const double wj = double(w[c0 + j]);
          sg += wj * sdy;
          sgx += wj * sdyx;
          pdw[c0 + j] += sdyx * rs;
          pdb[c0 + j] += sdy;
        }
        // dx = rs * (g - a - xhat * bm) + dmean / M - drstd * rs^2 * xhat / M, with
        // a = mean(g) and bm = mean(g * xhat): dy * alpha[c] + (x - mean) * beta + gamma.
        const double a = sg * inv_m, bm = sgx * rs * inv_m;
        const T beta = T(-(rs * rs * bm + double(drstd[r]) * rs * rs * rs * inv_m));
        const T gamma = T(double(dmean[r]) * inv_m - rs * a);
        for (int64_t j = 0; j < cg; ++j) {
          const T* __restrict__ xc = xr + j * s;
          const T* __restrict__ dyc = dyr + j * s;
          T* __restrict__ dxc = dxr + j * s;
          const T alpha = T(rs * double(w[c0 + j]));
          for (int64_t i = 0; i < s; ++i) dxc[i] = dyc[i] * alpha + (xc[i] - mu) * beta + gamma;
        }
      }
    });
  for (int64_t i = 0; i < c; ++i) {
    double sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += scratch[size_t(t * 2 * c + i)];
      sb += scratch[size_t(t * 2 * c + c + i)];
    }
    dw[i] = T(sw);
    db[i] = T(sb);
  }
}

void group_norm(const View& x, const View& w, const View& b, int64_t groups, double eps,
                const View& y, const View& mean, const View& rstd) {
  dispatch_floating(x.dtype, kernel::kGroupNorm, [&](auto t) {
    group_norm_typed<decltype(t)>(x, w, b, groups, eps, y, mean, rstd);
  });
}
void group_norm_grad(const View& x, const View& w, const View& mean, const View& rstd,
                     const View& dy, const View& dmean, const View& drstd, int64_t groups,
                     const View& dx, const View& dw, const View& db) {
  dispatch_floating(x.dtype, kernel::kGroupNormGrad, [&](auto t) {
    group_norm_grad_typed<decltype(t)>(x, w, mean, rstd, dy, dmean, drstd, groups, dx, dw, db);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kGroupNorm, "cpu", group_norm);
NEEDLE_REGISTER_KERNEL(kernel::kGroupNormGrad, "cpu", group_norm_grad);

}  // namespace

}  // namespace needle::cpu
