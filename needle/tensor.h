// Tensor, TensorTuple and the graph node behind them.
//
// A graph node (Node) holds its cached data, the Op that made it, its inputs,
// `requires_grad` and `grad`. Users hold value-semantic handles: `Tensor` and `TensorTuple`
// (and `Value`, either of the two) share one node through std::shared_ptr, so copying a
// Tensor never copies data and `Tensor c = a * b + 1.0; c.backward();` reads like PyTorch.
//
// Node lifetime: inputs are owned by the nodes that read them, so a graph lives as long as
// its outputs. `grad` links can close cycles (x.grad's graph may read x); those are found
// by collect_garbage(), which runs automatically as the node count grows. Destruction and
// traversals are iterative, so a chain of any length neither overflows the stack.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "needle/ndarray.h"

namespace needle {

class Op;
class Node;
class TensorNode;
class TupleNode;
class Tensor;
class TensorTuple;
class Value;

using NodePtr = std::shared_ptr<Node>;
using OpPtr = std::shared_ptr<const Op>;

// --- Modes ---
// Grad mode: when off, ops record no graph (results are constant leaves). Per thread.
bool is_grad_enabled();
bool set_grad_enabled(bool enabled);  // returns the previous setting
// Scoped: `{ NoGradGuard g; ... }` builds no graph inside the braces.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(set_grad_enabled(false)) {}
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
// Lazy mode (the course's LAZY_MODE): ops record nodes and compute only when data is read.
bool is_lazy_mode();
void set_lazy_mode(bool lazy);

// --- Live-node accounting (Python's needle.autograd.TENSOR_COUNTER) ---
int64_t live_node_count();
// Frees nodes that only cycles through `grad` keep alive; returns how many were freed.
int64_t collect_garbage();

// A graph node. Bound to Python as `Value` (TensorNode as `Tensor`, TupleNode as
// `TensorTuple`), so one node is always one Python object while that object lives.
class Node : public std::enable_shared_from_this<Node> {
 public:
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  virtual bool is_tuple() const = 0;
  const OpPtr& op() const { return op_; }
  const std::vector<NodePtr>& inputs() const { return inputs_; }
  bool is_leaf() const { return op_ == nullptr; }
  bool requires_grad() const { return requires_grad_; }
  void set_requires_grad(bool r) { requires_grad_ = r; }
  const NodePtr& grad() const { return grad_; }
  void set_grad(NodePtr grad);  // checks the kind (tensor / tuple) matches; null clears

  // Whether the data is computed (always, except for nodes recorded in lazy mode).
  virtual bool realized() const = 0;
  // Computes the data of this node and of every unrealized node it reads (iteratively).
  void realize();

  // Hooks that backward() runs once this node's grad is final for that pass (after it is
  // stored), in the order added: how data-parallel training starts reducing gradients
  // while the rest of backward runs. Assigning grad directly runs none.
  using GradHook = std::function<void(const NodePtr& node)>;
  void add_grad_hook(GradHook hook);
  void run_grad_hooks();

  // Set on nodes that backward() stored as some node's grad (see autograd.h).
  bool is_gradient() const { return is_gradient_; }
  void mark_gradient() { is_gradient_ = true; }

  // For in-place ops (t[key] = v): a new node with this node's op, inputs and data, and
  // rebind(), which turns this node into the result of `op` on `inputs` (recomputed).
  virtual NodePtr clone() const = 0;
  void rebind(OpPtr op, std::vector<NodePtr> inputs, bool requires_grad);

 protected:
  Node(OpPtr op, std::vector<NodePtr> inputs, bool requires_grad);
  virtual void compute_data() = 0;  // from realized inputs

 private:
  friend int64_t collect_garbage();

  OpPtr op_;
  std::vector<NodePtr> inputs_;
  NodePtr grad_;
  std::unique_ptr<std::vector<GradHook>> grad_hooks_;  // null while there are none
  bool requires_grad_;
  bool is_gradient_ = false;
  // Registry links (every live node is on one list, for collect_garbage) and GC scratch.
  Node* prev_ = nullptr;
  Node* next_ = nullptr;
  int64_t gc_refs_ = 0;
  bool gc_reachable_ = false;
};

class TensorNode final : public Node {
 public:
  // A leaf holding `data`.
  TensorNode(NDArray data, bool requires_grad);
  // The result of `op` on `inputs`; `data` is undefined for a lazy (unrealized) node.
  TensorNode(OpPtr op, std::vector<NodePtr> inputs, NDArray data, bool requires_grad);

  bool is_tuple() const override { return false; }
  bool realized() const override { return data_.defined(); }
  const NDArray& data() {
    if (!data_.defined()) realize();
    return data_;
  }
  const NDArray& cached_data() const { return data_; }  // undefined when unrealized
  void set_data(NDArray data) { data_ = std::move(data); }

  NodePtr clone() const override;

 protected:
  void compute_data() override;

 private:
  NDArray data_;
};

class TupleNode final : public Node {
 public:
  TupleNode(std::vector<NDArray> data, bool requires_grad);
  TupleNode(OpPtr op, std::vector<NodePtr> inputs, std::vector<NDArray> data, bool realized,
            bool requires_grad);

  bool is_tuple() const override { return true; }
  bool realized() const override { return realized_; }
  const std::vector<NDArray>& data() {
    if (!realized_) realize();
    return data_;
  }
  const std::vector<NDArray>& cached_data() const { return data_; }
  void set_data(std::vector<NDArray> data) {
    data_ = std::move(data);
    realized_ = true;
  }

  NodePtr clone() const override;

 protected:
  void compute_data() override;

 private:
  std::vector<NDArray> data_;
  bool realized_ = true;
};

// --- Handles ---

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false
  explicit Tensor(std::shared_ptr<TensorNode> node) : node_(std::move(node)) {}
  // A leaf tensor on `data` (shared, not copied).
  explicit Tensor(NDArray data, bool requires_grad = false);

  static Tensor make_const(NDArray data, bool requires_grad = false);
  static Tensor make_from_op(OpPtr op, const std::vector<Value>& inputs);
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            bool requires_grad = false, Backend& device = default_backend()) {
    return Tensor(NDArray::from_vector(values, shape, device), requires_grad);
  }
  static Tensor full(const Shape& shape, double value, DType dtype = DType::float32,
                     Backend& device = default_backend(), bool requires_grad = false);
  static Tensor zeros(const Shape& shape, DType dtype = DType::float32,
                      Backend& device = default_backend(), bool requires_grad = false);
  static Tensor ones(const Shape& shape, DType dtype = DType::float32,
                     Backend& device = default_backend(), bool requires_grad = false);
  static Tensor zeros_like(const Tensor& t, bool requires_grad = false);
  static Tensor ones_like(const Tensor& t, bool requires_grad = false);

  bool defined() const { return node_ != nullptr; }
  const std::shared_ptr<TensorNode>& node() const { return node_; }

  // --- Data and metadata ---
  const NDArray& data() const;  // realizes a lazy node
  void set_data(const NDArray& data) const;
  const Shape& shape() const { return data().shape(); }
  DType dtype() const { return data().dtype(); }
  Backend& device() const { return data().device(); }
  int64_t ndim() const { return data().ndim(); }
  int64_t size() const { return data().size(); }
  template <class T>
  std::vector<T> to_vector() const {
    return data().to_vector<T>();
  }
  double item() const { return data().item(); }
  std::string to_string() const;

  // --- Graph ---
  bool requires_grad() const;
  const Tensor& set_requires_grad(bool requires_grad = true) const;
  bool is_leaf() const;
  const OpPtr& op() const;
  std::vector<Value> inputs() const;
  Tensor input(size_t i) const;  // input i, which must be a tensor
  Tensor grad() const;           // undefined when none
  void set_grad(const Tensor& grad) const;
  Tensor detach() const;  // a constant leaf sharing the data
  // Accumulates d(this)/d(x) · out_grad into x.grad for every x that requires grad.
  void backward() const;
  void backward(const Tensor& out_grad) const;

  // --- Methods (each is the op of the same name in needle/ops) ---
  Tensor sum(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  Tensor mean(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  Tensor max(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  Tensor reshape(const Shape& shape) const;
  Tensor broadcast_to(const Shape& shape) const;
  Tensor transpose(const std::optional<Axes>& axes = std::nullopt) const;
  Tensor permute(const Axes& axes) const;
  Tensor matmul(const Tensor& other) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor relu() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor sqrt() const;
  Tensor pow(double exponent) const;
  Tensor getitem(const IndexKey& key) const;
  Tensor astype(DType dtype) const;
  Tensor to(Backend& device) const;

 private:
  std::shared_ptr<TensorNode> node_;
};

class TensorTuple {
 public:
  TensorTuple() = default;
  explicit TensorTuple(std::shared_ptr<TupleNode> node) : node_(std::move(node)) {}

  static TensorTuple make_const(std::vector<NDArray> data, bool requires_grad = false);
  static TensorTuple make_from_op(OpPtr op, const std::vector<Value>& inputs);

  bool defined() const { return node_ != nullptr; }
  const std::shared_ptr<TupleNode>& node() const { return node_; }
  const std::vector<NDArray>& data() const;
  size_t size() const { return data().size(); }
  // Element i as a graph node (tuple_get_item), so gradients flow back into the tuple.
  Tensor operator[](int64_t i) const;
  std::vector<Tensor> tensors() const;
  TensorTuple detach() const;
  bool requires_grad() const;
  TensorTuple grad() const;

 private:
  std::shared_ptr<TupleNode> node_;
};

// Either a Tensor or a TensorTuple: what ops take and return in general.
class Value {
 public:
  Value() = default;
  Value(NodePtr node) : node_(std::move(node)) {}   // NOLINT: implicit by design
  Value(const Tensor& t) : node_(t.node()) {}       // NOLINT
  Value(const TensorTuple& t) : node_(t.node()) {}  // NOLINT

  bool defined() const { return node_ != nullptr; }
  bool is_tuple() const { return node_ && node_->is_tuple(); }
  const NodePtr& node() const { return node_; }
  // The handle of the right kind; TypeError when the kind differs.
  Tensor tensor() const;
  TensorTuple tuple() const;

 private:
  NodePtr node_;
};

// --- Operators (numpy broadcasting; scalars keep the tensor's dtype) ---
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, double s);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, double s);
Tensor operator/(double s, const Tensor& a);
Tensor operator-(const Tensor& a);

}  // namespace needle
