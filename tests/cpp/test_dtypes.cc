// Integer and bool dtypes at the NDArray and Tensor layers: numpy's promotion table (hard-coded
// from numpy 1.24's np.promote_types as the oracle), astype in every direction, the result
// dtypes of arithmetic, division, math and comparisons, and where / argmax / take /
// scatter_add, including take's scatter-add gradient checked by finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "gradcheck.h"
#include "needle/needle.h"

using namespace needle;
using namespace needle::testing;

namespace {

const DType kAll[] = {DType::bool_, DType::uint8,   DType::int32,
                      DType::int64, DType::float32, DType::float64};

NDArray arr(const std::vector<double>& v, DType dt, Shape shape = {}) {
  if (shape.empty()) shape = {int64_t(v.size())};
  return NDArray::from_vector(v, shape).astype(dt);
}
std::vector<double> vals(const NDArray& a) {
  return a.to_vector<double>();
}

}  // namespace

TEST_CASE("dtype names, sizes and numpy's promotion table", "[dtypes]") {
  // numpy 1.24: [str(np.promote_types(a, b)) for b in names] for each a.
  const char* names[] = {"bool", "uint8", "int32", "int64", "float32", "float64"};
  const char* table[6][6] = {
      {"bool", "uint8", "int32", "int64", "float32", "float64"},
      {"uint8", "uint8", "int32", "int64", "float32", "float64"},
      {"int32", "int32", "int32", "int64", "float64", "float64"},
      {"int64", "int64", "int64", "int64", "float64", "float64"},
      {"float32", "float32", "float64", "float64", "float32", "float64"},
      {"float64", "float64", "float64", "float64", "float64", "float64"},
  };
  const size_t sizes[] = {1, 1, 4, 8, 4, 8};
  for (int i = 0; i < 6; ++i) {
    CHECK(dtype_name(dtype_from_name(names[i])) == std::string(names[i]));
    CHECK(dtype_size(kAll[i]) == sizes[i]);
    for (int j = 0; j < 6; ++j) {
      INFO(names[i] << " + " << names[j]);
      CHECK(dtype_name(promote_types(kAll[i], kAll[j])) == std::string(table[i][j]));
      // NDArray's add gives the promoted dtype, except bool + bool (logical or) stays bool.
      CHECK(dtype_name((arr({1}, kAll[i]) + arr({1}, kAll[j])).dtype()) ==
            std::string(table[i][j]));
    }
  }
  CHECK_THROWS_AS(dtype_from_name("int8"), TypeError);
}

TEST_CASE("astype converts in every direction as numpy's astype", "[dtypes]") {
  // Round trips through any dtype that holds the values.
  for (DType from : kAll)
    for (DType to : kAll) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const std::vector<double> v = from == DType::bool_ || to == DType::bool_
                                        ? std::vector<double>{0, 1, 1, 0}
                                        : std::vector<double>{0, 1, 7, 100};
      CHECK(vals(arr(v, from).astype(to).astype(from)) == v);
    }
  // The values numpy 1.24 gives on x86 for NaN, infinities and out-of-range floats.
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const std::vector<double> x = {nan, inf, 1e20, -1e20, 3e9, 300.7, -1.5, -300, 255.9, 256, -0.5};
  CHECK(vals(arr(x, DType::float64).astype(DType::int32)) ==
        std::vector<double>{-2147483648., -2147483648., -2147483648., -2147483648., -2147483648.,
                            300, -1, -300, 255, 256, 0});
  CHECK(vals(arr(x, DType::float64).astype(DType::uint8)) ==
        std::vector<double>{0, 0, 0, 0, 0, 44, 255, 212, 255, 0, 0});
  const auto i64 = arr(x, DType::float32).astype(DType::int64).to_vector<int64_t>();
  CHECK(i64[0] == std::numeric_limits<int64_t>::min());
  CHECK(i64[4] == 3000000000);
  CHECK(i64[6] == -1);
  CHECK(vals(arr({0, -0.0, 0.5, nan, -2}, DType::float32).astype(DType::bool_)) ==
        std::vector<double>{0, 0, 1, 1, 1});
  CHECK(vals(arr({300, -1, 256}, DType::int64).astype(DType::uint8)) ==
        std::vector<double>{44, 255, 0});
}

TEST_CASE("integer arithmetic, division, math and comparisons follow numpy", "[dtypes]") {
  const NDArray i = arr({-3, 0, 2, 7}, DType::int32);
  // Scalars: an int scalar keeps the integer dtype, a float scalar gives float64.
  CHECK((i + 2).dtype() == DType::int32);
  CHECK(vals(i * 3) == std::vector<double>{-9, 0, 6, 21});
  CHECK((i + 2.5).dtype() == DType::float64);
  CHECK(vals(i + 2.5) == std::vector<double>{-0.5, 2.5, 4.5, 9.5});
  CHECK((arr({1, 0}, DType::bool_) + 1).dtype() == DType::int64);  // numpy: int64
  CHECK((arr({1, 0}, DType::bool_) * true).dtype() == DType::bool_);
  CHECK((arr({250}, DType::uint8) + 300).dtype() == DType::int32);  // the value does not fit
  CHECK((arr({1.5}, DType::float32) + 2).dtype() == DType::float32);
  // Wrapping as numpy.
  CHECK(vals(arr({2147483647}, DType::int32) + arr({1}, DType::int32)) ==
        std::vector<double>{-2147483648.});
  CHECK(vals(arr({200}, DType::uint8) + arr({100}, DType::uint8)) == std::vector<double>{44});
  CHECK(vals(-arr({1, 0}, DType::uint8)) == std::vector<double>{255, 0});
  // True division of integers is float64; integer powers stay integer.
  CHECK((i / 2).dtype() == DType::float64);
  CHECK(vals(i / arr({2, 1, 4, -2}, DType::int64)) == std::vector<double>{-1.5, 0, 0.5, -3.5});
  CHECK(vals(i.pow(2)) == std::vector<double>{9, 0, 4, 49});
  CHECK((i.pow(2)).dtype() == DType::int32);
  CHECK_THROWS_AS(i.pow(-1), ValueError);
  CHECK_THROWS_AS(NDArray::binary(BinaryOp::power, i, arr({1, -1, 0, 0}, DType::int32)),
                  ValueError);
  // Math of integers computes in float64 (int32/int64) or float32 (uint8/bool).
  CHECK(i.exp().dtype() == DType::float64);
  CHECK(arr({4}, DType::uint8).sqrt().dtype() == DType::float32);
  CHECK(vals(arr({4}, DType::uint8).sqrt()) == std::vector<double>{2});
  CHECK(arr({1}, DType::bool_).unary(UnaryOp::tanh).dtype() == DType::float32);
  CHECK(i.abs().dtype() == DType::int32);
  CHECK(vals(i.unary(UnaryOp::sign)) == std::vector<double>{-1, 0, 1, 1});
  CHECK_THROWS_AS(-arr({1}, DType::bool_), TypeError);
  CHECK_THROWS_AS(arr({1}, DType::bool_) - arr({1}, DType::bool_), TypeError);
  // Comparisons: bool for integer inputs, 1.0/0.0 in the float dtype for float inputs.
  CHECK((i > 0).dtype() == DType::bool_);
  CHECK(vals(i > 0) == std::vector<double>{0, 0, 1, 1});
  CHECK((i == 0.5).dtype() == DType::bool_);
  CHECK((i == arr({-3, 1, 2, 0}, DType::int64)).dtype() == DType::bool_);
  CHECK((arr({1}, DType::float32) < 2).dtype() == DType::float32);
  CHECK((i < arr({0, 0, 0, 0}, DType::float32)).dtype() == DType::float64);
  // Reductions: integer sums are int64, max/min keep the dtype (bool max = any).
  CHECK(i.sum().dtype() == DType::int64);
  CHECK(vals(i.sum()) == std::vector<double>{6});
  CHECK(vals(arr({1, 1, 0}, DType::bool_).sum()) == std::vector<double>{2});
  CHECK(vals(arr({250, 10}, DType::uint8).sum()) == std::vector<double>{260});
  CHECK(i.max().dtype() == DType::int32);
  CHECK(vals(i.min()) == std::vector<double>{-3});
  CHECK(vals(arr({0, 1}, DType::bool_).max()) == std::vector<double>{1});
  // Integer matmul, and mixed int/float matmul promotes.
  const NDArray m = arr({1, 2, 3, 4, 5, 6}, DType::int64, {2, 3});
  const NDArray mt = m.permute({1, 0});
  CHECK(vals(m.matmul(mt)) == std::vector<double>{14, 32, 32, 77});
  CHECK(m.matmul(mt).dtype() == DType::int64);
  CHECK(m.matmul(mt.astype(DType::float32)).dtype() == DType::float64);
  CHECK(vals(arr({1, 0, 1, 1}, DType::bool_, {2, 2}).matmul(arr({0, 1, 0, 0}, DType::bool_,
                                                                   {2, 2}))) ==
        std::vector<double>{0, 1, 0, 1});
}

TEST_CASE("where, argmax and argmin", "[dtypes]") {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const NDArray cond = arr({1, 0, 2, 0}, DType::int32, {2, 2});
  const NDArray a = arr({inf, nan, 3, 4}, DType::float32, {2, 2});
  const NDArray b = arr({-1, 5}, DType::int64);
  const NDArray w = NDArray::where(cond, a, b);  // a is chosen exactly, even inf and NaN
  CHECK(w.dtype() == DType::float64);
  CHECK(w.shape() == Shape{2, 2});
  const auto wv = vals(w);
  CHECK(wv[0] == inf);
  CHECK(wv[1] == 5);
  CHECK(wv[2] == 3);
  CHECK(wv[3] == 5);
  CHECK(vals(NDArray::where(arr({0.5, 0}, DType::float32), arr({1}, DType::uint8),
                            arr({7, 8}, DType::uint8))) == std::vector<double>{1, 8});
  CHECK_THROWS_AS(NDArray::where(arr({1, 0, 1}, DType::bool_), b, b), ValueError);

  // numpy: argmax([[1, nan, 3], [2, 7, 7]], axis=1) = [1, 1]; argmin of ints = [1, 2].
  const NDArray x = arr({1, nan, 3, 2, 7, 7}, DType::float64, {2, 3});
  CHECK(x.argmax(1).dtype() == DType::int64);
  CHECK(vals(x.argmax(1)) == std::vector<double>{1, 1});
  CHECK(vals(x.argmax(0)) == std::vector<double>{1, 0, 1});
  CHECK(vals(arr({4, 1, 1, 0, 2, -3}, DType::int32, {2, 3}).argmin(1)) ==
        std::vector<double>{1, 2});
  CHECK(vals(arr({4, 1, 9, 0}, DType::uint8, {2, 2}).argmax()) == std::vector<double>{2});
  CHECK(arr({4, 1, 9, 0}, DType::uint8, {2, 2}).argmax(-1, true).shape() == Shape{2, 1});
  CHECK_THROWS_AS(x.argmax(2), IndexError);
  CHECK_THROWS_AS(NDArray::empty({2, 0}).argmax(1), ValueError);
}

TEST_CASE("take and scatter_add: integer-array indexing and its adjoint", "[dtypes]") {
  const NDArray a = arr({3, 1, 4, 1, 5, 9}, DType::int32, {2, 3});
  // numpy: np.take(a, [[0, -1], [2, 2]], axis=1).
  const NDArray t = a.take(arr({0, -1, 2, 2}, DType::int64, {2, 2}), 1);
  CHECK(t.shape() == Shape{2, 2, 2});
  CHECK(t.dtype() == DType::int32);
  CHECK(vals(t) == std::vector<double>{3, 4, 4, 4, 1, 9, 9, 9});
  CHECK(vals(a.take(arr({1}, DType::int32), 0)) == std::vector<double>{1, 5, 9});
  CHECK(a.take(arr({}, DType::int64), 0).shape() == Shape{0, 3});
  try {
    a.take(arr({0, 3}, DType::int64), 1);
    FAIL("no error");
  } catch (const IndexError& e) {
    CHECK(std::string(e.what()) == "[take] index 3 is out of bounds for axis 1 with size 3");
  }
  CHECK_THROWS_AS(a.take(arr({-4}, DType::int64), 1), IndexError);
  CHECK_THROWS_AS(a.take(arr({0}, DType::float32), 1), TypeError);
  CHECK_THROWS_AS(a.take(arr({0}, DType::int64), 2), IndexError);

  // Repeated indices accumulate: np.add.at(zeros((3, 2)), [2, 0, 2], v).
  const NDArray v = arr({1, 2, 3, 4, 5, 6}, DType::float64, {3, 2});
  const NDArray s = NDArray::scatter_add(arr({2, 0, -1}, DType::int64), v, 0, {3, 2});
  CHECK(vals(s) == std::vector<double>{3, 4, 0, 0, 6, 8});
  CHECK(vals(NDArray::scatter_add(arr({1, 1, 1}, DType::int32), arr({1, 1, 1}, DType::uint8),
                                  0, {2})) == std::vector<double>{0, 3});
  CHECK_THROWS_AS(NDArray::scatter_add(arr({0}, DType::int64), v, 0, {3, 2}), ValueError);
  CHECK_THROWS_AS(NDArray::scatter_add(arr({0, 1, 3}, DType::int64), v, 0, {3, 2}), IndexError);
}

TEST_CASE("integer tensors never require grad; gather's gradient scatters and adds", "[dtypes]") {
  CHECK_FALSE(Tensor(arr({1, 2}, DType::int64), true).requires_grad());
  CHECK_FALSE(Tensor(arr({1, 2}, DType::bool_)).set_requires_grad().requires_grad());
  Tensor x(arr({1, 2, 3}, DType::float32), true);
  CHECK_FALSE(argmax(x).requires_grad());
  CHECK_FALSE(x.astype(DType::int32).requires_grad());
  CHECK(argmax(x).dtype() == DType::int64);

  // A scalar op keeps the scalar's kind: an integer scalar keeps an int64 tensor int64.
  const Tensor labels(arr({1, 2}, DType::int64));
  CHECK(Tensor::make_from_op(std::make_shared<AddScalar>(1, Scalar::Kind::integer), {labels})
            .dtype() == DType::int64);
  CHECK(add_scalar(labels, 1.0).dtype() == DType::float64);
  CHECK(mul_scalar(Tensor(arr({1, 2}, DType::float32)), 3).dtype() == DType::float32);

  // Finite-difference checks of take and where live in the one op-case table
  // (tests/python/test_ops.py); these are the exact values.
  const Tensor idx(arr({2, 0, 2, 1, 2}, DType::int64));
  // Repeated indices: the gradient counts each use.
  Tensor w(NDArray::full({3, 2}, 0.5, DType::float64), true);
  take(w, idx, 0).sum().backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 1, 3, 3});
  // where: the gradient goes to the chosen side only.
  Tensor a(arr({1, 2, 3}, DType::float64), true), b(arr({4, 5, 6}, DType::float64), true);
  where(Tensor(arr({1, 0, 1}, DType::bool_)), a, b).sum().backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1, 0, 1});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0, 1, 0});
}
