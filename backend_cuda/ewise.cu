// Element-wise kernels: unary ops, binary ops between two same-shaped views (broadcasting
// arrives as stride 0), and binary ops with a scalar on either side. The op is a runtime
// argument switched on per element (uniform across a warp, so it costs little) to keep the
// number of template instantiations, and so the build time, small: one kernel per dtype.
#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"
#include "needle/kernel_math.h"

namespace needle::cuda {
namespace {

// The math of one unary op. Comparisons and sign produce values of T; sigmoid never
// evaluates exp of a large positive number.
template <class T>
__device__ inline T apply_unary(UnaryOp op, T x) {
  // BEGIN SOLUTION hw3
  switch (op) {
    case UnaryOp::negate:
      return -x;
    case UnaryOp::abs:
      return fabs(x);
    case UnaryOp::sqrt:
      return sqrt(x);
    case UnaryOp::exp:
      return exp(x);
    case UnaryOp::log:
      return log(x);
    case UnaryOp::tanh:
      return tanh(x);
    case UnaryOp::sigmoid: {
      const T e = exp(-fabs(x));  // in (0, 1]: never overflows
      return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    case UnaryOp::erf:
      return erf(x);
    case UnaryOp::sign:
      return x > T(0) ? T(1) : x < T(0) ? T(-1) : x == T(0) ? T(0) : x;
  }
  return x;
  // END SOLUTION
}

// The math of one binary op. maximum/minimum propagate NaN as numpy does.
template <class T>
__device__ inline T apply_binary(BinaryOp op, T x, T y) {
  // BEGIN SOLUTION hw3
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::subtract:
      return x - y;
    case BinaryOp::multiply:
      return x * y;
    case BinaryOp::divide:
      return x / y;
    case BinaryOp::power:
      return pow(x, y);
    case BinaryOp::maximum:
      return (x > y || isnan(x)) ? x : y;
    case BinaryOp::minimum:
      return (x < y || isnan(x)) ? x : y;
    case BinaryOp::eq:
      return x == y ? T(1) : T(0);
    case BinaryOp::ne:
      return x != y ? T(1) : T(0);
    case BinaryOp::lt:
      return x < y ? T(1) : T(0);
    case BinaryOp::le:
      return x <= y ? T(1) : T(0);
    case BinaryOp::gt:
      return x > y ? T(1) : T(0);
    case BinaryOp::ge:
      return x >= y ? T(1) : T(0);
  }
  return x;
  // END SOLUTION
}

// The same ops for integer and bool T (needle/kernel_math.h): wrapping arithmetic, floor
// division, exact comparisons; the float-only math through double, converted back.
template <class T>
__device__ inline T apply_unary_int(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::negate:
      return kmath::negate(x);
    case UnaryOp::abs:
      return kmath::abs(x);
    case UnaryOp::sign:
      return kmath::sign(x);
    default:
      return kmath::convert<T>(apply_unary(op, double(x)));
  }
}
template <class T>
__device__ inline T apply_binary_int(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add:
      return kmath::add(x, y);
    case BinaryOp::subtract:
      return kmath::subtract(x, y);
    case BinaryOp::multiply:
      return kmath::multiply(x, y);
    case BinaryOp::divide:
      return kmath::int_divide(x, y);
    case BinaryOp::power:
      return kmath::power(x, y);
    case BinaryOp::maximum:
      return kmath::maximum(x, y);
    case BinaryOp::minimum:
      return kmath::minimum(x, y);
    case BinaryOp::eq:
      return x == y;
    case BinaryOp::ne:
      return x != y;
    case BinaryOp::lt:
      return x < y;
    case BinaryOp::le:
      return x <= y;
    case BinaryOp::gt:
      return x > y;
    case BinaryOp::ge:
      return x >= y;
  }
  return x;
}

// The op for T, chosen at compile time: the float functions or the integer ones.
template <class T>
__device__ inline T unary_of(UnaryOp op, T x) {
  if constexpr (kmath::is_float_v<T>) {
    return apply_unary(op, x);
  } else {
    return apply_unary_int(op, x);
  }
}
template <class T>
__device__ inline T binary_of(BinaryOp op, T x, T y) {
  if constexpr (kmath::is_float_v<T>) {
    return apply_binary(op, x, y);
  } else {
    return apply_binary_int(op, x, y);
  }
}

// out = op(a); ix carries the strides of a (0) and out (1).
template <class T>
__global__ void unary_kernel(UnaryOp op, const T* a, T* out, Indexer<2> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    offsets_of(ix, i, off);
    out[off[1]] = unary_of(op, a[off[0]]);
  }
  // END SOLUTION
}

// out = op(a, b); ix carries the strides of a (0), b (1) and out (2).
template <class T>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, T* out, Indexer<3> ix,
                              int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    offsets_of(ix, i, off);
    out[off[2]] = binary_of(op, a[off[0]], b[off[1]]);
  }
  // END SOLUTION
}

// out = op(a, s), or op(s, a) when scalar_on_left; ix as in unary_kernel.
template <class T>
__global__ void binary_scalar_kernel(BinaryOp op, const T* a, T s, bool scalar_on_left, T* out,
                                     Indexer<2> ix, int64_t n) {
  // BEGIN SOLUTION hw3
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    offsets_of(ix, i, off);
    const T x = a[off[0]];
    out[off[1]] = scalar_on_left ? binary_of(op, s, x) : binary_of(op, x, s);
  }
  // END SOLUTION
}

}  // namespace

void unary(UnaryOp op, const View& a, const View& out) {
  const char* name = op_name(op);
  check_same_shape(name, a, out);
  check_same_dtype(name, a, out);
  const int64_t n = out.size();
  if (n == 0) return;
  const Indexer<2> ix = make_indexer<2>(name, out.shape, {&a.strides, &out.strides});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    unary_kernel<T><<<grid_for(n), kThreads>>>(op, a.ptr<T>(), out.ptr<T>(), ix, n);
  });
  check_launch(name);
}

void binary(BinaryOp op, const View& a, const View& b, const View& out) {
  const char* name = op_name(op);
  check_same_shape(name, a, out);
  check_same_shape(name, b, out);
  check_same_dtype(name, a, out);
  check_same_dtype(name, b, out);
  const int64_t n = out.size();
  if (n == 0) return;
  const Indexer<3> ix = make_indexer<3>(name, out.shape, {&a.strides, &b.strides, &out.strides});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    binary_kernel<T><<<grid_for(n), kThreads>>>(op, a.ptr<T>(), b.ptr<T>(), out.ptr<T>(), ix, n);
  });
  check_launch(name);
}

void binary_scalar(BinaryOp op, const View& a, double s, const View& out, bool scalar_on_left) {
  const char* name = op_name(op);
  check_same_shape(name, a, out);
  check_same_dtype(name, a, out);
  const int64_t n = out.size();
  if (n == 0) return;
  const Indexer<2> ix = make_indexer<2>(name, out.shape, {&a.strides, &out.strides});
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    binary_scalar_kernel<T><<<grid_for(n), kThreads>>>(op, a.ptr<T>(), kmath::convert<T>(s),
                                                       scalar_on_left, out.ptr<T>(), ix, n);
  });
  check_launch(name);
}

}  // namespace needle::cuda
