// needle::init and needle::nn: the seeded generator and initializer formulas, each basic
// layer against hand-computed numbers, gradients through layers, Module traversal
// (dotted names, train/eval), state dicts and their errors, and MLPResNet's layout.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "gradcheck.h"
#include "needle/init.h"
#include "needle/models/mlp_resnet.h"
#include "needle/needle.h"
#include "needle/nn/basic.h"

using namespace needle;
using Catch::Matchers::Contains;

namespace {

Tensor make(const std::vector<double>& v, const Shape& shape, Backend& dev,
            DType dtype = DType::float32, bool requires_grad = false) {
  NDArray a = NDArray::from_vector(v, shape, dev);
  return Tensor(dtype == DType::float64 ? a : a.astype(dtype), requires_grad);
}

void check_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-5) {
  const std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).margin(tol));
  }
}

double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

}  // namespace

TEST_CASE("manual_seed makes every initializer reproducible", "[init][hw2]") {
  manual_seed(42);
  auto a = init::rand({5, 7}).to_vector<float>();
  auto b = init::randn({3}).to_vector<float>();
  manual_seed(42);
  CHECK(init::rand({5, 7}).to_vector<float>() == a);
  CHECK(init::randn({3}).to_vector<float>() == b);
  manual_seed(43);
  CHECK(init::rand({5, 7}).to_vector<float>() != a);
  CHECK(default_generator().initial_seed() == 43);

  Generator g(7), h(7);
  for (int i = 0; i < 10; ++i) CHECK(g.uniform() == h.uniform());
  std::vector<int64_t> p = g.permutation(50);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) CHECK(sorted[size_t(i)] == i);
  CHECK_THROWS_AS(g.randint(0), ValueError);
}

TEST_CASE("initializers: ranges, moments, shapes, dtypes and devices", "[init][hw2]") {
  manual_seed(0);
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    init::Options o{dev, DType::float64, false};
    auto u = init::rand({20000}, -2.0, 3.0, o).to_vector<double>();
    CHECK(*std::min_element(u.begin(), u.end()) >= -2.0);
    CHECK(*std::max_element(u.begin(), u.end()) < 3.0);
    CHECK(mean_of(u) == Approx(0.5).margin(0.05));

    auto n = init::randn({20000}, 1.0, 2.0, o).to_vector<double>();
    const double m = mean_of(n);
    double var = 0;
    for (double x : n) var += (x - m) * (x - m);
    var /= double(n.size());
    CHECK(m == Approx(1.0).margin(0.05));
    CHECK(std::sqrt(var) == Approx(2.0).margin(0.05));

    auto b = init::randb({20000}, 0.3, o).to_vector<double>();
    for (double x : b) CHECK((x == 0.0 || x == 1.0));
    CHECK(mean_of(b) == Approx(0.3).margin(0.02));

    Tensor c = init::constant({2, 3}, 2.5, {dev, DType::float32, true});
    CHECK(c.shape() == Shape{2, 3});
    CHECK(c.dtype() == DType::float32);
    CHECK(c.requires_grad());
    CHECK(&c.device() == dev);
    check_close(c, std::vector<double>(6, 2.5));
    check_close(init::ones({2}, o), {1, 1});
    check_close(init::zeros({2}, o), {0, 0});
    check_close(init::ones_like(c), std::vector<double>(6, 1.0));
    check_close(init::zeros_like(c), std::vector<double>(6, 0.0));

    Tensor oh = init::one_hot(4, std::vector<int64_t>{3, 0, 1}, o);
    CHECK(oh.shape() == Shape{3, 4});
    check_close(oh, {0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0});
    Tensor labels = make({2, 1}, {2}, *dev);
    check_close(init::one_hot(3, labels, o), {0, 0, 1, 0, 1, 0});
    CHECK_THROWS_AS(init::one_hot(3, std::vector<int64_t>{3}, o), IndexError);
    CHECK_THROWS_AS(init::one_hot(3, make({0.5}, {1}, *dev), o), IndexError);
  }
}

TEST_CASE("Xavier and Kaiming use the course's bounds", "[init][hw2]") {
  manual_seed(1);
  const init::Options o{nullptr, DType::float64, false};
  Tensor xu = init::xavier_uniform(50, 30, 2.0, o);
  CHECK(xu.shape() == Shape{50, 30});
  const double xa = 2.0 * std::sqrt(6.0 / 80.0);
  for (double v : xu.to_vector<double>()) CHECK(std::abs(v) <= xa);

  Tensor ku = init::kaiming_uniform(40, 300, std::nullopt, "relu", o);
  const double kb = std::sqrt(2.0) * std::sqrt(3.0 / 40.0);
  auto kv = ku.to_vector<double>();
  for (double v : kv) CHECK(std::abs(v) <= kb);
  CHECK(*std::max_element(kv.begin(), kv.end()) > 0.95 * kb);  // fills the range

  Tensor kn = init::kaiming_normal(25, 4000, std::nullopt, "relu", o);
  auto nv = kn.to_vector<double>();
  double sq = 0;
  for (double v : nv) sq += v * v;
  CHECK(std::sqrt(sq / double(nv.size())) == Approx(std::sqrt(2.0) / 5.0).epsilon(0.03));

  Tensor xn = init::xavier_normal(100, 300, 1.0, o);
  sq = 0;
  for (double v : xn.to_vector<double>()) sq += v * v;
  CHECK(std::sqrt(sq / 30000.0) == Approx(std::sqrt(2.0 / 400.0)).epsilon(0.03));

  CHECK(init::kaiming_uniform(3, 4, Shape{3, 3, 2, 4}).shape() == Shape{3, 3, 2, 4});
  CHECK(init::calculate_gain("tanh") == Approx(5.0 / 3.0));
  CHECK_THROWS_WITH(init::kaiming_uniform(3, 4, std::nullopt, "swish"), Contains("swish"));
  CHECK_THROWS_AS(init::xavier_uniform(0, 4), ValueError);
}

TEST_CASE("Linear: init order, shapes and forward", "[nn][hw2]") {
  manual_seed(5);
  Tensor w = init::kaiming_uniform(4, 3);
  Tensor b = init::kaiming_uniform(3, 1);
  manual_seed(5);
  nn::Linear lin(4, 3);
  CHECK(lin.weight.shape() == Shape{4, 3});
  CHECK(lin.bias.shape() == Shape{1, 3});
  CHECK(lin.weight.to_vector<float>() == w.to_vector<float>());  // weight drawn first
  CHECK(lin.bias.to_vector<float>() == b.to_vector<float>());    // then bias (fan_in = out)
  CHECK(lin.weight.requires_grad());
  CHECK(lin.parameters().size() == 2);
  CHECK(nn::Linear(4, 3, false).parameters().size() == 1);

  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    nn::Linear l(2, 2, true, {dev, DType::float32});
    l.weight.set_data(NDArray::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, *dev));
    l.bias.set_data(NDArray::from_vector(std::vector<float>{0.5, -1}, {1, 2}, *dev));
    Tensor x = make({1, 1, 2, -1, 0, 3}, {3, 2}, *dev);
    Tensor y = l(x);
    CHECK(y.shape() == Shape{3, 2});
    // [1,1]@W = [4,6]; [2,-1]@W = [-1,0]; [0,3]@W = [9,12]; plus bias
    check_close(y, {4.5, 5, -0.5, -1, 9.5, 11});
    // d(sum y)/dW = x^T @ ones, d/db = batch size
    y.sum().backward();
    check_close(l.weight.grad(), {3, 3, 3, 3});
    check_close(l.bias.grad(), {3, 3});
    CHECK_THROWS_WITH(l(make({1, 2, 3}, {1, 3}, *dev)), Contains("(1, 3)"));
  }
}

TEST_CASE("activations, Identity, Flatten, Sequential and Residual", "[nn][hw2]") {
  Backend& dev = default_backend();
  Tensor x = make({-1, 0, 2, -3}, {2, 2}, dev);
  check_close(nn::ReLU()(x), {0, 0, 2, 0});
  check_close(nn::Tanh()(x), {std::tanh(-1.0), 0, std::tanh(2.0), std::tanh(-3.0)});
  check_close(nn::Sigmoid()(x),
              {1 / (1 + std::exp(1.0)), 0.5, 1 / (1 + std::exp(-2.0)), 1 / (1 + std::exp(3.0))});
  CHECK(nn::Identity()(x).node() == x.node());
  Tensor img = make(std::vector<double>(24, 1.0), {2, 3, 2, 2}, dev);
  CHECK(nn::Flatten()(img).shape() == Shape{2, 12});

  auto seq = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::ReLU>(), std::make_shared<nn::Tanh>()});
  check_close((*seq)(x), {0, 0, std::tanh(2.0), 0});
  nn::Residual res(seq);
  check_close(res(x), {-1, 0, 2 + std::tanh(2.0), -3});
  CHECK(seq->size() == 2);
}

TEST_CASE("SoftmaxLoss matches the hand-computed cross-entropy", "[nn][hw2]") {
  for (Backend* dev : testing::usable_backends()) {
    for (DType dt : {DType::float32, DType::float64}) {
      INFO("device " << dev->name() << ", " << dtype_name(dt));
      const std::vector<double> z{1, 2, 3, 0.5, -1, 0};
      Tensor logits = make(z, {2, 3}, *dev, dt, true);
      Tensor y = make({2, 0}, {2}, *dev);
      Tensor loss = nn::SoftmaxLoss()(logits, y);
      const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
      const double l1 = std::log(std::exp(0.5) + std::exp(-1.0) + 1.0) - 0.5;
      CHECK(loss.item() == Approx((l0 + l1) / 2).epsilon(1e-6));
      loss.backward();
      // d/dz = (softmax(z) - onehot(y)) / batch
      const double s0 = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
      const double s1 = std::exp(0.5) + std::exp(-1.0) + 1.0;
      check_close(logits.grad(),
                  {std::exp(1.0) / s0 / 2, std::exp(2.0) / s0 / 2, (std::exp(3.0) / s0 - 1) / 2,
                   (std::exp(0.5) / s1 - 1) / 2, std::exp(-1.0) / s1 / 2, 1.0 / s1 / 2});
    }
  }
  Tensor logits = make({1, 2}, {1, 2}, default_backend());
  CHECK_THROWS_AS(nn::SoftmaxLoss()(logits, make({0, 1}, {2}, default_backend())), ValueError);
}

TEST_CASE("BatchNorm1d: batch statistics, running statistics, eval mode", "[nn][hw2]") {
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    nn::BatchNorm1d bn(2, 1e-5, 0.1, {dev, DType::float32});
    CHECK(bn.named_parameters().size() == 2);
    CHECK(bn.named_buffers().size() == 2);
    // Feature 0: {1, 3} mean 2 var 1; feature 1: {2, 6} mean 4 var 4 (biased).
    Tensor x = make({1, 2, 3, 6}, {2, 2}, *dev);
    Tensor y = bn(x);
    const double a = 1 / std::sqrt(1 + 1e-5), b = 2 / std::sqrt(4 + 1e-5);
    check_close(y, {-a, -b, a, b});
    check_close(bn.running_mean, {0.2, 0.4});
    check_close(bn.running_var, {0.9 + 0.1 * 1, 0.9 + 0.1 * 4});
    CHECK_FALSE(bn.running_mean.requires_grad());

    bn.weight.set_data(NDArray::from_vector(std::vector<float>{2, 1}, {2}, *dev));
    bn.bias.set_data(NDArray::from_vector(std::vector<float>{0, 1}, {2}, *dev));
    bn.eval();
    CHECK_FALSE(bn.training());
    Tensor e = bn(make({1, 2}, {1, 2}, *dev));
    check_close(e, {2 * (1 - 0.2) / std::sqrt(1.0 + 1e-5), (2 - 0.4) / std::sqrt(1.3 + 1e-5) + 1});
    check_close(bn.running_mean, {0.2, 0.4});  // unchanged in eval
    CHECK_THROWS_WITH(bn(make({1, 2, 3}, {1, 3}, *dev)), Contains("(1, 3)"));
  }
}

TEST_CASE("LayerNorm1d normalizes the last axis", "[nn][hw2]") {
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    nn::LayerNorm1d ln(3, 1e-5, {dev, DType::float32});
    Tensor x = make({1, 2, 3, 0, 0, 6}, {2, 3}, *dev, DType::float32, true);
    Tensor y = ln(x);
    const double s0 = std::sqrt(2.0 / 3 + 1e-5), s1 = std::sqrt(8.0 + 1e-5);
    check_close(y, {-1 / s0, 0, 1 / s0, -2 / s1, -2 / s1, 4 / s1}, 1e-4);
    y.sum().backward();  // the normalized rows sum to zero whatever x is: zero gradient
    check_close(x.grad(), std::vector<double>(6, 0.0), 1e-4);
    check_close(ln.bias.grad(), {2, 2, 2});
  }
}

TEST_CASE("Dropout scales kept entries in training and is the identity in eval", "[nn][hw2]") {
  manual_seed(3);
  nn::Dropout drop(0.25);
  Tensor x = init::ones({4000});
  auto y = drop(x).to_vector<double>();
  int zeros = 0;
  for (double v : y) {
    CHECK((v == 0.0 || v == Approx(1 / 0.75)));
    zeros += v == 0.0;
  }
  CHECK(double(zeros) / 4000 == Approx(0.25).margin(0.03));
  drop.eval();
  CHECK(drop(x).node() == x.node());
  CHECK(nn::Dropout(0.0)(x).node() == x.node());
  check_close(nn::Dropout(1.0)(init::ones({3})), {0, 0, 0});
  CHECK_THROWS_AS(nn::Dropout(1.5), ValueError);
}

TEST_CASE("Module: dotted names, train/eval, state_dict round trip and errors", "[nn][hw2]") {
  manual_seed(0);
  models::MLPResNet model(8, 6, 2, 3);
  auto named = model.named_parameters();
  // Linear(8,6), 2 blocks x (Linear, BN, Linear, BN) x 2 params, Linear(6,3)
  CHECK(named.size() == 2 + 2 * 8 + 2);
  CHECK(named.front().first == "modules.0.weight");
  CHECK(named[2].first == "modules.2.modules.0.fn.modules.0.weight");
  CHECK(named[4].first == "modules.2.modules.0.fn.modules.1.weight");
  CHECK(named.back().first == "modules.4.bias");
  CHECK(named.back().second.shape() == Shape{1, 3});
  auto sd = model.state_dict();
  CHECK(sd.count("modules.2.modules.0.fn.modules.1.running_mean"));
  CHECK(sd.size() == named.size() + 2 * 2 * 2);
  CHECK_FALSE(sd.begin()->second.requires_grad());

  model.eval();
  for (auto& child : model.children()) CHECK_FALSE(child->training());
  model.train();
  CHECK(model[2]->training());

  // Loading another model's state makes the outputs equal.
  manual_seed(99);
  models::MLPResNet other(8, 6, 2, 3);
  Tensor x = init::randn({4, 8});
  model.eval();
  other.eval();
  CHECK(model(x).to_vector<float>() != other(x).to_vector<float>());
  other.load_state_dict(model.state_dict());
  CHECK(model(x).to_vector<float>() == other(x).to_vector<float>());
  // The loaded values are copies: changing the source later does not reach the target.
  Tensor w = model.named_parameters()[0].second;
  w.set_data(w.data() * 2.0);
  CHECK(model(x).to_vector<float>() != other(x).to_vector<float>());

  auto missing = model.state_dict();
  missing.erase("modules.4.bias");
  CHECK_THROWS_WITH(other.load_state_dict(missing), Contains("missing keys 'modules.4.bias'"));
  auto extra = model.state_dict();
  extra.emplace("head.weight", init::ones({2}));
  CHECK_THROWS_WITH(other.load_state_dict(extra), Contains("unexpected keys 'head.weight'"));
  other.load_state_dict(extra, /*strict=*/false);
  auto wrong = model.state_dict();
  const auto before = other(x).to_vector<float>();
  wrong["modules.0.weight"] = init::ones({8, 7});
  CHECK_THROWS_WITH(other.load_state_dict(wrong),
                    Contains("'modules.0.weight'") && Contains("(8, 7)") && Contains("(8, 6)"));
  CHECK(other(x).to_vector<float>() == before);  // nothing changed

  // float64 values are cast to the parameter's dtype.
  auto f64 = model.state_dict();
  for (auto& [k, v] : f64) v = Tensor(v.data().astype(DType::float64));
  other.load_state_dict(f64);
  CHECK(other.named_parameters()[0].second.dtype() == DType::float32);
}

TEST_CASE("a small MLP learns a separable problem", "[nn][hw2]") {
  manual_seed(11);
  auto model = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(),
                                 std::make_shared<nn::Linear>(16, 2)});
  Tensor x = init::randn({64, 2});
  const auto xv = x.to_vector<float>();
  std::vector<double> labels(64);
  for (int i = 0; i < 64; ++i) labels[size_t(i)] = xv[size_t(2 * i)] + xv[size_t(2 * i + 1)] > 0;
  Tensor y = make(labels, {64}, default_backend());
  nn::SoftmaxLoss loss_fn;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    for (Tensor& p : model->parameters()) p.set_grad(Tensor());
    Tensor loss = loss_fn((*model)(x), y);
    loss.backward();
    for (Tensor& p : model->parameters()) p.set_data(p.data() - p.grad().data() * 0.5);
    (step == 0 ? first : last) = loss.item();
  }
  CHECK(last < 0.5 * first);
}
