// NDArray: views share the buffer and have the right strides, copies materialize them,
// operations broadcast like numpy, and every user mistake throws an error naming the op.
#include <catch2/catch.hpp>

#include <numeric>

#include "needle/ndarray.h"

using namespace needle;

namespace {
NDArray iota(const Shape& shape, DType dtype = DType::float32) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return NDArray::from_vector(v, shape).astype(dtype);
}
std::vector<double> values(const NDArray& a) { return a.to_vector<double>(); }
}  // namespace

TEST_CASE("views share the buffer and rewrite only metadata", "[ndarray][hw0]") {
  NDArray a = iota({2, 3, 4});
  CHECK(a.is_compact());
  CHECK(a.strides() == Strides{12, 4, 1});

  NDArray p = a.permute({2, 0, 1});
  CHECK(p.buffer() == a.buffer());
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Strides{1, 12, 4});
  CHECK_FALSE(p.is_compact());

  NDArray r = a.reshape({6, -1});
  CHECK(r.buffer() == a.buffer());
  CHECK(r.shape() == Shape{6, 4});

  NDArray s = a.getitem({Index::at(1), Index::slice(Index::kNone, Index::kNone, -2)});
  CHECK(s.shape() == Shape{2, 4});
  CHECK(s.strides() == Strides{-8, 1});
  CHECK(values(s) == std::vector<double>{20, 21, 22, 23, 12, 13, 14, 15});

  NDArray b = iota({3, 1}).broadcast_to({2, 3, 4});
  CHECK(b.strides() == Strides{0, 1, 0});
  CHECK(values(b.sum()) == std::vector<double>{24});
}

TEST_CASE("reshape of a strided view is a view when the layout allows", "[ndarray][hw0]") {
  NDArray a = iota({4, 6});
  NDArray rows = a.getitem({Index::slice(Index::kNone, Index::kNone, 2)});  // (2, 6), stride 12
  NDArray split = rows.reshape({2, 2, 3});
  CHECK(split.buffer() == a.buffer());
  CHECK(split.strides() == Strides{12, 3, 1});
  CHECK(values(split)[6] == 12);
  CHECK_THROWS_AS(rows.reshape({12}), ValueError);  // rows are 12 apart: needs a copy
  CHECK_THROWS_AS(a.permute({1, 0}).reshape({24}), ValueError);
  CHECK(values(a.permute({1, 0}).compact().reshape({24}))[1] == 6);
}

TEST_CASE("setitem writes through views, in place", "[ndarray][hw0]") {
  NDArray a = NDArray::full({3, 4}, 0.0);
  a.setitem({Index::at(1)}, iota({4}));
  a.setitem({Index::all(), Index::slice(3, 4)}, 9.0);
  CHECK(values(a) == std::vector<double>{0, 0, 0, 9, 0, 1, 2, 9, 0, 0, 0, 9});
  // overlapping source is read before it is written
  NDArray v = iota({5});
  v.setitem({Index::slice(1)}, v.getitem({Index::slice(Index::kNone, 4)}));
  CHECK(values(v) == std::vector<double>{0, 0, 1, 2, 3});
}

TEST_CASE("arithmetic broadcasts, promotes and reduces like numpy", "[ndarray][hw0]") {
  NDArray col = iota({3, 1}), row = iota({1, 4});
  NDArray sum = col + row;
  CHECK(sum.shape() == Shape{3, 4});
  CHECK(values(sum)[11] == 5);
  CHECK(values(2.0 - iota({2})) == std::vector<double>{2, 1});
  CHECK(values(iota({3}) >= 1.0) == std::vector<double>{0, 1, 1});
  CHECK((iota({2}) + iota({2}, DType::float64)).dtype() == DType::float64);
  NDArray a = iota({2, 3, 4});
  CHECK(values(a.sum(Axes{0, 2})) == std::vector<double>{60, 92, 124});
  CHECK(a.max(Axes{1}, true).shape() == Shape{2, 1, 4});
  CHECK(values(a.max(Axes{-1})) == std::vector<double>{3, 7, 11, 15, 19, 23});
}

TEST_CASE("matmul: batched, broadcast batch dims, 1-D operands", "[ndarray][hw0]") {
  NDArray a = iota({2, 2, 3}), b = iota({3, 2});
  NDArray c = a.matmul(b);
  CHECK(c.shape() == Shape{2, 2, 2});
  CHECK(values(c) == std::vector<double>{10, 13, 28, 40, 46, 67, 64, 94});
  CHECK(iota({3}).matmul(iota({3})).shape() == Shape{});
  CHECK(values(iota({3}).matmul(iota({3}))) == std::vector<double>{5});
  CHECK(values(b.permute({1, 0}).matmul(iota({3}))) == std::vector<double>{10, 13});
}

// flip and pad are the CNN assignment's (hw4); concatenate and stack are framework code.
TEST_CASE("flip, pad, concatenate, stack", "[ndarray][hw4]") {
  NDArray f = iota({2, 3}).flip({0, -1});
  CHECK(f.strides() == Strides{-3, -1});
  CHECK(values(f) == std::vector<double>{5, 4, 3, 2, 1, 0});
  CHECK_THROWS_AS(iota({2, 3}).flip({1, -1}), ValueError);
  NDArray a = iota({2, 2});
  CHECK(values(a.pad({{1, 0}, {0, 1}})) == std::vector<double>{0, 0, 0, 0, 1, 0, 2, 3, 0});
  CHECK(NDArray::concatenate({a, a}, 1).shape() == Shape{2, 4});
  NDArray s = NDArray::stack({a, a.flip({0})}, 0);
  CHECK(s.shape() == Shape{2, 2, 2});
  CHECK(values(s) == std::vector<double>{0, 1, 2, 3, 2, 3, 0, 1});
}

TEST_CASE("device transfer and dtype conversion round-trip", "[ndarray][hw0]") {
  NDArray a = iota({2, 3}, DType::float64);
  CHECK(a.astype(DType::float32).dtype() == DType::float32);
  CHECK(values(a.to(default_backend())) == values(a));
  CHECK(a.getitem({Index::at(1), Index::at(2)}).item() == 5);
}

TEST_CASE("user mistakes throw errors naming the op and the shapes", "[ndarray][errors][hw0]") {
  NDArray a = iota({3, 4});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message([&] { a.reshape({5}); }) == "[reshape] cannot reshape (3, 4) into (5,)");
  CHECK_THROWS_AS(a.broadcast_to({4, 3}), ValueError);
  CHECK_THROWS_WITH(a + iota({5, 6}), Catch::Contains("(3, 4)") && Catch::Contains("(5, 6)"));
  CHECK_THROWS_WITH(a.matmul(iota({5, 6})), Catch::Contains("[matmul]"));
  CHECK_THROWS_AS(a.getitem({Index::at(3)}), IndexError);
  CHECK_THROWS_AS(a.getitem({Index::at(0), Index::at(0), Index::at(0)}), IndexError);
  CHECK_THROWS_AS(a.permute({0, 0}), ValueError);
  CHECK_THROWS_AS(a.sum(Axes{2}), IndexError);
  CHECK_THROWS_AS(a.as_strided({4, 4}, {4, 1}), ValueError);
  CHECK_THROWS_AS(dtype_from_name("int7"), TypeError);
  CHECK_THROWS_AS(NDArray::full({0, 2}, 0).max(Axes{0}), ValueError);
  CHECK_THROWS_AS(find_backend("tpu"), RuntimeError);
  Backend& cuda = find_backend("cuda");
  if (!cuda.enabled()) CHECK_THROWS_AS(a.to(cuda), RuntimeError);
}
