// Needle's C++ API on its own: build a small graph, run backward, and check one gradient
// against a finite difference. Exits nonzero when the gradient is wrong (the test suite
// runs this program).
//
//   build/autograd_example
#include <cmath>
#include <cstdio>
#include <vector>

#include "needle/needle.h"

using needle::Tensor;

int main() {
  // A tiny regression: loss = mean((relu(x @ w + b) - y)^2)
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0, 1.5, 0.0, -0.5}, {3, 2});
  Tensor y = Tensor::from_vector(std::vector<double>{1.0, 0.0, 2.0}, {3, 1});
  Tensor w = Tensor::from_vector(std::vector<double>{0.3, -0.2}, {2, 1}, /*requires_grad=*/true);
  Tensor b = Tensor::from_vector(std::vector<double>{0.1}, {1}, /*requires_grad=*/true);

  auto loss_of = [&](const Tensor& w_) {
    Tensor z = needle::relu(needle::matmul(x, w_) + b);  // b broadcasts to (3, 1)
    Tensor d = z - y;
    return (d * d).mean();
  };
  Tensor loss = loss_of(w);
  loss.backward();
  std::printf("loss = %.6f\n", loss.item());
  std::vector<double> grad = w.grad().to_vector<double>();
  std::printf("dloss/dw = [%.6f, %.6f], dloss/db = %.6f\n", grad[0], grad[1], b.grad().item());

  // Central difference on w[0], without building a graph.
  needle::NoGradGuard no_grad;
  const double eps = 1e-6;
  auto w_at = [&](double delta) {
    return Tensor::from_vector(std::vector<double>{0.3 + delta, -0.2}, {2, 1});
  };
  double numeric = (loss_of(w_at(eps)).item() - loss_of(w_at(-eps)).item()) / (2 * eps);
  std::printf("finite difference = %.6f\n", numeric);
  if (std::abs(numeric - grad[0]) > 1e-6) {
    std::printf("gradient check FAILED\n");
    return 1;
  }
  std::printf("gradient check passed\n");
  return 0;
}
