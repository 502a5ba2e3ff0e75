// Initializers (needle::init) and the one random-number generator of the C++ side.
//
// Every random draw made from C++ (initializers, Dropout masks, DataLoader shuffling) goes
// through default_generator(), a seeded mt19937, so `needle::manual_seed(s)` makes a C++
// program reproducible. (Python draws from numpy's global RNG instead, in the course's
// order; see python/needle/init.) Values are drawn on the host in row-major order and then
// copied to the device, so a seed gives the same numbers on every backend.
//
// The initializers follow the course framework: uniform `rand`, normal `randn`, `randb`
// (uniform < p), and the Xavier / Kaiming rules with (fan_in, fan_out) shapes.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "needle/tensor.h"

namespace needle {

// A seedable source of random numbers. uniform() and normal() are written out here (not
// std::uniform_real_distribution / std::normal_distribution, whose algorithms differ
// between standard libraries), so a seed gives the same values with any compiler.
class Generator {
 public:
  static constexpr uint64_t kDefaultSeed = 67280421310721ull;  // PyTorch's default seed
  explicit Generator(uint64_t seed = kDefaultSeed) { seed_with(seed); }

  void seed_with(uint64_t seed);
  uint64_t initial_seed() const { return seed_; }
  uint32_t next_u32() { return static_cast<uint32_t>(engine_()); }
  // Uniform on [0, 1) with 53 random bits (numpy's random_sample construction).
  double uniform();
  // Standard normal (Marsaglia's polar method; the second value of each pair is cached).
  double normal();
  // Uniform integer in [0, n), without modulo bias.
  int64_t randint(int64_t n);
  // A random permutation of 0..n-1 (Fisher-Yates).
  std::vector<int64_t> permutation(int64_t n);

 private:
  std::mt19937 engine_;
  uint64_t seed_ = 0;
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// The process-wide generator behind every C++ random draw. Not synchronized: draw from
// one thread at a time (as with numpy's global RNG).
Generator& default_generator();
// Reseeds default_generator().
void manual_seed(uint64_t seed);

namespace init {

// Where and how an initializer's result lives: device (null = the default device),
// dtype, and whether the new tensor requires grad.
struct Options {
  Backend* device = nullptr;
  DType dtype = DType::float32;
  bool requires_grad = false;
};

// Uniform on [low, high).
Tensor rand(const Shape& shape, double low = 0.0, double high = 1.0, const Options& opts = {});
// Normal with the given mean and standard deviation.
Tensor randn(const Shape& shape, double mean = 0.0, double std = 1.0, const Options& opts = {});
Tensor constant(const Shape& shape, double c = 1.0, const Options& opts = {});
Tensor ones(const Shape& shape, const Options& opts = {});
Tensor zeros(const Shape& shape, const Options& opts = {});
// 1.0 with probability p, else 0.0 (a uniform draw below p).
Tensor randb(const Shape& shape, double p = 0.5, const Options& opts = {});
// labels.shape + (n,): row r has a 1.0 at column labels[r]. IndexError for a label outside
// [0, n) or not an integer.
Tensor one_hot(int64_t n, const std::vector<int64_t>& labels, const Options& opts = {});
Tensor one_hot(int64_t n, const Tensor& labels, const Options& opts = {});
Tensor zeros_like(const Tensor& t, bool requires_grad = false);
Tensor ones_like(const Tensor& t, bool requires_grad = false);

// PyTorch's recommended gain for a nonlinearity: linear/identity/sigmoid 1, tanh 5/3,
// relu sqrt(2), selu 3/4. ValueError for any other name.
double calculate_gain(const std::string& nonlinearity);

// (fan_in, fan_out) uniform on [-a, a] with a = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform(int64_t fan_in, int64_t fan_out, double gain = 1.0, const Options& opts = {});
// (fan_in, fan_out) normal with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal(int64_t fan_in, int64_t fan_out, double gain = 1.0, const Options& opts = {});
// Uniform on [-b, b] with b = gain * sqrt(3 / fan_in) (gain sqrt(2) for relu). `shape`
// overrides the (fan_in, fan_out) shape, e.g. for conv kernels (K, K, Cin, Cout).
Tensor kaiming_uniform(int64_t fan_in, int64_t fan_out,
                       const std::optional<Shape>& shape = std::nullopt,
                       const std::string& nonlinearity = "relu", const Options& opts = {});
// Normal with std = gain / sqrt(fan_in).
Tensor kaiming_normal(int64_t fan_in, int64_t fan_out,
                      const std::optional<Shape>& shape = std::nullopt,
                      const std::string& nonlinearity = "relu", const Options& opts = {});

}  // namespace init
}  // namespace needle
