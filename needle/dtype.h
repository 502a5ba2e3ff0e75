// Element types. DType is a small enum; dispatch_dtype turns a runtime DType into a
// compile-time C++ type so kernels are written once as templates. Adding a dtype means
// adding an enum value, its name and size here, and a case in dispatch_dtype.
#pragma once

#include <string>

#include "needle/error.h"

namespace needle {

enum class DType : uint8_t { float32, float64 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
  }
  return "?";
}

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::float32: return 4;
    case DType::float64: return 8;
  }
  return 0;
}

inline DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::float32;
  if (name == "float64") return DType::float64;
  fail<TypeError>("unsupported dtype '", name, "' (supported: float32, float64)");
}

// Calls f(T{}) with T the C++ type of `d`: dispatch_dtype(d, [&](auto t) { using T = decltype(t); ... }).
template <class F>
decltype(auto) dispatch_dtype(DType d, F&& f) {
  switch (d) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
  }
  fail<TypeError>("unsupported dtype code ", int(d));
}

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::float32; }
template <>
constexpr DType dtype_of<double>() { return DType::float64; }

}  // namespace needle
