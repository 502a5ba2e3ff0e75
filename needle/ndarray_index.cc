// NDArray selection and integer indexing: where, argmax/argmin, take (gather) and its adjoint
// scatter_add. take and scatter_add run on the Backend's gather/scatter_add kernels (an
// integer index cannot be expressed as strides, and composing a gather from per-index
// copies costs one kernel launch per index). where is a gather too: from [b, a] stacked on a
// new axis, with (cond != 0) as the index. argmax/argmin compose from max/min, a comparison
// and a min over candidate positions, so they need no kernel of their own.
#include <numeric>

#include "needle/ndarray.h"

namespace needle {

namespace {

// The indices of `op` as a compact 1-D int64 array, each in [0, n): negative ones wrap once,
// anything outside [-n, n) is an IndexError naming the index, the axis and its size.
NDArray flat_indices(const char* op, const NDArray& indices, int64_t n, int64_t axis) {
  if (!indices.defined()) fail<ValueError>("[", op, "] indices is an undefined array");
  if (!is_integral(indices.dtype()) || indices.dtype() == DType::bool_)
    fail<TypeError>("[", op, "] indices must be an int32 or int64 array, got ",
                    dtype_name(indices.dtype()));
  NDArray idx = indices.dtype() == DType::int64 ? indices.compact() : indices.astype(DType::int64);
  idx = idx.reshape({idx.size()});
  if (idx.size() == 0) return idx;
  const NDArray lo_hi = NDArray::stack({idx.min(), idx.max()}, 0);
  const std::vector<int64_t> bounds = lo_hi.to_vector<int64_t>();
  for (int64_t i : {bounds[1], bounds[0]})
    if (i >= n || i < -n)
      fail<IndexError>("[", op, "] index ", i, " is out of bounds for axis ", axis, " with size ",
                       n);
  if (bounds[0] < 0) idx = idx + (idx < 0) * n;
  return idx;
}

// The flat indices as the index view of gather/scatter_add for arrays of `shape` with
// shape[axis] == idx.size(): stride 1 along axis, 0 (broadcast) elsewhere.
NDArray index_view(const NDArray& idx, const Shape& shape, int64_t axis) {
  Strides strides(shape.size(), 0);
  strides[size_t(axis)] = idx.strides()[0];
  return NDArray(idx.buffer(), shape, strides, idx.offset());
}

// shape[:axis] + indices.shape + shape[axis+1:].
Shape indexed_shape(const Shape& shape, const Shape& indices, int64_t axis) {
  Shape out(shape.begin(), shape.begin() + axis);
  out.insert(out.end(), indices.begin(), indices.end());
  out.insert(out.end(), shape.begin() + axis + 1, shape.end());
  return out;
}

// argmax (op = max) or argmin (op = min) along one axis: the smallest position whose value
// equals the extreme (or is NaN when the extreme is NaN).
NDArray arg_extreme(const char* name, ReduceOp op, const NDArray& a, std::optional<int64_t> axis,
                    bool keepdims) {
  if (!axis) {
    NDArray r = arg_extreme(name, op, a.compact().reshape({a.size()}), 0, false);
    return keepdims ? r.reshape(Shape(size_t(a.ndim()), 1)) : r;
  }
  if (a.ndim() == 0) {
    NDArray::normalize_axis(name, *axis, 0);
    return NDArray::full({}, 0, DType::int64, a.device());
  }
  const int64_t ax = NDArray::normalize_axis(name, *axis, a.ndim());
  const int64_t n = a.shape()[size_t(ax)];
  if (n == 0)
    fail<ValueError>("[", name, "] attempt to get ", name, " of an empty sequence (shape ",
                     shape_str(a.shape()), ", axis ", ax, ")");
  Axes order;
  for (int64_t i = 0; i < a.ndim(); ++i)
    if (i != ax) order.push_back(i);
  order.push_back(ax);
  const NDArray p = a.permute(order);
  const int64_t last = a.ndim() - 1;
  const NDArray m = p.reduce(op, Axes{last}, true);
  NDArray hit = p == m;
  if (is_floating(a.dtype())) hit = hit.maximum((p != p) * (m != m));  // NaN is the extreme
  std::vector<int64_t> positions(static_cast<size_t>(n), 0);
  std::iota(positions.begin(), positions.end(), int64_t(0));
  const NDArray offsets = NDArray::from_vector(positions, {n}, a.device()) - n;
  // A hit at j gives j, a miss gives n: the minimum is the first hit.
  NDArray result = (hit.astype(DType::int64) * offsets + n).min(Axes{last});
  if (!keepdims) return result;
  Shape shape = a.shape();
  shape[size_t(ax)] = 1;
  return result.reshape(shape);
}

}  // namespace

NDArray NDArray::argmax(std::optional<int64_t> axis, bool keepdims) const {
  return arg_extreme("argmax", ReduceOp::max, *this, axis, keepdims);
}

NDArray NDArray::argmin(std::optional<int64_t> axis, bool keepdims) const {
  return arg_extreme("argmin", ReduceOp::min, *this, axis, keepdims);
}

NDArray NDArray::take(const NDArray& indices, int64_t axis) const {
  if (ndim() == 0) fail<IndexError>("[take] cannot index a 0-d array");
  axis = normalize_axis("take", axis, ndim());
  check_same_device("take", *this, indices);
  const NDArray idx = flat_indices("take", indices, shape_[size_t(axis)], axis);
  Shape gathered = shape_;
  gathered[size_t(axis)] = idx.size();
  NDArray out = empty(gathered, dtype(), device());
  if (out.size()) device().gather(view(), index_view(idx, gathered, axis).view(), axis, out.view());
  return out.reshape(indexed_shape(shape_, indices.shape(), axis));
}

NDArray NDArray::scatter_add(const NDArray& indices, const NDArray& values, int64_t axis,
                             const Shape& shape) {
  if (!values.defined()) fail<ValueError>("[scatter_add] values is an undefined array");
  if (shape.empty()) fail<IndexError>("[scatter_add] cannot index a 0-d array");
  axis = normalize_axis("scatter_add", axis, int64_t(shape.size()));
  check_same_device("scatter_add", values, indices);
  const Shape expected = indexed_shape(shape, indices.shape(), axis);
  if (values.shape() != expected)
    fail<ValueError>("[scatter_add] values of shape ", shape_str(values.shape()),
                     " do not match indices of shape ", shape_str(indices.shape()),
                     " into shape ", shape_str(shape), " along axis ", axis, " (expected ",
                     shape_str(expected), ")");
  NDArray out = full(shape, 0, values.dtype(), values.device());
  const NDArray idx = flat_indices("scatter_add", indices, shape[size_t(axis)], axis);
  Shape gathered = shape;
  gathered[size_t(axis)] = idx.size();
  if (values.size())
    values.device().scatter_add(values.compact().reshape(gathered).view(),
                                index_view(idx, gathered, axis).view(), axis, out.view());
  return out;
}

NDArray NDArray::where(const NDArray& cond, const NDArray& a, const NDArray& b) {
  if (!cond.defined() || !a.defined() || !b.defined())
    fail<ValueError>("[where] got an undefined array");
  check_same_device("where", cond, a);
  check_same_device("where", cond, b);
  const DType dtype = promote_types(a.dtype(), b.dtype());
  const Shape shape =
      broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Shape one_shape = shape;
  one_shape.insert(one_shape.begin(), 1);
  NDArray out = empty(one_shape, dtype, a.device());
  if (out.size() == 0) return out.reshape(shape);
  Shape pair_shape = shape;
  pair_shape.insert(pair_shape.begin(), 2);
  NDArray pair = empty(pair_shape, dtype, a.device());
  pair.getitem({Index::at(0)}).assign(b);  // index 0 picks b, 1 picks a
  pair.getitem({Index::at(1)}).assign(a);
  const NDArray nonzero = cond.dtype() == DType::bool_ ? cond : cond.astype(DType::bool_);
  const NDArray sel = nonzero.astype(DType::int64).broadcast_to(shape);
  Strides strides = sel.strides();
  strides.insert(strides.begin(), 0);
  const NDArray index(sel.buffer(), one_shape, strides, sel.offset());
  a.device().gather(pair.view(), index.view(), 0, out.view());
  return out.reshape(shape);
}

}  // namespace needle
