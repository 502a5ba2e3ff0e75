// The CUDA backend's fused kernels (backend_cuda/conv.cu, pool.cu, rnn.cu, layer_norm.cu,
// group_norm.cu, softmax.cu, loss.cu) against the CPU: conv2d, conv2d_weight_grad and the
// LSTM cell kernels against the CPU's fused kernels, the norm, softmax and loss kernels
// through their ops, the four pooling kernels against the CPU composites (max_pool2d /
// avg_pool2d and their gradients through autograd, with any CPU pooling kernels turned off,
// so the oracle is the rule the contract cites). The geometries cover odd and even kernels,
// strides 1-3, padding 0-2 (and beyond the kernel), 1..64 channels, both float dtypes, ties
// for the max, and a conv large enough for the column matrix to be built in chunks. Without
// a GPU the comparisons are skipped with a WARN("skipping ..."); the registration and dtype
// checks need none and always run.
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "test_util.h"

using namespace needle;
using namespace needle::testing;
using Catch::Matchers::Contains;

namespace {

const char* const kPoolKernels[] = {kernel::kMaxPool2d, kernel::kAvgPool2d, kernel::kMaxPool2dGrad,
                                    kernel::kAvgPool2dGrad};

// A sum of n products of factors in [-1, 1], in `dtype`: relative ~eps*log2(n), absolute
// ~eps*sqrt(n)*log2(n) when the terms cancel.
Tolerance sum_tol(DType dtype, int64_t n) {
  const double eps = dtype == DType::float64 ? 2.3e-16 : 1.2e-7;
  const double log_n = std::log2(double(n) + 2);
  return {16 * eps * log_n, 8 * eps * std::sqrt(double(n) + 2) * log_n};
}

NDArray random_array(const Shape& shape, DType dtype, Backend& device, bool ties = false) {
  std::vector<double> v = random_vector(numel(shape));
  if (ties)  // -2..2: many windows hold their max more than once
    for (double& x : v) x = std::round(2 * x);
  return NDArray::from_vector(v, shape).astype(dtype).to(device);
}

struct ConvCase {
  Shape x;
  int64_t kh, kw, cout, stride, padding;
};

// Runs the conv kernels registered for `kernels` on arrays on `device` and compares them
// with the CPU's fused kernels on the same values.
void check_conv(Backend& device, const std::string& kernels, const ConvCase& c, DType dt) {
  INFO("conv x " << shape_str(c.x) << " kernel " << c.kh << "x" << c.kw << " cout " << c.cout
                 << " stride " << c.stride << " padding " << c.padding << " " << dtype_name(dt));
  auto* fwd = find_kernel<kernel::Conv2d>(kernel::kConv2d, kernels);
  auto* wgrad = find_kernel<kernel::Conv2dWeightGrad>(kernel::kConv2dWeightGrad, kernels);
  auto* cpu_fwd = find_kernel<kernel::Conv2d>(kernel::kConv2d, "cpu");
  auto* cpu_wgrad = find_kernel<kernel::Conv2dWeightGrad>(kernel::kConv2dWeightGrad, "cpu");
  REQUIRE(fwd);
  REQUIRE(wgrad);
  REQUIRE(cpu_fwd);
  REQUIRE(cpu_wgrad);
  Backend& cpu = default_backend();
  const Shape ws{c.kh, c.kw, c.x[3], c.cout};
  const Shape os{c.x[0], (c.x[1] + 2 * c.padding - c.kh) / c.stride + 1,
                 (c.x[2] + 2 * c.padding - c.kw) / c.stride + 1, c.cout};
  NDArray x = random_array(c.x, dt, cpu), w = random_array(ws, dt, cpu);
  NDArray g = random_array(os, dt, cpu);

  // Outputs start as NaN on both sides, so an entry a kernel fails to write shows.
  NDArray want = NDArray::full(os, NAN, dt, cpu), got = NDArray::full(os, NAN, dt, device);
  NDArray xd = x.to(device), wd = w.to(device), gd = g.to(device);
  cpu_fwd(x.view(), w.view(), c.stride, c.padding, want.view());
  fwd(xd.view(), wd.view(), c.stride, c.padding, got.view());
  CHECK(compare(got.to_vector<double>(), want.to_vector<double>(),
                sum_tol(dt, c.kh * c.kw * c.x[3])) == "");

  NDArray want_w = NDArray::full(ws, NAN, dt, cpu), got_w = NDArray::full(ws, NAN, dt, device);
  cpu_wgrad(x.view(), g.view(), c.stride, c.padding, want_w.view());
  wgrad(xd.view(), gd.view(), c.stride, c.padding, got_w.view());
  CHECK(compare(got_w.to_vector<double>(), want_w.to_vector<double>(),
                sum_tol(dt, os[0] * os[1] * os[2])) == "");
}

std::vector<ConvCase> conv_cases() {
  return {
      {{2, 5, 6, 3}, 3, 3, 4, 1, 1},      // odd kernel, "same" padding
      {{1, 7, 7, 2}, 2, 2, 3, 2, 0},      // even kernel, stride 2
      {{2, 6, 5, 2}, 3, 2, 2, 3, 2},      // non-square kernel, stride 3 skipping input
      {{1, 3, 4, 1}, 1, 1, 2, 1, 3},      // padding beyond the kernel
      {{2, 4, 5, 7}, 1, 1, 5, 1, 0},      // 1x1 at stride 1: x is the column matrix
      {{2, 4, 4, 5}, 1, 1, 3, 2, 1},      // 1x1 that still gathers
      {{3, 9, 8, 16}, 5, 5, 8, 1, 2},     // 5x5
      {{1, 8, 8, 33}, 4, 4, 17, 2, 2},    // even kernel with padding, odd channels
      {{2, 12, 10, 64}, 3, 3, 64, 1, 1},  // 64 channels in and out
      {{2, 1, 1, 4}, 1, 1, 6, 1, 0},      // a single pixel
  };
}

struct PoolCase {
  Shape x;
  int64_t kernel, stride, padding;
};

// Runs the pooling kernels registered for `kernels` on arrays on `device` and compares them
// with the CPU composite ops (forward, and the gradient autograd gives for a random output
// gradient).
void check_pool(Backend& device, const std::string& kernels, const PoolCase& c, bool is_max,
                DType dt, bool ties) {
  INFO((is_max ? "max" : "avg") << "_pool2d x " << shape_str(c.x) << " kernel " << c.kernel
                                << " stride " << c.stride << " padding " << c.padding << " "
                                << dtype_name(dt) << (ties ? " with ties" : ""));
  auto* fwd =
      find_kernel<kernel::Pool2d>(is_max ? kernel::kMaxPool2d : kernel::kAvgPool2d, kernels);
  auto* bwd = find_kernel<kernel::Pool2dGrad>(
      is_max ? kernel::kMaxPool2dGrad : kernel::kAvgPool2dGrad, kernels);
  REQUIRE(fwd);
  REQUIRE(bwd);
  Backend& cpu = default_backend();
  const Shape os{c.x[0], (c.x[1] + 2 * c.padding - c.kernel) / c.stride + 1,
                 (c.x[2] + 2 * c.padding - c.kernel) / c.stride + 1, c.x[3]};
  NDArray x = random_array(c.x, dt, cpu, ties), g = random_array(os, dt, cpu);

  std::vector<double> want_out, want_grad;
  {
    std::vector<std::unique_ptr<KernelDisabled>> off;
    for (const char* name : kPoolKernels)
      off.push_back(std::make_unique<KernelDisabled>(name, "cpu"));
    Tensor xt(x, true);
    Tensor y = is_max ? max_pool2d(xt, c.kernel, c.stride, c.padding)
                      : avg_pool2d(xt, c.kernel, c.stride, c.padding);
    REQUIRE(y.shape() == os);
    summation(y * Tensor(g)).backward();
    want_out = y.to_vector<double>();
    want_grad = xt.grad().to_vector<double>();
  }

  const kernel::PoolWindow window{c.kernel, c.stride, c.padding};
  NDArray xd = x.to(device), gd = g.to(device);
  NDArray out = NDArray::full(os, NAN, dt, device), in_grad = NDArray::full(c.x, NAN, dt, device);
  fwd(xd.view(), window, out.view());
  bwd(xd.view(), gd.view(), window, in_grad.view());
  const int64_t windows_per_input =
      ((c.kernel + c.stride - 1) / c.stride) * ((c.kernel + c.stride - 1) / c.stride);
  CHECK(compare(out.to_vector<double>(), want_out, sum_tol(dt, c.kernel * c.kernel)) == "");
  CHECK(compare(in_grad.to_vector<double>(), want_grad, sum_tol(dt, windows_per_input)) == "");
}

std::vector<PoolCase> pool_cases() {
  return {
      {{2, 4, 4, 3}, 2, 2, 0},   // the classic 2x2 / 2
      {{1, 5, 7, 1}, 3, 1, 1},   // overlapping windows, one channel
      {{2, 7, 6, 16}, 3, 2, 1},  // overlapping at stride 2, with padding
      {{1, 9, 8, 5}, 2, 3, 0},   // stride beyond the kernel: some inputs in no window
      {{2, 6, 6, 64}, 4, 2, 2},  // even kernel, padding 2, 64 channels
      {{1, 3, 4, 2}, 2, 1, 2},   // padding = kernel: windows wholly in the padding
      {{1, 5, 5, 3}, 5, 1, 2},   // 5x5 "same"
      {{3, 1, 1, 7}, 1, 1, 0},   // 1x1: the identity
  };
}

// Runs the LSTM cell kernels registered for `kernels` on arrays on `device` and compares
// them with the CPU's fused kernels (themselves checked against the composite in
// test_kernels.cc) on the same values. Element-wise, so the tolerance is a few ulps of the
// transcendental functions.
void check_lstm(Backend& device, const std::string& kernels, int64_t b, int64_t h, DType dt) {
  INFO("lstm_cell B " << b << " H " << h << " " << dtype_name(dt));
  auto* fwd = find_kernel<kernel::LstmCell>(kernel::kLstmCell, kernels);
  auto* bwd = find_kernel<kernel::LstmCellGrad>(kernel::kLstmCellGrad, kernels);
  auto* cpu_fwd = find_kernel<kernel::LstmCell>(kernel::kLstmCell, "cpu");
  auto* cpu_bwd = find_kernel<kernel::LstmCellGrad>(kernel::kLstmCellGrad, "cpu");
  REQUIRE(fwd);
  REQUIRE(bwd);
  REQUIRE(cpu_fwd);
  REQUIRE(cpu_bwd);
  Backend& cpu = default_backend();
  const Shape gs{b, 4 * h}, cs{b, h};
  NDArray gates = NDArray::from_vector(random_vector(numel(gs), -4, 4), gs).astype(dt);
  NDArray c_prev = random_array(cs, dt, cpu), dh = random_array(cs, dt, cpu);
  NDArray dc = random_array(cs, dt, cpu);
  NDArray gd = gates.to(device), cd = c_prev.to(device), dhd = dh.to(device), dcd = dc.to(device);
  const Tolerance tol = dt == DType::float64 ? Tolerance{1e-12, 1e-13} : Tolerance{1e-5, 1e-6};
  auto nan = [](const Shape& s, DType d, Backend& dev) { return NDArray::full(s, NAN, d, dev); };

  NDArray want_h = nan(cs, dt, cpu), want_c = nan(cs, dt, cpu);
  NDArray got_h = nan(cs, dt, device), got_c = nan(cs, dt, device);
  cpu_fwd(gates.view(), c_prev.view(), want_h.view(), want_c.view());
  fwd(gd.view(), cd.view(), got_h.view(), got_c.view());
  CHECK(compare(got_h.to_vector<double>(), want_h.to_vector<double>(), tol) == "");
  CHECK(compare(got_c.to_vector<double>(), want_c.to_vector<double>(), tol) == "");

  NDArray want_dg = nan(gs, dt, cpu), want_dc = nan(cs, dt, cpu);
  NDArray got_dg = nan(gs, dt, device), got_dc = nan(cs, dt, device);
  cpu_bwd(gates.view(), c_prev.view(), dh.view(), dc.view(), want_dg.view(), want_dc.view());
  bwd(gd.view(), cd.view(), dhd.view(), dcd.view(), got_dg.view(), got_dc.view());
  CHECK(compare(got_dg.to_vector<double>(), want_dg.to_vector<double>(), tol) == "");
  CHECK(compare(got_dc.to_vector<double>(), want_dc.to_vector<double>(), tol) == "");
}

bool registered_kernel_on(const std::string& name, const std::string& device) {
  for (const auto& [n, d] : registered_kernels())
    if (n == name && d == device) return true;
  return false;
}

}  // namespace

TEST_CASE("the cuda fused kernels are registered and reject non-float dtypes", "[cuda][kernels]") {
#ifdef NEEDLE_WITH_CUDA
  auto* conv = find_kernel<kernel::Conv2d>(kernel::kConv2d, "cuda");
  auto* wgrad = find_kernel<kernel::Conv2dWeightGrad>(kernel::kConv2dWeightGrad, "cuda");
  REQUIRE(conv);
  REQUIRE(wgrad);
  // The dtype is dispatched on the host before any device memory is touched, so this needs
  // no GPU: the views below point nowhere.
  auto view = [](const Shape& s, DType dt) {
    View v;
    v.dtype = dt;
    v.shape = s;
    v.strides.assign(s.size(), 1);
    for (size_t d = s.size() - 1; d > 0; --d) v.strides[d - 1] = v.strides[d] * s[d];
    return v;
  };
  const View x = view({1, 4, 4, 2}, DType::int32), w = view({3, 3, 2, 2}, DType::int32);
  const View y = view({1, 4, 4, 2}, DType::int32);
  CHECK_THROWS_AS(conv(x, w, 1, 1, y), TypeError);
  CHECK_THROWS_WITH(conv(x, w, 1, 1, y), Contains("[conv2d]"));
  CHECK_THROWS_WITH(wgrad(x, y, 1, 1, w), Contains("[conv2d_weight_grad]"));
  const View p = view({1, 2, 2, 2}, DType::int64);
  const kernel::PoolWindow window{2, 2, 0};
  for (const char* name : {kernel::kMaxPool2d, kernel::kAvgPool2d}) {
    auto* fwd = find_kernel<kernel::Pool2d>(name, "cuda");
    REQUIRE(fwd);
    CHECK_THROWS_AS(fwd(x, window, p), TypeError);
    CHECK_THROWS_WITH(fwd(x, window, p), Contains(std::string("[") + name + "]"));
  }
  for (const char* name : {kernel::kMaxPool2dGrad, kernel::kAvgPool2dGrad}) {
    auto* bwd = find_kernel<kernel::Pool2dGrad>(name, "cuda");
    REQUIRE(bwd);
    CHECK_THROWS_AS(bwd(x, p, window, x), TypeError);
    CHECK_THROWS_WITH(bwd(x, p, window, x), Contains(std::string("[") + name + "]"));
  }
  auto* lstm = find_kernel<kernel::LstmCell>(kernel::kLstmCell, "cuda");
  auto* lstm_grad = find_kernel<kernel::LstmCellGrad>(kernel::kLstmCellGrad, "cuda");
  REQUIRE(lstm);
  REQUIRE(lstm_grad);
  const View gates = view({2, 8}, DType::int32), cell = view({2, 2}, DType::int32);
  CHECK_THROWS_AS(lstm(gates, cell, cell, cell), TypeError);
  CHECK_THROWS_WITH(lstm(gates, cell, cell, cell), Contains("[lstm_cell]"));
  CHECK_THROWS_WITH(lstm_grad(gates, cell, cell, cell, gates, cell), Contains("[lstm_cell_grad]"));
#else
  // Built without nvcc: the stub backend registers no kernels.
  CHECK(find_kernel<kernel::Conv2d>(kernel::kConv2d, "cuda") == nullptr);
  for (const char* name : kPoolKernels) CHECK(find_kernel<kernel::Pool2d>(name, "cuda") == nullptr);
  CHECK(find_kernel<kernel::LstmCell>(kernel::kLstmCell, "cuda") == nullptr);
  CHECK(find_kernel<kernel::LstmCellGrad>(kernel::kLstmCellGrad, "cuda") == nullptr);
#endif
}

TEST_CASE("the cuda conv and pooling kernels agree with the cpu", "[cuda][kernels]") {
  Backend& cuda = find_backend("cuda");
  if (!cuda.enabled()) {
    WARN("skipping cuda: " << cuda.disabled_reason());
    return;
  }
  for (DType dt : {DType::float32, DType::float64}) {
    for (const ConvCase& c : conv_cases()) check_conv(cuda, "cuda", c, dt);
    // 131072 pixel rows of 576 columns: more than 256 MiB of columns in either dtype, so
    // the kernels run in chunks (float64: three) and the weight gradient accumulates them.
    check_conv(cuda, "cuda", {{8, 128, 128, 64}, 3, 3, 8, 1, 1}, dt);
    for (const PoolCase& c : pool_cases())
      for (bool is_max : {true, false}) check_pool(cuda, "cuda", c, is_max, dt, false);
    for (const PoolCase& c : pool_cases()) check_pool(cuda, "cuda", c, true, dt, true);
  }
}

TEST_CASE("the cuda LSTM cell kernels agree with the cpu", "[cuda][kernels]") {
  Backend& cuda = find_backend("cuda");
  if (!cuda.enabled()) {
    WARN("skipping cuda: " << cuda.disabled_reason());
    return;
  }
  // B = 1, H not a multiple of 8 or of a warp, many rows, and many blocks.
  for (DType dt : {DType::float32, DType::float64})
    for (auto [b, h] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 7}, {3, 5}, {4, 8}, {2, 300}, {600, 33}, {1, 1}, {130, 1000}})
      check_lstm(cuda, "cuda", b, h, dt);
}

TEST_CASE("the cuda group norm kernels agree with the cpu", "[cuda][kernels]") {
#ifdef NEEDLE_WITH_CUDA
  CHECK(registered_kernel_on(kernel::kGroupNorm, "cuda"));
  CHECK(registered_kernel_on(kernel::kGroupNormGrad, "cuda"));
#endif
  Backend& cuda = find_backend("cuda");
  if (!cuda.enabled()) {
    WARN("skipping cuda: " << cuda.disabled_reason());
    return;
  }
  // Through the op, each device running its own fused kernels: groups of one element,
  // groups shorter than a warp, groups beyond one block's width, channels per group not
  // dividing the block, and more groups than blocks in the grid.
  struct Case {
    Shape shape;
    int64_t groups;
  };
  for (DType dt : {DType::float32, DType::float64})
    for (const Case& k : std::vector<Case>{{{3, 4}, 4}, {{2, 6, 5}, 3}, {{2, 4, 3, 3}, 1},
                                           {{4, 64, 28, 28}, 32}, {{70000, 2, 1}, 1}}) {
      INFO(shape_str(k.shape) << " G " << k.groups << " " << dtype_name(dt));
      const int64_t c = k.shape[1];
      std::vector<double> xv = random_vector(numel(k.shape), -3, 3);
      std::vector<double> cv = random_vector(numel(k.shape));
      std::vector<double> wv = random_vector(size_t(c)), bv = random_vector(size_t(c));
      auto run = [&](Backend& dev) {
        auto leaf = [&](const std::vector<double>& v, const Shape& s) {
          return Tensor(NDArray::from_vector(v, s).astype(dt).to(dev), true);
        };
        Tensor x = leaf(xv, k.shape), w = leaf(wv, {c}), b = leaf(bv, {c});
        Tensor cw(NDArray::from_vector(cv, k.shape).astype(dt).to(dev));
        TensorTuple gn = group_norm(x, w, b, k.groups, 1e-5);
        (summation(gn[0] * cw) + summation(gn[1] * gn[2])).backward();
        std::vector<std::vector<double>> out;
        for (const Tensor& t : {gn[0], gn[1], gn[2], x.grad(), w.grad(), b.grad()})
          out.push_back(t.to_vector<double>());
        return out;
      };
      auto want = run(default_backend()), got = run(cuda);
      const Tolerance tol = dt == DType::float64 ? Tolerance{1e-10, 1e-10} : Tolerance{1e-3, 1e-3};
      for (size_t i = 0; i < want.size(); ++i) {
        INFO("result " << i);
        CHECK(compare(got[i], want[i], tol) == "");
      }
    }
}

TEST_CASE("the cuda norm, softmax and loss kernels agree with the cpu", "[cuda][kernels]") {
#ifdef NEEDLE_WITH_CUDA
  for (const char* name : {kernel::kLayerNorm, kernel::kLayerNormGrad, kernel::kSoftmax,
                           kernel::kSoftmaxGrad, kernel::kLogSoftmax, kernel::kLogSoftmaxGrad,
                           kernel::kSoftmaxCrossEntropy, kernel::kSoftmaxCrossEntropyGrad}) {
    INFO(name);
    CHECK(registered_kernel_on(name, "cuda"));
  }
#endif
  Backend& cuda = find_backend("cuda");
  if (!cuda.enabled()) {
    WARN("skipping cuda: " << cuda.disabled_reason());
    return;
  }
  // Through the ops, each device running its own fused kernels: a row of 1, rows shorter
  // than a warp, rows beyond one block's width, and more rows than blocks in the grid.
  for (DType dt : {DType::float32, DType::float64})
    for (auto [r, d] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 1}, {3, 7}, {5, 300}, {70000, 3}, {64, 4097}}) {
      INFO("R " << r << " D " << d << " " << dtype_name(dt));
      const Shape xs{r, d};
      std::vector<double> xv = random_vector(numel(xs), -3, 3), cv = random_vector(numel(xs));
      std::vector<double> wv = random_vector(size_t(d)), bv = random_vector(size_t(d));
      std::vector<int64_t> labels(static_cast<size_t>(r));
      for (int64_t i = 0; i < r; ++i) labels[size_t(i)] = (i * 5 + 1) % d;
      auto run = [&](Backend& dev) {
        auto leaf = [&](const std::vector<double>& v, const Shape& s) {
          return Tensor(NDArray::from_vector(v, s).astype(dt).to(dev), true);
        };
        Tensor c(NDArray::from_vector(cv, xs).astype(dt).to(dev));
        Tensor y_labels(NDArray::from_vector(labels, {r}).to(dev));
        std::vector<std::vector<double>> out;
        Tensor x = leaf(xv, xs), w = leaf(wv, {d}), b = leaf(bv, {d});
        TensorTuple ln = layer_norm(x, w, b, 1e-5);
        (summation(ln[0] * c) + summation(ln[1] * ln[2])).backward();
        for (const Tensor& t : {ln[0], ln[1], ln[2], x.grad(), w.grad(), b.grad()})
          out.push_back(t.to_vector<double>());
        for (int op = 0; op < 3; ++op) {
          Tensor z = leaf(xv, xs);
          Tensor loss = op == 0   ? summation(softmax(z) * c)
                        : op == 1 ? summation(logsoftmax(z) * c)
                                  : softmax_cross_entropy(z, y_labels);
          loss.backward();
          out.push_back(loss.to_vector<double>());
          out.push_back(z.grad().to_vector<double>());
        }
        return out;
      };
      auto want = run(default_backend()), got = run(cuda);
      const Tolerance tol = dt == DType::float64 ? Tolerance{1e-10, 1e-10} : Tolerance{1e-3, 1e-3};
      for (size_t i = 0; i < want.size(); ++i) {
        INFO("result " << i);
        CHECK(compare(got[i], want[i], tol) == "");
      }
    }
}
