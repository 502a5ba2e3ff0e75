// Iteration over strided views, shared by the fill/copy, element-wise and reduction kernels.
//
// A kernel over N views of one shape (output first) is run as a loop nest: an odometer over
// the outer dimensions and one tight "row" loop over the last. Before that, the nest is
// simplified so the row is as long as possible: size-1 dimensions are dropped, dimensions are
// ordered by the output's strides, and adjacent dimensions that every view walks as one
// (stride[i] == stride[i+1] * shape[i+1]) are merged. A contiguous array thus becomes a
// single row, and a (4096, 1) + (1, 4096) broadcast add becomes rows of 4096 with strides
// (1, 0, 1). Large nests are split over OpenMP threads by element ranges.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <numeric>

#include "backend_cpu/threads.h"
#include "needle/backend.h"

namespace needle::cpu {

// The simplified loop nest of N views. Always at least one dimension; `size` is the
// number of elements (0 when any dimension is 0).
template <size_t N>
struct LoopNest {
  Shape shape;
  std::array<Strides, N> strides;
  int64_t size = 1;

  int64_t ndim() const { return int64_t(shape.size()); }
  int64_t inner_stride(size_t k) const { return strides[k].back(); }
};

// Builds the nest for `shape` walked with each view's strides; views[0] is the output and
// decides the iteration order (its largest strides outermost).
template <size_t N>
LoopNest<N> make_loop_nest(const Shape& shape, const std::array<const Strides*, N>& strides) {
  LoopNest<N> nest;
  nest.size = 1;
  for (auto s : shape) nest.size *= s;
  std::vector<int64_t> dims;   // the dimensions that remain, outermost first
  dims.reserve(shape.size());  // one allocation each: this runs for every kernel call
  nest.shape.reserve(shape.size());
  for (size_t k = 0; k < N; ++k) nest.strides[k].reserve(shape.size());
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] != 1) dims.push_back(int64_t(d));
  // Order by the output's stride magnitude; stable, so a row-major output keeps its order.
  std::stable_sort(dims.begin(), dims.end(), [&](int64_t x, int64_t y) {
    return std::llabs((*strides[0])[x]) > std::llabs((*strides[0])[y]);
  });
  for (int64_t d : dims) {
    bool merge = !nest.shape.empty();
    for (size_t k = 0; k < N && merge; ++k)
      merge = nest.strides[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      nest.shape.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) nest.strides[k].back() = (*strides[k])[d];
    } else {
      nest.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) nest.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (nest.shape.empty()) {  // 0-d, or all dimensions of size 1: one element
    nest.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) nest.strides[k].push_back(0);
  }
  return nest;
}

// Runs row(offsets, n) over the elements [begin, end) of the nest in row-major order, one
// call per (piece of a) row: offsets[k] is the element offset of the row's first element in
// view k, and the row continues with stride nest.inner_stride(k) for n elements.
template <size_t N, class Row>
void run_rows(const LoopNest<N>& nest, int64_t begin, int64_t end, const Row& row) {
  // BEGIN SOLUTION hw0
  const int64_t nd = nest.ndim();
  const int64_t inner = nest.shape[nd - 1];
  // Position of `begin`: the outer multi-index, and the column inside its row (kept on the
  // stack up to 8 dimensions, which nests nearly always are after merging).
  int64_t idx_inline[8] = {};
  std::vector<int64_t> idx_heap(nd > 8 ? size_t(nd) : 0, 0);
  int64_t* idx = nd > 8 ? idx_heap.data() : idx_inline;
  std::array<int64_t, N> off{};
  int64_t rest = begin / inner;
  for (int64_t d = nd - 2; d >= 0; --d) {
    idx[d] = rest % nest.shape[d];
    rest /= nest.shape[d];
    for (size_t k = 0; k < N; ++k) off[k] += idx[d] * nest.strides[k][d];
  }
  int64_t col = begin % inner;
  for (int64_t pos = begin; pos < end;) {
    const int64_t n = std::min(inner - col, end - pos);
    std::array<int64_t, N> start;
    for (size_t k = 0; k < N; ++k) start[k] = off[k] + col * nest.strides[k][nd - 1];
    row(start, n);
    pos += n;
    col = 0;
    // Advance the odometer over the outer dimensions, last one fastest.
    for (int64_t d = nd - 2; d >= 0; --d) {
      for (size_t k = 0; k < N; ++k) off[k] += nest.strides[k][d];
      if (++idx[d] < nest.shape[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= idx[d] * nest.strides[k][d];
      idx[d] = 0;
    }
  }
  // END SOLUTION
}

// Runs the whole nest, split into contiguous element ranges over threads when it holds at
// least `grain` elements. Range boundaries are multiples of 64 elements so threads never
// write the same cache line of a contiguous output.
template <size_t N, class Row>
void for_each_row(const LoopNest<N>& nest, int64_t grain, const Row& row) {
  const int64_t total = nest.size;
  if (total == 0) return;
  parallel(threads_for(total, grain), [&](int64_t t, int64_t team) {
    auto bound = [&](int64_t i) { return i == team ? total : (total * i / team) & ~int64_t(63); };
    const int64_t b = bound(t), e = bound(t + 1);
    if (b < e) run_rows(nest, b, e, row);
  });
}

}  // namespace needle::cpu
