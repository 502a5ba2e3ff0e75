// The Op base class's defaults: evaluation by flattening the inputs' data into Args, and
// the adapter from TensorOp's tensor gradient to the general Value one; the operand check
// of the fused adjoint ops.
#include "needle/ops/op.h"

namespace needle {

NDArray Op::compute(const Args&) const {
  fail<NotImplemented>("[", name(), "] has no tensor-valued compute");
}

std::vector<NDArray> Op::compute_tuple(const Args&) const {
  fail<NotImplemented>("[", name(), "] has no tuple-valued compute");
}

namespace {
// Runs f(Args) over the inputs' data without copying any NDArray.
template <class F>
decltype(auto) with_args(const std::vector<NodePtr>& inputs, F&& f) {
  size_t count = 0;
  for (auto& in : inputs) count += in->is_tuple() ? static_cast<TupleNode&>(*in).data().size() : 1;
  constexpr size_t kInline = 4;
  const NDArray* inline_items[kInline];
  std::vector<const NDArray*> heap_items;
  const NDArray** items = inline_items;
  if (count > kInline) {
    heap_items.resize(count);
    items = heap_items.data();
  }
  size_t k = 0;
  for (auto& in : inputs) {
    if (in->is_tuple()) {
      for (auto& a : static_cast<TupleNode&>(*in).data()) items[k++] = &a;
    } else {
      items[k++] = &static_cast<TensorNode&>(*in).data();
    }
  }
  return f(Args(items, count));
}
}  // namespace

NDArray Op::evaluate(const std::vector<NodePtr>& inputs) const {
  return with_args(inputs, [&](const Args& args) { return compute(args); });
}

std::vector<NDArray> Op::evaluate_tuple(const std::vector<NodePtr>& inputs) const {
  return with_args(inputs, [&](const Args& args) { return compute_tuple(args); });
}

std::vector<Value> TensorOp::gradient_values(const Value& out_grad, const Value& node) const {
  std::vector<Tensor> grads = gradient(out_grad.tensor(), node.tensor());
  return std::vector<Value>(grads.begin(), grads.end());
}

void check_operand_pair(const char* op, const char* a_name, const NDArray& a, const char* b_name,
                        const NDArray& b) {
  if (a.shape() != b.shape())
    fail<ValueError>("[", op, "] ", a_name, " of shape ", shape_str(a.shape()), " and ", b_name,
                     " of shape ", shape_str(b.shape()), " differ");
  if (a.dtype() != b.dtype())
    fail<TypeError>("[", op, "] ", a_name, " of dtype ", dtype_name(a.dtype()), " and ", b_name,
                    " of dtype ", dtype_name(b.dtype()), " differ");
  if (&a.device() != &b.device())
    fail<RuntimeError>("[", op, "] inputs are on different devices: ", a.device().name(), " and ",
                       b.device().name());
}

}  // namespace needle
