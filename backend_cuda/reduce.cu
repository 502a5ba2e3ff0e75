// Reductions (sum, max, min) over the trailing axes of `a` into `out`. Each output element
// reduces one "row" of n_in elements. Long rows get a block each: the threads stride over
// the row, then combine their partial results with a tree reduction in shared memory.
// Short rows (where most of a block would idle) get a thread each, looping serially.
#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"
#include "needle/kernel_math.h"

namespace needle::cuda {
namespace {

// Threads of the block reduction (a power of two); rows up to this length use one thread.
constexpr int kReduceThreads = 256;
constexpr int64_t kSerialRowMax = 32;

// The value that leaves any element unchanged: 0 for sum, -inf for max, +inf for min.
// Integers start max/min from their extremes (bool: max = any, min = all) and sum wrapping.
template <class T>
__device__ inline T reduce_identity(ReduceOp op) {
  if constexpr (!kmath::is_float_v<T>) {
    return op == ReduceOp::max ? kmath::lowest<T>()
           : op == ReduceOp::min ? kmath::highest<T>()
                                 : T(0);
  } else {
    switch (op) {
      case ReduceOp::sum:
        return T(0);
      case ReduceOp::max:
        return -INFINITY;
      case ReduceOp::min:
        return INFINITY;
    }
    return T(0);
  }
}

// Folds y into the running result x; max/min propagate NaN as numpy does.
template <class T>
__device__ inline T reduce_combine(ReduceOp op, T x, T y) {
  if constexpr (!kmath::is_float_v<T>) {
    return op == ReduceOp::sum   ? kmath::add(x, y)
           : op == ReduceOp::max ? kmath::maximum(x, y)
                                 : kmath::minimum(x, y);
  } else {
    switch (op) {
      case ReduceOp::sum:
        return x + y;
      case ReduceOp::max:
        return (x > y || isnan(x)) ? x : y;
      case ReduceOp::min:
        return (x < y || isnan(x)) ? x : y;
    }
    return x;
  }
}

// One block per row (grid-stride over rows). outer carries the strides of a (0) and out (1)
// over the kept axes; inner carries a's strides over the reduced axes. blockDim.x is a
// power of two, at most kReduceThreads.
template <class T>
__global__ void reduce_block_kernel(ReduceOp op, const T* a, T* out, Indexer<2> outer,
                                    Indexer<1> inner, int64_t n_out, int64_t n_in) {
  // BEGIN SOLUTION hw3
  __shared__ T partial[kReduceThreads];
  const int tid = threadIdx.x;
  for (int64_t row = blockIdx.x; row < n_out; row += gridDim.x) {
    int64_t base[2];
    offsets_of(outer, row, base);
    T acc = reduce_identity<T>(op);
    for (int64_t j = tid; j < n_in; j += blockDim.x) {
      int64_t off[1];
      offsets_of(inner, j, off);
      acc = reduce_combine(op, acc, a[base[0] + off[0]]);
    }
    partial[tid] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
      if (tid < half) partial[tid] = reduce_combine(op, partial[tid], partial[tid + half]);
      __syncthreads();
    }
    if (tid == 0) out[base[1]] = partial[0];
    __syncthreads();  // partial[0] is read before the next row overwrites it
  }
  // END SOLUTION
}

// One thread per row, for short rows; arguments as in reduce_block_kernel.
template <class T>
__global__ void reduce_serial_kernel(ReduceOp op, const T* a, T* out, Indexer<2> outer,
                                     Indexer<1> inner, int64_t n_out, int64_t n_in) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; row < n_out; row += stride) {
    int64_t base[2];
    offsets_of(outer, row, base);
    T acc = reduce_identity<T>(op);
    for (int64_t j = 0; j < n_in; ++j) {
      int64_t off[1];
      offsets_of(inner, j, off);
      acc = reduce_combine(op, acc, a[base[0] + off[0]]);
    }
    out[base[1]] = acc;
  }
  // END SOLUTION
}

}  // namespace

void reduce(ReduceOp op, const View& a, const View& out) {
  const char* name = op_name(op);
  check_same_dtype(name, a, out);
  const size_t kept = out.shape.size();
  if (kept > a.shape.size() || !std::equal(out.shape.begin(), out.shape.end(), a.shape.begin())) {
    fail<ValueError>("[cuda] ", name, ": output shape ", shape_str(out.shape),
                     " is not a leading part of input shape ", shape_str(a.shape));
  }
  const int64_t n_out = out.size();
  if (n_out == 0) return;
  const Shape inner_shape(a.shape.begin() + kept, a.shape.end());
  const Strides outer_strides(a.strides.begin(), a.strides.begin() + kept);
  const Strides inner_strides(a.strides.begin() + kept, a.strides.end());
  int64_t n_in = 1;
  for (auto s : inner_shape) n_in *= s;

  const Indexer<2> outer = make_indexer<2>(name, out.shape, {&outer_strides, &out.strides});
  const Indexer<1> inner = make_indexer<1>(name, inner_shape, {&inner_strides});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    if (n_in <= kSerialRowMax) {
      reduce_serial_kernel<T>
          <<<grid_for(n_out), kThreads>>>(op, a.ptr<T>(), out.ptr<T>(), outer, inner, n_out, n_in);
    } else {
      int threads = 32;
      while (threads < kReduceThreads && threads < n_in) threads *= 2;
      const unsigned blocks = unsigned(std::min<int64_t>(n_out, kMaxBlocks));
      reduce_block_kernel<T>
          <<<blocks, threads>>>(op, a.ptr<T>(), out.ptr<T>(), outer, inner, n_out, n_in);
    }
  });
  check_launch(name);
}

}  // namespace needle::cuda
