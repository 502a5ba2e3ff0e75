// Fused per-channel kernels for batch normalization (contracts in needle/kernels.h):
// ChannelSums, the sum and the dot product of two arrays per channel in one pass, and
// ChannelAffine, a * scale[c] + shift[c] in one pass. Both read (N, C, inner) contiguous
// arrays with the inner run innermost (NCHW's H x W plane, or a single value for (B, C)),
// and split the work over the CPU team by images. Registered as the "cpu" kernels.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

struct ChannelLayout {
  int64_t outer, channels, inner;
};

ChannelLayout layout_of(const View& a) {
  int64_t inner = 1;
  for (size_t i = 2; i < a.shape.size(); ++i) inner *= a.shape[i];
  return {a.shape[0], a.shape[1], inner};
}

// Adds the sum of a[0, n) to s and of a[i] * b[i] to d, in independent double lanes (one
// AVX register each: vec::Lanes, which GCC compiles to packed adds where the array form of
// two sums stayed scalar). Double, not T: the variance is E[x^2] - E[x]^2, and float
// partial sums of x^2 lose the digits that difference keeps when the mean is large against
// the spread.
template <class T>
void add_sum_and_dot(const T* a, const T* b, int64_t n, double& s, double& d) {
  using Doubles = vec::Lanes<double>;
  constexpr int64_t lanes = vec::kLanesOf<double>;
  typedef T Narrow __attribute__((vector_size(lanes * sizeof(T))));  // as many T as doubles
  Doubles sum = {}, dot = {};
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    Narrow na, nb;
    std::memcpy(&na, a + i, sizeof na);
    std::memcpy(&nb, b + i, sizeof nb);
    const Doubles x = __builtin_convertvector(na, Doubles);
    sum += x;
    dot += x * __builtin_convertvector(nb, Doubles);
  }
  for (; i < n; ++i) {
    s += double(a[i]);
    d += double(a[i]) * double(b[i]);
  }
  s += vec::lane_total<double>(sum);
  d += vec::lane_total<double>(dot);
}

// Runs body(first, last) over ranges of [0, outer) on the CPU team.
template <class Body>
void parallel_outer(const ChannelLayout& l, const Body& body) {
  const int nt = int(std::min<int64_t>(threads_for(l.outer * l.channels * l.inner), l.outer));
  parallel(nt, [&](int64_t t, int64_t team) {
    body(t, part_begin(l.outer, t, team), part_begin(l.outer, t + 1, team));
  });
}

template <class T>
void channel_sums_typed(const View& av, const View& bv, const View& outv) {
  const ChannelLayout l = layout_of(av);
  const T* a = av.ptr<T>();
  const T* b = bv.ptr<T>();
  const int64_t c_n = l.channels;
  // Per thread: the two sums of every channel, added up in thread order at the end.
  const int team_max = get_num_threads();
  std::vector<double> partial(size_t(2 * c_n * team_max), 0.0);
  parallel_outer(l, [&](int64_t t, int64_t n0, int64_t n1) {
    double* sum = partial.data() + 2 * c_n * t;
    double* dot = sum + c_n;
    for (int64_t n = n0; n < n1; ++n) {
      const T* an = a + n * c_n * l.inner;
      const T* bn = b + n * c_n * l.inner;
      if (l.inner == 1) {  // (B, C): channels are the contiguous run
        for (int64_t c = 0; c < c_n; ++c) {
          sum[c] += double(an[c]);
          dot[c] += double(an[c]) * double(bn[c]);
        }
        continue;
      }
      for (int64_t c = 0; c < c_n; ++c) {
        add_sum_and_dot(an + c * l.inner, bn + c * l.inner, l.inner, sum[c], dot[c]);
      }
    }
  });
  double* out = outv.ptr<double>();
  std::fill_n(out, 2 * c_n, 0.0);
  for (int t = 0; t < team_max; ++t)
    for (int64_t k = 0; k < 2 * c_n; ++k) out[k] += partial[size_t(2 * c_n * t + k)];
}

template <class T>
void channel_affine_typed(const View& av, const View& sv, const View& hv, const View& outv) {
  const ChannelLayout l = layout_of(av);
  const T* a = av.ptr<T>();
  const T* scale = sv.ptr<T>();
  const T* shift = hv.ptr<T>();
  T* out = outv.ptr<T>();
  parallel_outer(l, [&](int64_t, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t base = n * l.channels * l.inner;
      if (l.inner == 1) {
        for (int64_t c = 0; c < l.channels; ++c) out[base + c] = a[base + c] * scale[c] + shift[c];
        continue;
      }
      for (int64_t c = 0; c < l.channels; ++c) {
        const T* ap = a + base + c * l.inner;
        T* op = out + base + c * l.inner;
        const T s = scale[c], h = shift[c];
        for (int64_t i = 0; i < l.inner; ++i) op[i] = ap[i] * s + h;
      }
    }
  });
}

void channel_sums(const View& a, const View& b, const View& out) {
  dispatch_floating(a.dtype, kernel::kChannelSums,
                    [&](auto t) { channel_sums_typed<decltype(t)>(a, b, out); });
}

void channel_affine(const View& a, const View& scale, const View& shift, const View& out) {
  dispatch_floating(a.dtype, kernel::kChannelAffine,
                    [&](auto t) { channel_affine_typed<decltype(t)>(a, scale, shift, out); });
}

NEEDLE_REGISTER_KERNEL(kernel::kChannelSums, "cpu", channel_sums);
NEEDLE_REGISTER_KERNEL(kernel::kChannelAffine, "cpu", channel_affine);

}  // namespace

}  // namespace needle::cpu
