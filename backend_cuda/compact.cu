// Fill and copy on arbitrary strided views: the CUDA side of NDArray's fill, scalar setitem,
// compact (strided gather), setitem (strided scatter) and astype (copy converts between
// any two dtypes as numpy's astype, see needle/kernel_math.h). One thread per element of the shared shape, in a grid-stride loop.
#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"
#include "needle/kernel_math.h"

namespace needle::cuda {
namespace {

// out[...] = value, where ix describes out.
template <class T>
__global__ void fill_kernel(T* out, T value, Indexer<1> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[1];
    offsets_of(ix, i, off);
    out[off[0]] = value;
  }
  // END SOLUTION
}

// out[...] = In(in[...]) converted to Out; ix carries the strides of in (0) and out (1).
template <class In, class Out>
__global__ void copy_kernel(const In* in, Out* out, Indexer<2> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    offsets_of(ix, i, off);
    out[off[1]] = kmath::convert<Out>(in[off[0]]);
  }
  // END SOLUTION
}

}  // namespace

void fill(const View& out, double value) {
  const int64_t n = out.size();
  if (n == 0) return;
  const Indexer<1> ix = make_indexer<1>("fill", out.shape, {&out.strides});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    fill_kernel<T><<<grid_for(n), kThreads>>>(out.ptr<T>(), kmath::convert<T>(value), ix, n);
  });
  check_launch("fill");
}

void copy(const View& in, const View& out) {
  check_same_shape("copy", in, out);
  const int64_t n = out.size();
  if (n == 0) return;
  const Indexer<2> ix = make_indexer<2>("copy", out.shape, {&in.strides, &out.strides});
  dispatch_dtype(in.dtype, [&](auto in_t) {
    using In = decltype(in_t);
    dispatch_dtype(out.dtype, [&](auto out_t) {
      using Out = decltype(out_t);
      copy_kernel<In, Out><<<grid_for(n), kThreads>>>(in.ptr<In>(), out.ptr<Out>(), ix, n);
    });
  });
  check_launch("copy");
}

}  // namespace needle::cuda
