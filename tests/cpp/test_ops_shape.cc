// Shape ops through the C++ API: forward layouts and values, flip/dilate/pad, setitem out of
// place, and sum_to_shape (no Python binding). Their cases live in the table of
// tests/python/test_ops.py.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;

namespace {
std::vector<double> vals(const Tensor& t) {
  return t.to_vector<double>();
}
Tensor iota(const Shape& shape) {
  std::vector<double> v(size_t(numel(shape)));
  std::iota(v.begin(), v.end(), 0.0);
  return Tensor(NDArray::from_vector(v, shape), true);
}
}  // namespace

TEST_CASE("shape op forward", "[ops][hw1]") {
  Tensor a = iota({2, 3});
  CHECK(reshape(a, {3, 2}).shape() == Shape{3, 2});
  CHECK(vals(reshape(a, {6})) == vals(a));
  CHECK(broadcast_to(iota({3}), {2, 3}).shape() == Shape{2, 3});
  CHECK(vals(broadcast_to(iota({3}), {2, 3})) == std::vector<double>{0, 1, 2, 0, 1, 2});
  CHECK(vals(transpose(a)) == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor b = iota({2, 3, 4});
  CHECK(transpose(b).shape() == Shape{2, 4, 3});
  CHECK(transpose(b, Axes{0, 2}).shape() == Shape{4, 3, 2});
  CHECK(transpose(b, Axes{2, 0, 1}).shape() == Shape{4, 2, 3});
  CHECK(permute(b, {1, 2, 0}).shape() == Shape{3, 4, 2});
  CHECK(vals(concat({iota({1, 2}), iota({2, 2})}, 0)) == std::vector<double>{0, 1, 0, 1, 2, 3});
  CHECK(vals(getitem(a, {Index::at(1), Index::slice(Index::kNone, Index::kNone, -2)})) ==
        std::vector<double>{5, 3});
  // reshape of a non-contiguous tensor copies first.
  CHECK(vals(reshape(transpose(a), {6})) == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("flip, dilate, undilate and pad", "[ops][hw4]") {
  CHECK(vals(pad(iota({2}), {{1, 2}}, 9)) == std::vector<double>{9, 0, 1, 9, 9});
  CHECK(vals(flip(iota({2, 3}), {1})) == std::vector<double>{2, 1, 0, 5, 4, 3});
  Tensor a = iota({2, 2});
  Tensor d = dilate(a, {0, 1}, 1);
  CHECK(d.shape() == Shape{4, 4});
  CHECK(vals(d) == std::vector<double>{0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0});
  CHECK(vals(undilate(d, {0, 1}, 1)) == vals(a));
  CHECK(dilate(iota({1, 3, 3, 1}), {1, 2}, 2).shape() == Shape{1, 9, 9, 1});
  CHECK_THROWS_AS(dilate(a, {2}, 1), IndexError);
}

// SetItem is framework code (no homework region), so this case carries no homework tag.
TEST_CASE("setitem (functional)", "[ops]") {
  Tensor a = iota({2, 3});
  Tensor v = Tensor(NDArray::full({3}, 7.0, DType::float64), true);
  Tensor s = setitem(a, {Index::at(0)}, v);
  CHECK(vals(s) == std::vector<double>{7, 7, 7, 3, 4, 5});
  CHECK(vals(a) == std::vector<double>{0, 1, 2, 3, 4, 5});  // out of place
}

TEST_CASE("sum_to_shape (C++ only) sums a gradient back to an input's shape", "[ops][hw1]") {
  check_gradients([](auto& x) { return sum_to_shape(x[0], {3, 1}); }, {random_tensor({2, 3, 4})});
  CHECK(sum_to_shape(iota({2, 3}), {3}).to_vector<double>() == std::vector<double>{3, 5, 7});
}
