// Integer-array indexing on the GPU: gather (one thread per output element) and its adjoint
// scatter_add. scatter_add uses no atomics: one thread owns each position off the indexed
// axis and walks the indexed axis serially, so repeated indices accumulate without races,
// deterministically, for every dtype (uint8 and bool have no atomicAdd).
#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"
#include "needle/kernel_math.h"

namespace needle::cuda {
namespace {

// out[p] = a[rest(p) + index[p] * a_axis]; ix carries the strides of out (0), index (1) and
// a with its axis stride zeroed (2).
template <class T>
__global__ void gather_kernel(const T* a, const int64_t* index, T* out, int64_t a_axis,
                              Indexer<3> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    offsets_of(ix, i, off);
    out[off[0]] = a[off[2] + index[off[1]] * a_axis];
  }
  // END SOLUTION
}

// For each position off the axis (ix over the other dims: values (0), index (1), out (2)),
// out[. + index[j] * out_axis] += values[j] for j along the axis of length len.
template <class T>
__global__ void scatter_add_kernel(const T* values, const int64_t* index, T* out, int64_t len,
                                   int64_t v_axis, int64_t i_axis, int64_t out_axis,
                                   Indexer<3> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    offsets_of(ix, i, off);
    for (int64_t j = 0; j < len; ++j) {
      T& o = out[off[2] + index[off[1] + j * i_axis] * out_axis];
      if constexpr (kmath::is_float_v<T>) {
        o += values[off[0] + j * v_axis];
      } else {
        o = kmath::add(o, values[off[0] + j * v_axis]);
      }
    }
  }
  // END SOLUTION
}

Strides without_axis(const View& v, int64_t axis) {
  Strides s = v.strides;
  s[size_t(axis)] = 0;
  return s;
}

// Shape and strides with dimension `axis` removed.
template <class T>
std::vector<T> drop(const std::vector<T>& v, int64_t axis) {
  std::vector<T> out(v);
  out.erase(out.begin() + axis);
  return out;
}

}  // namespace

void gather(const View& a, const View& index, int64_t axis, const View& out) {
  const int64_t n = out.size();
  if (n == 0) return;
  const Strides a_rest = without_axis(a, axis);
  const Indexer<3> ix =
      make_indexer<3>("gather", out.shape, {&out.strides, &index.strides, &a_rest});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    gather_kernel<T><<<grid_for(n), kThreads>>>(a.ptr<T>(), index.ptr<int64_t>(), out.ptr<T>(),
                                                a.strides[size_t(axis)], ix, n);
  });
  check_launch("gather");
}

void scatter_add(const View& values, const View& index, int64_t axis, const View& out) {
  if (values.size() == 0) return;
  const Shape rest = drop(values.shape, axis);
  const Strides sv = drop(values.strides, axis), si = drop(index.strides, axis),
                so = drop(out.strides, axis);
  int64_t n = 1;
  for (auto s : rest) n *= s;
  const Indexer<3> ix = make_indexer<3>("scatter_add", rest, {&sv, &si, &so});
  const size_t ax = size_t(axis);
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    scatter_add_kernel<T><<<grid_for(n), kThreads>>>(
        values.ptr<T>(), index.ptr<int64_t>(), out.ptr<T>(), values.shape[ax], values.strides[ax],
        index.strides[ax], out.strides[ax], ix, n);
  });
  check_launch("scatter_add");
}

}  // namespace needle::cuda
