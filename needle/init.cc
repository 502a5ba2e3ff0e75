// The C++ random generator and the initializers (see init.h). Values are produced on the
// host in row-major order, in the requested dtype, then copied to the device once.
#include "needle/init.h"

#include <cmath>
#include <limits>
#include <memory>

namespace needle {

void Generator::seed_with(uint64_t seed) {
  // Both halves of the 64-bit seed matter.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  engine_.seed(seq);
  seed_ = seed;
  has_cached_normal_ = false;
}

double Generator::uniform() {
  const uint64_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (double(a) * 67108864.0 + double(b)) / 9007199254740992.0;  // (a * 2^26 + b) / 2^53
}

double Generator::normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * uniform() - 1.0;
    x2 = 2.0 * uniform() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  cached_normal_ = f * x1;
  has_cached_normal_ = true;
  return f * x2;
}

int64_t Generator::randint(int64_t n) {
  if (n <= 0) fail<ValueError>("[randint] n must be positive, got ", n);
  const uint64_t range = uint64_t(n);
  // Draw 64 bits; reject the top partial bucket so every value is equally likely.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
  uint64_t x;
  do {
    x = (uint64_t(next_u32()) << 32) | next_u32();
  } while (x >= limit);
  return int64_t(x % range);
}

std::vector<int64_t> Generator::permutation(int64_t n) {
  if (n < 0) fail<ValueError>("[permutation] n must be non-negative, got ", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(randint(i + 1))]);
  return p;
}

Generator& default_generator() {
  static Generator generator;
  return generator;
}

void manual_seed(uint64_t seed) {
  default_generator().seed_with(seed);
}

namespace init {
namespace {

Backend& device_of(const Options& opts) {
  return opts.device ? *opts.device : default_backend();
}

int64_t checked_size(const char* op, const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail<ValueError>("[", op, "] negative dimension in shape ", shape_str(shape));
    n *= d;
  }
  return n;
}

// A tensor of `shape` whose elements, in row-major order, are draw() for each.
template <class Draw>
Tensor generate(const char* op, const Shape& shape, const Options& opts, Draw&& draw) {
  const int64_t n = checked_size(op, shape);
  return dispatch_dtype(opts.dtype, [&](auto t) {
    using T = decltype(t);
    std::unique_ptr<T[]> values(new T[size_t(n)]);  // not std::vector: vector<bool> is packed
    for (int64_t i = 0; i < n; ++i) values[size_t(i)] = static_cast<T>(draw());
    return Tensor(NDArray::from_host(values.get(), shape, opts.dtype, device_of(opts)),
                  opts.requires_grad);
  });
}

void check_fans(const char* op, int64_t fan_in, int64_t fan_out) {
  if (fan_in <= 0 || fan_out <= 0)
    fail<ValueError>("[", op, "] fan_in and fan_out must be positive, got ", fan_in, " and ",
                     fan_out);
}

}  // namespace

Tensor rand(const Shape& shape, double low, double high, const Options& opts) {
  Generator& g = default_generator();
  return generate("rand", shape, opts, [&] { return low + (high - low) * g.uniform(); });
}

Tensor randn(const Shape& shape, double mean, double std, const Options& opts) {
  Generator& g = default_generator();
  return generate("randn", shape, opts, [&] { return mean + std * g.normal(); });
}

Tensor constant(const Shape& shape, double c, const Options& opts) {
  checked_size("constant", shape);
  return Tensor(NDArray::full(shape, c, opts.dtype, device_of(opts)), opts.requires_grad);
}

Tensor ones(const Shape& shape, const Options& opts) {
  return constant(shape, 1.0, opts);
}
Tensor zeros(const Shape& shape, const Options& opts) {
  return constant(shape, 0.0, opts);
}

Tensor randb(const Shape& shape, double p, const Options& opts) {
  Generator& g = default_generator();
  return generate("randb", shape, opts, [&] { return g.uniform() < p ? 1.0 : 0.0; });
}

Tensor one_hot(int64_t n, const std::vector<int64_t>& labels, const Options& opts) {
  if (n <= 0) fail<ValueError>("[one_hot] the number of classes must be positive, got ", n);
  const int64_t count = int64_t(labels.size());
  return dispatch_dtype(opts.dtype, [&](auto t) {
    using T = decltype(t);
    std::unique_ptr<T[]> values(new T[size_t(count * n)]());  // zeros; vector<bool> is packed
    for (int64_t r = 0; r < count; ++r) {
      const int64_t c = labels[size_t(r)];
      if (c < 0 || c >= n)
        fail<IndexError>("[one_hot] label ", c, " at position ", r, " is outside [0, ", n, ")");
      values[size_t(r * n + c)] = T(1);
    }
    return Tensor(NDArray::from_host(values.get(), {count, n}, opts.dtype, device_of(opts)),
                  opts.requires_grad);
  });
}

Tensor one_hot(int64_t n, const Tensor& labels, const Options& opts) {
  const std::vector<double> raw = labels.to_vector<double>();
  std::vector<int64_t> ints(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (!(raw[i] == std::floor(raw[i])) || std::abs(raw[i]) > 9.0e15)
      fail<IndexError>("[one_hot] label ", raw[i], " at position ", i, " is not an integer");
    ints[i] = int64_t(raw[i]);
  }
  Tensor flat = one_hot(n, ints, opts);
  Shape shape = labels.shape();
  shape.push_back(n);
  return shape.size() == 2 ? flat : Tensor(flat.data().reshape(shape), opts.requires_grad);
}

Tensor zeros_like(const Tensor& t, bool requires_grad) {
  return Tensor(NDArray::full(t.shape(), 0.0, t.dtype(), t.device()), requires_grad);
}

Tensor ones_like(const Tensor& t, bool requires_grad) {
  return Tensor(NDArray::full(t.shape(), 1.0, t.dtype(), t.device()), requires_grad);
}

double calculate_gain(const std::string& nonlinearity) {
  if (nonlinearity == "linear" || nonlinearity == "identity" || nonlinearity == "sigmoid")
    return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "selu") return 0.75;
  fail<ValueError>("[init] unsupported nonlinearity '", nonlinearity,
                   "' (supported: relu, tanh, sigmoid, linear, identity, selu)");
}

Tensor xavier_uniform(int64_t fan_in, int64_t fan_out, double gain, const Options& opts) {
  check_fans("xavier_uniform", fan_in, fan_out);
  // BEGIN SOLUTION hw2
  const double a = gain * std::sqrt(6.0 / double(fan_in + fan_out));
  return rand({fan_in, fan_out}, -a, a, opts);
  // END SOLUTION
}

Tensor xavier_normal(int64_t fan_in, int64_t fan_out, double gain, const Options& opts) {
  check_fans("xavier_normal", fan_in, fan_out);
  // BEGIN SOLUTION hw2
  const double sd = gain * std::sqrt(2.0 / double(fan_in + fan_out));
  return randn({fan_in, fan_out}, 0.0, sd, opts);
  // END SOLUTION
}

Tensor kaiming_uniform(int64_t fan_in, int64_t fan_out, const std::optional<Shape>& shape,
                       const std::string& nonlinearity, const Options& opts) {
  check_fans("kaiming_uniform", fan_in, fan_out);
  const double gain = calculate_gain(nonlinearity);
  // BEGIN SOLUTION hw2
  const double bound = gain * std::sqrt(3.0 / double(fan_in));
  return rand(shape ? *shape : Shape{fan_in, fan_out}, -bound, bound, opts);
  // END SOLUTION
}

Tensor kaiming_normal(int64_t fan_in, int64_t fan_out, const std::optional<Shape>& shape,
                      const std::string& nonlinearity, const Options& opts) {
  check_fans("kaiming_normal", fan_in, fan_out);
  const double gain = calculate_gain(nonlinearity);
  // BEGIN SOLUTION hw2
  const double sd = gain / std::sqrt(double(fan_in));
  return randn(shape ? *shape : Shape{fan_in, fan_out}, 0.0, sd, opts);
  // END SOLUTION
}

}  // namespace init
}  // namespace needle
