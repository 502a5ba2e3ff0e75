// Reverse-mode automatic differentiation over the Tensor graph.
//
// find_topo_sort orders nodes so every node comes after its inputs (post-order DFS, as the
// course's), iteratively, so graphs of any depth are fine. compute_gradient_of_variables
// walks that order backwards, summing each node's partial adjoints into its `grad`.
#pragma once

#include <functional>
#include <vector>

#include "needle/tensor.h"

namespace needle {

// Post-order DFS from `roots`, visiting inputs in order. With requires_grad_only, inputs
// that do not require grad are skipped (the roots are always included).
std::vector<NodePtr> find_topo_sort(const std::vector<NodePtr>& roots,
                                    bool requires_grad_only = false);

// The sum of the partial adjoints of one node: tensors added, tuples added element by
// element (what compute_gradient_of_variables sums into each node's grad).
Value sum_values(const std::vector<Value>& values);

// Sets x.grad for every node x that `output` depends on and that requires grad: d(output)/dx
// contracted with `out_grad` (same shape as output). Gradients are Tensors built with ops,
// so they can be differentiated again.
//
// Across calls gradients accumulate (x.grad += new), as in PyTorch; an accumulated grad is
// a plain value (a loop that never resets its grads keeps no growing graph), so only a
// grad from a single backward can be differentiated again. The exception keeps the course
// framework's second-derivative idiom working: calling backward() on a tensor that is
// itself some node's grad (`x.grad.backward()`) replaces the grads instead.
//
// A node's grad hooks (Node::add_grad_hook) run right after its grad is stored; callbacks
// queued with queue_backward_callback during the pass run once it ends.
void compute_gradient_of_variables(const Value& output, const Value& out_grad);

// `input` itself when its data is compact, else a node of its own holding a compact copy
// (an AsType to its own dtype), for an op's prepare() to read. Within a backward pass every
// op that asks for the same input gets the same copy (a conv's input and weight gradients
// both read one permuted out_grad): arrays do not change while the pass runs, and the memo
// ends with it.
NodePtr compact_node(const NodePtr& input);

// Runs `callback` when the backward pass now running ends, after every grad is stored (a
// grad hook uses it to finish what it started). RuntimeError outside a backward pass.
void queue_backward_callback(std::function<void()> callback);

}  // namespace needle
