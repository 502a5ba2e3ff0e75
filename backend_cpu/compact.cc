// Fill and copy on arbitrary strided views: the kernels behind compact(), setitem (array and
// scalar), fill and astype. Both walk the loop nest of strided.h and write one row at a time
// (fill_row, copy_row: the part a student writes in hw0); copy also converts between dtypes
// (numpy's astype results, see needle/kernel_math.h), and copies a transposed layout tile by
// tile so that neither side is walked with a large stride across the whole array.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend_cpu/kernels.h"
#include "backend_cpu/strided.h"
#include "needle/kernel_math.h"

namespace needle::cpu {

namespace {

// One row of a fill: o[0], o[so], ..., o[(n-1)so] = value.
template <class T>
void fill_row(T* o, int64_t so, T value, int64_t n) {
  // BEGIN SOLUTION hw0
  if (so == 1) {
    std::fill_n(o, n, value);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = value;
  }
  // END SOLUTION
}

// One row of a copy: o[i * so] = s[i * si] converted to Out, for i < n. si == 0 repeats
// one value (a broadcast source).
template <class In, class Out>
void copy_row(const In* s, int64_t si, Out* o, int64_t so, int64_t n) {
  // BEGIN SOLUTION hw0
  if (so == 1 && si == 1) {
    if constexpr (std::is_same_v<In, Out>) {
      std::memmove(o, s, size_t(n) * sizeof(Out));  // libc's copy: non-temporal stores
    } else {
      for (int64_t i = 0; i < n; ++i) o[i] = kmath::convert<Out>(s[i]);
    }
  } else if (si == 0) {
    const Out v = kmath::convert<Out>(s[0]);
    for (int64_t i = 0; i < n; ++i) o[i * so] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = kmath::convert<Out>(s[i * si]);
  }
  // END SOLUTION
}

template <class T>
void fill_typed(const View& out, T value) {
  const auto nest = make_loop_nest<1>(out.shape, {&out.strides});
  T* o = out.ptr<T>();
  const int64_t so = nest.inner_stride(0);
  for_each_row(nest, kParallelGrain, [&](const std::array<int64_t, 1>& off, int64_t n) {
    fill_row(o + off[0], so, value, n);
  });
}

// Copies the last two dimensions of the nest as 32x32 tiles: the output is walked along its
// contiguous rows while the input's reads stay inside a few cache lines per tile.
template <class In, class Out>
void copy_transposed(const LoopNest<2>& nest, const In* in, Out* out) {
  constexpr int64_t kTile = 32;
  const int64_t nd = nest.ndim();
  const int64_t rows = nest.shape[nd - 2], cols = nest.shape[nd - 1];
  const int64_t o_r = nest.strides[0][nd - 2], o_c = nest.strides[0][nd - 1];
  const int64_t i_r = nest.strides[1][nd - 2], i_c = nest.strides[1][nd - 1];
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  const int64_t jobs = nest.size / (rows * cols) * row_tiles;
  parallel(threads_for(nest.size, kParallelGrain), [&](int64_t t, int64_t team) {
    const int64_t job_end = part_begin(jobs, t + 1, team);
    for (int64_t job = part_begin(jobs, t, team); job < job_end; ++job) {
      int64_t rest = job / row_tiles, o_base = 0, i_base = 0;
      for (int64_t d = nd - 3; d >= 0; --d) {
        const int64_t i = rest % nest.shape[d];
        rest /= nest.shape[d];
        o_base += i * nest.strides[0][d];
        i_base += i * nest.strides[1][d];
      }
      const int64_t r0 = job % row_tiles * kTile, r1 = std::min(rows, r0 + kTile);
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          Out* o = out + o_base + r * o_r;
          const In* s = in + i_base + r * i_r;
          for (int64_t c = c0; c < c1; ++c) o[c * o_c] = kmath::convert<Out>(s[c * i_c]);
        }
      }
    }
  });
}

template <class In, class Out>
void copy_typed(const View& in, const View& out) {
  const auto nest = make_loop_nest<2>(out.shape, {&out.strides, &in.strides});
  if (nest.size == 0) return;
  const In* src = in.ptr<In>();
  Out* dst = out.ptr<Out>();
  const int64_t nd = nest.ndim();
  const int64_t so = nest.inner_stride(0), si = nest.inner_stride(1);
  // A transpose: the output runs along its rows while the input's unit stride is one
  // dimension further out. Tiling keeps both sides cache friendly.
  if (nd >= 2 && so == 1 && std::llabs(si) > 1 && std::llabs(nest.strides[1][nd - 2]) == 1 &&
      nest.shape[nd - 1] >= 16 && nest.shape[nd - 2] >= 16) {
    copy_transposed(nest, src, dst);
    return;
  }
  for_each_row(nest, kParallelGrain, [&](const std::array<int64_t, 2>& off, int64_t n) {
    copy_row(src + off[1], si, dst + off[0], so, n);
  });
}

}  // namespace

void fill(const View& out, double value) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    fill_typed<T>(out, kmath::convert<T>(value));
  });
}

void copy(const View& in, const View& out) {
  dispatch_dtype(in.dtype, [&](auto ti) {
    dispatch_dtype(out.dtype, [&](auto to) { copy_typed<decltype(ti), decltype(to)>(in, out); });
  });
}

}  // namespace needle::cpu
