// Test helpers for Tensor ops: random tensors (optionally laid out as non-contiguous views),
// the list of usable backends, and a finite-difference gradient checker in float64. (The
// op cases themselves are declared once, in tests/python/test_ops.py's table; the C++
// tests use these helpers for what only C++ can check.)
//
// check_gradients(f, inputs) contracts f's output with a random tensor c, runs backward on
// sum(f(x) * c), and compares every input's grad with central differences of the same
// scalar. Perturbed evaluations run under no_grad on compact copies of the inputs.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "needle/needle.h"

namespace needle::testing {

// Enabled backends; disabled ones are reported once per test with WARN.
inline std::vector<Backend*> usable_backends() {
  std::vector<Backend*> out;
  for (Backend* b : all_backends()) {
    if (b->enabled())
      out.push_back(b);
    else
      WARN("skipping device " << b->name() << ": " << b->disabled_reason());
  }
  return out;
}

inline std::mt19937& rng() {
  static std::mt19937 gen(1234);
  return gen;
}

inline std::vector<double> random_vector(int64_t n, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (auto& x : v) x = dist(rng());
  return v;
}

inline int64_t numel(const Shape& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<int64_t>());
}

// The same values laid out as a non-contiguous view: stored with the axes reversed, then
// permuted back, so the strides are "column-major".
inline NDArray as_noncontiguous(const NDArray& a) {
  if (a.ndim() < 2) {
    // Every other element of a buffer twice as long.
    std::vector<double> v = a.to_vector<double>(), wide(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) wide[2 * i] = v[i];
    NDArray w = NDArray::from_vector(wide, {int64_t(wide.size())}, a.device()).astype(a.dtype());
    NDArray out = w.getitem({Index::slice(0, Index::kNone, 2)});
    return a.ndim() == 0 ? out.reshape({}) : out;
  }
  Axes rev(size_t(a.ndim()));
  std::iota(rev.rbegin(), rev.rend(), 0);
  return a.permute(rev).compact().permute(rev);
}

inline Tensor random_tensor(const Shape& shape, Backend& device = default_backend(),
                            DType dtype = DType::float64, bool requires_grad = true,
                            double lo = -1.0, double hi = 1.0, bool noncontiguous = false) {
  NDArray a =
      NDArray::from_vector(random_vector(numel(shape), lo, hi), shape, device).astype(dtype);
  if (noncontiguous) a = as_noncontiguous(a);
  return Tensor(a, requires_grad);
}

inline std::string describe(const std::vector<double>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size() && i < 12; ++i) os << (i ? ", " : "") << v[i];
  if (v.size() > 12) os << ", ...";
  os << "]";
  return os.str();
}

// max |got - want| <= atol + rtol * |want|, elementwise.
inline bool all_close(const std::vector<double>& got, const std::vector<double>& want,
                      double rtol = 1e-6, double atol = 1e-6) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]))) return false;
  return true;
}

#define NEEDLE_CHECK_CLOSE(got, want, tol)                                        \
  do {                                                                            \
    auto needle_got_ = (got);                                                     \
    auto needle_want_ = (want);                                                   \
    INFO("got  " << ::needle::testing::describe(needle_got_));                    \
    INFO("want " << ::needle::testing::describe(needle_want_));                   \
    CHECK(::needle::testing::all_close(needle_got_, needle_want_, (tol), (tol))); \
  } while (0)

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Compares each input's analytic gradient with central differences. Inputs that do not
// require grad are treated as constants.
inline void check_gradients(const TensorFn& f, std::vector<Tensor> inputs, double eps = 1e-6,
                            double tol = 1e-5) {
  for (auto& x : inputs) x.set_grad(Tensor());  // grads accumulate across backward calls
  Tensor out = f(inputs);
  NDArray c = NDArray::from_vector(random_vector(out.size()), out.shape(), out.device())
                  .astype(out.dtype());
  Tensor loss = summation(out * Tensor(c));
  loss.backward();

  auto objective = [&](const std::vector<Tensor>& xs) {
    NoGradGuard guard;
    Tensor y = f(xs);
    std::vector<double> yv = y.to_vector<double>(), cv = c.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < yv.size(); ++i) s += yv[i] * cv[i];
    return s;
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad()) continue;
    std::vector<double> x = inputs[i].to_vector<double>();
    std::vector<double> numeric(x.size());
    // Perturb a compact copy, so the original (maybe strided) data stays untouched.
    std::vector<Tensor> probe = inputs;
    for (size_t j = 0; j < x.size(); ++j) {
      std::vector<double> xp = x;
      xp[j] = x[j] + eps;
      probe[i] = Tensor(NDArray::from_vector(xp, inputs[i].shape(), inputs[i].device())
                            .astype(inputs[i].dtype()));
      double fp = objective(probe);
      xp[j] = x[j] - eps;
      probe[i] = Tensor(NDArray::from_vector(xp, inputs[i].shape(), inputs[i].device())
                            .astype(inputs[i].dtype()));
      double fm = objective(probe);
      numeric[j] = (fp - fm) / (2 * eps);
    }
    INFO("gradient of input " << i << " (shape " << shape_str(inputs[i].shape()) << ")");
    Tensor grad = inputs[i].grad();
    if (!grad.defined()) {  // no gradient is right only where the function is flat
      NEEDLE_CHECK_CLOSE(std::vector<double>(numeric.size(), 0.0), numeric, tol);
      continue;
    }
    CHECK(grad.shape() == inputs[i].shape());
    CHECK(grad.dtype() == inputs[i].dtype());
    NEEDLE_CHECK_CLOSE(grad.to_vector<double>(), numeric, tol);
  }
}

}  // namespace needle::testing
