// Reductions through the C++ API: summation over any axes, max, mean, logsumexp (stable),
// (log)softmax. Their cases live in the table of tests/python/test_ops.py.
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;

namespace {
std::vector<double> vals(const Tensor& t) {
  return t.to_vector<double>();
}
Tensor from(std::vector<double> v, const Shape& shape) {
  return Tensor(NDArray::from_vector(v, shape), true);
}
}  // namespace

TEST_CASE("reduction forward", "[ops][hw1]") {
  Tensor a = from({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(vals(summation(a)) == std::vector<double>{21});
  CHECK(summation(a).shape() == Shape{});
  CHECK(vals(summation(a, Axes{0})) == std::vector<double>{5, 7, 9});
  CHECK(vals(summation(a, Axes{-1}, true)) == std::vector<double>{6, 15});
  CHECK(summation(a, Axes{1}, true).shape() == Shape{2, 1});
  CHECK(vals(summation(a, Axes{0, 1})) == std::vector<double>{21});
  CHECK(vals(mean(a, Axes{1})) == std::vector<double>{2, 5});
  CHECK(vals(max(a, Axes{0})) == std::vector<double>{4, 5, 6});
  CHECK(vals(a.sum()) == std::vector<double>{21});
}

TEST_CASE("logsumexp is numerically stable", "[ops][hw2]") {
  Tensor a = from({1000, 1000, -1000, -1001}, {2, 2});
  std::vector<double> got = vals(logsumexp(a, Axes{1}));
  CHECK(got[0] == Approx(1000 + std::log(2.0)));
  CHECK(got[1] == Approx(-1000 + std::log1p(std::exp(-1.0))));
  CHECK(logsumexp(a).shape() == Shape{});
  CHECK(logsumexp(a, Axes{0}, true).shape() == Shape{1, 2});
  double inf = std::numeric_limits<double>::infinity();
  CHECK(vals(logsumexp(from({-inf, -inf}, {2})))[0] == -inf);
  std::vector<double> ls = vals(logsoftmax(from({1000, 1001}, {1, 2})));
  CHECK(ls[1] == Approx(-std::log1p(std::exp(-1.0))));
  std::vector<double> sm = vals(softmax(from({1000, 1000}, {2})));
  CHECK(sm[0] == Approx(0.5));
}
