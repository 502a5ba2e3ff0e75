// Fused NHWC pooling kernels, max and average, forward and backward: one pass over each
// window with the channels innermost (contiguous, so the per-channel loops vectorize),
// reading padding as absent instead of copying a padded input, and without the
// (N, Ho, Wo, k, k, C) window array the composite builds. Registered as the "cpu" kernels
// kernel::kMaxPool2d, kAvgPool2d, kMaxPool2dGrad and kAvgPool2dGrad (contracts in
// needle/kernels.h; the pooling ops check the operands before calling).
#include <algorithm>
#include <limits>
#include <vector>

#include "backend_cpu/threads.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

struct PoolGeometry {
  int64_t n, h, w, c, ho, wo;
  kernel::PoolWindow win;

  // The input rows (or columns) [lo, hi) that output row (or column) o's window covers.
  void span(int64_t o, int64_t size, int64_t& lo, int64_t& hi) const {
    lo = std::max<int64_t>(o * win.stride - win.padding, 0);
    hi = std::min<int64_t>(o * win.stride - win.padding + win.kernel, size);
  }
};

PoolGeometry geometry(const View& x, const kernel::PoolWindow& win) {
  PoolGeometry g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], 0, 0, win};
  g.ho = (g.h + 2 * win.padding - win.kernel) / win.stride + 1;
  g.wo = (g.w + 2 * win.padding - win.kernel) / win.stride + 1;
  return g;
}

// Runs body(first, last) over ranges of `items` on the CPU team; `per_item` elements of
// work each decide how many threads pay off.
template <class Body>
void parallel_items(int64_t items, int64_t per_item, const Body& body) {
  const int nt = int(std::min<int64_t>(threads_for(items * per_item), items));
  parallel(nt, [&](int64_t t, int64_t team) {
    body(part_begin(items, t, team), part_begin(items, t + 1, team));
  });
}

// Forward: every output pixel's C values reduced over its window, output rows in parallel.
template <class T, bool kMax>
void pool_forward(const View& xv, const kernel::PoolWindow& win, const View& outv) {
  const PoolGeometry g = geometry(xv, win);
  const T* x = xv.ptr<T>();
  T* out = outv.ptr<T>();
  const T inv_area = T(1) / T(win.kernel * win.kernel);
  parallel_items(g.n * g.ho, g.wo * g.c * win.kernel * win.kernel, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t img = r / g.ho, oy = r % g.ho;
      int64_t y0, y1;
      g.span(oy, g.h, y0, y1);
      for (int64_t ox = 0; ox < g.wo; ++ox) {
        int64_t x0, x1;
        g.span(ox, g.w, x0, x1);
        T* o = out + (r * g.wo + ox) * g.c;
        std::fill_n(o, g.c, kMax ? -std::numeric_limits<T>::infinity() : T(0));
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t xx = x0; xx < x1; ++xx) {
            const T* in = x + ((img * g.h + y) * g.w + xx) * g.c;
            for (int64_t c = 0; c < g.c; ++c) o[c] = kMax ? std::max(o[c], in[c]) : o[c] + in[c];
          }
        if (!kMax)
          for (int64_t c = 0; c < g.c; ++c) o[c] *= inv_area;
      }
    }
  });
}

// Backward: windows overlap when stride < kernel, so threads split the images (a window
// never leaves its image) and each adds its windows' shares into its own images.
template <class T, bool kMax>
void pool_backward(const View& xv, const View& gv, const kernel::PoolWindow& win,
                   const View& inv) {
  const PoolGeometry g = geometry(xv, win);
  const T* x = xv.ptr<T>();
  const T* grad = gv.ptr<T>();
  T* in_grad = inv.ptr<T>();
  const T inv_area = T(1) / T(win.kernel * win.kernel);
  const int64_t per_image = g.ho * g.wo * g.c * win.kernel * win.kernel;
  parallel_items(g.n, per_image, [&](int64_t i0, int64_t i1) {
    std::fill(in_grad + i0 * g.h * g.w * g.c, in_grad + i1 * g.h * g.w * g.c, T(0));
    std::vector<T> best(size_t(kMax ? g.c : 0)), share(size_t(kMax ? g.c : 0));
    for (int64_t img = i0; img < i1; ++img)
      for (int64_t oy = 0; oy < g.ho; ++oy) {
        int64_t y0, y1;
        g.span(oy, g.h, y0, y1);
        for (int64_t ox = 0; ox < g.wo; ++ox) {
          int64_t x0, x1;
          g.span(ox, g.w, x0, x1);
          const T* go = grad + ((img * g.ho + oy) * g.wo + ox) * g.c;
          auto at = [&](int64_t y, int64_t xx) { return ((img * g.h + y) * g.w + xx) * g.c; };
          if (!kMax) {
            for (int64_t y = y0; y < y1; ++y)
              for (int64_t xx = x0; xx < x1; ++xx) {
                T* d = in_grad + at(y, xx);
                for (int64_t c = 0; c < g.c; ++c) d[c] += go[c] * inv_area;
              }
            continue;
          }
          // The window's max, then how many entries reach it: ties split the gradient.
          std::fill(best.begin(), best.end(), -std::numeric_limits<T>::infinity());
          std::fill(share.begin(), share.end(), T(0));
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t xx = x0; xx < x1; ++xx) {
              const T* v = x + at(y, xx);
              for (int64_t c = 0; c < g.c; ++c) best[size_t(c)] = std::max(best[size_t(c)], v[c]);
            }
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t xx = x0; xx < x1; ++xx) {
              const T* v = x + at(y, xx);
              for (int64_t c = 0; c < g.c; ++c) share[size_t(c)] += T(v[c] == best[size_t(c)]);
            }
          for (int64_t c = 0; c < g.c; ++c) share[size_t(c)] = go[c] / share[size_t(c)];
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t xx = x0; xx < x1; ++xx) {
              const T* v = x + at(y, xx);
              T* d = in_grad + at(y, xx);
              for (int64_t c = 0; c < g.c; ++c)
                if (v[c] == best[size_t(c)]) d[c] += share[size_t(c)];
            }
        }
      }
  });
}

template <bool kMax>
void pool2d(const View& x, const kernel::PoolWindow& win, const View& out) {
  dispatch_floating(out.dtype, kMax ? kernel::kMaxPool2d : kernel::kAvgPool2d, [&](auto t) {
    pool_forward<decltype(t), kMax>(x, win, out);
  });
}

template <bool kMax>
void pool2d_grad(const View& x, const View& grad, const kernel::PoolWindow& win,
                 const View& in_grad) {
  dispatch_floating(in_grad.dtype, kMax ? kernel::kMaxPool2dGrad : kernel::kAvgPool2dGrad,
                    [&](auto t) { pool_backward<decltype(t), kMax>(x, grad, win, in_grad); });
}

NEEDLE_REGISTER_KERNEL(kernel::kMaxPool2d, "cpu", pool2d<true>);
NEEDLE_REGISTER_KERNEL(kernel::kAvgPool2d, "cpu", pool2d<false>);
NEEDLE_REGISTER_KERNEL(kernel::kMaxPool2dGrad, "cpu", pool2d_grad<true>);
NEEDLE_REGISTER_KERNEL(kernel::kAvgPool2dGrad, "cpu", pool2d_grad<false>);

}  // namespace

}  // namespace needle::cpu
