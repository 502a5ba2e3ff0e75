// Integer-indexing ops: argmax/argmin, and gather by an integer index tensor (take / getitem
// with indices) with its adjoint scatter_add (where lives with the element-wise ops). Index
// inputs never get a gradient; take's gradient is scatter_add, whose gradient is take again.
#pragma once

#include <optional>

#include "needle/ops/op.h"

namespace needle {

// Index of the largest (argmax) or smallest (argmin) element along axis, int64; no gradient.
class ArgMax final : public TensorOp {
 public:
  ArgMax(std::optional<int64_t> axis, bool keepdims, bool is_min = false)
      : axis(axis), keepdims(keepdims), is_min(is_min) {}
  int arity() const override { return 1; }
  std::string name() const override { return is_min ? "argmin" : "argmax"; }
  NDArray compute(const Args& args) const override;
  std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const override;
  const std::optional<int64_t> axis;
  const bool keepdims, is_min;
};

// Inputs (a, indices): a.take(indices, axis) (NDArray::take). The gradient of a scatters
// the output gradient back, adding over repeated indices.
class Take final : public TensorOp {
 public:
  explicit Take(int64_t axis) : axis(axis) {}
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("take")
  const int64_t axis;
};

// Inputs (indices, values): NDArray::scatter_add into a zero array of `shape`.
class ScatterAdd final : public TensorOp {
 public:
  ScatterAdd(int64_t axis, Shape shape) : axis(axis), shape(std::move(shape)) {}
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("scatter_add")
  const int64_t axis;
  const Shape shape;
};

Tensor argmax(const Tensor& a, std::optional<int64_t> axis = std::nullopt, bool keepdims = false);
Tensor argmin(const Tensor& a, std::optional<int64_t> axis = std::nullopt, bool keepdims = false);
Tensor take(const Tensor& a, const Tensor& indices, int64_t axis = 0);
// a[indices] along axis: integer-array indexing, the same as take.
Tensor getitem(const Tensor& a, const Tensor& indices, int64_t axis = 0);
Tensor scatter_add(const Tensor& indices, const Tensor& values, int64_t axis, const Shape& shape);

}  // namespace needle
