// Overflow-checked size arithmetic: element counts and byte sizes of shapes, and whether a
// strided view stays inside its buffer. Every place that turns a shape into a size uses
// these, so a huge shape is a ValueError naming the op instead of a wrapped-around size.
#pragma once

#include <cstdint>
#include <limits>

#include "needle/error.h"

namespace needle {

// a * b and a + b, or false when the result does not fit in int64.
inline bool mul_fits(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool add_fits(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// The element count of `shape`. ValueError naming `op` when an entry is negative, or when the
// product of the non-zero entries times `itemsize` does not fit in int64 (numpy's "array is
// too big": a (0, 2^62, 2^62) shape is refused too, since its strides cannot be expressed).
inline int64_t checked_numel(const char* op, const Shape& shape, int64_t itemsize = 1) {
  int64_t nonzero = itemsize, numel = 1;
  for (int64_t s : shape) {
    if (s < 0) fail<ValueError>("[", op, "] negative dimension in shape ", shape_str(shape));
    if (s == 0) {
      numel = 0;
    } else if (!mul_fits(nonzero, s, &nonzero)) {
      fail<ValueError>("[", op, "] shape ", shape_str(shape),
                       " is too large: its size does not fit in 64 bits");
    }
  }
  return numel == 0 ? 0 : nonzero / itemsize;
}

// a + b: ValueError naming `op` and `what` on overflow.
inline int64_t checked_add(const char* op, int64_t a, int64_t b, const char* what) {
  int64_t out;
  if (!add_fits(a, b, &out)) fail<ValueError>("[", op, "] ", what, " overflows 64 bits");
  return out;
}

// Whether every element of the view (shape, strides, offset) lies in [0, buffer_size):
// computed without overflow (a reach that does not fit in int64 is outside any buffer).
inline bool view_fits(const Shape& shape, const Strides& strides, int64_t offset,
                      int64_t buffer_size) {
  if (shape.size() != strides.size()) return false;
  for (int64_t s : shape) {
    if (s < 0) return false;
    if (s == 0) return true;  // no element is reachable
  }
  int64_t lo = offset, hi = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t reach;
    if (!mul_fits(shape[i] - 1, strides[i], &reach)) return false;
    if (!add_fits(reach < 0 ? lo : hi, reach, reach < 0 ? &lo : &hi)) return false;
  }
  return lo >= 0 && hi < buffer_size;
}

}  // namespace needle
