// The test oracle: an obviously correct, slow Backend. Every kernel visits each element by
// its multi-index (an odometer over the shape), reads it as double, computes in double and
// stores the rounded result. No fast paths, no threads, no cleverness: if a real backend
// disagrees with this one, the real backend is wrong. It is not registered; tests reach it
// through reference_backend().
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "needle/backend.h"
#include "needle/kernel_math.h"

namespace needle::testing {

// Calls fn(idx) for every multi-index of `shape` in row-major order (once for a 0-d shape,
// never for an empty one).
template <class Fn>
void for_each_index(const Shape& shape, Fn&& fn) {
  for (auto s : shape)
    if (s == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  while (true) {
    fn(idx);
    int64_t d = int64_t(shape.size()) - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// Element offset of a multi-index in a view (relative to view.ptr(), i.e. after its offset).
inline int64_t element_offset(const View& v, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * v.strides[d];
  return off;
}

inline double load(const View& v, const std::vector<int64_t>& idx) {
  const int64_t off = element_offset(v, idx);
  return dispatch_dtype(v.dtype, [&](auto t) { return double(v.ptr<decltype(t)>()[off]); });
}

inline void store(const View& v, const std::vector<int64_t>& idx, double x) {
  const int64_t off = element_offset(v, idx);
  dispatch_dtype(v.dtype, [&](auto t) {
    using T = decltype(t);
    v.ptr<T>()[off] = kmath::convert<T>(x);  // numpy's astype of the double result
  });
}

inline double reference_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::negate:
      return -x;
    case UnaryOp::abs:
      return std::fabs(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::sigmoid:
      return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
    case UnaryOp::erf:
      return std::erf(x);
    case UnaryOp::sign:
      return x > 0 ? 1.0 : x < 0 ? -1.0 : x == 0 ? 0.0 : x;
  }
  return std::nan("");
}

// `integral`: the operands are of an integer or bool dtype, whose kernels floor-divide (0
// for a zero divisor); every other op gives the same integer once rounded back by store().
inline double reference_binary(BinaryOp op, double x, double y, bool integral = false) {
  if (integral && op == BinaryOp::divide) return y == 0 ? 0 : std::floor(x / y);
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
      return std::pow(x, y);
    case BinaryOp::maximum:
      return std::isnan(x) || std::isnan(y) ? std::nan("") : std::max(x, y);
    case BinaryOp::minimum:
      return std::isnan(x) || std::isnan(y) ? std::nan("") : std::min(x, y);
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
  return std::nan("");
}

class ReferenceBackend final : public Backend {
 public:
  std::string name() const override { return "reference"; }
  bool enabled() const override { return true; }

  void* allocate(size_t bytes) override { return std::malloc(bytes == 0 ? 1 : bytes); }
  void deallocate(void* ptr) noexcept override { std::free(ptr); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }

  void fill(const View& out, double value) override {
    for_each_index(out.shape, [&](const auto& idx) { store(out, idx, value); });
  }
  void copy(const View& in, const View& out) override {
    for_each_index(out.shape, [&](const auto& idx) { store(out, idx, load(in, idx)); });
  }
  void unary(UnaryOp op, const View& a, const View& out) override {
    for_each_index(out.shape,
                   [&](const auto& idx) { store(out, idx, reference_unary(op, load(a, idx))); });
  }
  void binary(BinaryOp op, const View& a, const View& b, const View& out) override {
    const bool integral = is_integral(a.dtype);
    for_each_index(out.shape, [&](const auto& idx) {
      store(out, idx, reference_binary(op, load(a, idx), load(b, idx), integral));
    });
  }
  void binary_scalar(BinaryOp op, const View& a, double s, const View& out,
                     bool scalar_on_left) override {
    // The scalar takes the array's dtype first, as the real kernels do.
    const double sv = dispatch_dtype(a.dtype, [&](auto t) {
      return double(kmath::convert<decltype(t)>(s));
    });
    const bool integral = is_integral(a.dtype);
    for_each_index(out.shape, [&](const auto& idx) {
      const double x = load(a, idx);
      store(out, idx,
            scalar_on_left ? reference_binary(op, sv, x, integral)
                           : reference_binary(op, x, sv, integral));
    });
  }
  void reduce(ReduceOp op, const View& a, const View& out) override {
    const size_t k = out.shape.size();
    const Shape reduced(a.shape.begin() + k, a.shape.end());
    for_each_index(out.shape, [&](const auto& kept) {
      // long double: the oracle's own rounding stays far below any backend's.
      long double acc = op == ReduceOp::sum   ? 0.0L
                        : op == ReduceOp::max ? -std::numeric_limits<long double>::infinity()
                                              : std::numeric_limits<long double>::infinity();
      for_each_index(reduced, [&](const auto& r) {
        std::vector<int64_t> idx(kept);
        idx.insert(idx.end(), r.begin(), r.end());
        const double x = load(a, idx);
        if (op == ReduceOp::sum) {
          acc += x;
        } else if (std::isnan(x) || std::isnan(acc)) {
          acc = std::nan("");
        } else {
          acc = op == ReduceOp::max ? std::max<long double>(acc, x) : std::min<long double>(acc, x);
        }
      });
      store(out, kept, double(acc));
    });
  }
  void matmul(const View& a, const View& b, const View& out) override {
    const size_t nd = out.shape.size();
    const int64_t k = a.shape[nd - 1];
    for_each_index(out.shape, [&](const auto& idx) {
      std::vector<int64_t> ia(idx), ib(idx);
      long double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        ia[nd - 1] = p;
        ib[nd - 2] = p;
        acc += static_cast<long double>(load(a, ia)) * load(b, ib);
      }
      store(out, idx, double(acc));
    });
  }
  void gather(const View& a, const View& index, int64_t axis, const View& out) override {
    for_each_index(out.shape, [&](const auto& idx) {
      std::vector<int64_t> src(idx);
      src[size_t(axis)] = int64_t(load(index, idx));
      store(out, idx, load(a, src));
    });
  }
  void scatter_add(const View& values, const View& index, int64_t axis,
                   const View& out) override {
    for_each_index(values.shape, [&](const auto& idx) {
      std::vector<int64_t> dst(idx);
      dst[size_t(axis)] = int64_t(load(index, idx));
      const double sum = load(out, dst) + load(values, idx);
      // bool sums are "or"; other integers wrap as the kernels do (test values stay small).
      store(out, dst, out.dtype == DType::bool_ ? double(sum != 0) : sum);
    });
  }
};

// The one instance the tests share.
inline ReferenceBackend& reference_backend() {
  static ReferenceBackend instance;
  return instance;
}

}  // namespace needle::testing
