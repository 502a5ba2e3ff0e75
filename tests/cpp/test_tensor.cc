// Tensor and autograd: handles and data sharing, backward (accumulation, gradient of a
// gradient, the course's topological order), no_grad, lazy mode, live-node accounting and
// cycle collection, 10,000-op chains, in-place setitem, user-defined ops, errors, and the
// C++ example program.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

#include "gradcheck.h"
#include "needle/needle.h"
#include "temp_dir.h"

using namespace needle;
using namespace needle::testing;

namespace {
Tensor scalar_tensor(double v, bool requires_grad = true) {
  return Tensor::from_vector(std::vector<double>{v}, {1}, requires_grad);
}
double value(const Tensor& t) {
  return t.to_vector<double>().at(0);
}
}  // namespace

// Framework code (the Tensor handle), so no homework tag.
TEST_CASE("tensors are handles: copies share the node, detach shares the data", "[tensor]") {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, true);
  CHECK(a.shape() == Shape{2, 2});
  CHECK(a.dtype() == DType::float32);
  CHECK(a.requires_grad());
  CHECK(a.is_leaf());
  Tensor b = a;
  CHECK(b.node() == a.node());
  Tensor d = a.detach();
  CHECK(d.node() != a.node());
  CHECK_FALSE(d.requires_grad());
  CHECK(d.data().buffer() == a.data().buffer());
  CHECK_FALSE(Tensor().defined());
  CHECK_THROWS_AS(Tensor().shape(), RuntimeError);
}

TEST_CASE("operators with scalars on either side", "[tensor][hw1]") {
  for (Backend* dev : usable_backends()) {
    INFO("device " << dev->name());
    Tensor a = Tensor(NDArray::from_vector(std::vector<float>{1, 2, 4}, {3}, *dev));
    CHECK((a + 1.0).to_vector<double>() == std::vector<double>{2, 3, 5});
    CHECK((1.0 + a).to_vector<double>() == std::vector<double>{2, 3, 5});
    CHECK((a - 1.0).to_vector<double>() == std::vector<double>{0, 1, 3});
    CHECK((1.0 - a).to_vector<double>() == std::vector<double>{0, -1, -3});
    CHECK((a * 2.0).to_vector<double>() == std::vector<double>{2, 4, 8});
    CHECK((2.0 * a).to_vector<double>() == std::vector<double>{2, 4, 8});
    CHECK((a / 2.0).to_vector<double>() == std::vector<double>{0.5, 1, 2});
    CHECK((4.0 / a).to_vector<double>() == std::vector<double>{4, 2, 1});
    CHECK((-a).to_vector<double>() == std::vector<double>{-1, -2, -4});
    CHECK((a - a * 2.0).to_vector<double>() == std::vector<double>{-1, -2, -4});
    // Scalars keep float32.
    CHECK((a * 0.1).dtype() == DType::float32);
  }
}

TEST_CASE("backward computes and accumulates gradients", "[autograd][hw1]") {
  for (Backend* dev : usable_backends()) {
    INFO("device " << dev->name());
    Tensor x(NDArray::from_vector(std::vector<double>{1, 2, 3}, {3}, *dev), true);
    Tensor y = (x * x + x * 3.0).sum();  // dy/dx = 2x + 3
    y.backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 7, 9});
    CHECK(x.grad().dtype() == DType::float64);
    // A second backward accumulates, as in PyTorch.
    (x * 2.0).sum().backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{7, 9, 11});
    // Clearing the grad starts over.
    x.set_grad(Tensor());
    (x * 2.0).sum().backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
  }
}

TEST_CASE("backward with an explicit out_grad, and shape errors", "[autograd][hw1]") {
  Tensor x = random_tensor({2, 3});
  Tensor y = x * 3.0;
  Tensor g = random_tensor({2, 3}, default_backend(), DType::float64, false);
  y.backward(g);
  NEEDLE_CHECK_CLOSE(x.grad().to_vector<double>(), (g * 3.0).to_vector<double>(), 1e-12);
  CHECK_THROWS_AS(y.backward(random_tensor({3, 2})), ValueError);
}

TEST_CASE("gradient of a gradient, as in the course", "[autograd][hw1]") {
  Tensor x2 = scalar_tensor(6), x3 = scalar_tensor(0);
  Tensor y = x2 * x2 + x2 * x3;
  y.backward();
  Tensor grad_x2 = x2.grad(), grad_x3 = x3.grad();
  CHECK(value(grad_x2) == 12);  // 2*x2 + x3
  CHECK(value(grad_x3) == 6);   // x2
  CHECK(grad_x2.requires_grad());
  // backward() on a grad itself computes second derivatives into the grads.
  grad_x2.backward();
  CHECK(value(x2.grad()) == 2);
  CHECK(value(x3.grad()) == 1);
  CHECK(value(y) == 36);
}

TEST_CASE("second derivatives through exp, tanh, division", "[autograd][hw1]") {
  Tensor x = scalar_tensor(0.7);
  Tensor y = exp(x) * tanh(x) / (x + 2.0);
  y.backward();
  Tensor dx = x.grad();
  x.set_grad(Tensor());
  dx.backward();
  double h = 1e-4;
  auto f = [](double v) { return std::exp(v) * std::tanh(v) / (v + 2.0); };
  double x0 = 0.7;
  double second = (f(x0 + h) - 2 * f(x0) + f(x0 - h)) / (h * h);
  CHECK(value(x.grad()) == Approx(second).epsilon(1e-5));
}

TEST_CASE("find_topo_sort is the course's post-order", "[autograd][hw1]") {
  Tensor a1 = scalar_tensor(0.88282157), b1 = scalar_tensor(0.90170084);
  // The course's c1 - a1 is add(c, negate(a1)) (Python's Tensor.__sub__ builds it so);
  // C++'s operator- is one EWiseSub node instead.
  Tensor c1 = add(3.0 * a1 * a1 + 4.0 * b1 * a1, negate(a1));
  CHECK((c1 - a1).op()->name() == "subtract");
  CHECK((c1 - a1).inputs().size() == 2);
  std::vector<NodePtr> order = find_topo_sort({c1.node()});
  std::vector<double> got;
  for (auto& n : order) got.push_back(Value(n).tensor().to_vector<double>()[0]);
  // The course's expected values.
  std::vector<double> want{0.88282157, 2.64846471, 2.33812177,  0.90170084, 3.60680336,
                           3.1841638,  5.52228558, -0.88282157, 4.63946401};
  NEEDLE_CHECK_CLOSE(got, want, 1e-6);
  // Every node comes after its inputs.
  for (size_t i = 0; i < order.size(); ++i)
    for (auto& in : order[i]->inputs())
      CHECK(std::find(order.begin(), order.begin() + long(i), in) != order.begin() + long(i));
}

TEST_CASE("topological sort and backward skip what needs no grad", "[autograd][hw1]") {
  Tensor x = random_tensor({3}, default_backend(), DType::float64, true);
  Tensor c = random_tensor({3}, default_backend(), DType::float64, false);
  Tensor y = (x * c).sum();
  auto all = find_topo_sort({y.node()});
  auto needed = find_topo_sort({y.node()}, true);
  CHECK(all.size() == 4);
  CHECK(needed.size() == 3);
  y.backward();
  CHECK_FALSE(c.grad().defined());
  NEEDLE_CHECK_CLOSE(x.grad().to_vector<double>(), c.to_vector<double>(), 1e-12);
}

TEST_CASE("no_grad and constant inputs build no graph", "[autograd][hw1]") {
  Tensor x = random_tensor({2, 2});
  {
    NoGradGuard guard;
    CHECK_FALSE(is_grad_enabled());
    Tensor y = x * x + 1.0;
    CHECK(y.is_leaf());
    CHECK_FALSE(y.requires_grad());
    CHECK(y.inputs().empty());
  }
  CHECK(is_grad_enabled());
  Tensor c = random_tensor({2, 2}, default_backend(), DType::float64, false);
  Tensor z = exp(c) * 2.0;
  CHECK(z.is_leaf());
  CHECK_FALSE(z.requires_grad());
  Tensor w = x * 2.0;
  CHECK_FALSE(w.is_leaf());
  CHECK(w.requires_grad());
  CHECK(w.input(0).node() == x.node());
}

TEST_CASE("a chain of 10,000 ops neither overflows the stack nor leaks", "[autograd][hw1]") {
  collect_garbage();
  int64_t before = live_node_count();
  {
    Tensor x = random_tensor({4});
    Tensor y = x;
    for (int i = 0; i < 10000; ++i) y = y * 1.0001 + 0.0;
    CHECK(find_topo_sort({y.node()}).size() == 20001);  // x, then (mul, add) x 10,000
    y.sum().backward();
    double expect = std::pow(1.0001, 10000);
    for (double g : x.grad().to_vector<double>()) CHECK(g == Approx(expect).epsilon(1e-9));
  }
  collect_garbage();
  CHECK(live_node_count() == before);
  // Lazy nodes realize iteratively too.
  set_lazy_mode(true);
  Tensor x = random_tensor({2}, default_backend(), DType::float64, false);
  Tensor y = x;
  for (int i = 0; i < 10000; ++i) y = y + 1.0;
  set_lazy_mode(false);
  CHECK_FALSE(y.node()->realized());
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  CHECK(yv[0] == Approx(xv[0] + 10000));
}

TEST_CASE("lazy mode records and computes on demand", "[autograd][hw1]") {
  Tensor x = random_tensor({3});
  set_lazy_mode(true);
  Tensor y = x * 2.0;
  Tensor z = y.sum();
  set_lazy_mode(false);
  CHECK_FALSE(z.node()->realized());
  CHECK_FALSE(y.node()->realized());
  const double z_value = z.item();  // realizes z (a homework stub's throw ends the case here)
  CHECK(z_value == Approx(2 * x.sum().item()));
  CHECK(y.node()->realized());
  z.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
}

TEST_CASE("live nodes stay flat over a training-like loop", "[autograd][hw1]") {
  Tensor w = random_tensor({8, 4});
  Tensor b = random_tensor({1, 4});
  Tensor x = random_tensor({16, 8}, default_backend(), DType::float64, false);
  collect_garbage();
  int64_t start = 0;
  for (int step = 0; step < 100; ++step) {
    if (step == 2) {
      collect_garbage();
      start = live_node_count();
    }
    Tensor loss = relu(matmul(x, w) + broadcast_to(b, {16, 4})).sum();
    loss.backward();
    {
      NoGradGuard guard;
      w.set_data((w - w.grad() * 0.01).data());
      b.set_data((b - b.grad() * 0.01).data());
    }
    // Without resetting, w.grad's graph would keep every step alive; reset like an optimizer.
    w.set_grad(Tensor());
    b.set_grad(Tensor());
  }
  collect_garbage();
  CHECK(live_node_count() == start);
}

TEST_CASE("cycles through .grad are collected", "[autograd][hw1]") {
  collect_garbage();
  int64_t before = live_node_count();
  {
    Tensor x = random_tensor({3});
    Tensor y = (exp(x) * x).sum();
    y.backward();  // x.grad reads exp(x), which reads x: a cycle through x.grad
    CHECK(x.grad().defined());
  }
  CHECK(live_node_count() > before);
  CHECK(collect_garbage() > 0);
  CHECK(live_node_count() == before);
}

TEST_CASE("in-place setitem", "[autograd][hw1]") {
  Tensor x = random_tensor({3, 4});
  CHECK_THROWS_AS(setitem_inplace(x, {Index::at(0)}, random_tensor({4})), RuntimeError);
  // On an intermediate: the node becomes setitem(old, key, v), with gradients to both.
  Tensor v = random_tensor({4});
  Tensor y = x * 2.0;
  setitem_inplace(y, {Index::at(1)}, v);
  CHECK(y.to_vector<double>()[4] == v.to_vector<double>()[0]);
  y.sum().backward();
  std::vector<double> gx = x.grad().to_vector<double>();
  CHECK(gx[0] == 2);
  CHECK(gx[4] == 0);
  CHECK(v.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 1});
  // Without a graph: written in place, shared by views of the same data.
  Tensor c = Tensor::zeros({2, 3}, DType::float64);
  Tensor view = c.detach();
  setitem_inplace(c, {Index::all(), Index::at(2)}, Tensor::ones({2}, DType::float64));
  CHECK(view.to_vector<double>() == std::vector<double>{0, 0, 1, 0, 0, 1});
}

namespace {
// A user-defined op: cube, with gradient 3x^2 written with ops.
class Cube final : public TensorOp {
 public:
  std::string name() const override { return "cube"; }
  int arity() const override { return 1; }
  NDArray compute(const Args& args) const override { return args[0] * args[0] * args[0]; }
  std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const override {
    Tensor x = node.input(0);
    return {out_grad * x * x * 3.0};
  }
};
}  // namespace

TEST_CASE("a user-defined C++ op joins the graph", "[autograd][hw1]") {
  auto cube = std::make_shared<Cube>();
  check_gradients([&](auto& in) { return Tensor::make_from_op(cube, {in[0] + 1.0}); },
                  {random_tensor({2, 3})});
  CHECK_THROWS_AS(Tensor::make_from_op(cube, {random_tensor({1}), random_tensor({1})}), TypeError);
}

TEST_CASE("errors name the op and the shapes", "[tensor][hw1]") {
  Tensor a = random_tensor({3, 4}), b = random_tensor({5, 6});
  CHECK_THROWS_WITH(matmul(a, b), Catch::Contains("[matmul] shapes (3, 4) and (5, 6)"));
  CHECK_THROWS_AS(matmul(a, b), ValueError);
  CHECK_THROWS_WITH(a + b, Catch::Contains("(3, 4)") && Catch::Contains("(5, 6)"));
  CHECK_THROWS_AS(reshape(a, {5}), ValueError);
  CHECK_THROWS_AS(summation(a, Axes{2}), IndexError);
  CHECK_THROWS_AS(tuple_get_item(make_tuple({a, b}), 3), IndexError);
  CHECK_THROWS_AS(Value(make_tuple({a})).tensor(), TypeError);
  CHECK_THROWS_AS(a.set_grad(Tensor(NDArray())), ValueError);
}

TEST_CASE("the C++ example program runs and checks its gradient", "[example][hw1]") {
  namespace fs = std::filesystem;
  fs::path exe = fs::read_symlink("/proc/self/exe").parent_path() / "autograd_example";
  if (!fs::exists(exe)) {
    WARN("example binary not found at " << exe.string());
    return;
  }
  TempDir dir;
  const std::string log = dir / "output.txt";
  const std::string cmd = "\"" + exe.string() + "\" > \"" + log + "\" 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A homework stub that the program reached fails the case as that stub's NotImplemented.
  std::smatch stub;
  if (status != 0 && std::regex_search(output, stub, std::regex(R"(hw\d+: \S+)")))
    throw NotImplemented(stub.str());
  INFO("autograd_example's output:\n" << output);
  CHECK(status == 0);
}
