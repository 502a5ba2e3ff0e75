// Shape and layout ops: forward as NDArray views where possible, gradients as the inverse
// layout change (see ops_shape.h).
#include "needle/ops/ops_shape.h"

#include <limits>

#include "needle/checked.h"
#include "needle/ops/ops_reduce.h"

namespace needle {

namespace {

Tensor apply_op(OpPtr op, std::vector<NodePtr> inputs) {
  return Value(make_node(std::move(op), std::move(inputs))).tensor();
}

Axes normalized(const char* op, const Axes& axes, int64_t ndim) {
  Axes out;
  out.reserve(axes.size());
  for (int64_t a : axes) out.push_back(NDArray::normalize_axis(op, a, ndim));
  return out;
}

Axes inverse_permutation(const Axes& axes) {
  Axes inv(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) inv[size_t(axes[i])] = int64_t(i);
  return inv;
}

// Checks dilate's and undilate's operands: a dilation in [0, 2^63 - 1) and axes of the input.
void check_dilation(const char* op, int64_t ndim, const Axes& axes, int64_t dilation) {
  if (dilation < 0 || dilation == std::numeric_limits<int64_t>::max())
    fail<ValueError>("[", op, "] dilation must be in [0, 2^63 - 1), got ", dilation);
  normalized(op, axes, ndim);
}

}  // namespace

NDArray Reshape::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  const NDArray& a = args[0];
  return a.is_compact() ? a.reshape(shape) : a.compact().reshape(shape);
  // END SOLUTION
}
std::vector<Tensor> Reshape::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  return {reshape(out_grad, node.input(0).shape())};
  // END SOLUTION
}

NDArray BroadcastTo::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].broadcast_to(shape);
  // END SOLUTION
}
std::vector<Tensor> BroadcastTo::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  return {sum_to_shape(out_grad, node.input(0).shape())};
  // END SOLUTION
}

NDArray Transpose::compute(const Args& args) const {
  if (axes && axes->size() == 2)  // checked here so that a bad axis names transpose
    for (int64_t axis : *axes) NDArray::normalize_axis("transpose", axis, args[0].ndim());
  // BEGIN SOLUTION hw1
  const NDArray& a = args[0];
  if (!axes) return a.ndim() < 2 ? a : a.swapaxes(-1, -2);
  if (axes->size() == 2) return a.swapaxes((*axes)[0], (*axes)[1]);
  return a.permute(*axes);
  // END SOLUTION
}
std::vector<Tensor> Transpose::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  if (!axes || axes->size() == 2) return {transpose(out_grad, axes)};
  int64_t ndim = node.input(0).ndim();
  return {permute(out_grad, inverse_permutation(normalized("transpose", *axes, ndim)))};
  // END SOLUTION
}

NDArray Permute::compute(const Args& args) const {
  return args[0].permute(axes);
}
std::vector<Tensor> Permute::gradient(const Tensor& out_grad, const Tensor& node) const {
  int64_t ndim = node.input(0).ndim();
  return {permute(out_grad, inverse_permutation(normalized("permute", axes, ndim)))};
}

NDArray Flip::compute(const Args& args) const {
  // BEGIN SOLUTION hw4
  return args[0].flip(axes);
  // END SOLUTION
}
std::vector<Tensor> Flip::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw4
  return {flip(out_grad, axes)};
  // END SOLUTION
}

// Zeros of the dilated shape, with `a` written to every (1 + dilation)-th entry of the axes.
NDArray Dilate::compute(const Args& args) const {
  check_dilation("dilate", args[0].ndim(), axes, dilation);
  // BEGIN SOLUTION hw4
  const NDArray& a = args[0];
  Shape shape = a.shape();
  IndexKey key(size_t(a.ndim()), Index::all());
  for (int64_t ax : normalized("dilate", axes, a.ndim())) {
    if (!mul_fits(shape[size_t(ax)], 1 + dilation, &shape[size_t(ax)]))
      fail<ValueError>("[dilate] dilating ", shape_str(a.shape()), " by ", dilation,
                       " overflows 64 bits");
    key[size_t(ax)] = Index::slice(Index::kNone, Index::kNone, 1 + dilation);
  }
  NDArray out = NDArray::full(shape, 0.0, a.dtype(), a.device());
  out.setitem(key, a);
  return out;
  // END SOLUTION
}
std::vector<Tensor> Dilate::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw4
  return {undilate(out_grad, axes, dilation)};
  // END SOLUTION
}

// Every (1 + dilation)-th entry of the axes: a strided view.
NDArray UnDilate::compute(const Args& args) const {
  check_dilation("undilate", args[0].ndim(), axes, dilation);
  // BEGIN SOLUTION hw4
  const NDArray& a = args[0];
  IndexKey key(size_t(a.ndim()), Index::all());
  for (int64_t ax : normalized("undilate", axes, a.ndim()))
    key[size_t(ax)] = Index::slice(Index::kNone, Index::kNone, 1 + dilation);
  return a.getitem(key);
  // END SOLUTION
}
std::vector<Tensor> UnDilate::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw4
  // Dilating back gives ceil(n / (1+d)) * (1+d) elements; trim to the input's length.
  Tensor g = dilate(out_grad, axes, dilation);
  const Shape& shape = node.input(0).shape();
  if (g.shape() == shape) return {g};
  IndexKey key;
  for (int64_t n : shape) key.push_back(Index::slice(0, n));
  return {getitem(g, key)};
  // END SOLUTION
}

NDArray Pad::compute(const Args& args) const {
  // BEGIN SOLUTION hw4
  return args[0].pad(widths, value);
  // END SOLUTION
}
// The gradient of padding is the slice of out_grad where the input sits.
std::vector<Tensor> Pad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw4
  const Shape& shape = node.input(0).shape();
  IndexKey key;
  for (size_t i = 0; i < shape.size(); ++i)
    key.push_back(Index::slice(widths[i].first, widths[i].first + shape[i]));
  return {getitem(out_grad, key)};
  // END SOLUTION
}

NDArray Concat::compute(const Args& args) const {
  return NDArray::concatenate(args.to_vector(), axis);
}
std::vector<Tensor> Concat::gradient(const Tensor& out_grad, const Tensor& node) const {
  int64_t ndim = out_grad.ndim();
  int64_t ax = NDArray::normalize_axis("concat", axis, ndim);
  std::vector<Tensor> grads;
  int64_t start = 0;
  for (size_t i = 0; i < node.node()->inputs().size(); ++i) {
    int64_t n = node.input(i).shape()[size_t(ax)];
    IndexKey key(size_t(ndim), Index::all());
    key[size_t(ax)] = Index::slice(start, start + n);
    grads.push_back(getitem(out_grad, key));
    start += n;
  }
  return grads;
}

NDArray GetItem::compute(const Args& args) const {
  return args[0].getitem(key);
}
std::vector<Tensor> GetItem::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {apply_op(std::make_shared<ScatterItem>(key, node.input(0).shape()), {out_grad.node()})};
}

NDArray ScatterItem::compute(const Args& args) const {
  NDArray out = NDArray::full(shape, 0.0, args[0].dtype(), args[0].device());
  out.setitem(key, args[0]);
  return out;
}
std::vector<Tensor> ScatterItem::gradient(const Tensor& out_grad, const Tensor&) const {
  return {getitem(out_grad, key)};
}

NDArray SetItem::compute(const Args& args) const {
  NDArray out = args[0].clone();
  out.setitem(key, args[1]);
  return out;
}
std::vector<Tensor> SetItem::gradient(const Tensor& out_grad, const Tensor& node) const {
  const NDArray& a = node.input(0).data();
  NDArray keep = NDArray::full(a.shape(), 1.0, out_grad.dtype(), a.device());
  keep.setitem(key, 0.0);
  return {out_grad * Tensor(keep), sum_to_shape(getitem(out_grad, key), node.input(1).shape())};
}

// --- Functions ---

Tensor reshape(const Tensor& a, const Shape& shape) {
  return apply_op(std::make_shared<Reshape>(shape), {a.node()});
}
Tensor broadcast_to(const Tensor& a, const Shape& shape) {
  return apply_op(std::make_shared<BroadcastTo>(shape), {a.node()});
}
Tensor transpose(const Tensor& a, const std::optional<Axes>& axes) {
  return apply_op(std::make_shared<Transpose>(axes), {a.node()});
}
Tensor permute(const Tensor& a, const Axes& axes) {
  return apply_op(std::make_shared<Permute>(axes), {a.node()});
}
Tensor flip(const Tensor& a, const Axes& axes) {
  return apply_op(std::make_shared<Flip>(axes), {a.node()});
}
Tensor dilate(const Tensor& a, const Axes& axes, int64_t dilation) {
  return apply_op(std::make_shared<Dilate>(axes, dilation), {a.node()});
}
Tensor undilate(const Tensor& a, const Axes& axes, int64_t dilation) {
  return apply_op(std::make_shared<UnDilate>(axes, dilation), {a.node()});
}
Tensor pad(const Tensor& a, const PadWidths& widths, double value) {
  return apply_op(std::make_shared<Pad>(widths, value), {a.node()});
}
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis) {
  std::vector<NodePtr> inputs;
  for (auto& t : tensors) inputs.push_back(t.node());
  return apply_op(std::make_shared<Concat>(axis), std::move(inputs));
}
Tensor getitem(const Tensor& a, const IndexKey& key) {
  return apply_op(std::make_shared<GetItem>(key), {a.node()});
}
Tensor setitem(const Tensor& a, const IndexKey& key, const Tensor& value) {
  return apply_op(std::make_shared<SetItem>(key), {a.node(), value.node()});
}

void setitem_inplace(const Tensor& t, const IndexKey& key, const Tensor& value) {
  bool graph = is_grad_enabled() && (t.requires_grad() || value.requires_grad());
  if (!graph) {
    NDArray data = t.data();
    bool broadcast = false;  // never write through a broadcast (stride 0) view
    for (size_t i = 0; i < data.shape().size(); ++i)
      broadcast = broadcast || (data.strides()[i] == 0 && data.shape()[i] > 1);
    if (broadcast) {
      data = data.clone();
      t.set_data(data);
    }
    data.setitem(key, value.data());
    return;
  }
  if (t.is_leaf() && t.requires_grad())
    fail<RuntimeError>(
        "[setitem] a leaf tensor that requires grad cannot be modified in place; "
        "write to its .data or under no_grad");
  NodePtr old = t.node()->clone();
  t.node()->rebind(std::make_shared<SetItem>(key), {old, value.node()}, true);
}

Tensor sum_to_shape(const Tensor& a, const Shape& shape) {
  const Shape& s = a.shape();
  if (s == shape) return a;
  if (s.size() < shape.size())
    fail<ValueError>("[sum_to_shape] cannot reduce ", shape_str(s), " to ", shape_str(shape));
  size_t lead = s.size() - shape.size();
  Axes axes;
  for (size_t i = 0; i < s.size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && s[i] != 1)) axes.push_back(int64_t(i));
  Tensor r = axes.empty() ? a : summation(a, axes);
  return r.shape() == shape ? r : reshape(r, shape);
}

}  // namespace needle
