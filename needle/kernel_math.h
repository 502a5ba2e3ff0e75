// Scalar math shared by the CPU and CUDA kernels (host and device code) for the integer and
// bool dtypes, where C++'s built-in operators are undefined or differ from numpy:
//  - convert<Out>(x): dtype conversion as numpy's astype gives it on x86. Floats truncate
//    toward zero; NaN and out-of-range floats give the "integer indefinite" INT_MIN for
//    int32/int64 and go through int32 for uint8 (so 300.7 -> 44, -1.0 -> 255, NaN -> 0);
//    anything -> bool is x != 0; integers wrap (two's complement).
//  - integer arithmetic that wraps like numpy's instead of overflowing (signed overflow is
//    undefined behaviour in C++): add, subtract, multiply, negate, abs, power.
//  - int_divide: numpy's floor_divide (division by zero gives 0, INT_MIN / -1 wraps); the
//    kernels' integer `divide`, which NDArray never reaches (true division computes in float).
// bool arithmetic is logical: add = or, multiply = and, subtract = xor, maximum = or,
// minimum = and (NDArray rejects bool subtract and negate, as numpy does).
// Floats never come here: their kernels keep their own code (and fast paths).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define NEEDLE_HD __host__ __device__
#else
#define NEEDLE_HD
#endif

namespace needle::kmath {

// Whether T is a floating-point element type (the kernels pick their float or integer code
// with it); a float16 / bfloat16 element type specializes this.
template <class T>
struct is_float_type : std::is_floating_point<T> {};
template <class T>
constexpr bool is_float_v = is_float_type<T>::value;

template <class Out, class In>
NEEDLE_HD inline Out convert(In x) {
  if constexpr (std::is_same_v<Out, bool>) {
    return x != In(0);
  } else if constexpr (std::is_floating_point_v<In> && std::is_same_v<Out, int64_t>) {
    // [-2^63, 2^63) converts exactly; everything else (NaN included) is INT64_MIN.
    return x >= In(-9223372036854775808.0) && x < In(9223372036854775808.0) ? int64_t(x)
                                                                             : INT64_MIN;
  } else if constexpr (std::is_floating_point_v<In> && std::is_same_v<Out, int32_t>) {
    return x > In(-2147483649.0) && x < In(2147483648.0) ? int32_t(x) : INT32_MIN;
  } else if constexpr (std::is_floating_point_v<In> && std::is_same_v<Out, uint8_t>) {
    return uint8_t(uint32_t(convert<int32_t>(x)));
  } else if constexpr (std::is_integral_v<Out> && !std::is_same_v<In, bool> &&
                       std::is_integral_v<In>) {
    using U = std::make_unsigned_t<Out>;
    return Out(U(x));  // modulo 2^bits, as numpy
  } else {
    return static_cast<Out>(x);
  }
}

// The unsigned type integer arithmetic is carried out in (wraps modulo 2^bits).
template <class T>
using Wide = std::make_unsigned_t<T>;

template <class T>
NEEDLE_HD inline T add(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x || y;
  } else {
    return T(Wide<T>(Wide<T>(x) + Wide<T>(y)));
  }
}

template <class T>
NEEDLE_HD inline T subtract(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x != y;
  } else {
    return T(Wide<T>(Wide<T>(x) - Wide<T>(y)));
  }
}

template <class T>
NEEDLE_HD inline T multiply(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x && y;
  } else {
    // uint8 * uint8 promotes to int and cannot overflow it; wider types multiply unsigned.
    using M = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, Wide<T>>;
    return T(Wide<T>(M(Wide<T>(x)) * M(Wide<T>(y))));
  }
}

template <class T>
NEEDLE_HD inline T negate(T x) {
  if constexpr (std::is_same_v<T, bool>) {
    return x;
  } else {
    return subtract(T(0), x);
  }
}

template <class T>
NEEDLE_HD inline T abs(T x) {
  if constexpr (std::is_signed_v<T>) {
    return x < 0 ? negate(x) : x;  // abs(INT_MIN) stays INT_MIN, as numpy
  } else {
    return x;
  }
}

template <class T>
NEEDLE_HD inline T sign(T x) {
  if constexpr (std::is_unsigned_v<T>) {  // bool and uint8
    return T(x != T(0));
  } else {
    return T((x > T(0)) - (x < T(0)));
  }
}

// numpy's floor_divide for integers.
template <class T>
NEEDLE_HD inline T int_divide(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x && y;
  } else {
    if (y == T(0)) return T(0);
    if constexpr (std::is_signed_v<T>) {
      if (y == T(-1)) return negate(x);
      T q = T(x / y);
      if (x % y != 0 && ((x < 0) != (y < 0))) --q;
      return q;
    } else {
      return T(x / y);
    }
  }
}

// x ** y by repeated squaring, wrapping. Negative exponents (NDArray rejects them, as numpy)
// give what their reciprocal truncates to: 1 for x == 1, +-1 for x == -1, else 0.
template <class T>
NEEDLE_HD inline T power(T x, T y) {
  if constexpr (std::is_same_v<T, bool>) {
    return x || !y;
  } else {
    if constexpr (std::is_signed_v<T>) {
      if (y < 0) return x == T(1) ? T(1) : x == T(-1) ? T((y & 1) ? -1 : 1) : T(0);
    }
    T result = T(1), base = x;
    for (Wide<T> e = Wide<T>(y); e; e >>= 1) {
      if (e & 1) result = multiply(result, base);
      base = multiply(base, base);
    }
    return result;
  }
}

template <class T>
NEEDLE_HD inline T maximum(T x, T y) {
  return x > y ? x : y;
}
template <class T>
NEEDLE_HD inline T minimum(T x, T y) {
  return x < y ? x : y;
}

// The smallest and largest value of an integer or bool type (identities of max and min).
template <class T>
NEEDLE_HD constexpr T lowest() {
  if constexpr (std::is_same_v<T, bool>) {
    return false;
  } else if constexpr (std::is_signed_v<T>) {
    return T(Wide<T>(1) << (sizeof(T) * 8 - 1));
  } else {
    return T(0);
  }
}
template <class T>
NEEDLE_HD constexpr T highest() {
  if constexpr (std::is_same_v<T, bool>) {
    return true;
  } else {
    return T(~Wide<T>(lowest<T>()));
  }
}

// A float math function (exp, log, ...) of an integer, should a kernel be asked for one:
// computed in double and converted back. NDArray converts integer inputs to float first.
template <class T, class F>
NEEDLE_HD inline T via_double(F f, T x) {
  return convert<T>(f(double(x)));
}

}  // namespace needle::kmath
