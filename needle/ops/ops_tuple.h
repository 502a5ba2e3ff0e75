// Ops that make or take a TensorTuple: make_tuple, tuple_get_item, split, stack and
// fused_add_scalars. They implement the general Op interface on Values.
#pragma once

#include "needle/ops/op.h"

namespace needle {

class MakeTensorTuple final : public Op {
 public:
  std::string name() const override { return "make_tuple"; }
  bool returns_tuple() const override { return true; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

class TupleGetItem final : public Op {
 public:
  explicit TupleGetItem(int64_t index) : index(index) {}
  std::string name() const override { return "tuple_get_item"; }
  int arity() const override { return 1; }
  NDArray compute(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const int64_t index;
};

// x -> (x + c0, x + c1)
class FusedAddScalars final : public Op {
 public:
  FusedAddScalars(double c0, double c1) : c0(c0), c1(c1) {}
  std::string name() const override { return "fused_add_scalars"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 1; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const double c0, c1;
};

// Splits a tensor into the tuple of its slices along `axis` (that axis removed).
class Split final : public Op {
 public:
  explicit Split(int64_t axis) : axis(axis) {}
  std::string name() const override { return "split"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 1; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const int64_t axis;
};

// Stacks equal-shaped tensors along a new `axis`. Its input is one TensorTuple (as in the
// course: Stack(axis)(make_tuple(...))) or the tensors themselves.
class Stack final : public Op {
 public:
  explicit Stack(int64_t axis) : axis(axis) {}
  std::string name() const override { return "stack"; }
  NDArray compute(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
  const int64_t axis;
};

// --- Functions ---
// Call it qualified, needle::make_tuple(v): for a std::vector argument, argument-dependent
// lookup would otherwise pick std::make_tuple.
TensorTuple make_tuple(const std::vector<Value>& values);
Tensor tuple_get_item(const TensorTuple& t, int64_t index);
TensorTuple fused_add_scalars(const Tensor& x, double c0, double c1);
TensorTuple split(const Tensor& a, int64_t axis);
Tensor stack(const std::vector<Tensor>& tensors, int64_t axis = 0);
Tensor stack(const TensorTuple& tensors, int64_t axis = 0);

}  // namespace needle
