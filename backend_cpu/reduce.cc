// Reductions (sum, max, min) over the trailing axes of a strided view, for every dtype.
//
// The kept axes and the reduced axes are simplified separately (size-1 axes dropped,
// mergeable neighbours merged, reduced axes walked with positive strides, smallest stride
// innermost). Then one of two plans runs:
//  - per output: each output reduces its own run of elements; contiguous runs use a
//    lane-blocked, pairwise sum (what numpy does: fast and accurate in float32);
//  - row accumulation: when the kept axis is the contiguous one (a sum over axis 0 that
//    NDArray permuted to the end), whole rows are combined into the output row by row,
//    instead of gathering each output's elements with a large stride.
// Both split over OpenMP threads above a size threshold: by outputs, by column blocks, or,
// for a full reduction, by ranges of the reduced elements with per-thread partials.
#include <algorithm>
#include <limits>
#include <vector>

#include "backend_cpu/kernels.h"
#include "backend_cpu/strided.h"
#include "needle/kernel_math.h"

namespace needle::cpu {

namespace {

// Integer sums wrap as numpy's; integer max/min start from the type's extremes (for bool:
// max is "any", min is "all").
template <class T>
struct SumOp {
  static T identity() { return T(0); }
  static T combine(T acc, T x) {
    if constexpr (kmath::is_float_v<T>) {
      return acc + x;
    } else {
      return kmath::add(acc, x);
    }
  }
};
// max and min propagate NaN, as numpy does.
template <class T>
struct MaxOp {
  static T identity() {
    if constexpr (kmath::is_float_v<T>) {
      return -std::numeric_limits<T>::infinity();
    } else {
      return kmath::lowest<T>();
    }
  }
  static T combine(T acc, T x) { return (x > acc || x != x) ? x : acc; }
};
template <class T>
struct MinOp {
  static T identity() {
    if constexpr (kmath::is_float_v<T>) {
      return std::numeric_limits<T>::infinity();
    } else {
      return kmath::highest<T>();
    }
  }
  static T combine(T acc, T x) { return (x < acc || x != x) ? x : acc; }
};

// Reduces the n elements p[0], p[s], ..., p[(n-1)s]: independent lanes (vector registers
// when s == 1) within blocks, pairwise over blocks, so the rounding error of a float32 sum
// grows with log(n), not n, as in numpy.
template <class Op, bool kUnitStride, class T>
T reduce_lanes(const T* p, int64_t n, int64_t s) {
  // BEGIN SOLUTION hw0
  constexpr int64_t kLanes = 128 / sizeof(T);  // four AVX registers of accumulators
  constexpr int64_t kBlock = 64 * kLanes;
  const int64_t st = kUnitStride ? 1 : s;
  if (n > kBlock) {
    const int64_t half = n / 2 / kLanes * kLanes;
    return Op::combine(reduce_lanes<Op, kUnitStride>(p, half, st),
                       reduce_lanes<Op, kUnitStride>(p + half * st, n - half, st));
  }
  T acc[kLanes];
  const int64_t lanes = n >= kLanes ? kLanes : 4;  // short runs: skip the wide set-up
  for (int64_t j = 0; j < lanes; ++j) acc[j] = Op::identity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] = Op::combine(acc[j], p[(i + j) * st]);
  for (; i + 4 <= n; i += 4)  // short runs and tails: still four independent chains
    for (int64_t j = 0; j < 4; ++j) acc[j] = Op::combine(acc[j], p[(i + j) * st]);
  T tail = Op::identity();
  for (; i < n; ++i) tail = Op::combine(tail, p[i * st]);
  for (int64_t w = lanes / 2; w > 0; w /= 2)
    for (int64_t j = 0; j < w; ++j) acc[j] = Op::combine(acc[j], acc[j + w]);
  return Op::combine(acc[0], tail);
  // END SOLUTION
}

template <class Op, class T>
T reduce_run(const T* p, int64_t n, int64_t s) {
  return s == 1 ? reduce_lanes<Op, true>(p, n, 1) : reduce_lanes<Op, false>(p, n, s);
}

// Reduces the elements [begin, end) (row-major over the reduced nest) of the reduction that
// starts at p: runs are reduced on their own, and ranges of many short runs are split in
// halves (pairwise) so that no long chain of sequential additions builds up.
template <class Op, class T>
T reduce_range(const T* p, const LoopNest<1>& red, int64_t begin, int64_t end) {
  constexpr int64_t kLeaf = 128;
  const int64_t s = red.inner_stride(0);
  if (red.ndim() == 1) return reduce_run<Op>(p + begin * s, end - begin, s);
  if (end - begin > std::max(kLeaf, red.shape.back())) {
    const int64_t mid = begin + (end - begin) / 2;
    return Op::combine(reduce_range<Op>(p, red, begin, mid), reduce_range<Op>(p, red, mid, end));
  }
  T acc = Op::identity();
  run_rows(red, begin, end, [&](const std::array<int64_t, 1>& off, int64_t n) {
    acc = Op::combine(acc, reduce_run<Op>(p + off[0], n, s));
  });
  return acc;
}

// Plan "per output": kept nest operands are (out, a).
template <class Op, class T>
void reduce_per_output(const T* a, T* out, const LoopNest<2>& kept, const LoopNest<1>& red) {
  const int64_t nk = kept.size, nr = red.size;
  const int64_t so = kept.inner_stride(0), sa = kept.inner_stride(1);
  auto outputs = [&](int64_t begin, int64_t end) {
    run_rows(kept, begin, end, [&](const std::array<int64_t, 2>& off, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        out[off[0] + i * so] = reduce_range<Op>(a + off[1] + i * sa, red, 0, nr);
    });
  };
  const int nt = threads_for(nk * nr, kParallelGrain);
  if (nt <= 1) {
    outputs(0, nk);
  } else if (nk >= 4 * nt) {
    parallel(nt, [&](int64_t t, int64_t team) {
      outputs(part_begin(nk, t, team), part_begin(nk, t + 1, team));
    });
  } else {
    // Few outputs, long runs: split each run over the threads, combine partials in order.
    std::vector<T> partial(static_cast<size_t>(nt));
    run_rows(kept, 0, nk, [&](const std::array<int64_t, 2>& off, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        const T* p = a + off[1] + i * sa;
        parallel(nt, [&](int64_t t, int64_t team) {
          partial[t] =
              reduce_range<Op>(p, red, part_begin(nr, t, team), part_begin(nr, t + 1, team));
          if (t == 0) {
            for (int64_t k = team; k < nt; ++k) partial[k] = Op::identity();
          }
        });
        T acc = Op::identity();
        for (int k = 0; k < nt; ++k) acc = Op::combine(acc, partial[k]);
        out[off[0] + i * so] = acc;
      }
    });
  }
}

// Plan "row accumulation": the last kept axis is contiguous in both a and out; every reduced
// position contributes a row that is combined into the output row element-wise.
template <class Op, class T>
void reduce_by_rows(const T* a, T* out, const LoopNest<2>& kept, const LoopNest<1>& red) {
  constexpr int64_t kCols = 1024;    // output columns per job: a few KB, stays in L1
  constexpr int64_t kRowGroup = 32;  // rows combined before they meet the output
  const int64_t nd = kept.ndim();
  const int64_t width = kept.shape[nd - 1];
  const int64_t col_blocks = (width + kCols - 1) / kCols;
  const int64_t jobs = kept.size / width * col_blocks;
  const int64_t nr = red.size, rs = red.inner_stride(0);
  const int nt = threads_for(kept.size * nr, kParallelGrain);
  parallel(nt, [&](int64_t t, int64_t team) {
    const int64_t job_end = part_begin(jobs, t + 1, team);
    for (int64_t job = part_begin(jobs, t, team); job < job_end; ++job) {
      int64_t rest = job / col_blocks, o_base = 0, a_base = 0;
      for (int64_t d = nd - 2; d >= 0; --d) {
        const int64_t i = rest % kept.shape[d];
        rest /= kept.shape[d];
        o_base += i * kept.strides[0][d];
        a_base += i * kept.strides[1][d];
      }
      const int64_t c0 = job % col_blocks * kCols, w = std::min(width - c0, kCols);
      T* o = out + o_base + c0;
      const T* src = a + a_base + c0;
      for (int64_t j = 0; j < w; ++j) o[j] = Op::identity();
      // Rows are first combined in groups into `part`, then groups into the output: two short
      // chains of additions instead of one of length nr.
      T part[kCols];
      for (int64_t r0 = 0; r0 < nr; r0 += kRowGroup) {
        for (int64_t j = 0; j < w; ++j) part[j] = Op::identity();
        run_rows(red, r0, std::min(nr, r0 + kRowGroup),
                 [&](const std::array<int64_t, 1>& off, int64_t n) {
                   for (int64_t r = 0; r < n; ++r) {
                     const T* row = src + off[0] + r * rs;
                     for (int64_t j = 0; j < w; ++j) part[j] = Op::combine(part[j], row[j]);
                   }
                 });
        for (int64_t j = 0; j < w; ++j) o[j] = Op::combine(o[j], part[j]);
      }
    }
  });
}

template <class Op, class T>
void reduce_typed(const View& a, const View& out) {
  const size_t k = out.shape.size();
  const Shape kept_shape(a.shape.begin(), a.shape.begin() + k);
  const Strides kept_strides(a.strides.begin(), a.strides.begin() + k);
  Shape red_shape(a.shape.begin() + k, a.shape.end());
  Strides red_strides(a.strides.begin() + k, a.strides.end());
  const T* base = a.ptr<T>();
  T* po = out.ptr<T>();
  // Walk flipped reduced axes forwards: the order of a reduction does not matter.
  int64_t nr = 1;
  for (size_t d = 0; d < red_shape.size(); ++d) {
    nr *= red_shape[d];
    if (red_strides[d] < 0 && red_shape[d] > 0) {
      base += (red_shape[d] - 1) * red_strides[d];
      red_strides[d] = -red_strides[d];
    }
  }
  const auto kept = make_loop_nest<2>(kept_shape, {&out.strides, &kept_strides});
  if (kept.size == 0) return;
  if (nr == 0) {
    fill(out, double(Op::identity()));
    return;
  }
  const auto red = make_loop_nest<1>(red_shape, {&red_strides});
  const bool rows = kept.inner_stride(0) == 1 && kept.inner_stride(1) == 1 &&
                    red.inner_stride(0) != 1 && kept.shape.back() >= 8;
  if (rows) {
    reduce_by_rows<Op>(base, po, kept, red);
  } else {
    reduce_per_output<Op>(base, po, kept, red);
  }
}

}  // namespace

void reduce(ReduceOp op, const View& a, const View& out) {
  dispatch_dtype(a.dtype, [&](auto t) {
    using T = decltype(t);
    switch (op) {
      case ReduceOp::sum:
        return reduce_typed<SumOp<T>, T>(a, out);
      case ReduceOp::max:
        return reduce_typed<MaxOp<T>, T>(a, out);
      case ReduceOp::min:
        return reduce_typed<MinOp<T>, T>(a, out);
    }
    fail<ValueError>("[reduce] unknown op code ", int(op));
  });
}

}  // namespace needle::cpu
