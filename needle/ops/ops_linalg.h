// Linear algebra: matmul, batched, with numpy broadcasting of the batch dimensions and
// numpy's treatment of 1-D operands.
#pragma once

#include "needle/ops/op.h"

namespace needle {

class MatMul final : public TensorOp {
 public:
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("matmul")
};

// a @ b. 1-D operands act as a row (a) or column (b) vector whose axis is then dropped.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace needle
