// Tuple ops through the C++ API: make_tuple, tuple_get_item, split, stack,
// fused_add_scalars, and a tuple's grad. Their cases live in the table of
// tests/python/test_ops.py.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;

TEST_CASE("tuple ops forward", "[ops][hw1]") {
  Tensor a = random_tensor({2, 3}), b = random_tensor({2, 3});
  TensorTuple t = make_tuple({a, b});
  CHECK(t.size() == 2);
  CHECK(t[1].to_vector<double>() == b.to_vector<double>());
  CHECK(t[-1].to_vector<double>() == b.to_vector<double>());
  CHECK_THROWS_AS(t[2], IndexError);
  TensorTuple f = fused_add_scalars(a, 1.0, 2.0);
  CHECK(f[1].to_vector<double>() == (a + 2.0).to_vector<double>());
  CHECK(t.tensors().size() == 2);
  CHECK_FALSE(t.detach().requires_grad());
}

TEST_CASE("stack and split forward", "[ops][hw4]") {
  Tensor a = random_tensor({2, 3}), b = random_tensor({2, 3});
  TensorTuple t = make_tuple({a, b});
  Tensor s = stack({a, b}, 1);
  CHECK(s.shape() == Shape{2, 2, 3});
  Tensor s2 = stack(t, 0);
  CHECK(s2.shape() == Shape{2, 2, 3});
  TensorTuple parts = split(s, 1);
  CHECK(parts.size() == 2);
  CHECK(parts[0].to_vector<double>() == a.to_vector<double>());
}

TEST_CASE("a tuple's grad is a tuple", "[ops][hw1]") {
  Tensor a = random_tensor({2}), b = random_tensor({2});
  TensorTuple t = make_tuple({a, b});
  (t[0] * 3.0 + t[1]).sum().backward();
  TensorTuple g = t.grad();
  REQUIRE(g.defined());
  CHECK(g[0].to_vector<double>() == std::vector<double>{3, 3});
  CHECK(g[1].to_vector<double>() == std::vector<double>{1, 1});
}
