// Error types of the whole library. User mistakes throw a needle::Error subclass whose
// message names the op and the shapes, e.g. "[reshape] cannot reshape (3, 4) into (5,)".
// The Python bindings map each subclass to the matching built-in exception.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace needle {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Bad value or shape (Python ValueError).
struct ValueError : Error {
  using Error::Error;
};
// Index or axis out of range (Python IndexError).
struct IndexError : Error {
  using Error::Error;
};
// Wrong dtype or argument kind (Python TypeError).
struct TypeError : Error {
  using Error::Error;
};
// Device unavailable, device mismatch, internal state (Python RuntimeError).
struct RuntimeError : Error {
  using Error::Error;
};
// An allocation the device cannot satisfy (Python MemoryError).
struct MemoryError : Error {
  using Error::Error;
};
// A homework region that the student has not written yet (Python NotImplementedError).
struct NotImplemented : Error {
  using Error::Error;
};

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;
using Axes = std::vector<int64_t>;

// "(3, 4)", "(5,)", "()" — the Python tuple spelling, so messages read the same in both languages.
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

// Builds a message from any streamable pieces: fail<ValueError>("[op] bad ", shape_str(s)).
template <class E = ValueError, class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw E(os.str());
}

}  // namespace needle
