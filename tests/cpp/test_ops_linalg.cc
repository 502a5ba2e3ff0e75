// matmul: 2-D, batched with broadcast batch dims, 1-D operands, and its gradients.
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

TEST_CASE("matmul gradients", "[ops][hw1]") {
  std::vector<OpCase> cases{
      {"2-D", [](auto& x) { return matmul(x[0], x[1]); }, {{3, 4}, {4, 5}}},
      {"batched", [](auto& x) { return matmul(x[0], x[1]); }, {{2, 3, 4}, {2, 4, 2}}},
      {"broadcast batch", [](auto& x) { return matmul(x[0], x[1]); }, {{2, 1, 3, 4}, {3, 4, 2}}},
      {"batched @ 2-D", [](auto& x) { return matmul(x[0], x[1]); }, {{2, 3, 4}, {4, 2}}},
      {"vector @ matrix", [](auto& x) { return matmul(x[0], x[1]); }, {{4}, {4, 3}}},
      {"matrix @ vector", [](auto& x) { return matmul(x[0], x[1]); }, {{2, 3, 4}, {4}}},
      {"vector @ vector", [](auto& x) { return matmul(x[0], x[1]); }, {{4}, {4}}},
      {"transposed operand",
       [](auto& x) { return matmul(transpose(x[0]), x[1]); },
       {{4, 3}, {4, 2}}},
  };
  for (auto& c : cases) SECTION(c.name) {
      check_op(c);
    }
}

TEST_CASE("matmul skips the gradient of inputs that need none", "[ops][hw1]") {
  Tensor x = random_tensor({5, 3}, default_backend(), DType::float64, false);
  Tensor w = random_tensor({3, 2});
  Tensor y = matmul(x, w);
  auto grads = y.op()->gradient_values(Tensor::ones_like(y), y);
  CHECK_FALSE(grads[0].defined());
  CHECK(grads[1].defined());
}
