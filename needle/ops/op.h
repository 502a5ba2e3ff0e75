// The Op base class: one graph operation with its forward (`compute`, on NDArrays) and its
// gradient (written with Tensor ops, so the gradient of a gradient is free) side by side.
//
// Most ops map tensors to one tensor and derive from TensorOp, overriding `compute` and
// `gradient`. The few that produce or consume a TensorTuple (make_tuple, tuple_get_item,
// split, stack, fused_add_scalars) implement the general Op interface on Values.
// docs/adding_an_op.md walks through adding one.
#pragma once

#include <string>
#include <vector>

#include "needle/tensor.h"

namespace needle {

// The NDArrays an op computes on: the inputs' cached data, in input order, without copies.
// A TensorTuple input contributes each of its elements.
class Args {
 public:
  Args(const NDArray* const* items, size_t n) : items_(items), n_(n) {}
  explicit Args(const std::vector<const NDArray*>& items) : Args(items.data(), items.size()) {}
  size_t size() const { return n_; }
  const NDArray& operator[](size_t i) const { return *items_[i]; }
  std::vector<NDArray> to_vector() const {
    std::vector<NDArray> out;
    out.reserve(n_);
    for (size_t i = 0; i < n_; ++i) out.push_back(*items_[i]);
    return out;
  }

 private:
  const NDArray* const* items_;
  size_t n_;
};

class Op {
 public:
  virtual ~Op() = default;

  // Short lowercase name used in messages: "add", "matmul", "conv".
  virtual std::string name() const = 0;
  // True for ops whose result is a TensorTuple.
  virtual bool returns_tuple() const { return false; }
  // The number of inputs the op takes, or -1 for any number. Checked when a node is built.
  virtual int arity() const { return -1; }

  // Forward on NDArrays. Tensor-valued ops override compute, tuple-valued ops compute_tuple.
  virtual NDArray compute(const Args& args) const;
  virtual std::vector<NDArray> compute_tuple(const Args& args) const;

  // The adjoint of every input given the adjoint `out_grad` of `node` (a node this op made):
  // one entry per input, a TensorTuple for a TensorTuple input. An undefined entry means
  // "no gradient" (the input does not require one).
  virtual std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const = 0;

  // Hook run before a node is built; may rewrite the inputs (the element-wise binary ops
  // insert broadcast_to and astype here so that their gradients stay trivial).
  virtual void prepare(std::vector<NodePtr>& /*inputs*/) const {}

  // Computes a node's data from its realized inputs. The default flattens the inputs' data
  // into Args and calls compute / compute_tuple; Python-defined ops override it.
  virtual NDArray evaluate(const std::vector<NodePtr>& inputs) const;
  virtual std::vector<NDArray> evaluate_tuple(const std::vector<NodePtr>& inputs) const;
};

// An op from tensors to one tensor: nearly every op.
class TensorOp : public Op {
 public:
  // One adjoint per input (undefined where an input needs none).
  virtual std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const = 0;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const final;
};

// Declares the members every TensorOp overrides: name, compute and gradient.
#define NEEDLE_DECLARE_OP_BODY(op_name)             \
  std::string name() const override {               \
    return op_name;                                 \
  }                                                 \
  NDArray compute(const Args& args) const override; \
  std::vector<Tensor> gradient(const Tensor& out_grad, const Tensor& node) const override;

// For gradient_values: input i of the node an op made, and item i of a tuple value.
inline Tensor input_tensor(const Value& node, size_t i) {
  return Value(node.node()->inputs()[i]).tensor();
}
inline Tensor tuple_item(const Value& v, int64_t i) {
  return v.tuple()[i];
}

// ValueError, TypeError or RuntimeError naming `op` unless a and b (called a_name and b_name
// in the message) share their shape, dtype and device: the operands of a fused adjoint op
// (softmax_grad's y and dy, silu_grad's x and dy).
void check_operand_pair(const char* op, const char* a_name, const NDArray& a, const char* b_name,
                        const NDArray& b);

// Builds a node for `op` on `inputs`: computes it now (eager) or records it (lazy mode).
// When grad mode is off or no input requires grad the result is a constant leaf.
NodePtr make_node(OpPtr op, std::vector<NodePtr> inputs);

}  // namespace needle
