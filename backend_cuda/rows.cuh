// Row kernels' plumbing on the GPU: one block of kRowThreads threads per row of a
// contiguous (R, D) array (a grid-stride loop over rows when R exceeds the grid), with
// block-wide sums and maxima through warp shuffles and one shared slot per warp. The
// softmax family, layer norm and softmax cross-entropy (softmax.cu, layer_norm.cu, loss.cu)
// share these, and the row shift of the softmax family (the max raised to the lowest finite
// value, as needle/ops/ops_reduce.h's shift_max) so every kernel shifts a row alike.
#pragma once

#include <cfloat>
#include <cstdint>

#include "backend_cuda/cuda_common.cuh"

namespace needle::cuda {

constexpr int kRowThreads = 256;
constexpr int kWarps = kRowThreads / 32;

// Blocks for a grid-stride loop over `rows` rows (rows > 0).
inline unsigned row_grid(int64_t rows) {
  return unsigned(std::min<int64_t>(rows, kMaxBlocks));
}

template <class T>
struct Limits;
template <>
struct Limits<float> {
  __device__ static float max() { return FLT_MAX; }
};
template <>
struct Limits<double> {
  __device__ static double max() { return DBL_MAX; }
};

// NaN-propagating max (numpy's maximum).
template <class T>
__device__ inline T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// The sum of v over the block, returned to every thread. `shared` holds kWarps values; the
// call ends with a barrier, so consecutive reductions may reuse it.
template <class T>
__device__ inline T block_sum(T v, T* shared) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // an earlier reduction's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T s = 0;
  for (int k = 0; k < kWarps; ++k) s += shared[k];
  __syncthreads();
  return s;
}

// The NaN-propagating max of v over the block, returned to every thread.
template <class T>
__device__ inline T block_max(T v, T* shared) {
  for (int o = 16; o > 0; o /= 2) v = nan_max(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T m = shared[0];
  for (int k = 1; k < kWarps; ++k) m = nan_max(m, shared[k]);
  __syncthreads();
  return m;
}

// The softmax family's shift of row x[0, d): its max, raised to T's lowest finite value.
template <class T>
__device__ inline T block_row_shift(const T* __restrict__ x, int64_t d, T* shared) {
  T m = -Limits<T>::max();
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) m = nan_max(m, x[j]);
  return block_max(m, shared);
}

// The sum of exp(x[0, d) - shift) over the row.
template <class T>
__device__ inline T block_sum_exp(const T* __restrict__ x, T shift, int64_t d, T* shared) {
  T s = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += exp(x[j] - shift);
  return block_sum(s, shared);
}

}  // namespace needle::cuda
