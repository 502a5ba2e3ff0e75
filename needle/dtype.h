// Element types. DType is a small enum; dispatch_dtype turns a runtime DType into a
// compile-time C++ type so kernels are written once as templates. Adding a dtype (float16,
// bfloat16, ...) means adding an enum value, its name and size here, a case in
// dispatch_dtype / dtype_of, and its row in the promotion table.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "needle/error.h"

namespace needle {

// Ordered from narrowest to widest kind; promote_types relies on the table, not this order.
enum class DType : uint8_t { bool_, uint8, int32, int64, float32, float64 };

constexpr int kNumDTypes = 6;

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::bool_: return "bool";
    case DType::uint8: return "uint8";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::float32: return "float32";
    case DType::float64: return "float64";
  }
  return "?";
}

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::bool_: return 1;
    case DType::uint8: return 1;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::float32: return 4;
    case DType::float64: return 8;
  }
  return 0;
}

inline DType dtype_from_name(const std::string& name) {
  if (name == "bool") return DType::bool_;
  if (name == "uint8") return DType::uint8;
  if (name == "int32") return DType::int32;
  if (name == "int64") return DType::int64;
  if (name == "float32") return DType::float32;
  if (name == "float64") return DType::float64;
  fail<TypeError>("unsupported dtype '", name,
                  "' (supported: bool, uint8, int32, int64, float32, float64)");
}

constexpr bool is_floating(DType d) { return d == DType::float32 || d == DType::float64; }
constexpr bool is_integral(DType d) { return !is_floating(d); }  // bool counts as integral
constexpr bool is_bool(DType d) { return d == DType::bool_; }

// Calls f(T{}) with T the C++ type of `d`: dispatch_dtype(d, [&](auto t) { using T = decltype(t); ... }).
// Every branch is instantiated, so the body must compile for bool, integers and floats.
template <class F>
decltype(auto) dispatch_dtype(DType d, F&& f) {
  switch (d) {
    case DType::bool_: return f(bool{});
    case DType::uint8: return f(uint8_t{});
    case DType::int32: return f(int32_t{});
    case DType::int64: return f(int64_t{});
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
  }
  fail<TypeError>("unsupported dtype code ", int(d));
}

// Like dispatch_dtype but only for float32/float64 (kernels that exist only for floats:
// GEMM, conv, the Adam update); other dtypes throw TypeError naming `op`.
template <class F>
decltype(auto) dispatch_floating(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
    default: break;
  }
  fail<TypeError>("[", op, "] needs a float32 or float64 array, got ", dtype_name(d));
}

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<bool>() { return DType::bool_; }
template <>
constexpr DType dtype_of<uint8_t>() { return DType::uint8; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::int32; }
template <>
constexpr DType dtype_of<int64_t>() { return DType::int64; }
template <>
constexpr DType dtype_of<float>() { return DType::float32; }
template <>
constexpr DType dtype_of<double>() { return DType::float64; }

// The element type of a host std::vector holding T: std::vector<bool> is bit-packed and has no
// data(), so bool is held as a uint8_t 0 or 1 (the same bytes as bool). Convert with
// host_t<T>(static_cast<T>(x)) so that bool keeps its "x != 0" meaning.
template <class T>
using host_t = std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>;

// numpy's np.promote_types for these six dtypes (numpy 1.24). Note int32 + float32 and
// int64 + float32 give float64 (float32 cannot hold every int32), uint8 + float32 gives float32.
constexpr DType promote_types(DType a, DType b) {
  constexpr DType B = DType::bool_, U8 = DType::uint8, I32 = DType::int32, I64 = DType::int64,
                  F32 = DType::float32, F64 = DType::float64;
  constexpr DType table[kNumDTypes][kNumDTypes] = {
      /*          bool  uint8 int32 int64 f32  f64 */
      /* bool  */ {B, U8, I32, I64, F32, F64},
      /* uint8 */ {U8, U8, I32, I64, F32, F64},
      /* int32 */ {I32, I32, I32, I64, F64, F64},
      /* int64 */ {I64, I64, I64, I64, F64, F64},
      /* f32   */ {F32, F32, F64, F64, F32, F64},
      /* f64   */ {F64, F64, F64, F64, F64, F64},
  };
  return table[int(a)][int(b)];
}

// The float dtype math functions (exp, log, ..., true division) compute in for an input of
// dtype `d`: floats keep theirs; int32/int64 give float64 (numpy); bool/uint8 give float32
// (numpy gives float16, which Needle lacks).
constexpr DType math_result_dtype(DType d) {
  if (is_floating(d)) return d;
  return d == DType::bool_ || d == DType::uint8 ? DType::float32 : DType::float64;
}

}  // namespace needle
