// Test helpers for backend kernels: random strided views over device buffers, and checks
// that run one kernel on a "subject" backend and on an "oracle" backend with the same
// inputs and compare the results. test_backend_cpu.cc uses (cpu, reference backend);
// test_backend_conformance.cc uses (every other backend, cpu).
//
// A view is made by a Layout over a base buffer: the base holds random values, the view
// walks it with steps, flips (negative strides), a permuted memory order, broadcast (stride
// 0) dimensions and a nonzero offset. Outputs are compared as whole base buffers, so a
// kernel that writes outside its view fails too.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "needle/backend.h"

namespace needle::testing {

// How to lay a view of a given shape over its base buffer.
struct LayoutKind {
  const char* name = "contiguous";
  bool permute = false;     // memory order of the dimensions shuffled
  bool steps = false;       // every dimension walks with a step of 1..3
  bool flip = false;        // some dimensions walk backwards
  bool pad = false;         // the view starts at a nonzero offset
  double broadcast = 0;     // probability that a dimension has stride 0
  std::vector<bool> bcast;  // dimensions that are broadcast for sure (may be shorter)
};

inline LayoutKind contiguous() {
  return {"contiguous", false, false, false, false, 0, {}};
}
inline LayoutKind permuted() {
  return {"permuted", true, false, false, true, 0, {}};
}
inline LayoutKind stepped() {
  return {"stepped", false, true, false, true, 0, {}};
}
inline LayoutKind flipped() {
  return {"flipped", false, false, true, false, 0, {}};
}
inline LayoutKind broadcast() {
  return {"broadcast", false, false, false, true, 0.5, {}};
}
inline LayoutKind mixed() {
  return {"mixed", true, true, true, true, 0.3, {}};
}
// Input layouts to sweep; outputs use the same list without broadcasting.
inline std::vector<LayoutKind> input_layouts() {
  return {contiguous(), permuted(), stepped(), flipped(), broadcast(), mixed()};
}
inline std::vector<LayoutKind> output_layouts() {
  return {contiguous(), permuted(), stepped(), flipped(), mixed()};
}

struct Layout {
  Shape shape;
  Strides strides;
  int64_t offset = 0;
  int64_t base_size = 0;  // elements in the base buffer
};

inline Layout make_layout(const Shape& shape, const LayoutKind& kind, std::mt19937& rng) {
  const size_t nd = shape.size();
  auto coin = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<int64_t> step(nd, 1), extent(nd, 1);
  std::vector<bool> bcast(nd, false), flip(nd, false);
  for (size_t d = 0; d < nd; ++d) {
    bcast[d] = (d < kind.bcast.size() && kind.bcast[d]) || coin(kind.broadcast);
    flip[d] = kind.flip && coin(0.5);
    if (kind.steps) step[d] = pick(1, 3);
    extent[d] = bcast[d] || shape[d] == 0 ? 1 : (shape[d] - 1) * step[d] + 1;
  }
  std::vector<size_t> order(nd);  // memory order of the base, outermost first
  std::iota(order.begin(), order.end(), 0);
  if (kind.permute) std::shuffle(order.begin(), order.end(), rng);
  std::vector<int64_t> base_stride(nd, 1);
  int64_t base = 1;
  for (size_t i = nd; i-- > 0;) {
    base_stride[order[i]] = base;
    base *= extent[order[i]];
  }
  Layout l;
  l.shape = shape;
  l.strides.resize(nd);
  l.offset = kind.pad ? pick(1, 5) : 0;
  for (size_t d = 0; d < nd; ++d) {
    const int64_t s = bcast[d] ? 0 : step[d] * base_stride[d];
    l.strides[d] = flip[d] ? -s : s;
    if (flip[d] && shape[d] > 0) l.offset += (shape[d] - 1) * s;
  }
  l.base_size = base + l.offset + (kind.pad ? pick(0, 3) : 0);
  return l;
}

// A device buffer with host-side conversions, freed on its backend.
class TestArray {
 public:
  TestArray(Backend& backend, DType dtype, Layout layout)
      : backend_(&backend), dtype_(dtype), layout_(std::move(layout)) {
    const size_t bytes = size_t(layout_.base_size) * dtype_size(dtype_);
    data_ = std::shared_ptr<void>(backend.allocate(bytes),
                                  [b = backend_](void* p) { b->deallocate(p); });
  }
  View view() const {
    View v;
    v.data = data_.get();
    v.dtype = dtype_;
    v.shape = layout_.shape;
    v.strides = layout_.strides;
    v.offset = layout_.offset;
    return v;
  }
  const Layout& layout() const { return layout_; }
  DType dtype() const { return dtype_; }

  void upload(const std::vector<double>& base) {
    dispatch_dtype(dtype_, [&](auto t) {
      using T = decltype(t);
      std::vector<host_t<T>> host(base.size());
      for (size_t i = 0; i < base.size(); ++i) host[i] = host_t<T>(static_cast<T>(base[i]));
      backend_->copy_from_host(data_.get(), host.data(), host.size() * sizeof(T));
    });
  }
  std::vector<double> download() const {
    return dispatch_dtype(dtype_, [&](auto t) {
      using T = decltype(t);
      std::vector<host_t<T>> host(size_t(layout_.base_size));
      backend_->synchronize();  // kernels may still be queued on an asynchronous device
      backend_->copy_to_host(host.data(), data_.get(), host.size() * sizeof(T));
      return std::vector<double>(host.begin(), host.end());
    });
  }

 private:
  Backend* backend_;
  DType dtype_;
  Layout layout_;
  std::shared_ptr<void> data_;
};

// How test values are drawn.
enum class Values { uniform, positive, small_ints, unit };

inline std::vector<double> random_values(int64_t n, Values kind, std::mt19937& rng) {
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  std::uniform_real_distribution<double> uni(-3, 3), pos(0.05, 4), unit(-1, 1);
  std::uniform_int_distribution<int> ints(-2, 2);
  for (auto& x : v) {
    switch (kind) {
      case Values::uniform:
        x = uni(rng);
        break;
      case Values::positive:
        x = pos(rng);
        break;
      case Values::small_ints:
        x = ints(rng);
        break;
      case Values::unit:
        x = unit(rng);
        break;
    }
  }
  return v;
}

struct Tolerance {
  double rtol = 0, atol = 0;
};

// "" when got and want agree element-wise within atol + rtol * |want| (NaN matches NaN,
// infinities must match exactly); otherwise a description of the first mismatch.
inline std::string compare(const std::vector<double>& got, const std::vector<double>& want,
                           Tolerance tol) {
  if (got.size() != want.size()) return "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
    } else if (std::isinf(w) || std::isinf(g)) {
      ok = g == w;
    } else {
      ok = std::fabs(g - w) <= tol.atol + tol.rtol * std::fabs(w);
    }
    if (!ok) {
      std::ostringstream os;
      os.precision(17);
      os << "element " << i << " of the base buffer: got " << g << ", want " << w;
      return os.str();
    }
  }
  return "";
}

// --- Kernel checks: run on subject and oracle with equal inputs, compare outputs ---

class KernelChecker {
 public:
  KernelChecker(Backend& subject, Backend& oracle, uint32_t seed, double tolerance_scale = 1)
      : subject_(subject), oracle_(oracle), rng_(seed), scale_(tolerance_scale) {}

  std::mt19937& rng() { return rng_; }

  // Tolerance of element-wise results in `dtype` (float32 ~ a few ulps, float64 tighter).
  Tolerance ewise_tol(DType dtype, bool transcendental) const {
    if (is_integral(dtype)) return {};  // integer and bool results are exact
    if (dtype == DType::float64) return {scale_ * 1e-13, scale_ * 1e-14};
    return transcendental ? Tolerance{scale_ * 4e-6, scale_ * 1e-6}
                          : Tolerance{scale_ * 2e-7, scale_ * 1e-7};
  }
  // Tolerance of a sum or dot product over n terms bounded by `bound` in magnitude, for a
  // blocked/pairwise summation: relative ~eps*log2(n) when the terms share a sign (broadcast
  // inputs), absolute ~eps*sqrt(n)*log2(n)*bound when they cancel.
  Tolerance accumulate_tol(DType dtype, int64_t n, double bound) const {
    if (is_integral(dtype)) return {};
    const double eps = dtype == DType::float64 ? 2.3e-16 : 1.2e-7;
    const double log_n = std::log2(double(n) + 2);
    return {scale_ * 8 * eps * log_n, scale_ * 4 * eps * bound * std::sqrt(double(n) + 2) * log_n};
  }

  std::string fill(DType dtype, const Shape& shape, const LayoutKind& out_kind, double value) {
    Layout lo = make_layout(shape, no_broadcast(out_kind), rng_);
    auto sentinel = random_values(lo.base_size, Values::uniform, rng_);
    return run([&](Backend& b, TestArray& out) { b.fill(out.view(), value); }, dtype, lo, sentinel,
               ewise_tol(dtype, false));
  }

  std::string copy(DType in_dtype, DType out_dtype, const Shape& shape, const LayoutKind& in_kind,
                   const LayoutKind& out_kind) {
    Input a = input(in_dtype, shape, in_kind, Values::uniform);
    Layout lo = make_layout(shape, no_broadcast(out_kind), rng_);
    auto sentinel = random_values(lo.base_size, Values::uniform, rng_);
    return run(
        [&](Backend& b, TestArray& out) {
          TestArray x = a.on(b);
          b.copy(x.view(), out.view());
        },
        out_dtype, lo, sentinel, ewise_tol(out_dtype, false));
  }

  std::string unary(UnaryOp op, DType dtype, const Shape& shape, const LayoutKind& in_kind,
                    const LayoutKind& out_kind) {
    const bool needs_positive = op == UnaryOp::log || op == UnaryOp::sqrt;
    Input a = input(dtype, shape, in_kind, needs_positive ? Values::positive : Values::uniform);
    const bool heavy = !(op == UnaryOp::negate || op == UnaryOp::abs || op == UnaryOp::sign);
    return elementwise_out(dtype, shape, out_kind, ewise_tol(dtype, heavy),
                           [&](Backend& b, const View& out) {
                             TestArray x = a.on(b);
                             b.unary(op, x.view(), out);
                           });
  }

  std::string binary(BinaryOp op, DType dtype, const Shape& shape, const LayoutKind& a_kind,
                     const LayoutKind& b_kind, const LayoutKind& out_kind) {
    Values va = values_for(op, true), vb = values_for(op, false);
    if (is_integral(dtype) && op == BinaryOp::power) va = vb = Values::positive;  // 0..3 ** 0..3
    Input a = input(dtype, shape, a_kind, va), bb = input(dtype, shape, b_kind, vb);
    return elementwise_out(dtype, shape, out_kind, ewise_tol(dtype, op == BinaryOp::power),
                           [&](Backend& b, const View& out) {
                             TestArray x = a.on(b), y = bb.on(b);
                             b.binary(op, x.view(), y.view(), out);
                           });
  }

  std::string binary_scalar(BinaryOp op, DType dtype, const Shape& shape, double s,
                            bool scalar_on_left, const LayoutKind& in_kind,
                            const LayoutKind& out_kind) {
    Values v = values_for(op, !scalar_on_left);
    if (is_integral(dtype) && op == BinaryOp::power) v = Values::positive;
    Input a = input(dtype, shape, in_kind, v);
    return elementwise_out(dtype, shape, out_kind, ewise_tol(dtype, op == BinaryOp::power),
                           [&](Backend& b, const View& out) {
                             TestArray x = a.on(b);
                             b.binary_scalar(op, x.view(), s, out, scalar_on_left);
                           });
  }

  // Reduces the trailing `n_reduced` axes of `shape`; out is contiguous.
  std::string reduce(ReduceOp op, DType dtype, const Shape& shape, size_t n_reduced,
                     const LayoutKind& in_kind) {
    Input a = input(dtype, shape, in_kind, integer_or(dtype, Values::unit));
    const Shape out_shape(shape.begin(), shape.end() - int64_t(n_reduced));
    int64_t nr = 1;
    for (size_t d = out_shape.size(); d < shape.size(); ++d) nr *= shape[d];
    Layout lo = make_layout(out_shape, contiguous(), rng_);
    auto sentinel = random_values(lo.base_size, Values::uniform, rng_);
    const Tolerance tol = op == ReduceOp::sum ? accumulate_tol(dtype, nr, 1.0) : Tolerance{};
    return run(
        [&](Backend& b, TestArray& out) {
          TestArray x = a.on(b);
          b.reduce(op, x.view(), out.view());
        },
        dtype, lo, sentinel, tol);
  }

  // (batch_a..., m, k) @ (batch_b..., k, n) where batch_a/batch_b are 1 or the batch size
  // (1 broadcasts with stride 0); `ta`/`tb` store the matrices transposed in memory.
  std::string matmul(DType dtype, const Shape& batch, const std::vector<bool>& bcast_a,
                     const std::vector<bool>& bcast_b, int64_t m, int64_t k, int64_t n,
                     const LayoutKind& a_kind, const LayoutKind& b_kind) {
    Shape sa = batch, sb = batch, so = batch;
    sa.insert(sa.end(), {m, k});
    sb.insert(sb.end(), {k, n});
    so.insert(so.end(), {m, n});
    LayoutKind ka = a_kind, kb = b_kind;
    ka.bcast = bcast_a;
    kb.bcast = bcast_b;
    const Values v = integer_or(dtype, Values::unit);
    Input a = input(dtype, sa, ka, v), b = input(dtype, sb, kb, v);
    Layout lo = make_layout(so, contiguous(), rng_);
    auto sentinel = random_values(lo.base_size, Values::uniform, rng_);
    return run(
        [&](Backend& be, TestArray& out) {
          TestArray x = a.on(be), y = b.on(be);
          be.matmul(x.view(), y.view(), out.view());
        },
        dtype, lo, sentinel, accumulate_tol(dtype, k, 1.0));
  }

  // gather along `axis` from an array of `shape` into an output whose size along axis is
  // n_out (indices drawn in range, every dtype of the data, int64 indices; the index view
  // may broadcast).
  std::string gather(DType dtype, const Shape& shape, int64_t axis, int64_t n_out,
                     const LayoutKind& a_kind, const LayoutKind& index_kind,
                     const LayoutKind& out_kind) {
    Shape out_shape = shape;
    out_shape[size_t(axis)] = n_out;
    Input a = input(dtype, shape, a_kind, integer_or(dtype, Values::uniform));
    Input index = indices(out_shape, index_kind, shape[size_t(axis)]);
    return elementwise_out(dtype, out_shape, out_kind, {}, [&](Backend& b, const View& out) {
      TestArray x = a.on(b), i = index.on(b);
      b.gather(x.view(), i.view(), axis, out);
    });
  }

  // scatter_add of values of `shape` into an output of size n_out along axis, over the
  // output's random prior contents; indices repeat.
  std::string scatter_add(DType dtype, const Shape& shape, int64_t axis, int64_t n_out,
                          const LayoutKind& values_kind, const LayoutKind& index_kind,
                          const LayoutKind& out_kind) {
    Shape out_shape = shape;
    out_shape[size_t(axis)] = n_out;
    const Values v = integer_or(dtype, Values::small_ints);  // exact sums in float32 too
    Input values = input(dtype, shape, values_kind, v);
    Input index = indices(shape, index_kind, n_out);
    Layout lo = make_layout(out_shape, no_broadcast(out_kind), rng_);
    auto sentinel = random_values(lo.base_size, v, rng_);
    return run(
        [&](Backend& b, TestArray& out) {
          TestArray x = values.on(b), i = index.on(b);
          b.scatter_add(x.view(), i.view(), axis, out.view());
        },
        dtype, lo, sentinel, {});
  }

 private:
  // Test values for integer dtypes are drawn from [-3, 3) (truncated: -2..2, wrapped for
  // uint8; nonzero-heavy for bool); `kind` otherwise.
  static Values integer_or(DType dtype, Values kind) {
    return is_integral(dtype) ? Values::uniform : kind;
  }

  // An input: a layout and the values of its base, uploaded to any backend on demand.
  struct Input {
    DType dtype;
    Layout layout;
    std::vector<double> base;
    TestArray on(Backend& b) const {
      TestArray t(b, dtype, layout);
      t.upload(base);
      return t;
    }
  };

  Input input(DType dtype, const Shape& shape, const LayoutKind& kind, Values values) {
    Input in{dtype, make_layout(shape, kind, rng_), {}};
    in.base = random_values(in.layout.base_size, values, rng_);
    return in;
  }

  // int64 indices in [0, n) laid out over `shape`.
  Input indices(const Shape& shape, const LayoutKind& kind, int64_t n) {
    Input in{DType::int64, make_layout(shape, kind, rng_), {}};
    std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(n - 1, 0));
    in.base.resize(size_t(in.layout.base_size));
    for (auto& x : in.base) x = double(pick(rng_));
    return in;
  }

  static LayoutKind no_broadcast(LayoutKind k) {
    k.broadcast = 0;
    k.bcast.clear();
    return k;
  }

  // Comparisons get ties from small integers; power gets a positive base.
  static Values values_for(BinaryOp op, bool is_base) {
    switch (op) {
      case BinaryOp::eq:
      case BinaryOp::ne:
      case BinaryOp::lt:
      case BinaryOp::le:
      case BinaryOp::gt:
      case BinaryOp::ge:
      case BinaryOp::maximum:
      case BinaryOp::minimum:
        return Values::small_ints;
      case BinaryOp::power:
        return is_base ? Values::positive : Values::uniform;
      default:
        return Values::uniform;
    }
  }

  template <class Kernel>
  std::string elementwise_out(DType dtype, const Shape& shape, const LayoutKind& out_kind,
                              Tolerance tol, const Kernel& kernel) {
    Layout lo = make_layout(shape, no_broadcast(out_kind), rng_);
    auto sentinel = random_values(lo.base_size, Values::uniform, rng_);
    return run([&](Backend& b, TestArray& out) { kernel(b, out.view()); }, dtype, lo, sentinel,
               tol);
  }

  // Runs kernel(backend, out) on both backends over equal output buffers (pre-filled with
  // `sentinel`) and compares the whole buffers.
  template <class Kernel>
  std::string run(const Kernel& kernel, DType dtype, const Layout& out_layout,
                  const std::vector<double>& sentinel, Tolerance tol) {
    std::vector<double> results[2];
    Backend* backends[2] = {&subject_, &oracle_};
    for (int i = 0; i < 2; ++i) {
      TestArray out(*backends[i], dtype, out_layout);
      out.upload(sentinel);
      kernel(*backends[i], out);
      results[i] = out.download();
    }
    return compare(results[0], results[1], tol);
  }

  Backend& subject_;
  Backend& oracle_;
  std::mt19937 rng_;
  double scale_;
};

inline bool shape_has_zero(const Shape& shape) {
  return std::find(shape.begin(), shape.end(), 0) != shape.end();
}

// "(2, 3) permuted -> contiguous": context for failure messages.
inline std::string describe(const Shape& shape, const LayoutKind& in, const LayoutKind& out) {
  return shape_str(shape) + " " + in.name + " -> " + out.name;
}

}  // namespace needle::testing
