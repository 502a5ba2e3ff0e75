// Convolution and pooling (NHWC) through the C++ API: the defaults and the errors (framework
// code, so no homework tag: the checks run before any homework region). Their cases (numpy
// forward, finite-difference gradients, fused vs composite) live in the table of
// tests/python/test_ops.py; the fused kernels' C++ checks are in test_kernels.cc.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;
using Catch::Matchers::Contains;

TEST_CASE("Conv defaults to stride 1, padding 1, as conv does", "[ops]") {
  CHECK(Conv().stride == 1);
  CHECK(Conv().padding == 1);
  CHECK(conv(random_tensor({1, 5, 5, 2}), random_tensor({3, 3, 2, 4})).shape() ==
        Shape{1, 5, 5, 4});
}

TEST_CASE("conv errors", "[ops]") {
  CHECK_THROWS_AS(conv(random_tensor({2, 5, 5}), random_tensor({3, 3, 5, 2})), ValueError);
  CHECK_THROWS_AS(conv(random_tensor({1, 5, 5, 2}), random_tensor({3, 3, 3, 2})), ValueError);
  CHECK_THROWS_AS(conv(random_tensor({1, 2, 2, 1}), random_tensor({3, 3, 1, 1}), 1, 0), ValueError);
  // The adjoints check that the output gradient fits the input and kernel.
  CHECK_THROWS_AS(
      conv_weight_grad(random_tensor({1, 5, 5, 2}), random_tensor({1, 4, 4, 3}), 3, 3, 1, 1),
      ValueError);
  CHECK_THROWS_WITH(
      conv_weight_grad(random_tensor({1, 5, 5, 2}), random_tensor({1, 4, 4, 3}), 3, 3, 1, 1),
      Contains("[conv_weight_grad] output gradient of shape (1, 4, 4, 3)") &&
          Contains("input of shape (1, 5, 5, 2)"));
  CHECK_THROWS_AS(
      conv_input_grad(random_tensor({1, 5, 5, 3}), random_tensor({3, 3, 2, 4}), 5, 5, 1, 1),
      ValueError);
  CHECK_THROWS_WITH(
      conv_input_grad(random_tensor({1, 5, 5, 3}), random_tensor({3, 3, 2, 4}), 5, 5, 1, 1),
      Contains("[conv_input_grad] output gradient of shape (1, 5, 5, 3)") &&
          Contains("weight of shape (3, 3, 2, 4)"));
}
