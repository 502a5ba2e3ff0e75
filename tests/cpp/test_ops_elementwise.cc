// Element-wise ops through the C++ API: forward values, broadcasting and dtype promotion,
// gradient dtypes, second derivatives. Each op's cases (numpy forward, finite-difference
// gradients, every device) live once, in the table of tests/python/test_ops.py.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;

namespace {
std::vector<double> vals(const Tensor& t) {
  return t.to_vector<double>();
}
Tensor vec(std::vector<double> v, DType dtype = DType::float32) {
  int64_t n = int64_t(v.size());
  return Tensor(NDArray::from_vector(v, {n}).astype(dtype));
}
}  // namespace

TEST_CASE("element-wise forward values", "[ops][hw1]") {
  Tensor a = vec({1, 2, 4}), b = vec({2, 2, 0.5});
  NEEDLE_CHECK_CLOSE(vals(add(a, b)), (std::vector<double>{3, 4, 4.5}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(multiply(a, b)), (std::vector<double>{2, 4, 2}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(divide(a, b)), (std::vector<double>{0.5, 1, 8}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(power(a, b)), (std::vector<double>{1, 4, 2}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(power_scalar(a, 3)), (std::vector<double>{1, 8, 64}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(add_scalar(a, 1)), (std::vector<double>{2, 3, 5}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(mul_scalar(a, 2)), (std::vector<double>{2, 4, 8}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(divide_scalar(a, 2)), (std::vector<double>{0.5, 1, 2}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(rdivide_scalar(a, 2)), (std::vector<double>{2, 1, 0.5}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(subtract(a, b)), (std::vector<double>{-1, 0, 3.5}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(maximum(a, b)), (std::vector<double>{2, 2, 4}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(negate(a)), (std::vector<double>{-1, -2, -4}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(log(a)), (std::vector<double>{0, std::log(2.0), std::log(4.0)}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(exp(vec({0, 1}))), (std::vector<double>{1, std::exp(1.0)}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(relu(vec({-1, 0, 2}))), (std::vector<double>{0, 0, 2}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(tanh(vec({0, 1}))), (std::vector<double>{0, std::tanh(1.0)}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(sigmoid(vec({0, 2}))),
                     (std::vector<double>{0.5, 1 / (1 + std::exp(-2.0))}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(sqrt(a)), (std::vector<double>{1, std::sqrt(2.0), 2}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(abs(vec({-1, 2}))), (std::vector<double>{1, 2}), 1e-6);
  double x = 0.3;
  NEEDLE_CHECK_CLOSE(vals(gelu(vec({x}))),
                     (std::vector<double>{x * 0.5 * (1 + std::erf(x / std::sqrt(2.0)))}), 1e-6);
  NEEDLE_CHECK_CLOSE(vals(silu(vec({x}))), (std::vector<double>{x / (1 + std::exp(-x))}), 1e-6);
}

TEST_CASE("where selects element-wise", "[ops][hw2]") {
  Tensor a = vec({1, 2, 4}), b = vec({2, 2, 0.5});
  NEEDLE_CHECK_CLOSE(vals(where(vec({1, 0, 1}), a, b)), (std::vector<double>{1, 2, 4}), 1e-6);
}

TEST_CASE("binary ops broadcast and promote dtypes", "[ops][hw1]") {
  Tensor col = Tensor(NDArray::from_vector(std::vector<double>{1, 2}, {2, 1}));
  Tensor row = Tensor(NDArray::from_vector(std::vector<float>{10, 20, 30}, {3}));
  Tensor s = col + row;
  CHECK(s.shape() == Shape{2, 3});
  CHECK(s.dtype() == DType::float64);
  CHECK(vals(s) == std::vector<double>{11, 21, 31, 12, 22, 32});
  // Gradients come back in each input's shape and dtype.
  col.set_requires_grad();
  row.set_requires_grad();
  (col * row).sum().backward();
  CHECK(col.grad().shape() == Shape{2, 1});
  CHECK(vals(col.grad()) == std::vector<double>{60, 60});
  CHECK(row.grad().dtype() == DType::float32);
  CHECK(vals(row.grad()) == std::vector<double>{3, 3, 3});
}

TEST_CASE("astype's gradient comes back in the input's dtype", "[ops][hw1]") {
  Tensor x = random_tensor({3});
  astype(x, DType::float32).sum().backward();
  CHECK(x.grad().dtype() == DType::float64);
  CHECK(vals(x.grad()) == std::vector<double>{1, 1, 1});
}

TEST_CASE("second derivatives of unary ops", "[ops][hw1]") {
  // d/dx of each op's gradient, against finite differences of the first gradient (C++
  // only: the gradient of a gradient).
  struct UnaryCase {
    std::string name;
    TensorFn f;
    std::vector<Shape> shapes;
    double lo = -1.0, hi = 1.0;
  };
  std::vector<UnaryCase> cases{
      {"exp", [](auto& x) { return exp(x[0]); }, {{4}}},
      {"log", [](auto& x) { return log(x[0]); }, {{4}}, 0.5, 2.0},
      {"tanh", [](auto& x) { return tanh(x[0]); }, {{4}}},
      {"sigmoid", [](auto& x) { return sigmoid(x[0]); }, {{4}}},
      {"gelu", [](auto& x) { return gelu(x[0]); }, {{4}}},
      {"power_scalar", [](auto& x) { return power_scalar(x[0], 3); }, {{4}}},
      {"divide", [](auto& x) { return divide(x[0], x[0] * x[0] + 1.0); }, {{4}}},
  };
  for (auto& c : cases) {
    SECTION(c.name) {
      // dy/dx as a tensor of x (built with ops, so it can be differentiated again).
      auto first_grad = [&](const Tensor& x) {
        c.f({x}).sum().backward();
        Tensor g = x.grad();
        x.set_grad(Tensor());
        return g;
      };
      Tensor x = random_tensor({4}, default_backend(), DType::float64, true, c.lo, c.hi);
      Tensor g = first_grad(x);
      REQUIRE(g.requires_grad());
      g.sum().backward();
      Tensor second = x.grad();
      // Finite differences of the first gradient.
      std::vector<double> xv = vals(x), want(xv.size());
      double eps = 1e-5;
      for (size_t j = 0; j < xv.size(); ++j) {
        auto at = [&](double d) {
          std::vector<double> p = xv;
          p[j] += d;
          Tensor t(NDArray::from_vector(p, {4}), true);
          return vals(first_grad(t))[j];
        };
        want[j] = (at(eps) - at(-eps)) / (2 * eps);
      }
      NEEDLE_CHECK_CLOSE(vals(second), want, 1e-5);
    }
  }
}
