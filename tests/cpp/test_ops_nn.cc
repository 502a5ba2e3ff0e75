// Convolution and pooling (NHWC): forward against direct loops, gradients by finite
// differences, every backend against the CPU.
#include <catch2/catch.hpp>
#include <limits>

#include "gradcheck.h"

using namespace needle;
using namespace needle::testing;
using Catch::Matchers::Contains;

namespace {
// out[n, i, j, co] = sum x_pad[n, i*s + p, j*s + q, ci] * w[p, q, ci, co]
std::vector<double> direct_conv(const Tensor& x, const Tensor& w, int64_t stride, int64_t pad) {
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  int64_t n = x.shape()[0], h = x.shape()[1], wd = x.shape()[2], c = x.shape()[3];
  int64_t k = w.shape()[0], co = w.shape()[3];
  int64_t ho = (h + 2 * pad - k) / stride + 1, wo = (wd + 2 * pad - k) / stride + 1;
  std::vector<double> out(size_t(n * ho * wo * co), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j)
        for (int64_t p = 0; p < k; ++p)
          for (int64_t q = 0; q < k; ++q) {
            int64_t r = i * stride + p - pad, s = j * stride + q - pad;
            if (r < 0 || r >= h || s < 0 || s >= wd) continue;
            for (int64_t ci = 0; ci < c; ++ci)
              for (int64_t o = 0; o < co; ++o)
                out[size_t(((b * ho + i) * wo + j) * co + o)] +=
                    xv[size_t(((b * h + r) * wd + s) * c + ci)] *
                    wv[size_t(((p * k + q) * c + ci) * co + o)];
          }
  return out;
}

std::vector<double> direct_pool(const Tensor& x, int64_t k, int64_t stride, bool is_max) {
  std::vector<double> xv = x.to_vector<double>();
  int64_t n = x.shape()[0], h = x.shape()[1], wd = x.shape()[2], c = x.shape()[3];
  int64_t ho = (h - k) / stride + 1, wo = (wd - k) / stride + 1;
  std::vector<double> out;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j)
        for (int64_t ch = 0; ch < c; ++ch) {
          double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (int64_t p = 0; p < k; ++p)
            for (int64_t q = 0; q < k; ++q) {
              double v = xv[size_t(((b * h + i * stride + p) * wd + j * stride + q) * c + ch)];
              acc = is_max ? std::max(acc, v) : acc + v / double(k * k);
            }
          out.push_back(acc);
        }
  return out;
}
}  // namespace

TEST_CASE("conv forward matches a direct convolution", "[ops][hw4]") {
  for (Backend* dev : usable_backends()) {
    for (auto [stride, pad] :
         std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {1, 1}, {2, 1}, {2, 0}, {3, 2}}) {
      INFO(dev->name() << " stride " << stride << " padding " << pad);
      Tensor x = random_tensor({2, 7, 6, 3}, *dev, DType::float64, false);
      Tensor w = random_tensor({3, 3, 3, 4}, *dev, DType::float64, false);
      Tensor y = conv(x, w, stride, pad);
      NEEDLE_CHECK_CLOSE(y.to_vector<double>(), direct_conv(x, w, stride, pad), 1e-10);
      Tensor y32 = conv(astype(x, DType::float32), astype(w, DType::float32), stride, pad);
      CHECK(y32.dtype() == DType::float32);
      NEEDLE_CHECK_CLOSE(y32.to_vector<double>(), direct_conv(x, w, stride, pad), 1e-4);
    }
  }
}

TEST_CASE("conv gradients", "[ops][hw4]") {
  std::vector<OpCase> cases{
      {"stride 1 pad 1",
       [](auto& x) { return conv(x[0], x[1], 1, 1); },
       {{2, 5, 5, 2}, {3, 3, 2, 3}}},
      {"stride 1 pad 0",
       [](auto& x) { return conv(x[0], x[1], 1, 0); },
       {{1, 5, 4, 2}, {3, 3, 2, 2}}},
      {"stride 2 pad 1",
       [](auto& x) { return conv(x[0], x[1], 2, 1); },
       {{2, 6, 6, 2}, {3, 3, 2, 2}}},
      {"stride 2 odd",
       [](auto& x) { return conv(x[0], x[1], 2, 0); },
       {{1, 7, 6, 1}, {3, 3, 1, 2}}},
      {"kernel 1", [](auto& x) { return conv(x[0], x[1], 1, 0); }, {{1, 3, 3, 2}, {1, 1, 2, 3}}},
      {"padding > kernel - 1",
       [](auto& x) { return conv(x[0], x[1], 1, 3); },
       {{1, 3, 3, 1}, {2, 2, 1, 1}}},
      {"stride 3 pad 2",
       [](auto& x) { return conv(x[0], x[1], 3, 2); },
       {{1, 7, 7, 2}, {3, 3, 2, 1}}},
  };
  for (auto& c : cases) SECTION(c.name) {
      check_op(c);
    }
}

TEST_CASE("conv adjoints: input and weight gradients as ops", "[ops][hw4]") {
  // Their own gradients (conv's second derivatives) by finite differences, every backend.
  std::vector<OpCase> cases{
      {"weight grad, stride 1 pad 1",
       [](auto& x) { return conv_weight_grad(x[0], x[1], 3, 3, 1, 1); },
       {{2, 4, 5, 2}, {2, 4, 5, 3}}},
      {"weight grad, stride 2, 3x2 kernel",
       [](auto& x) { return conv_weight_grad(x[0], x[1], 3, 2, 2, 1); },
       {{1, 6, 5, 2}, {1, 3, 3, 2}}},
      {"input grad, stride 1 pad 1",
       [](auto& x) { return conv_input_grad(x[0], x[1], 4, 5, 1, 1); },
       {{2, 4, 5, 3}, {3, 3, 2, 3}}},
      {"input grad, stride 2 pad 0",
       [](auto& x) { return conv_input_grad(x[0], x[1], 7, 6, 2, 0); },
       {{1, 3, 2, 2}, {3, 3, 1, 2}}},
  };
  for (auto& c : cases) SECTION(c.name) {
      check_op(c);
    }
}

TEST_CASE("conv errors", "[ops][hw4]") {
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

TEST_CASE("pooling forward", "[ops][hw4]") {
  Tensor x = random_tensor({2, 6, 6, 3}, default_backend(), DType::float64, false);
  NEEDLE_CHECK_CLOSE(max_pool2d(x, 2).to_vector<double>(), direct_pool(x, 2, 2, true), 1e-12);
  NEEDLE_CHECK_CLOSE(avg_pool2d(x, 2).to_vector<double>(), direct_pool(x, 2, 2, false), 1e-12);
  NEEDLE_CHECK_CLOSE(max_pool2d(x, 3, 1).to_vector<double>(), direct_pool(x, 3, 1, true), 1e-12);
  CHECK(max_pool2d(x, 2).shape() == Shape{2, 3, 3, 3});
  CHECK(avg_pool2d(x, 3, 2, 1).shape() == Shape{2, 3, 3, 3});
}

TEST_CASE("pooling gradients", "[ops][hw4]") {
  std::vector<OpCase> cases{
      {"max 2x2", [](auto& x) { return max_pool2d(x[0], 2); }, {{2, 4, 4, 2}}},
      {"max 3x3 stride 1 (overlapping)",
       [](auto& x) { return max_pool2d(x[0], 3, 1); },
       {{1, 5, 5, 2}}},
      {"avg 2x2", [](auto& x) { return avg_pool2d(x[0], 2); }, {{2, 4, 4, 2}}},
      {"avg 3x3 stride 2 pad 1", [](auto& x) { return avg_pool2d(x[0], 3, 2, 1); }, {{1, 5, 5, 1}}},
      {"max pad 1", [](auto& x) { return max_pool2d(x[0], 2, 2, 1); }, {{1, 4, 4, 1}}},
      {"im2col", [](auto& x) { return im2col(x[0], 2, 3, 2); }, {{1, 5, 6, 2}}},
  };
  for (auto& c : cases) SECTION(c.name) {
      check_op(c);
    }
}
