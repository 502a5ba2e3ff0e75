// Reverse-mode autodiff: the topological sort and the backward pass (see autograd.h).
#include "needle/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "needle/ops/op.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_tuple.h"

namespace needle {

std::vector<NodePtr> find_topo_sort(const std::vector<NodePtr>& roots, bool requires_grad_only) {
  // BEGIN SOLUTION hw1
  // Iterative post-order DFS: a stack of (node, index of the next input to visit). A node is
  // emitted once all its inputs are, which is the order the recursive version produces.
  std::vector<NodePtr> order;
  std::unordered_set<const Node*> visited;
  std::vector<std::pair<const NodePtr*, size_t>> stack;
  for (const NodePtr& root : roots) {
    if (!root || !visited.insert(root.get()).second) continue;
    stack.emplace_back(&root, 0);
    while (!stack.empty()) {
      const NodePtr& node = *stack.back().first;
      size_t i = stack.back().second;
      if (i < node->inputs().size()) {
        stack.back().second++;
        const NodePtr& input = node->inputs()[i];
        if (requires_grad_only && !input->requires_grad()) continue;
        if (visited.insert(input.get()).second) stack.emplace_back(&input, 0);
      } else {
        order.push_back(node);
        stack.pop_back();
      }
    }
  }
  return order;
  // END SOLUTION
}

Value sum_values(const std::vector<Value>& values) {
  Value total = values[0];
  for (size_t i = 1; i < values.size(); ++i) {
    if (total.is_tuple()) {
      TensorTuple a = total.tuple(), b = values[i].tuple();
      std::vector<Value> sums;
      for (size_t k = 0; k < a.size(); ++k) sums.push_back(add(a[int64_t(k)], b[int64_t(k)]));
      total = needle::make_tuple(sums);
    } else {
      total = add(total.tensor(), values[i].tensor());
    }
  }
  return total;
}

namespace {

void check_out_grad(const Value& output, const Value& out_grad) {
  if (!output.defined() || !out_grad.defined())
    fail<ValueError>("[backward] output and out_grad must be defined");
  if (output.is_tuple() != out_grad.is_tuple())
    fail<TypeError>("[backward] out_grad must be a ", output.is_tuple() ? "TensorTuple" : "Tensor");
  if (!output.is_tuple() && output.tensor().shape() != out_grad.tensor().shape())
    fail<ValueError>("[backward] out_grad has shape ", shape_str(out_grad.tensor().shape()),
                     " but the output has shape ", shape_str(output.tensor().shape()));
}

// The backward pass running on this thread (null outside one): the callbacks queued during
// it, run in order when it ends, and the compact copies compact_node made in it.
class BackwardPass;
thread_local BackwardPass* current_pass = nullptr;

class BackwardPass {
 public:
  BackwardPass() : outer_(current_pass) { current_pass = this; }
  ~BackwardPass() { current_pass = outer_; }
  BackwardPass(const BackwardPass&) = delete;
  BackwardPass& operator=(const BackwardPass&) = delete;

  void run_callbacks() {
    for (size_t i = 0; i < callbacks.size(); ++i) {  // a callback may queue more
      std::function<void()> callback = std::move(callbacks[i]);
      callback();
    }
  }

  std::vector<std::function<void()>> callbacks;
  // By the node whose data was copied: that node and its copy, both weak (a copy lives as
  // long as the ops that read it, as it would without the memo; the input is checked so a
  // freed node's address, reused, never matches).
  struct CompactCopy {
    std::weak_ptr<Node> input, copy;
  };
  std::unordered_map<const Node*, CompactCopy> compact_copies;

 private:
  BackwardPass* outer_;
};

}  // namespace

void queue_backward_callback(std::function<void()> callback) {
  if (!current_pass) fail<RuntimeError>("[queue_backward_callback] no backward pass is running");
  current_pass->callbacks.push_back(std::move(callback));
}

NodePtr compact_node(const NodePtr& input) {
  const NDArray& data = static_cast<TensorNode&>(*input).data();
  if (data.is_compact()) return input;
  auto copy_of = [&] { return make_node(std::make_shared<AsType>(data.dtype()), {input}); };
  if (!current_pass) return copy_of();
  BackwardPass::CompactCopy& memo = current_pass->compact_copies[input.get()];
  NodePtr copy = memo.input.lock() == input ? memo.copy.lock() : nullptr;
  // A copy made with the graph off (or on) serves only while it still is.
  if (copy && copy->requires_grad() == (input->requires_grad() && is_grad_enabled())) return copy;
  copy = copy_of();
  memo = {input, copy};
  return copy;
}

void compute_gradient_of_variables(const Value& output, const Value& out_grad) {
  check_out_grad(output, out_grad);
  BackwardPass pass;
  // BEGIN SOLUTION hw1
  // Course idiom: x.grad.backward() computes second derivatives into the grads (replacing
  // them); any other backward accumulates into existing grads.
  const bool accumulate = !output.node()->is_gradient();
  std::unordered_map<const Node*, std::vector<Value>> partials;
  partials[output.node().get()].push_back(out_grad);
  std::vector<NodePtr> order = find_topo_sort({output.node()}, /*requires_grad_only=*/true);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const NodePtr& node = *it;
    auto found = partials.find(node.get());
    if (found == partials.end()) continue;
    Value grad = sum_values(found->second);
    partials.erase(found);  // keep nothing that no later gradient reads

    Value stored = grad;
    if (accumulate && node->grad()) {
      // The running total is a value, not a graph: a training loop that never resets its
      // grads must not grow a chain of additions step after step.
      NoGradGuard no_grad;
      stored = sum_values({Value(node->grad()), grad});
    }
    // A leaf keeps its gradient's graph (so x.grad.backward() differentiates again); an
    // intermediate node keeps only the value. Its graph would hold the forward nodes that
    // hold this node: a reference cycle that keeps every activation of the step alive.
    if (!node->is_leaf())
      stored = stored.is_tuple() ? Value(stored.tuple().detach()) : Value(stored.tensor().detach());
    stored.node()->mark_gradient();
    node->set_grad(stored.node());
    node->run_grad_hooks();

    if (node->is_leaf()) continue;
    std::vector<Value> input_grads = node->op()->gradient_values(grad, Value(node));
    const auto& inputs = node->inputs();
    for (size_t i = 0; i < inputs.size() && i < input_grads.size(); ++i) {
      if (input_grads[i].defined() && inputs[i]->requires_grad())
        partials[inputs[i].get()].push_back(std::move(input_grads[i]));
    }
  }
  // END SOLUTION
  pass.run_callbacks();
}

}  // namespace needle
