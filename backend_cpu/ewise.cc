// Element-wise kernels: unary ops, binary ops (broadcasting arrives as stride 0) and binary
// ops with a scalar on either side. Each op is a small functor, so the op is chosen once per
// call and the row loops below compile to vector code. The strided loop nest comes from
// strided.h; contiguous rows of the transcendental ops (exp, log, tanh, sigmoid, erf, sqrt)
// go through Eigen's vectorized math or AVX intrinsics, which the compiler cannot derive
// from std::exp. Powers with the common scalar exponents (2, 3, 0.5, -1) become arithmetic;
// other powers call std::pow. Integer and bool dtypes use the wrapping functors of
// needle/kernel_math.h instead (IntUnaryFn / IntBinaryFn), chosen once per call.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <unsupported/Eigen/SpecialFunctions>

#include "backend_cpu/kernels.h"
#include "backend_cpu/strided.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernel_math.h"

#ifdef __AVX__
#include <immintrin.h>
#endif

namespace needle::cpu {

namespace {

// --- The math of each op ---

template <UnaryOp Op>
struct UnaryFn {
  template <class T>
  T operator()(T x) const {
    // BEGIN SOLUTION hw0
    using U = UnaryOp;
    if constexpr (Op == U::negate) {
      return -x;
    } else if constexpr (Op == U::abs) {
      return std::abs(x);
    } else if constexpr (Op == U::sqrt) {
      return std::sqrt(x);
    } else if constexpr (Op == U::exp) {
      return std::exp(x);
    } else if constexpr (Op == U::log) {
      return std::log(x);
    } else if constexpr (Op == U::tanh) {
      return std::tanh(x);
    } else if constexpr (Op == U::sigmoid) {
      // exp of a non-positive number only: no overflow for large |x|.
      const T e = std::exp(-std::abs(x));
      return (x >= 0 ? T(1) : e) / (T(1) + e);
    } else if constexpr (Op == U::erf) {
      return std::erf(x);
    } else {
      static_assert(Op == U::sign);
      // Written as selects of constants, which vectorize; NaN stays NaN.
      const T s = (x > 0 ? T(1) : T(0)) - (x < 0 ? T(1) : T(0));
      return x != x ? x : s;
    }
    // END SOLUTION
  }
};

template <BinaryOp Op>
struct BinaryFn {
  template <class T>
  T operator()(T x, T y) const {
    // BEGIN SOLUTION hw0
    using B = BinaryOp;
    if constexpr (Op == B::add) {
      return x + y;
    } else if constexpr (Op == B::subtract) {
      return x - y;
    } else if constexpr (Op == B::multiply) {
      return x * y;
    } else if constexpr (Op == B::divide) {
      return x / y;
    } else if constexpr (Op == B::power) {
      return std::pow(x, y);
    } else if constexpr (Op == B::maximum) {  // as numpy: a NaN on either side gives NaN
      return (x > y || x != x) ? x : y;
    } else if constexpr (Op == B::minimum) {
      return (x < y || x != x) ? x : y;
    } else if constexpr (Op == B::eq) {
      return x == y ? T(1) : T(0);
    } else if constexpr (Op == B::ne) {
      return x != y ? T(1) : T(0);
    } else if constexpr (Op == B::lt) {
      return x < y ? T(1) : T(0);
    } else if constexpr (Op == B::le) {
      return x <= y ? T(1) : T(0);
    } else if constexpr (Op == B::gt) {
      return x > y ? T(1) : T(0);
    } else {
      static_assert(Op == B::ge);
      return x >= y ? T(1) : T(0);
    }
    // END SOLUTION
  }
};

// The same ops for integer and bool T: wrapping arithmetic, floor division, comparisons
// giving T(1) / T(0); the float-only math (sqrt, exp, ...) via double, converted back.
template <UnaryOp Op>
struct IntUnaryFn {
  template <class T>
  T operator()(T x) const {
    using U = UnaryOp;
    namespace k = kmath;
    if constexpr (Op == U::negate) {
      return k::negate(x);
    } else if constexpr (Op == U::abs) {
      return k::abs(x);
    } else if constexpr (Op == U::sign) {
      return k::sign(x);
    } else {
      return k::via_double([](double v) { return UnaryFn<Op>{}(v); }, x);
    }
  }
};

template <BinaryOp Op>
struct IntBinaryFn {
  template <class T>
  T operator()(T x, T y) const {
    using B = BinaryOp;
    namespace k = kmath;
    if constexpr (Op == B::add) {
      return k::add(x, y);
    } else if constexpr (Op == B::subtract) {
      return k::subtract(x, y);
    } else if constexpr (Op == B::multiply) {
      return k::multiply(x, y);
    } else if constexpr (Op == B::divide) {
      return k::int_divide(x, y);
    } else if constexpr (Op == B::power) {
      return k::power(x, y);
    } else if constexpr (Op == B::maximum) {
      return k::maximum(x, y);
    } else if constexpr (Op == B::minimum) {
      return k::minimum(x, y);
    } else {
      return BinaryFn<Op>{}(x, y);  // comparisons: exact for integers
    }
  }
};

// The functor of an op for element type T.
template <UnaryOp Op, class T>
using UnaryFnFor = std::conditional_t<kmath::is_float_v<T>, UnaryFn<Op>, IntUnaryFn<Op>>;
template <BinaryOp Op, class T>
using BinaryFnFor =
    std::conditional_t<kmath::is_float_v<T>, BinaryFn<Op>, IntBinaryFn<Op>>;

// x ** s for the common scalar exponents, as arithmetic (equal to std::pow within an ulp,
// with the same results for zeros, infinities and NaN).
struct SquareFn {  // x ** 2
  template <class T>
  T operator()(T x, T) const {
    return x * x;
  }
};
struct CubeFn {  // x ** 3
  template <class T>
  T operator()(T x, T) const {
    return x * x * x;
  }
};
struct ReciprocalFn {  // x ** -1
  template <class T>
  T operator()(T x, T) const {
    return T(1) / x;
  }
};
struct SqrtPowFn {  // x ** 0.5: unlike sqrt, (-0) ** 0.5 == +0 and (-inf) ** 0.5 == +inf
  template <class T>
  T operator()(T x, T) const {
    return x == -std::numeric_limits<T>::infinity() ? -x : std::sqrt(x) + T(0);
  }
};

// --- Vectorized math on contiguous rows: Eigen's packet math, or AVX intrinsics ---

using vec::ArrayMap;
using vec::ConstArrayMap;
using vec::kChunk;  // rows go through stack buffers of this many, so `o` may alias an input

// Correctly rounded square root, 8 (4) lanes at a time. (Eigen's float sqrt under
// EIGEN_FAST_MATH is an approximation that turns +inf into NaN; std::sqrt does not vectorize
// because of errno.)
template <class T>
void sqrt_contiguous(const T* a, T* o, int64_t n) {
  int64_t i = 0;
#ifdef __AVX__
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_sqrt_ps(_mm256_loadu_ps(a + i)));
  } else {
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(o + i, _mm256_sqrt_pd(_mm256_loadu_pd(a + i)));
  }
#endif
  for (; i < n; ++i) o[i] = std::sqrt(a[i]);
}

// x ** 0.5 on a contiguous run: the vector sqrt, then the two IEEE differences from sqrt.
template <class T>
void sqrt_pow_contiguous(const T* a, T* o, int64_t n) {
  T r[kChunk];
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t m = std::min(kChunk, n - c);
    sqrt_contiguous(a + c, r, m);
    for (int64_t i = 0; i < m; ++i) {
      const T x = a[c + i], ri = r[i] + T(0);
      o[c + i] = x == -std::numeric_limits<T>::infinity() ? -x : ri;
    }
  }
}

// o[0:n] = op(a[0:n]) with vector math; false when the op has none for T (the plain loop
// is as fast there).
template <UnaryOp Op, class T>
bool unary_vectorized(const T* a, T* o, int64_t n) {
  constexpr bool is_float = std::is_same_v<T, float>;
  if constexpr (!kmath::is_float_v<T>) {
    return false;
  } else if constexpr (Op == UnaryOp::sqrt) {
    sqrt_contiguous(a, o, n);
  } else if constexpr (Op == UnaryOp::exp) {
    vec::exp_into(a, o, n);  // exp(-inf) == 0 (see vecmath.h)
  } else if constexpr (Op == UnaryOp::log) {
    ArrayMap<T>(o, n) = ConstArrayMap<T>(a, n).log();
  } else if constexpr (Op == UnaryOp::tanh && is_float) {
    vec::tanh_into(a, o, n);
  } else if constexpr (Op == UnaryOp::erf && is_float) {
    ArrayMap<T>(o, n) = ConstArrayMap<T>(a, n).erf();
  } else if constexpr (Op == UnaryOp::sigmoid) {
    vec::sigmoid_into(a, o, n);
  } else {
    return false;
  }
  return true;
}

// --- Row loops: n elements, each operand with its own stride (0 = broadcast value) ---

template <class T, class F>
void unary_row(F f, const T* a, int64_t sa, T* o, int64_t so, int64_t n) {
  // BEGIN SOLUTION hw0
  if (sa == 1 && so == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  } else if (sa == 0) {
    const T v = f(a[0]);
    for (int64_t i = 0; i < n; ++i) o[i * so] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
  }
  // END SOLUTION
}

template <class T, class F>
void binary_row(F f, const T* a, int64_t sa, const T* b, int64_t sb, T* o, int64_t so, int64_t n) {
  // BEGIN SOLUTION hw0
  if (so == 1 && sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (so == 1 && sa == 1 && sb == 0) {
    const T y = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], y);
  } else if (so == 1 && sa == 0 && sb == 1) {
    const T x = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(x, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa], b[i * sb]);
  }
  // END SOLUTION
}

// Heavy ops (a libm call per element) go parallel at a smaller size.
constexpr int64_t unary_grain(UnaryOp op) {
  return op == UnaryOp::negate || op == UnaryOp::abs || op == UnaryOp::sign ? kParallelGrain
                                                                            : kParallelGrainHeavy;
}
constexpr int64_t binary_grain(BinaryOp op) {
  return op == BinaryOp::power ? kParallelGrainHeavy : kParallelGrain;
}

// --- Drivers: build the loop nest once, run the row loop of one op over it ---

template <UnaryOp Op, class T>
void unary_typed(const View& a, const View& out) {
  const auto nest = make_loop_nest<2>(out.shape, {&out.strides, &a.strides});
  const T* pa = a.ptr<T>();
  T* po = out.ptr<T>();
  const int64_t so = nest.inner_stride(0), sa = nest.inner_stride(1);
  for_each_row(nest, unary_grain(Op), [&](const std::array<int64_t, 2>& off, int64_t n) {
    if (so == 1 && sa == 1 && unary_vectorized<Op>(pa + off[1], po + off[0], n)) return;
    unary_row(UnaryFnFor<Op, T>{}, pa + off[1], sa, po + off[0], so, n);
  });
}

template <class T, class F>
void binary_typed(F f, const View& a, const View& b, const View& out, int64_t grain) {
  const auto nest = make_loop_nest<3>(out.shape, {&out.strides, &a.strides, &b.strides});
  const T* pa = a.ptr<T>();
  const T* pb = b.ptr<T>();
  T* po = out.ptr<T>();
  const int64_t so = nest.inner_stride(0), sa = nest.inner_stride(1), sb = nest.inner_stride(2);
  for_each_row(nest, grain, [&](const std::array<int64_t, 3>& off, int64_t n) {
    binary_row(f, pa + off[1], sa, pb + off[2], sb, po + off[0], so, n);
  });
}

// A scalar operand is a 0-stride input over a one-element host value.
template <class T, class F>
void binary_scalar_typed(F f, const View& a, T s, const View& out, bool scalar_on_left,
                         int64_t grain) {
  const auto nest = make_loop_nest<2>(out.shape, {&out.strides, &a.strides});
  const T* pa = a.ptr<T>();
  T* po = out.ptr<T>();
  const int64_t so = nest.inner_stride(0), sa = nest.inner_stride(1);
  for_each_row(nest, grain, [&](const std::array<int64_t, 2>& off, int64_t n) {
    if constexpr (std::is_same_v<F, SqrtPowFn>) {
      if (sa == 1 && so == 1) return sqrt_pow_contiguous(pa + off[1], po + off[0], n);
    }
    if (scalar_on_left) {
      binary_row(f, &s, 0, pa + off[1], sa, po + off[0], so, n);
    } else {
      binary_row(f, pa + off[1], sa, &s, 0, po + off[0], so, n);
    }
  });
}

// Calls fn(std::integral_constant<BinaryOp, op>) so the op becomes a template argument.
template <class Fn>
void dispatch_binary_op(BinaryOp op, Fn&& fn) {
  using B = BinaryOp;
  switch (op) {
#define NEEDLE_CASE(name)                     \
  case B::name:                               \
    fn(std::integral_constant<B, B::name>{}); \
    return;
    NEEDLE_CASE(add)
    NEEDLE_CASE(subtract)
    NEEDLE_CASE(multiply)
    NEEDLE_CASE(divide)
    NEEDLE_CASE(power)
    NEEDLE_CASE(maximum)
    NEEDLE_CASE(minimum)
    NEEDLE_CASE(eq)
    NEEDLE_CASE(ne)
    NEEDLE_CASE(lt)
    NEEDLE_CASE(le)
    NEEDLE_CASE(gt)
    NEEDLE_CASE(ge)
#undef NEEDLE_CASE
  }
  fail<ValueError>("[binary] unknown op code ", int(op));
}

template <class Fn>
void dispatch_unary_op(UnaryOp op, Fn&& fn) {
  using U = UnaryOp;
  switch (op) {
#define NEEDLE_CASE(name)                     \
  case U::name:                               \
    fn(std::integral_constant<U, U::name>{}); \
    return;
    NEEDLE_CASE(negate)
    NEEDLE_CASE(abs)
    NEEDLE_CASE(sqrt)
    NEEDLE_CASE(exp)
    NEEDLE_CASE(log)
    NEEDLE_CASE(tanh)
    NEEDLE_CASE(sigmoid)
    NEEDLE_CASE(erf)
    NEEDLE_CASE(sign)
#undef NEEDLE_CASE
  }
  fail<ValueError>("[unary] unknown op code ", int(op));
}

}  // namespace

void unary(UnaryOp op, const View& a, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    dispatch_unary_op(op, [&](auto op_c) { unary_typed<decltype(op_c)::value, T>(a, out); });
  });
}

void binary(BinaryOp op, const View& a, const View& b, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    dispatch_binary_op(op, [&](auto op_c) {
      constexpr BinaryOp kOp = decltype(op_c)::value;
      binary_typed<T>(BinaryFnFor<kOp, T>{}, a, b, out, binary_grain(kOp));
    });
  });
}

void binary_scalar(BinaryOp op, const View& a, double s, const View& out, bool scalar_on_left) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    const T v = kmath::convert<T>(s);
    auto run = [&](auto f, int64_t grain) {
      binary_scalar_typed<T>(f, a, v, out, scalar_on_left, grain);
    };
    if constexpr (kmath::is_float_v<T>) {
      if (op == BinaryOp::power && !scalar_on_left) {
        if (v == T(2)) return run(SquareFn{}, kParallelGrain);
        if (v == T(3)) return run(CubeFn{}, kParallelGrain);
        if (v == T(-1)) return run(ReciprocalFn{}, kParallelGrain);
        if (v == T(0.5)) return run(SqrtPowFn{}, kParallelGrainHeavy);
      }
    }
    dispatch_binary_op(op, [&](auto op_c) {
      constexpr BinaryOp kOp = decltype(op_c)::value;
      run(BinaryFnFor<kOp, T>{}, binary_grain(kOp));
    });
  });
}

}  // namespace needle::cpu
