// needle::optim: SGD (momentum, weight decay), Adam and AdamW against updates computed by
// hand from the formulas, the no-graph / no-in-place-grad guarantees, clip_grad_norm,
// and the learning-rate schedulers.
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.h"
#include "needle/init.h"
#include "needle/needle.h"
#include "needle/nn/basic.h"
#include "needle/optim/optimizer.h"
#include "reference_backend.h"

using namespace needle;
using Catch::Matchers::Contains;

namespace {

Tensor param(const std::vector<double>& v, Backend& dev = default_backend(),
             DType dt = DType::float64) {
  NDArray a = NDArray::from_vector(v, {int64_t(v.size())}, dev);
  return Tensor(dt == DType::float64 ? a : a.astype(dt), true);
}

void set_grad(const Tensor& p, const std::vector<double>& g) {
  NDArray a = NDArray::from_vector(g, {int64_t(g.size())}, p.device());
  p.set_grad(Tensor(a.astype(p.dtype())));
}

void check_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-9) {
  const std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).margin(tol));
  }
}

}  // namespace

TEST_CASE("SGD without momentum: p -= lr * (g + wd * p)", "[optim][hw2]") {
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    Tensor p = param({1, 2}, *dev);
    optim::SGD opt({p}, 0.1);
    set_grad(p, {0.5, -1});
    opt.step();
    check_close(p, {0.95, 2.1});
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());

    Tensor q = param({1, -2}, *dev);
    optim::SGD wd({q}, 0.5, 0.0, 0.1);
    set_grad(q, {1, 1});
    wd.step();
    check_close(q, {1 - 0.5 * (1 + 0.1), -2 - 0.5 * (1 - 0.2)});
  }
}

TEST_CASE("SGD with momentum follows the course's rule over several steps", "[optim][hw2]") {
  Tensor p = param({1.0, -1.0});
  optim::SGD opt({p}, 0.1, 0.9, 0.01);
  // u1 = 0.1 * (g1 + wd p0); p1 = p0 - lr u1; u2 = 0.9 u1 + 0.1 (g2 + wd p1); ...
  std::vector<double> pv{1.0, -1.0}, u{0, 0};
  const std::vector<std::vector<double>> grads{{1, 2}, {-0.5, 0.5}, {0.25, 0}};
  for (size_t s = 0; s < grads.size(); ++s) {
    set_grad(p, grads[s]);
    opt.step();
    for (int i = 0; i < 2; ++i) {
      const double g = grads[s][size_t(i)] + 0.01 * pv[size_t(i)];
      u[size_t(i)] = s == 0 ? 0.1 * g : 0.9 * u[size_t(i)] + 0.1 * g;
      pv[size_t(i)] -= 0.1 * u[size_t(i)];
    }
    check_close(p, pv);
  }
  // A parameter without a grad is skipped.
  p.set_grad(Tensor());
  opt.step();
  check_close(p, pv);
}

TEST_CASE("Adam: bias-corrected moments and L2 weight decay", "[optim][hw2]") {
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    Tensor p = param({0.5, -1.5, 2.0}, *dev);
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    optim::Adam opt({p}, lr, b1, b2, eps, wd);
    std::vector<double> pv{0.5, -1.5, 2.0}, m(3, 0), v(3, 0);
    const std::vector<std::vector<double>> grads{{1, -2, 0.5}, {0.3, 0.3, -4}, {0, 1, 1}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(p, grads[s]);
      opt.step();
      const double t = double(s + 1);
      for (size_t i = 0; i < 3; ++i) {
        const double g = grads[s][i] + wd * pv[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        pv[i] -= lr * mh / (std::sqrt(vh) + eps);
      }
      check_close(p, pv, 1e-12);
    }
    CHECK(opt.t() == 3);
  }
}

TEST_CASE("adam_update: the fused kernel agrees with the composed NDArray update", "[optim][hw2]") {
  // The reference backend has no fused Adam kernel, so there adam_update runs as NDArray
  // arithmetic; the CPU backend's one-pass kernel must track it step after step. 70,000
  // elements so the kernel also splits the work over threads.
  Backend& reference = testing::reference_backend();
  const Shape shape{70, 1000};
  const int64_t n = 70000;
  for (DType dt : {DType::float64, DType::float32}) {
    for (double wd : {0.0, 0.01}) {
      INFO(dtype_name(dt) << " weight decay " << wd);
      std::vector<double> p0 = testing::random_vector(n);
      NDArray p_cpu = NDArray::from_vector(p0, shape).astype(dt);
      NDArray p_ref = NDArray::from_vector(p0, shape, reference).astype(dt);
      NDArray m_cpu, v_cpu, m_ref, v_ref;
      for (int64_t t = 1; t <= 3; ++t) {
        std::vector<double> g = testing::random_vector(n);
        p_cpu = optim::adam_update(p_cpu, NDArray::from_vector(g, shape).astype(dt), m_cpu, v_cpu,
                                   0.01, 0.9, 0.999, 1e-8, wd, t);
        p_ref = optim::adam_update(p_ref, NDArray::from_vector(g, shape, reference).astype(dt),
                                   m_ref, v_ref, 0.01, 0.9, 0.999, 1e-8, wd, t);
      }
      const double tol = dt == DType::float64 ? 1e-12 : 1e-5;
      NEEDLE_CHECK_CLOSE(p_cpu.to_vector<double>(), p_ref.to_vector<double>(), tol);
      NEEDLE_CHECK_CLOSE(m_cpu.to_vector<double>(), m_ref.to_vector<double>(), tol);
      NEEDLE_CHECK_CLOSE(v_cpu.to_vector<double>(), v_ref.to_vector<double>(), tol);
    }
  }
  NDArray p = NDArray::full({3}, 1.0), m, v;
  CHECK_THROWS_AS(optim::adam_update(p, NDArray::full({4}, 1.0), m, v, 0.1, 0.9, 0.999, 1e-8, 0, 1),
                  ValueError);
  CHECK_THROWS_WITH(
      optim::adam_update(p, NDArray::full({4}, 1.0), m, v, 0.1, 0.9, 0.999, 1e-8, 0, 1),
      Contains("[adam_update] parameter of shape (3,) has a grad of shape (4,)"));
  CHECK_THROWS_AS(optim::adam_update(p, NDArray::full({3}, 1.0), m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0),
                  ValueError);
}

TEST_CASE("AdamW decays the weights before the Adam step", "[optim]") {
  Tensor p = param({1.0, -2.0});
  const double lr = 0.1, wd = 0.5;
  optim::AdamW opt({p}, lr, 0.9, 0.999, 1e-8, wd);
  set_grad(p, {0.2, -0.4});
  opt.step();
  // First Adam step: m_hat = g, v_hat = g^2, so the update is lr * sign(g) (up to eps).
  check_close(p, {1.0 * (1 - lr * wd) - lr, -2.0 * (1 - lr * wd) + lr}, 1e-6);
}

TEST_CASE("step builds no graph, keeps .grad and keeps the live-node count flat", "[optim][hw2]") {
  manual_seed(2);
  nn::Linear lin(3, 2);
  optim::Adam opt(lin.parameters(), 0.01);
  Tensor x = init::randn({4, 3});
  auto one_step = [&] {
    opt.reset_grad();
    Tensor loss = (lin(x) * lin(x)).sum();
    loss.backward();
    Tensor g = lin.weight.grad();
    const auto g_before = g.to_vector<float>();
    opt.step();
    CHECK(lin.weight.grad().node() == g.node());  // the same grad tensor
    CHECK(g.to_vector<float>() == g_before);      // not modified in place
    CHECK(lin.weight.is_leaf());
    CHECK(lin.weight.requires_grad());
  };
  one_step();
  one_step();
  opt.reset_grad();
  collect_garbage();
  const int64_t live = live_node_count();
  for (int i = 0; i < 50; ++i) one_step();
  opt.reset_grad();
  collect_garbage();
  CHECK(live_node_count() == live);
}

TEST_CASE("clip_grad_norm scales all gradients together and never in place", "[optim][hw2]") {
  Tensor a = param({3.0}), b = param({0.0, 4.0});
  optim::SGD opt({a, b}, 0.1);
  set_grad(a, {3});
  set_grad(b, {0, 4});
  Tensor old = a.grad();
  const double norm = opt.clip_grad_norm(1.0);
  CHECK(norm == Approx(5.0));
  const double c = 1.0 / (5.0 + 1e-6);
  check_close(a.grad(), {3 * c});
  check_close(b.grad(), {0, 4 * c});
  check_close(old, {3});  // the original grad tensor is untouched
  // Below the limit nothing changes.
  Tensor kept = a.grad();
  opt.clip_grad_norm(100.0);
  CHECK(a.grad().node() == kept.node());
}

TEST_CASE("float32 parameters stay float32 and bad hyper-parameters are refused", "[optim]") {
  Tensor p = param({1, 2}, default_backend(), DType::float32);
  optim::Adam opt({p}, 0.1);
  NDArray g64 = NDArray::from_vector(std::vector<double>{1, 1}, {2});
  p.set_grad(Tensor(g64));
  opt.step();
  CHECK(p.dtype() == DType::float32);
  CHECK_THROWS_AS(optim::SGD({p}, 0.1, 1.5), ValueError);
  CHECK_THROWS_AS(optim::Adam({p}, 0.1, 1.0), ValueError);
  CHECK_THROWS_AS(optim::SGD({Tensor()}), ValueError);
}

TEST_CASE("schedulers: StepLR, cosine annealing, cosine with warm-up, lambda", "[optim]") {
  Tensor p = param({1});
  optim::SGD opt({p}, 1.0);
  optim::StepLR step(opt, 2, 0.5);
  CHECK(opt.lr == 1.0);  // step 0 applied at construction
  std::vector<double> lrs;
  for (int i = 0; i < 5; ++i) {
    step.step();
    lrs.push_back(opt.lr);
  }
  CHECK(lrs == std::vector<double>{1.0, 0.5, 0.5, 0.25, 0.25});
  CHECK(step.last_lr() == 0.25);
  CHECK_THROWS_AS(optim::StepLR(opt, 0), ValueError);

  optim::SGD opt2({p}, 0.4);
  optim::CosineWarmupLR warm(opt2, 2, 6, 0.1);
  std::vector<double> w{opt2.lr};
  for (int i = 0; i < 7; ++i) {
    warm.step();
    w.push_back(opt2.lr);
  }
  const double pi = std::acos(-1.0);
  auto cosine = [&](double progress) { return 0.1 + 0.3 * 0.5 * (1 + std::cos(pi * progress)); };
  const std::vector<double> want{0.0, 0.2, 0.4, cosine(0.25), cosine(0.5), cosine(0.75), 0.1, 0.1};
  REQUIRE(w.size() == want.size());
  for (size_t i = 0; i < w.size(); ++i) CHECK(w[i] == Approx(want[i]));
  CHECK_THROWS_AS(optim::CosineWarmupLR(opt2, 5, 5), ValueError);

  optim::SGD opt3({p}, 2.0);
  optim::CosineAnnealingLR ca(opt3, 4);
  ca.step();
  ca.step();
  CHECK(opt3.lr == Approx(1.0));

  optim::SGD opt4({p}, 2.0);
  optim::LambdaLR lam(opt4, [](int64_t t) { return 1.0 / double(t + 1); });
  lam.step();
  CHECK(opt4.lr == Approx(1.0));
}
