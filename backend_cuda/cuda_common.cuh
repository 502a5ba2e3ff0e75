// Shared plumbing of the CUDA kernels: error checks that turn CUDA failures into
// needle::RuntimeError, launch sizing for grid-stride loops, and the Indexer that carries
// the shape and strides of up to three same-shaped views into a kernel by value. Views are
// coalesced on the host first (size-1 dims dropped, mergeable dims fused), so a contiguous
// view reaches the kernel as one dimension with stride 1 and costs no index division.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "needle/backend.h"

namespace needle::cuda {

// Most dimensions a kernel sees after coalescing.
constexpr int kMaxDims = 8;
// Threads per block of the element-wise kernels; blocks are capped and loops grid-stride.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Throws RuntimeError for a failed CUDA call, after clearing the runtime's last-error slot
// so that a later launch check does not report this error again.
[[noreturn]] inline void throw_cuda_error(const char* op, cudaError_t err) {
  cudaGetLastError();
  fail<RuntimeError>("[cuda] ", op, ": ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
                     ")");
}

#define NEEDLE_CUDA_CHECK(op, expr)                             \
  do {                                                          \
    cudaError_t needle_cuda_err_ = (expr);                      \
    if (needle_cuda_err_ != cudaSuccess) {                      \
      ::needle::cuda::throw_cuda_error((op), needle_cuda_err_); \
    }                                                           \
  } while (0)

// Call right after a kernel launch: reports bad launch configurations.
inline void check_launch(const char* op) {
  NEEDLE_CUDA_CHECK(op, cudaGetLastError());
}

// Blocks for a grid-stride loop over n items (n > 0).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  return unsigned(std::min<int64_t>((n + threads - 1) / threads, kMaxBlocks));
}

// The shape shared by N views and the strides of each, in elements. ndim >= 1 always.
template <int N>
struct Indexer {
  int32_t ndim = 1;
  int64_t shape[kMaxDims] = {1};
  int64_t strides[N][kMaxDims] = {};
};

// Builds the Indexer of N views that share `shape`. Size-1 dimensions are dropped and a
// dimension is fused into the next inner one when every view steps through both as one
// (outer stride == inner stride * inner size), so contiguous views become 1-D.
template <int N>
Indexer<N> make_indexer(const char* op, const Shape& shape,
                        const std::array<const Strides*, N>& strides) {
  Indexer<N> ix;
  std::vector<int64_t> dims;
  std::vector<std::array<int64_t, N>> steps;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) {  // nothing to visit
      ix.shape[0] = 0;
      return ix;
    }
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s;
    for (int k = 0; k < N; ++k) s[k] = (*strides[k])[d];
    if (!dims.empty()) {
      bool fuse = true;
      for (int k = 0; k < N; ++k) fuse = fuse && steps.back()[k] == s[k] * shape[d];
      if (fuse) {
        dims.back() *= shape[d];
        steps.back() = s;
        continue;
      }
    }
    dims.push_back(shape[d]);
    steps.push_back(s);
  }
  if (dims.size() > size_t(kMaxDims)) {
    fail<ValueError>("[cuda] ", op, ": a view of shape ", shape_str(shape), " has ", dims.size(),
                     " non-mergeable dimensions; the CUDA backend supports up to ", kMaxDims);
  }
  if (dims.empty()) return ix;  // a single element
  ix.ndim = int32_t(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    ix.shape[d] = dims[d];
    for (int k = 0; k < N; ++k) ix.strides[k][d] = steps[d][k];
  }
  return ix;
}

// Element offsets, in each of the N views, of the element with row-major linear index i
// (0 <= i < product of shape): peel the coordinates off from the last dimension inwards.
// Device code only (the host builds Indexers and never walks them), so cutting its body in
// the hw3 student version can only affect kernels, whose launches then throw.
template <int N>
__device__ inline void offsets_of(const Indexer<N>& ix, int64_t i, int64_t (&off)[N]) {
  // BEGIN SOLUTION hw3
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = ix.ndim - 1; d > 0; --d) {
    const int64_t coord = i % ix.shape[d];
    i /= ix.shape[d];
    for (int k = 0; k < N; ++k) off[k] += coord * ix.strides[k][d];
  }
  // What is left of i is the coordinate along dimension 0 (no modulo needed).
  for (int k = 0; k < N; ++k) off[k] += i * ix.strides[k][0];
  // END SOLUTION
}

// The sigmoid of the fused kernels (LSTM cell, SiLU), as the element-wise kernels compute it:
// exp of -|x| only, in (0, 1], so it never overflows.
template <class T>
__device__ inline T sigmoid_of(T x) {
  const T e = exp(-fabs(x));
  return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

}  // namespace needle::cuda
