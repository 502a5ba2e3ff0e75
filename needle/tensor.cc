// Graph nodes, their registry and cycle collector, the grad / lazy modes, and the Tensor,
// TensorTuple and Value handles (the methods that are not ops).
#include "needle/tensor.h"

#include <atomic>
#include <mutex>
#include <sstream>
#include <unordered_set>

#include "needle/autograd.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_linalg.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_shape.h"
#include "needle/ops/ops_tuple.h"

namespace needle {

// --- Modes ---

namespace {
thread_local bool grad_enabled = true;
std::atomic<bool> lazy_mode{false};
}  // namespace

bool is_grad_enabled() {
  return grad_enabled;
}
bool set_grad_enabled(bool enabled) {
  bool previous = grad_enabled;
  grad_enabled = enabled;
  return previous;
}
bool is_lazy_mode() {
  return lazy_mode.load(std::memory_order_relaxed);
}
void set_lazy_mode(bool lazy) {
  lazy_mode.store(lazy);
}

// --- Registry of live nodes ---

namespace {
// Every live node sits on one intrusive list so that collect_garbage() can see them all.
// A collection runs when the count passes `threshold`; afterwards the threshold becomes
// twice the survivors (at least kMinThreshold), so collections cost O(1) per node made.
constexpr int64_t kMinThreshold = 4096;
struct Registry {
  std::mutex mutex;
  Node* head = nullptr;
  std::atomic<int64_t> count{0};
  std::atomic<int64_t> threshold{kMinThreshold};
  bool collecting = false;
};
// Never destroyed: nodes held by static objects may die after other statics.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}
}  // namespace

int64_t live_node_count() {
  return registry().count.load();
}

Node::Node(OpPtr op, std::vector<NodePtr> inputs, bool requires_grad)
    : op_(std::move(op)), inputs_(std::move(inputs)), requires_grad_(requires_grad) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  next_ = r.head;
  if (r.head) r.head->prev_ = this;
  r.head = this;
  r.count.fetch_add(1, std::memory_order_relaxed);
}

Node::~Node() {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (prev_)
      prev_->next_ = next_;
    else
      r.head = next_;
    if (next_) next_->prev_ = prev_;
    r.count.fetch_sub(1, std::memory_order_relaxed);
  }
  if (inputs_.empty() && !grad_) return;
  // Release inputs iteratively: nested destructors hand their inputs to the outermost one,
  // so freeing a long chain never recurses deeply.
  thread_local std::vector<NodePtr>* pending = nullptr;
  if (pending) {
    for (auto& in : inputs_) pending->push_back(std::move(in));
    if (grad_) pending->push_back(std::move(grad_));
    return;
  }
  std::vector<NodePtr> local;
  pending = &local;
  for (auto& in : inputs_) local.push_back(std::move(in));
  if (grad_) local.push_back(std::move(grad_));
  while (!local.empty()) {
    NodePtr next = std::move(local.back());
    local.pop_back();
    next.reset();  // may append to `local`
  }
  pending = nullptr;
}

namespace {
void maybe_collect() {
  Registry& r = registry();
  if (r.count.load(std::memory_order_relaxed) > r.threshold.load(std::memory_order_relaxed))
    collect_garbage();
}
}  // namespace

// Like CPython's cycle collector: a node is externally referenced when its use count exceeds
// the references held by other live nodes (inputs and grad links). Everything reachable
// from such nodes survives; the rest is kept alive only by cycles and is unlinked.
int64_t collect_garbage() {
  Registry& r = registry();
  std::vector<NodePtr> garbage;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.collecting) return 0;
    r.collecting = true;
    for (Node* n = r.head; n; n = n->next_) {
      n->gc_refs_ = n->weak_from_this().use_count();
      // A node being destroyed right now (count 0): its links count as external.
      n->gc_reachable_ = n->gc_refs_ == 0;
    }
    for (Node* n = r.head; n; n = n->next_) {
      if (n->gc_reachable_) continue;
      for (auto& in : n->inputs_) --in->gc_refs_;
      if (n->grad_) --n->grad_->gc_refs_;
    }
    std::vector<Node*> stack;
    for (Node* n = r.head; n; n = n->next_) {
      if (n->gc_refs_ > 0 && !n->gc_reachable_) {
        n->gc_reachable_ = true;
        stack.push_back(n);
      }
    }
    auto visit = [&](Node* n) {
      if (!n->gc_reachable_) {
        n->gc_reachable_ = true;
        stack.push_back(n);
      }
    };
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& in : n->inputs_) visit(in.get());
      if (n->grad_) visit(n->grad_.get());
    }
    for (Node* n = r.head; n; n = n->next_) {
      if (n->gc_reachable_) continue;
      if (NodePtr p = n->weak_from_this().lock()) garbage.push_back(std::move(p));
    }
  }
  // Outside the lock: destructors relock it.
  for (auto& g : garbage) {
    g->inputs_.clear();
    g->grad_.reset();
    g->op_.reset();
  }
  int64_t freed = int64_t(garbage.size());
  garbage.clear();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.collecting = false;
  r.threshold = std::max<int64_t>(kMinThreshold, 2 * r.count.load());
  return freed;
}

// --- Node ---

void Node::set_grad(NodePtr grad) {
  if (grad && grad->is_tuple() != is_tuple())
    fail<TypeError>("[grad] a ", is_tuple() ? "TensorTuple" : "Tensor", "'s grad must be a ",
                    is_tuple() ? "TensorTuple" : "Tensor");
  NodePtr old;
  {
    // Under the registry lock so that a collection never sees a half-written link.
    std::lock_guard<std::mutex> lock(registry().mutex);
    old = std::move(grad_);
    grad_ = std::move(grad);
  }
}

void Node::add_grad_hook(GradHook hook) {
  if (!grad_hooks_) grad_hooks_ = std::make_unique<std::vector<GradHook>>();
  grad_hooks_->push_back(std::move(hook));
}

void Node::run_grad_hooks() {
  if (!grad_hooks_) return;
  NodePtr self = shared_from_this();
  for (const GradHook& hook : *grad_hooks_) hook(self);
}

void Node::realize() {
  if (realized()) return;
  // Post-order over the unrealized ancestors, then compute them in that order.
  std::vector<std::pair<Node*, size_t>> stack{{this, 0}};
  std::unordered_set<Node*> seen{this};
  while (!stack.empty()) {
    Node* n = stack.back().first;
    size_t i = stack.back().second;
    if (i < n->inputs_.size()) {
      stack.back().second++;
      Node* in = n->inputs_[i].get();
      if (!in->realized() && seen.insert(in).second) stack.emplace_back(in, 0);
    } else {
      stack.pop_back();
      n->compute_data();
    }
  }
}

void Node::rebind(OpPtr op, std::vector<NodePtr> inputs, bool requires_grad) {
  std::vector<NodePtr> old_inputs;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    old_inputs = std::move(inputs_);
    inputs_ = std::move(inputs);
    op_ = std::move(op);
    requires_grad_ = requires_grad;
  }
  compute_data();
}

TensorNode::TensorNode(NDArray data, bool requires_grad)
    : Node(nullptr, {}, requires_grad), data_(std::move(data)) {}
TensorNode::TensorNode(OpPtr op, std::vector<NodePtr> inputs, NDArray data, bool requires_grad)
    : Node(std::move(op), std::move(inputs), requires_grad), data_(std::move(data)) {}

void TensorNode::compute_data() {
  for (auto& in : inputs()) in->realize();
  data_ = op()->evaluate(inputs());
  if (!is_floating(data_.dtype())) set_requires_grad(false);  // integer results: no grad
}

NodePtr TensorNode::clone() const {
  return std::make_shared<TensorNode>(op(), inputs(), data_, requires_grad());
}

TupleNode::TupleNode(std::vector<NDArray> data, bool requires_grad)
    : Node(nullptr, {}, requires_grad), data_(std::move(data)) {}
TupleNode::TupleNode(OpPtr op, std::vector<NodePtr> inputs, std::vector<NDArray> data,
                     bool realized, bool requires_grad)
    : Node(std::move(op), std::move(inputs), requires_grad),
      data_(std::move(data)),
      realized_(realized) {}

void TupleNode::compute_data() {
  for (auto& in : inputs()) in->realize();
  data_ = op()->evaluate_tuple(inputs());
  realized_ = true;
}

NodePtr TupleNode::clone() const {
  return std::make_shared<TupleNode>(op(), inputs(), data_, realized_, requires_grad());
}

// --- Building nodes ---

NodePtr make_node(OpPtr op, std::vector<NodePtr> inputs) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i]) fail<ValueError>("[", op->name(), "] input ", i, " is an undefined tensor");
  op->prepare(inputs);
  int arity = op->arity();
  if (arity >= 0 && size_t(arity) != inputs.size())
    fail<TypeError>("[", op->name(), "] takes ", arity, " input", arity == 1 ? "" : "s", ", got ",
                    inputs.size());
  bool requires_grad = false;
  if (is_grad_enabled()) {
    for (auto& in : inputs) {
      if (in->requires_grad()) {
        requires_grad = true;
        break;
      }
    }
  }
  NodePtr out;
  if (is_lazy_mode()) {
    if (op->returns_tuple())
      out = std::make_shared<TupleNode>(std::move(op), std::move(inputs), std::vector<NDArray>{},
                                        false, requires_grad);
    else
      out =
          std::make_shared<TensorNode>(std::move(op), std::move(inputs), NDArray(), requires_grad);
  } else {
    for (auto& in : inputs) in->realize();
    if (op->returns_tuple()) {
      std::vector<NDArray> data = op->evaluate_tuple(inputs);
      if (requires_grad)
        out = std::make_shared<TupleNode>(std::move(op), std::move(inputs), std::move(data), true,
                                          true);
      else
        out = std::make_shared<TupleNode>(std::move(data), false);
    } else {
      NDArray data = op->evaluate(inputs);
      if (requires_grad && is_floating(data.dtype()))  // integer results never require grad
        out = std::make_shared<TensorNode>(std::move(op), std::move(inputs), std::move(data), true);
      else
        out = std::make_shared<TensorNode>(std::move(data), false);
    }
  }
  maybe_collect();
  return out;
}

// --- Value ---

Tensor Value::tensor() const {
  if (!node_) return Tensor();
  if (node_->is_tuple()) fail<TypeError>("expected a Tensor, got a TensorTuple");
  return Tensor(std::static_pointer_cast<TensorNode>(node_));
}

TensorTuple Value::tuple() const {
  if (!node_) return TensorTuple();
  if (!node_->is_tuple()) fail<TypeError>("expected a TensorTuple, got a Tensor");
  return TensorTuple(std::static_pointer_cast<TupleNode>(node_));
}

// --- Tensor ---

namespace {
const TensorNode& checked(const std::shared_ptr<TensorNode>& node) {
  if (!node) fail<RuntimeError>("use of an undefined Tensor");
  return *node;
}
std::vector<NodePtr> nodes_of(const std::vector<Value>& values) {
  std::vector<NodePtr> out;
  out.reserve(values.size());
  for (auto& v : values) out.push_back(v.node());
  return out;
}
}  // namespace

Tensor::Tensor(NDArray data, bool requires_grad) {
  if (!data.defined()) fail<ValueError>("[Tensor] cannot wrap an undefined array");
  // Integer and bool tensors never require grad (as in PyTorch, but silently).
  const bool floating = is_floating(data.dtype());
  node_ = std::make_shared<TensorNode>(std::move(data), requires_grad && floating);
}

Tensor Tensor::make_const(NDArray data, bool requires_grad) {
  return Tensor(std::move(data), requires_grad);
}

Tensor Tensor::make_from_op(OpPtr op, const std::vector<Value>& inputs) {
  if (op->returns_tuple())
    fail<TypeError>("[", op->name(), "] returns a TensorTuple, not a Tensor");
  return Value(make_node(std::move(op), nodes_of(inputs))).tensor();
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Backend& device,
                    bool requires_grad) {
  return Tensor(NDArray::full(shape, value, dtype, device), requires_grad);
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Backend& device, bool requires_grad) {
  return full(shape, 0.0, dtype, device, requires_grad);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Backend& device, bool requires_grad) {
  return full(shape, 1.0, dtype, device, requires_grad);
}
Tensor Tensor::zeros_like(const Tensor& t, bool requires_grad) {
  return full(t.shape(), 0.0, t.dtype(), t.device(), requires_grad);
}
Tensor Tensor::ones_like(const Tensor& t, bool requires_grad) {
  return full(t.shape(), 1.0, t.dtype(), t.device(), requires_grad);
}

const NDArray& Tensor::data() const {
  checked(node_);
  return node_->data();
}
void Tensor::set_data(const NDArray& data) const {
  checked(node_);
  if (!data.defined()) fail<ValueError>("[data] cannot set an undefined array");
  node_->set_data(data);
}

std::string Tensor::to_string() const {
  if (!node_) return "needle::Tensor(undefined)";
  std::ostringstream os;
  const NDArray& d = data();
  os << "needle::Tensor(shape=" << shape_str(d.shape()) << ", dtype=" << dtype_name(d.dtype())
     << ", device=" << d.device().name() << (requires_grad() ? ", requires_grad" : "") << ")";
  return os.str();
}

bool Tensor::requires_grad() const {
  return checked(node_).requires_grad();
}
const Tensor& Tensor::set_requires_grad(bool requires_grad) const {
  checked(node_);
  node_->set_requires_grad(requires_grad && is_floating(dtype()));
  return *this;
}
bool Tensor::is_leaf() const {
  return checked(node_).is_leaf();
}
const OpPtr& Tensor::op() const {
  return checked(node_).op();
}
std::vector<Value> Tensor::inputs() const {
  auto& in = checked(node_).inputs();
  return std::vector<Value>(in.begin(), in.end());
}
Tensor Tensor::input(size_t i) const {
  auto& in = checked(node_).inputs();
  if (i >= in.size())
    fail<IndexError>("[input] index ", i, " out of range for ", in.size(), " inputs");
  return Value(in[i]).tensor();
}
Tensor Tensor::grad() const {
  return Value(checked(node_).grad()).tensor();
}
void Tensor::set_grad(const Tensor& grad) const {
  checked(node_);
  node_->set_grad(grad.node());
}
Tensor Tensor::detach() const {
  return Tensor(data(), false);
}

void Tensor::backward() const {
  compute_gradient_of_variables(*this, Tensor::ones_like(*this));
}
void Tensor::backward(const Tensor& out_grad) const {
  if (!out_grad.defined()) return backward();
  compute_gradient_of_variables(*this, out_grad);
}

Tensor Tensor::sum(const std::optional<Axes>& axes, bool keepdims) const {
  return summation(*this, axes, keepdims);
}
Tensor Tensor::mean(const std::optional<Axes>& axes, bool keepdims) const {
  return needle::mean(*this, axes, keepdims);
}
Tensor Tensor::max(const std::optional<Axes>& axes, bool keepdims) const {
  return needle::max(*this, axes, keepdims);
}
Tensor Tensor::reshape(const Shape& shape) const {
  return needle::reshape(*this, shape);
}
Tensor Tensor::broadcast_to(const Shape& shape) const {
  return needle::broadcast_to(*this, shape);
}
Tensor Tensor::transpose(const std::optional<Axes>& axes) const {
  return needle::transpose(*this, axes);
}
Tensor Tensor::permute(const Axes& axes) const {
  return needle::permute(*this, axes);
}
Tensor Tensor::matmul(const Tensor& other) const {
  return needle::matmul(*this, other);
}
Tensor Tensor::exp() const {
  return needle::exp(*this);
}
Tensor Tensor::log() const {
  return needle::log(*this);
}
Tensor Tensor::relu() const {
  return needle::relu(*this);
}
Tensor Tensor::tanh() const {
  return needle::tanh(*this);
}
Tensor Tensor::sigmoid() const {
  return needle::sigmoid(*this);
}
Tensor Tensor::sqrt() const {
  return needle::sqrt(*this);
}
Tensor Tensor::pow(double exponent) const {
  return power_scalar(*this, exponent);
}
Tensor Tensor::getitem(const IndexKey& key) const {
  return needle::getitem(*this, key);
}
Tensor Tensor::astype(DType dtype) const {
  return needle::astype(*this, dtype);
}
Tensor Tensor::to(Backend& device) const {
  return to_device(*this, device);
}

Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
Tensor operator+(const Tensor& a, double s) {
  return add_scalar(a, s);
}
Tensor operator+(double s, const Tensor& a) {
  return add_scalar(a, s);
}
// One EWiseSub node. (Python's Tensor.__sub__ builds a + (-b) instead, as the course does:
// its graders compare topological orders node by node.)
Tensor operator-(const Tensor& a, const Tensor& b) {
  return subtract(a, b);
}
Tensor operator-(const Tensor& a, double s) {
  return add_scalar(a, -s);
}
Tensor operator-(double s, const Tensor& a) {
  return add_scalar(negate(a), s);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return multiply(a, b);
}
Tensor operator*(const Tensor& a, double s) {
  return mul_scalar(a, s);
}
Tensor operator*(double s, const Tensor& a) {
  return mul_scalar(a, s);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return divide(a, b);
}
Tensor operator/(const Tensor& a, double s) {
  return divide_scalar(a, s);
}
Tensor operator/(double s, const Tensor& a) {
  return rdivide_scalar(a, s);
}
Tensor operator-(const Tensor& a) {
  return negate(a);
}

// --- TensorTuple ---

TensorTuple TensorTuple::make_const(std::vector<NDArray> data, bool requires_grad) {
  return TensorTuple(std::make_shared<TupleNode>(std::move(data), requires_grad));
}

TensorTuple TensorTuple::make_from_op(OpPtr op, const std::vector<Value>& inputs) {
  if (!op->returns_tuple())
    fail<TypeError>("[", op->name(), "] returns a Tensor, not a TensorTuple");
  return Value(make_node(std::move(op), nodes_of(inputs))).tuple();
}

const std::vector<NDArray>& TensorTuple::data() const {
  if (!node_) fail<RuntimeError>("use of an undefined TensorTuple");
  return node_->data();
}
Tensor TensorTuple::operator[](int64_t i) const {
  return tuple_get_item(*this, i);
}
std::vector<Tensor> TensorTuple::tensors() const {
  std::vector<Tensor> out;
  for (size_t i = 0; i < size(); ++i) out.push_back((*this)[int64_t(i)]);
  return out;
}
TensorTuple TensorTuple::detach() const {
  return make_const(data(), false);
}
bool TensorTuple::requires_grad() const {
  if (!node_) fail<RuntimeError>("use of an undefined TensorTuple");
  return node_->requires_grad();
}
TensorTuple TensorTuple::grad() const {
  if (!node_) fail<RuntimeError>("use of an undefined TensorTuple");
  return Value(node_->grad()).tuple();
}

}  // namespace needle
