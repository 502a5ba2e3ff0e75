// Matrix multiplication with batch broadcasting (see ops_linalg.h).
#include "needle/ops/ops_linalg.h"

#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_shape.h"

namespace needle {

void MatMul::prepare(std::vector<NodePtr>& inputs) const {
  promote_dtypes("matmul", inputs);
}

NDArray MatMul::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].matmul(args[1]);
  // END SOLUTION
}

std::vector<Tensor> MatMul::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  Tensor a = node.input(0), b = node.input(1);
  // Work on the >= 2-D forms: a 1-D a is a row (1, k), a 1-D b a column (k, 1).
  Tensor a2 = a.ndim() == 1 ? reshape(a, {1, a.shape()[0]}) : a;
  Tensor b2 = b.ndim() == 1 ? reshape(b, {b.shape()[0], 1}) : b;
  Shape out_shape = out_grad.shape();
  if (a.ndim() == 1) out_shape.insert(out_shape.end() - (b.ndim() == 1 ? 0 : 1), 1);
  if (b.ndim() == 1) out_shape.push_back(1);
  Tensor g = out_grad.shape() == out_shape ? out_grad : reshape(out_grad, out_shape);
  // d(a@b)/da = g @ b^T and d(a@b)/db = a^T @ g, summed over broadcast batch dims. Inputs
  // that need no gradient are skipped: x @ W with data x costs one matmul, not two.
  Tensor grad_a, grad_b;
  if (a.requires_grad()) {
    grad_a = sum_to_shape(matmul(g, transpose(b2)), a2.shape());
    if (a.ndim() == 1) grad_a = reshape(grad_a, a.shape());
  }
  if (b.requires_grad()) {
    grad_b = sum_to_shape(matmul(transpose(a2), g), b2.shape());
    if (b.ndim() == 1) grad_b = reshape(grad_b, b.shape());
  }
  return {grad_a, grad_b};
  // END SOLUTION
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  static const OpPtr op = std::make_shared<MatMul>();
  return Value(make_node(op, {a.node(), b.node()})).tensor();
}

}  // namespace needle
