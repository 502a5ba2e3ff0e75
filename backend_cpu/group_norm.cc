// Fused group-normalization kernels (contracts in needle/kernels.h). A group of sample n is
// one contiguous run of M = (C / G) * S elements of the (N, C, S) input, so each (n, g) is a
// row as in layer_norm.cc, with the weight constant along each channel's S positions.
// Forward: per group, the sum, then the centred sum of squares (two passes over a run that
// stays in cache), then per channel y = (x - mean) * (rstd * w[c]) + b[c]. Backward: per
// channel of the group, one pass for sum(dy) and sum(dy * (x - mean)), which give dw and db's
// shares and the group's two sums of LayerNormGrad's formula, then one pass for dx as
// dy * alpha[c] + (x - mean) * beta + gamma. Sums run in float lanes over chunks and add up
// in double (so float32 statistics keep their digits over long groups); dw and db accumulate
// per thread in double and are added up at the end. Groups split over the CPU team. The
// channels-last pair (N, S, C) runs the same arithmetic along the channel axis, images split
// over the team. Registered as the "cpu" kernels kernel::kGroupNorm, kGroupNormGrad,
// kGroupNormChannelsLast and kGroupNormGradChannelsLast.
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
  constexpr int64_t lanes = vec::kLanesOf<T>;
  double s = 0;
  for (int64_t c = 0; c < n; c += kSumChunk) {
    const int64_t m = std::min(kSumChunk, n - c);
    const T* __restrict__ p = a + c;
    vec::Lanes<T> acc = {};
    int64_t i = 0;
    for (; i + lanes <= m; i += lanes) {
      const vec::Lanes<T> d = vec::load_lanes(p + i) - mu;
      acc += d * d;
    }
    T t = 0;
    for (; i < m; ++i) t += (p[i] - mu) * (p[i] - mu);
    s += double(t + vec::lane_total<T>(acc));
  }
  return s;
}

// sum(dy[0, n)) and sum(dy * (x - mu)) over [0, n), as centred_squares.
template <class T>
void dy_sums(const T* __restrict__ dy, const T* __restrict__ x, T mu, int64_t n, double& sdy,
             double& sdyx) {
  constexpr int64_t lanes = vec::kLanesOf<T>;
  sdy = 0;
  sdyx = 0;
  for (int64_t c = 0; c < n; c += kSumChunk) {
    const int64_t m = std::min(kSumChunk, n - c);
    const T* __restrict__ g = dy + c;
    const T* __restrict__ p = x + c;
    vec::Lanes<T> a1 = {}, a2 = {};
    int64_t i = 0;
    for (; i + lanes <= m; i += lanes) {
      const vec::Lanes<T> gi = vec::load_lanes(g + i);
      a1 += gi;
      a2 += gi * (vec::load_lanes(p + i) - mu);
    }
    T t1 = 0, t2 = 0;
    for (; i < m; ++i) {
      t1 += g[i];
      t2 += g[i] * (p[i] - mu);
    }
    sdy += double(t1 + vec::lane_total<T>(a1));
    sdyx += double(t2 + vec::lane_total<T>(a2));
  }
}

// A group's dx as dy * (rstd * w[c]) + (x - mean) * beta + gamma, from its sums
// sg = sum(dy * w) and sgx = sum(dy * w * (x - mean)) over its M elements: LayerNormGrad's
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) + dmean / M - drstd * rstd^2 * xhat / M.
struct DxCoefficients {
  double beta, gamma;
};
DxCoefficients dx_coefficients(double sg, double sgx, double rs, double dmean, double drstd,
                               double inv_m) {
  const double a = sg * inv_m, bm = sgx * rs * inv_m;
  return {-(rs * rs * bm + drstd * rs * rs * rs * inv_m), dmean * inv_m - rs * a};
}

// dw and db from the per-thread partials: scratch holds nt blocks of [dw (C), db (C)].
template <class T>
void sum_partials(const std::vector<double>& scratch, int nt, int64_t c, T* dw, T* db) {
  for (int64_t k = 0; k < c; ++k) {
    double sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += scratch[size_t(t * 2 * c + k)];
      sb += scratch[size_t(t * 2 * c + c + k)];
    }
    dw[k] = T(sw);
    db[k] = T(sb);
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
        const DxCoefficients dk =
            dx_coefficients(sg, sgx, rs, double(dmean[r]), double(drstd[r]), inv_m);
        const T beta = T(dk.beta), gamma = T(dk.gamma);
        for (int64_t j = 0; j < cg; ++j) {
          const T* __restrict__ xc = xr + j * s;
          const T* __restrict__ dyc = dyr + j * s;
          T* __restrict__ dxc = dxr + j * s;
          const T alpha = T(rs * double(w[c0 + j]));
          for (int64_t i = 0; i < s; ++i) dxc[i] = dyc[i] * alpha + (xc[i] - mu) * beta + gamma;
        }
      }
    });
  sum_partials(scratch, nt, c, dw, db);
}

// --- Channels last: x (N, S, C), one image per task. The channel axis is contiguous, so
// every pass runs along it: per-channel sums over the S positions (in lanes of T per chunk
// of positions, totalled in double), folded into the groups; then per position
// y = x * scale[c] + shift[c] (backward: dx = dy * alpha[c] + x * beta[c] + gamma[c]). ---

constexpr int64_t kPositionChunk = 64;  // positions summed in T before joining the double total

// out[k] = sum over positions p of f(p, k), k < c, for the S positions of one image.
template <class T, class F>
void channel_sums(int64_t s, int64_t c, T* chunk, double* out, const F& f) {
  std::fill_n(out, c, 0.0);
  for (int64_t p0 = 0; p0 < s; p0 += kPositionChunk) {
    std::fill_n(chunk, c, T(0));
    for (int64_t p = p0; p < std::min(s, p0 + kPositionChunk); ++p) f(p, chunk);
    for (int64_t k = 0; k < c; ++k) out[k] += double(chunk[k]);
  }
}

template <class T>
void group_norm_channels_last_typed(const View& xv, const View& wv, const View& bv, int64_t groups,
                                    double eps, const View& yv, const View& mv, const View& rv) {
  const int64_t n = xv.shape[0], s = xv.shape[1], c = xv.shape[2], cg = c / groups;
  const double m = double(cg * s);
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *b = bv.ptr<T>();
  T *y = yv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  if (n == 0 || s == 0 || c == 0) return;
  parallel_row_ranges(
      threads_rows(n, s * c, kParallelGrain / 8), n, [&](int64_t i0, int64_t i1, int64_t) {
        const size_t cs = size_t(c);
        std::vector<T> chunk(cs), mu_c(cs), scale(cs), shift(cs);
        std::vector<double> sums(cs);
        for (int64_t i = i0; i < i1; ++i) {
          const T* __restrict__ xi = x + i * s * c;
          T* __restrict__ yi = y + i * s * c;
          channel_sums<T>(s, c, chunk.data(), sums.data(), [&](int64_t p, T* __restrict__ acc) {
            for (int64_t k = 0; k < c; ++k) acc[k] += xi[p * c + k];
          });
          for (int64_t g = 0; g < groups; ++g) {
            double t = 0;
            for (int64_t k = g * cg; k < (g + 1) * cg; ++k) t += sums[size_t(k)];
            for (int64_t k = g * cg; k < (g + 1) * cg; ++k) mu_c[size_t(k)] = T(t / m);
          }
          const T* __restrict__ mu = mu_c.data();
          channel_sums<T>(s, c, chunk.data(), sums.data(), [&](int64_t p, T* __restrict__ acc) {
            for (int64_t k = 0; k < c; ++k) {
              const T d = xi[p * c + k] - mu[k];
              acc[k] += d * d;
            }
          });
          for (int64_t g = 0; g < groups; ++g) {
            double t = 0;
            for (int64_t k = g * cg; k < (g + 1) * cg; ++k) t += sums[size_t(k)];
            const double rs = 1.0 / std::sqrt(t / m + eps);
            for (int64_t k = g * cg; k < (g + 1) * cg; ++k) {
              scale[size_t(k)] = T(rs * double(w[k]));
              shift[size_t(k)] = b[k] - mu[k] * scale[size_t(k)];
            }
            mean[i * groups + g] = mu[g * cg];
            rstd[i * groups + g] = T(rs);
          }
          const T* __restrict__ sc = scale.data();
          const T* __restrict__ sh = shift.data();
          for (int64_t p = 0; p < s; ++p)
            for (int64_t k = 0; k < c; ++k) yi[p * c + k] = xi[p * c + k] * sc[k] + sh[k];
        }
      });
}

template <class T>
void group_norm_grad_channels_last_typed(const View& xv, const View& wv, const View& mv,
                                         const View& rv, const View& dyv, const View& dmv,
                                         const View& drv, int64_t groups, const View& dxv,
                                         const View& dwv, const View& dbv) {
  const int64_t n = xv.shape[0], s = xv.shape[1], c = xv.shape[2], cg = c / groups;
  const double inv_m = 1.0 / double(cg * s);
  const T *x = xv.ptr<T>(), *w = wv.ptr<T>(), *mean = mv.ptr<T>(), *rstd = rv.ptr<T>();
  const T *dy = dyv.ptr<T>(), *dmean = dmv.ptr<T>(), *drstd = drv.ptr<T>();
  T *dx = dxv.ptr<T>(), *dw = dwv.ptr<T>(), *db = dbv.ptr<T>();
  const int nt = n && s && c ? threads_rows(n, 2 * s * c, kParallelGrain / 8) : 1;
  std::vector<double> scratch(size_t(nt) * size_t(2 * c), 0.0);  // per thread: dw, db
  if (n && s && c)
    parallel_row_ranges(nt, n, [&](int64_t i0, int64_t i1, int64_t t) {
      const size_t cs = size_t(c);
      std::vector<T> chunk(cs), mu_c(cs), alpha(cs), beta(cs), gamma(cs);
      std::vector<double> sdy(cs), sdyx(cs);
      double* pdw = scratch.data() + t * 2 * c;
      double* pdb = pdw + c;
      for (int64_t i = i0; i < i1; ++i) {
        const T* __restrict__ xi = x + i * s * c;
        const T* __restrict__ dyi = dy + i * s * c;
        T* __restrict__ dxi = dx + i * s * c;
        for (int64_t k = 0; k < c; ++k) mu_c[size_t(k)] = mean[i * groups + k / cg];
        const T* __restrict__ mu = mu_c.data();
        channel_sums<T>(s, c, chunk.data(), sdy.data(), [&](int64_t p, T* __restrict__ acc) {
          for (int64_t k = 0; k < c; ++k) acc[k] += dyi[p * c + k];
        });
        channel_sums<T>(s, c, chunk.data(), sdyx.data(), [&](int64_t p, T* __restrict__ acc) {
          for (int64_t k = 0; k < c; ++k) acc[k] += dyi[p * c + k] * (xi[p * c + k] - mu[k]);
        });
        // Per group, the NCHW kernel's coefficients: dx = dy * alpha[c] + (x - mean) * beta +
        // gamma.
        for (int64_t g = 0; g < groups; ++g) {
          const double rs = double(rstd[i * groups + g]);
          double sg = 0, sgx = 0;
          for (int64_t k = g * cg; k < (g + 1) * cg; ++k) {
            sg += double(w[k]) * sdy[size_t(k)];
            sgx += double(w[k]) * sdyx[size_t(k)];
            pdw[k] += sdyx[size_t(k)] * rs;
            pdb[k] += sdy[size_t(k)];
          }
          const DxCoefficients dk = dx_coefficients(sg, sgx, rs, double(dmean[i * groups + g]),
                                                    double(drstd[i * groups + g]), inv_m);
          const double be = dk.beta, ga = dk.gamma;
          for (int64_t k = g * cg; k < (g + 1) * cg; ++k) {
            alpha[size_t(k)] = T(rs * double(w[k]));
            beta[size_t(k)] = T(be);
            gamma[size_t(k)] = T(ga - double(mu[k]) * be);  // the - mean * beta folded in
          }
        }
        const T* __restrict__ al = alpha.data();
        const T* __restrict__ be = beta.data();
        const T* __restrict__ ga = gamma.data();
        for (int64_t p = 0; p < s; ++p)
          for (int64_t k = 0; k < c; ++k)
            dxi[p * c + k] = dyi[p * c + k] * al[k] + xi[p * c + k] * be[k] + ga[k];
      }
    });
  sum_partials(scratch, nt, c, dw, db);
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

void group_norm_channels_last(const View& x, const View& w, const View& b, int64_t groups,
                              double eps, const View& y, const View& mean, const View& rstd) {
  dispatch_floating(x.dtype, kernel::kGroupNormChannelsLast, [&](auto t) {
    group_norm_channels_last_typed<decltype(t)>(x, w, b, groups, eps, y, mean, rstd);
  });
}
void group_norm_grad_channels_last(const View& x, const View& w, const View& mean, const View& rstd,
                                   const View& dy, const View& dmean, const View& drstd,
                                   int64_t groups, const View& dx, const View& dw, const View& db) {
  dispatch_floating(x.dtype, kernel::kGroupNormGradChannelsLast, [&](auto t) {
    group_norm_grad_channels_last_typed<decltype(t)>(x, w, mean, rstd, dy, dmean, drstd, groups, dx,
                                                     dw, db);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kGroupNorm, "cpu", group_norm);
NEEDLE_REGISTER_KERNEL(kernel::kGroupNormGrad, "cpu", group_norm_grad);
NEEDLE_REGISTER_KERNEL(kernel::kGroupNormChannelsLast, "cpu", group_norm_channels_last);
NEEDLE_REGISTER_KERNEL(kernel::kGroupNormGradChannelsLast, "cpu", group_norm_grad_channels_last);

}  // namespace

}  // namespace needle::cpu
