// matmul through the C++ API: 2-D, batched with broadcast batch dims, 1-D operands, and
// skipping gradients no input needs. Its cases live in the table of tests/python/test_ops.py.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;

TEST_CASE("matmul forward", "[ops][hw1]") {
  Tensor a(NDArray::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}));
  Tensor b(NDArray::from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {3, 2}));
  CHECK(matmul(a, b).to_vector<double>() == std::vector<double>{4, 5, 10, 11});
  CHECK(matmul(random_tensor({4, 1, 2, 3}), random_tensor({5, 3, 6})).shape() == Shape{4, 5, 2, 6});
  CHECK(matmul(random_tensor({3}), random_tensor({3, 2})).shape() == Shape{2});
  CHECK(matmul(random_tensor({2, 3}), random_tensor({3})).shape() == Shape{2});
  CHECK(matmul(random_tensor({3}), random_tensor({3})).shape() == Shape{});
}

TEST_CASE("matmul skips the gradient of inputs that need none", "[ops][hw1]") {
  Tensor x = random_tensor({5, 3}, default_backend(), DType::float64, false);
  Tensor w = random_tensor({3, 2});
  Tensor y = matmul(x, w);
  auto grads = y.op()->gradient_values(Tensor::ones_like(y), y);
  CHECK_FALSE(grads[0].defined());
  CHECK(grads[1].defined());
}
