// The fused-kernel registry (needle/kernels.h) and every fused kernel against its composite
// path: lookups by (kernel, device), the typed lookup's check, KernelDisabled, the thread
// setting reached through the registry, and the conv, pooling, per-channel, LSTM cell,
// attention, Adam, layer-norm, group-norm, softmax-family and softmax cross-entropy kernels
// against the composites their ops run when a device has none (the reference backend has
// none; on the CPU, KernelDisabled turns one off); the LSTM cell's operand checks and second
// order too.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>

#include "gradcheck.h"
#include "reference_backend.h"

using namespace needle;
using namespace needle::testing;
using Catch::Matchers::Contains;

namespace {
bool has(const std::string& name, const std::string& device) {
  const auto all = registered_kernels();
  return std::find(all.begin(), all.end(), std::make_pair(name, device)) != all.end();
}

using Results = std::vector<std::vector<double>>;

// The fused kernels against their composites: run(device) -> results, on the CPU with its
// kernels, on the CPU with `kernels` disabled (the composite), and on the reference backend
// (no fused kernels at all); every result must agree within tol.
template <class Run>
void check_fused_matches_composite(const Run& run, const std::vector<const char*>& kernels,
                                   double tol) {
  const Results fused = run(default_backend());
  Results composite;
  {
    std::vector<std::unique_ptr<KernelDisabled>> off;
    for (const char* name : kernels) off.push_back(std::make_unique<KernelDisabled>(name, "cpu"));
    composite = run(default_backend());
  }
  const Results reference = run(reference_backend());
  for (size_t i = 0; i < fused.size(); ++i) {
    INFO("result " << i);
    NEEDLE_CHECK_CLOSE(fused[i], composite[i], tol);
    NEEDLE_CHECK_CLOSE(fused[i], reference[i], tol);
  }
}
}  // namespace

TEST_CASE("the registry finds kernels by (name, device) and checks their type", "[kernels]") {
  CHECK(find_kernel<kernel::Conv2d>(kernel::kConv2d, "cpu") != nullptr);
  CHECK(find_kernel<kernel::Conv2dWeightGrad>(kernel::kConv2dWeightGrad, default_backend()));
  CHECK(find_kernel<kernel::AdamStep>(kernel::kAdamStep, "cpu") != nullptr);
  CHECK(has(kernel::kConv2d, "cpu"));
  // A device without the kernel, or an unknown kernel: nullptr (the op composes instead).
  CHECK(find_kernel<kernel::Conv2d>(kernel::kConv2d, reference_backend()) == nullptr);
  CHECK(find_kernel<kernel::Conv2d>("no_such_kernel", "cpu") == nullptr);
  // Asking with another function type is a bug in the caller, not a silent cast.
  CHECK_THROWS_AS(find_kernel<kernel::AdamStep>(kernel::kConv2d, "cpu"), TypeError);
  CHECK_THROWS_WITH(find_kernel<kernel::AdamStep>(kernel::kConv2d, "cpu"), Contains("[conv2d]"));
}

TEST_CASE("register, disable and unregister a kernel", "[kernels]") {
  static int calls = 0;
  kernel::SetNumThreads* probe = [](int n) { calls += n; };
  register_kernel<kernel::SetNumThreads>("test_probe", "cpu", probe);
  find_kernel<kernel::SetNumThreads>("test_probe", "cpu")(3);
  CHECK(calls == 3);
  {
    KernelDisabled off("test_probe", "cpu");
    CHECK(find_kernel<kernel::SetNumThreads>("test_probe", "cpu") == nullptr);
    KernelDisabled none("not_registered", "cpu");  // disabling a missing kernel is a no-op
  }
  CHECK(find_kernel<kernel::SetNumThreads>("test_probe", "cpu") == probe);
  CHECK(unregister_kernel("test_probe", "cpu"));
  CHECK_FALSE(unregister_kernel("test_probe", "cpu"));
  CHECK_FALSE(has("test_probe", "cpu"));
}

TEST_CASE("the cpu thread count is a registry setting", "[kernels]") {
  auto* get = find_kernel<kernel::GetNumThreads>(kernel::kGetNumThreads, "cpu");
  auto* set = find_kernel<kernel::SetNumThreads>(kernel::kSetNumThreads, "cpu");
  REQUIRE(get);
  REQUIRE(set);
  const int before = get();
  set(1);
  CHECK(get() == 1);
  set(0);  // the default
  CHECK(get() >= 1);
  set(before);
  CHECK(get() == before);
}

TEST_CASE("fused conv kernels agree with the im2col composite", "[kernels][hw4]") {
  // The same conv, forward and both gradients, three ways: the CPU's fused kernels, the CPU
  // with them disabled (im2col + matmul), and the reference backend (no fused kernels).
  // The geometries cover padding beyond the kernel, strides that skip input, non-square
  // kernels, and (the last) many cache blocks spread over threads: 5-11 MB of columns, so
  // at least two blocks even at the largest block size (4 MiB, conv.cc's block_bytes).
  struct Geometry {
    Shape x, w;
    int64_t stride, padding;
  };
  for (auto [xs, ws, stride, pad] : std::vector<Geometry>{{{2, 5, 6, 3}, {3, 3, 3, 4}, 1, 1},
                                                          {{1, 7, 7, 2}, {3, 2, 2, 3}, 2, 0},
                                                          {{2, 6, 5, 2}, {2, 3, 2, 2}, 3, 2},
                                                          {{1, 3, 4, 1}, {1, 1, 1, 2}, 1, 3},
                                                          {{4, 48, 48, 16}, {3, 3, 16, 8}, 1, 1}}) {
    INFO("x " << shape_str(xs) << " w " << shape_str(ws) << " stride " << stride << " pad " << pad);
    std::vector<double> xv = random_vector(numel(xs)), wv = random_vector(numel(ws));
    for (DType dt : {DType::float64, DType::float32}) {
      auto run = [&](Backend& dev) {
        Tensor x(NDArray::from_vector(xv, xs, dev).astype(dt), true);
        Tensor w(NDArray::from_vector(wv, ws, dev).astype(dt), true);
        Tensor y = conv(x, w, stride, pad);
        rng().seed(7);
        Tensor weights(NDArray::from_vector(random_vector(y.size()), y.shape(), dev).astype(dt));
        summation(y * weights).backward();
        return std::vector<std::vector<double>>{y.to_vector<double>(), x.grad().to_vector<double>(),
                                                w.grad().to_vector<double>()};
      };
      check_fused_matches_composite(
          run, {kernel::kConv2d, kernel::kConv2dWeightGrad, kernel::kConv2dInputGrad},
          dt == DType::float64 ? 1e-10 : 1e-4);
    }
  }
}

TEST_CASE("fused pooling kernels agree with the windows composite", "[kernels][hw4]") {
  // Forward and input gradient of max and average pooling, fused and composite (the
  // kernels disabled), over overlapping windows, padding and a batch split over threads.
  struct Geometry {
    Shape x;
    int64_t kernel, stride, padding;
  };
  for (auto [xs, k, stride, pad] : std::vector<Geometry>{{{2, 6, 7, 3}, 2, 0, 0},
                                                         {{1, 5, 5, 2}, 3, 1, 0},
                                                         {{2, 7, 6, 2}, 3, 2, 1},
                                                         {{8, 16, 16, 8}, 2, 2, 1}}) {
    INFO("x " << shape_str(xs) << " kernel " << k << " stride " << stride << " pad " << pad);
    std::vector<double> xv = random_vector(numel(xs));
    for (bool max : {true, false}) {
      for (DType dt : {DType::float64, DType::float32}) {
        auto run = [&]() {
          Tensor x(NDArray::from_vector(xv, xs).astype(dt), true);
          Tensor y = max ? max_pool2d(x, k, stride, pad) : avg_pool2d(x, k, stride, pad);
          rng().seed(7);
          summation(y * Tensor(NDArray::from_vector(random_vector(y.size()), y.shape()).astype(dt)))
              .backward();
          return std::vector<std::vector<double>>{y.to_vector<double>(),
                                                  x.grad().to_vector<double>()};
        };
        auto fused = run();
        std::vector<std::vector<double>> composite;
        {
          KernelDisabled a(max ? kernel::kMaxPool2d : kernel::kAvgPool2d, "cpu");
          composite = run();
        }
        const double tol = dt == DType::float64 ? 1e-12 : 1e-5;
        for (size_t i = 0; i < fused.size(); ++i) NEEDLE_CHECK_CLOSE(fused[i], composite[i], tol);
      }
    }
  }
}

TEST_CASE("fused per-channel kernels agree with their composites", "[kernels]") {
  // batch_norm (channel_sums and channel_affine) forward and gradients, on NCHW arrays, on
  // channels-last views (the NCHW view of an NHWC array, read without a copy) and on (B, C).
  for (const Shape& stored : std::vector<Shape>{{4, 3, 5, 6}, {4, 5, 6, 3}, {33, 7}}) {
    const bool channels_last = stored.size() == 4 && stored[3] == 3;
    INFO("stored " << shape_str(stored) << (channels_last ? " (viewed as NCHW)" : ""));
    std::vector<double> xv = random_vector(numel(stored));
    const int64_t c = channels_last ? stored[3] : stored[1];
    std::vector<double> wv = random_vector(c), bv = random_vector(c);
    for (DType dt : {DType::float64, DType::float32}) {
      auto run = [&]() {
        Tensor x0(NDArray::from_vector(xv, stored).astype(dt), true);
        Tensor x = channels_last ? permute(x0, Axes{0, 3, 1, 2}) : x0;
        Tensor w(NDArray::from_vector(wv, {c}).astype(dt), true);
        Tensor b(NDArray::from_vector(bv, {c}).astype(dt), true);
        auto [y, mean, var] = batch_norm(x, w, b, 1e-5);
        rng().seed(3);
        summation(y * y *
                  Tensor(NDArray::from_vector(random_vector(y.size()), y.shape()).astype(dt)))
            .backward();
        return std::vector<std::vector<double>>{
            y.to_vector<double>(),        mean.to_vector<double>(),
            var.to_vector<double>(),      x0.grad().to_vector<double>(),
            w.grad().to_vector<double>(), b.grad().to_vector<double>()};
      };
      auto fused = run();
      std::vector<std::vector<double>> composite;
      {
        KernelDisabled a(kernel::kChannelSums, "cpu"), b(kernel::kChannelAffine, "cpu");
        composite = run();
      }
      const double tol = dt == DType::float64 ? 1e-10 : 1e-4;
      for (size_t i = 0; i < fused.size(); ++i) NEEDLE_CHECK_CLOSE(fused[i], composite[i], tol);
    }
  }
}

TEST_CASE("the fused Adam kernel agrees with the composite NDArray update", "[kernels][hw2]") {
  // Step after step, on 70,000 elements so the kernel also splits the work over threads.
  const Shape shape{70, 1000};
  const int64_t n = 70000;
  for (DType dt : {DType::float64, DType::float32}) {
    for (double wd : {0.0, 0.01}) {
      INFO(dtype_name(dt) << " weight decay " << wd);
      std::vector<double> p0 = random_vector(n);
      NDArray p_fused = NDArray::from_vector(p0, shape).astype(dt), p_comp = p_fused;
      NDArray m_fused, v_fused, m_comp, v_comp;
      for (int64_t t = 1; t <= 3; ++t) {
        NDArray g = NDArray::from_vector(random_vector(n), shape).astype(dt);
        p_fused = adam_update(p_fused, g, m_fused, v_fused, 0.01, 0.9, 0.999, 1e-8, wd, t);
        KernelDisabled off(kernel::kAdamStep, "cpu");
        p_comp = adam_update(p_comp, g, m_comp, v_comp, 0.01, 0.9, 0.999, 1e-8, wd, t);
      }
      const double tol = dt == DType::float64 ? 1e-12 : 1e-5;
      NEEDLE_CHECK_CLOSE(p_fused.to_vector<double>(), p_comp.to_vector<double>(), tol);
      NEEDLE_CHECK_CLOSE(m_fused.to_vector<double>(), m_comp.to_vector<double>(), tol);
      NEEDLE_CHECK_CLOSE(v_fused.to_vector<double>(), v_comp.to_vector<double>(), tol);
    }
  }
}

TEST_CASE("adam_update's composite follows the course's rule", "[kernels][hw2]") {
  // The composite a student writes (the fused kernel, compared above, stays off).
  KernelDisabled off(kernel::kAdamStep, "cpu");
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  std::vector<double> pv{0.5, -1.5, 2.0}, m(3, 0), v(3, 0);
  NDArray p = NDArray::from_vector(pv, {3}), mp, vp;
  const std::vector<std::vector<double>> grads{{1, -2, 0.5}, {0.3, 0.3, -4}, {0, 1, 1}};
  for (size_t s = 0; s < grads.size(); ++s) {
    const double t = double(s + 1);
    p = adam_update(p, NDArray::from_vector(grads[s], {3}), mp, vp, lr, b1, b2, eps, wd,
                    int64_t(t));
    for (size_t i = 0; i < 3; ++i) {
      const double g = grads[s][i] + wd * pv[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      pv[i] -=
          lr * (m[i] / (1 - std::pow(b1, t))) / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
    }
    NEEDLE_CHECK_CLOSE(p.to_vector<double>(), pv, 1e-12);
  }
}

TEST_CASE("adam_update checks its operands", "[kernels]") {
  NDArray q = NDArray::full({3}, 1.0), m0, v0;
  CHECK_THROWS_WITH(adam_update(q, NDArray::full({4}, 1.0), m0, v0, 0.1, 0.9, 0.999, 1e-8, 0, 1),
                    Contains("[adam_update] parameter of shape (3,) has a grad of shape (4,)"));
  CHECK_THROWS_AS(adam_update(q, NDArray::full({3}, 1.0), m0, v0, 0.1, 0.9, 0.999, 1e-8, 0, 0),
                  ValueError);
  NDArray bad_m = NDArray::full({2}, 0.0), bad_v = NDArray::full({2}, 0.0);
  CHECK_THROWS_AS(adam_update(q, q, bad_m, bad_v, 0.1, 0.9, 0.999, 1e-8, 0, 1), ValueError);
}

TEST_CASE("fused LSTM cell kernels agree with the composite", "[kernels]") {
  // lstm_cell forward and gradients (of both outputs, and of h or c alone, whose adjoint
  // then arrives as zeros), and lstm_cell_grad's forward and its composite second order:
  // fused, with both kernels disabled, and on the reference backend (no fused kernels).
  // B = 1, H not a multiple of 8, H beyond one 256-column chunk, rows over threads, and
  // non-contiguous inputs (which the op compacts).
  for (auto [b, h] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {3, 5}, {4, 8}, {2, 300}, {600, 33}}) {
    const Shape gs{b, 4 * h}, cs{b, h};
    std::vector<double> gv = random_vector(numel(gs), -3, 3), cv = random_vector(numel(cs), -2, 2);
    std::vector<double> w1 = random_vector(numel(cs)), w2 = random_vector(numel(cs));
    std::vector<double> w3 = random_vector(numel(gs));
    for (bool strided : {false, true}) {
      for (DType dt : {DType::float64, DType::float32}) {
        INFO("B " << b << " H " << h << " " << dtype_name(dt) << (strided ? " strided" : ""));
        auto run = [&](Backend& dev) {
          auto leaf = [&](const std::vector<double>& v, const Shape& s) {
            NDArray a = NDArray::from_vector(v, s, dev).astype(dt);
            return Tensor(strided ? as_noncontiguous(a) : a, true);
          };
          auto constant = [&](const std::vector<double>& v, const Shape& s) {
            return Tensor(NDArray::from_vector(v, s, dev).astype(dt));
          };
          std::vector<std::vector<double>> out;
          for (int used : {0, 1, 2}) {  // both outputs, h only, c only
            Tensor gates = leaf(gv, gs), c_prev = leaf(cv, cs);
            TensorTuple hc = lstm_cell(gates, c_prev);
            Tensor loss = used == 2 ? summation(hc[1] * constant(w2, cs))
                                    : summation(hc[0] * constant(w1, cs));
            if (used == 0) loss = loss + summation(hc[1] * constant(w2, cs));
            loss.backward();
            if (used == 0) {
              out.push_back(hc[0].to_vector<double>());
              out.push_back(hc[1].to_vector<double>());
            }
            out.push_back(gates.grad().to_vector<double>());
            out.push_back(c_prev.grad().to_vector<double>());
          }
          Tensor gates = leaf(gv, gs), c_prev = leaf(cv, cs), dh = leaf(w1, cs), dc = leaf(w2, cs);
          TensorTuple d = lstm_cell_grad(gates, c_prev, dh, dc);
          out.push_back(d[0].to_vector<double>());
          out.push_back(d[1].to_vector<double>());
          (summation(d[0] * constant(w3, gs)) + summation(d[1] * constant(w1, cs))).backward();
          for (const Tensor& x : {gates, c_prev, dh, dc})
            out.push_back(x.grad().to_vector<double>());
          return out;
        };
        check_fused_matches_composite(run, {kernel::kLstmCell, kernel::kLstmCellGrad},
                                      dt == DType::float64 ? 1e-12 : 1e-5);
      }
    }
  }
}

TEST_CASE("lstm_cell's second order matches finite differences", "[kernels]") {
  // The gradient of lstm_cell_grad is a Tensor composite: check it, and through it the
  // gradient of a gradient of lstm_cell, against central differences (float64).
  for (bool fused : {true, false}) {
    INFO((fused ? "fused" : "composite"));
    std::unique_ptr<KernelDisabled> a, g;
    if (!fused) {
      a = std::make_unique<KernelDisabled>(kernel::kLstmCell, "cpu");
      g = std::make_unique<KernelDisabled>(kernel::kLstmCellGrad, "cpu");
    }
    check_gradients(
        [](const std::vector<Tensor>& x) {
          TensorTuple d = lstm_cell_grad(x[0], x[1], x[2], x[3]);
          return concat({d[0], d[1]}, 1);
        },
        {random_tensor({2, 12}, default_backend(), DType::float64, true, -2, 2),
         random_tensor({2, 3}), random_tensor({2, 3}), random_tensor({2, 3})});
  }
}

TEST_CASE("lstm_cell checks its operands", "[kernels]") {
  auto t = [](const Shape& s, DType dt = DType::float32) {
    return Tensor(NDArray::full(s, 0.5, dt));
  };
  CHECK_THROWS_AS(lstm_cell(t({2, 6}), t({2, 1})), ValueError);
  CHECK_THROWS_WITH(lstm_cell(t({2, 6}), t({2, 1})),
                    Contains("[lstm_cell] expects gates of shape (B, 4H), the pre-activations i, "
                             "f, g, o side by side, got shape (2, 6)"));
  CHECK_THROWS_WITH(lstm_cell(t({2, 2, 8}), t({2, 2})), Contains("got shape (2, 2, 8)"));
  CHECK_THROWS_WITH(lstm_cell(t({8}), t({2})), Contains("[lstm_cell] expects gates"));
  CHECK_THROWS_AS(lstm_cell(t({2, 8}), t({2, 3})), ValueError);
  CHECK_THROWS_WITH(lstm_cell(t({2, 8}), t({2, 3})),
                    Contains("[lstm_cell] gates of shape (2, 8) need c_prev of shape (2, 2), got "
                             "shape (2, 3)"));
  CHECK_THROWS_WITH(lstm_cell(t({2, 8}), t({2})), Contains("got shape (2,)"));
  CHECK_THROWS_AS(lstm_cell(t({2, 8}), t({2, 2}, DType::float64)), TypeError);
  CHECK_THROWS_WITH(
      lstm_cell(t({2, 8}), t({2, 2}, DType::float64)),
      Contains("[lstm_cell] gates of dtype float32 and c_prev of dtype float64 differ"));
  CHECK_THROWS_AS(lstm_cell(t({2, 8}, DType::int32), t({2, 2}, DType::int32)), TypeError);
  CHECK_THROWS_WITH(
      lstm_cell(t({2, 8}, DType::int32), t({2, 2}, DType::int32)),
      Contains("[lstm_cell] needs float32 or float64 inputs, got gates of dtype int32"));
  CHECK_THROWS_WITH(
      lstm_cell_grad(t({2, 8}), t({2, 2}), t({2, 3}), t({2, 2})),
      Contains("[lstm_cell_grad] dh of shape (2, 3) does not match c_prev of shape (2, 2)"));
  CHECK_THROWS_WITH(
      lstm_cell_grad(t({2, 8}), t({2, 2}), t({2, 2}), t({2, 2}, DType::float64)),
      Contains("[lstm_cell_grad] dc of dtype float64 and c_prev of dtype float32 differ"));
  CHECK_THROWS_WITH(lstm_cell_grad(t({2, 7}), t({2, 2}), t({2, 2}), t({2, 2})),
                    Contains("[lstm_cell_grad] expects gates of shape (B, 4H)"));
  // Empty batches and zero hidden units are fine, fused or composed.
  for (bool fused : {true, false}) {
    std::unique_ptr<KernelDisabled> a, g;
    if (!fused) {
      a = std::make_unique<KernelDisabled>(kernel::kLstmCell, "cpu");
      g = std::make_unique<KernelDisabled>(kernel::kLstmCellGrad, "cpu");
    }
    for (auto [b, h] : std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {2, 0}}) {
      Tensor gates(NDArray::full({b, 4 * h}, 0.5), true), c_prev(NDArray::full({b, h}, 0.5), true);
      TensorTuple hc = lstm_cell(gates, c_prev);
      CHECK(hc[0].shape() == Shape{b, h});
      CHECK(hc[1].shape() == Shape{b, h});
      summation(hc[0] + hc[1]).backward();
      CHECK(gates.grad().shape() == Shape{b, 4 * h});
      CHECK(c_prev.grad().shape() == Shape{b, h});
    }
  }
}

TEST_CASE("fused attention kernels agree with the composite", "[kernels]") {
  // scaled_dot_product_attention's output and its q, k, v gradients: fused, with both
  // kernels disabled, and on the reference backend (no fused kernels); strided inputs (the
  // op compacts them), a broadcast float mask (strides 0 in the kernel's view), dropout, and
  // both backward schedules (whole heads per thread; key blocks of a few heads split).
  struct Case {
    Shape q;
    int64_t tk;
    bool causal, mask;
    double dropout;
  };
  for (const Case& c : std::vector<Case>{{{1, 1, 70, 16}, 130, true, false, 0.0},
                                         {{3, 2, 65, 8}, 64, false, true, 0.0},
                                         {{2, 1, 130, 4}, 70, true, true, 0.3},
                                         {{4, 2, 5, 3}, 9, false, false, 0.5}}) {
    const Shape ks{c.q[0], c.q[1], c.tk, c.q[3]}, ms{c.q[1], 1, c.tk};
    const std::vector<double> qv = random_vector(numel(c.q)), kv = random_vector(numel(ks)),
                              vv = random_vector(numel(ks)), mv = random_vector(numel(ms), -2, 2),
                              w = random_vector(numel(c.q));
    for (bool strided : {false, true}) {
      for (DType dt : {DType::float64, DType::float32}) {
        INFO("q " << shape_str(c.q) << " Tk " << c.tk << " " << dtype_name(dt)
                  << (strided ? " strided" : ""));
        auto run = [&](Backend& dev) {
          auto leaf = [&](const std::vector<double>& v, const Shape& s) {
            NDArray a = NDArray::from_vector(v, s, dev).astype(dt);
            return Tensor(strided ? as_noncontiguous(a) : a, true);
          };
          Tensor q = leaf(qv, c.q), k = leaf(kv, ks), v = leaf(vv, ks);
          std::optional<Tensor> mask;
          if (c.mask) mask = Tensor(NDArray::from_vector(mv, ms, dev).astype(dt));
          Tensor out =
              scaled_dot_product_attention(q, k, v, mask, c.causal, std::nullopt, c.dropout, 42);
          summation(out * Tensor(NDArray::from_vector(w, c.q, dev).astype(dt))).backward();
          return std::vector<std::vector<double>>{
              out.to_vector<double>(), q.grad().to_vector<double>(), k.grad().to_vector<double>(),
              v.grad().to_vector<double>()};
        };
        check_fused_matches_composite(run, {kernel::kAttention, kernel::kAttentionGrad},
                                      dt == DType::float64 ? 1e-11 : 1e-4);
      }
    }
  }
}

TEST_CASE("fused norm, softmax and loss kernels agree with their composites", "[kernels]") {
  // layer_norm (y and the saved statistics), softmax, logsoftmax and softmax_cross_entropy,
  // forward and backward, fused, with the kernels disabled, and on the reference backend
  // (no fused kernels); rows of 1, of 7 and beyond one 256-element chunk, on many threads.
  const std::vector<const char*> names = {kernel::kLayerNorm,
                                          kernel::kLayerNormGrad,
                                          kernel::kSoftmax,
                                          kernel::kSoftmaxGrad,
                                          kernel::kLogSoftmax,
                                          kernel::kLogSoftmaxGrad,
                                          kernel::kSoftmaxCrossEntropy,
                                          kernel::kSoftmaxCrossEntropyGrad};
  for (const char* name : names) CHECK(has(name, "cpu"));
  for (auto [r, d] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {5, 3}, {3, 300}, {700, 41}}) {
    const Shape xs{r, d};
    std::vector<double> xv = random_vector(numel(xs), -3, 3), cv = random_vector(numel(xs));
    std::vector<double> wv = random_vector(size_t(d)), bv = random_vector(size_t(d));
    std::vector<int64_t> labels(static_cast<size_t>(r));
    for (int64_t i = 0; i < r; ++i) labels[size_t(i)] = (i * 5 + 1) % d;
    for (DType dt : {DType::float64, DType::float32}) {
      INFO("R " << r << " D " << d << " " << dtype_name(dt));
      auto run = [&](Backend& dev) {
        auto leaf = [&](const std::vector<double>& v, const Shape& s) {
          return Tensor(NDArray::from_vector(v, s, dev).astype(dt), true);
        };
        Tensor c(NDArray::from_vector(cv, xs, dev).astype(dt));
        Tensor y_labels(NDArray::from_vector(labels, {r}, dev));
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
      check_fused_matches_composite(run, names, dt == DType::float64 ? 1e-10 : 2e-4);
    }
  }
}

TEST_CASE("fused group norm kernels agree with their composite", "[kernels]") {
  // group_norm forward (y and the saved statistics) and backward (dmean and drstd nonzero),
  // fused, with the kernels disabled, and on the reference backend; groups of one element,
  // one group, one channel per group, and groups longer than a sum chunk on many threads.
  CHECK(has(kernel::kGroupNorm, "cpu"));
  CHECK(has(kernel::kGroupNormGrad, "cpu"));
  struct Case {
    Shape shape;
    int64_t groups;
  };
  for (const Case& k : std::vector<Case>{{{3, 4}, 4},
                                         {{2, 6, 5}, 3},
                                         {{2, 4, 3, 3}, 1},
                                         {{5, 8, 2, 3}, 8},
                                         {{4, 8, 48, 48}, 2}}) {
    const int64_t c = k.shape[1];
    std::vector<double> xv = random_vector(numel(k.shape), -3, 3);
    std::vector<double> cv = random_vector(numel(k.shape));
    std::vector<double> wv = random_vector(size_t(c)), bv = random_vector(size_t(c));
    for (DType dt : {DType::float64, DType::float32}) {
      INFO(shape_str(k.shape) << " G " << k.groups << " " << dtype_name(dt));
      auto run = [&](Backend& dev) {
        auto leaf = [&](const std::vector<double>& v, const Shape& s) {
          return Tensor(NDArray::from_vector(v, s, dev).astype(dt), true);
        };
        Tensor x = leaf(xv, k.shape), w = leaf(wv, {c}), b = leaf(bv, {c});
        TensorTuple gn = group_norm(x, w, b, k.groups, 1e-5);
        Tensor cw(NDArray::from_vector(cv, k.shape, dev).astype(dt));
        (summation(gn[0] * cw) + summation(gn[1] * gn[2])).backward();
        std::vector<std::vector<double>> out;
        for (const Tensor& t : {gn[0], gn[1], gn[2], x.grad(), w.grad(), b.grad()})
          out.push_back(t.to_vector<double>());
        return out;
      };
      check_fused_matches_composite(run, {kernel::kGroupNorm, kernel::kGroupNormGrad},
                                    dt == DType::float64 ? 1e-10 : 2e-4);
    }
  }
}

TEST_CASE("attention's adjoint op checks its operands", "[kernels]") {
  // What Python's function cannot reach: the grad op called directly, and op construction.
  auto t = [](const Shape& s) { return Tensor(NDArray::full(s, 0.5)); };
  auto grad = [](std::vector<Value> inputs) {
    return TensorTuple::make_from_op(
        std::make_shared<ScaledDotProductAttentionGrad>(false, std::nullopt, 0.0, 0), inputs);
  };
  const Shape qs{1, 2, 3, 4};
  CHECK(grad({t(qs), t(qs), t(qs), t(qs), t({1, 2, 3}), t(qs), t({1, 2, 3})})[0].shape() == qs);
  CHECK_THROWS_WITH(grad({t(qs), t(qs), t(qs), t(qs), t({1, 2, 3})}),
                    Contains("[scaled_dot_product_attention_grad] takes q, k, v, an optional "
                             "mask, out, lse, dout and dlse, got 5 arrays"));
  CHECK_THROWS_WITH(
      grad({t(qs), t(qs), t(qs), t({1, 2, 3, 5}), t({1, 2, 3}), t(qs), t({1, 2, 3})}),
      Contains("out and dout must match q ((1, 2, 3, 4), float32), got (1, 2, 3, 5)"));
  CHECK_THROWS_WITH(grad({t(qs), t(qs), t(qs), t(qs), t({1, 2, 4}), t(qs), t({1, 2, 3})}),
                    Contains("lse and dlse must be (1, 2, 3) float32, got (1, 2, 4)"));
  CHECK_THROWS_AS(ScaledDotProductAttentionGrad(false, std::nullopt, 1.5, 0), ValueError);
  // The dropout hash is a pure function of (seed, index): the same draw on every call.
  const uint32_t threshold = kernel::attention_dropout_threshold(0.5);
  int kept = 0;
  bool repeatable = true;
  for (uint64_t i = 0; i < 100000; ++i) {
    repeatable &=
        kernel::attention_keep(7, i, threshold) == kernel::attention_keep(7, i, threshold);
    kept += kernel::attention_keep(7, i, threshold);
  }
  CHECK(repeatable);
  CHECK(std::abs(kept - 50000) < 1000);
  CHECK(kernel::attention_dropout_threshold(0.0) == 0);
}

namespace {
// What a homework student version makes of a fused kernel it cuts: a body that throws.
void attention_stub(const View&, const View&, const View&, const View&,
                    const kernel::AttentionParams&, const View&, const View&) {
  throw NotImplemented("hw7: attention_forward");
}
}  // namespace

TEST_CASE("a fused kernel that is a homework stub falls back to the composite", "[kernels]") {
  const Shape s{1, 2, 5, 4};
  Tensor q(NDArray::from_vector(random_vector(numel(s)), s)), k(q.data() * 0.5), v(q.data() + 1.0);
  const std::vector<double> want = scaled_dot_product_attention(q, k, v).to_vector<double>();
  KernelDisabled saved(kernel::kAttention, "cpu");
  register_kernel<kernel::Attention>(kernel::kAttention, "cpu", attention_stub);
  // An earlier assignment's code runs on the composite...
  NEEDLE_CHECK_CLOSE(scaled_dot_product_attention(q, k, v).to_vector<double>(), want, 1e-5);
  // ...and the tests that grade the kernel see the stub.
  set_kernel_stub_fallback(false);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, k, v), NotImplemented);
  set_kernel_stub_fallback(true);
  unregister_kernel(kernel::kAttention, "cpu");  // KernelDisabled restores the real one
}
