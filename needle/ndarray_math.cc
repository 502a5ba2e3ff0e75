// NDArray's reductions (sum, max, min over any axes), matmul with batch broadcasting, pad,
// concatenate and stack, each turned into Backend kernel calls (see ndarray.cc).
#include <algorithm>
#include <numeric>
#include <optional>

#include "needle/checked.h"
#include "needle/ndarray.h"

namespace needle {

// ---------------------------------------------------------------- reductions
NDArray NDArray::sum(const std::optional<Axes>& axes, bool keepdims) const {
  return reduce(ReduceOp::sum, axes, keepdims);
}
NDArray NDArray::max(const std::optional<Axes>& axes, bool keepdims) const {
  return reduce(ReduceOp::max, axes, keepdims);
}
NDArray NDArray::min(const std::optional<Axes>& axes, bool keepdims) const {
  return reduce(ReduceOp::min, axes, keepdims);
}

NDArray NDArray::reduce(ReduceOp op, const std::optional<Axes>& axes, bool keepdims) const {
  const char* name = op_name(op);
  std::vector<bool> reduced(ndim(), !axes.has_value());
  if (axes) {
    for (int64_t a : *axes) {
      a = normalize_axis(name, a, ndim());
      if (reduced[a]) fail<ValueError>("[", name, "] repeated axis ", a, " in ", shape_str(*axes));
      reduced[a] = true;
    }
  }
  // Kept axes first, reduced axes last: the layout the reduce kernel expects.
  Axes order;
  Shape out_shape, keep_shape;
  int64_t reduce_count = 1;
  for (int64_t i = 0; i < ndim(); ++i) {
    if (!reduced[i]) order.push_back(i), out_shape.push_back(shape_[i]);
    keep_shape.push_back(reduced[i] ? 1 : shape_[i]);
  }
  for (int64_t i = 0; i < ndim(); ++i)
    if (reduced[i]) order.push_back(i), reduce_count *= shape_[i];
  if (reduce_count == 0 && op != ReduceOp::sum)  // numpy: even when the result is empty
    fail<ValueError>("[", name, "] zero-size array of shape ", shape_str(shape_),
                     " has no identity for this reduction");
  // numpy: the sum of bool or integers is int64 (numpy's uint8 sum is uint64, which Needle
  // lacks); max and min keep the dtype.
  const DType out_dtype = op == ReduceOp::sum && is_integral(dtype()) ? DType::int64 : dtype();
  const NDArray& in = out_dtype == dtype() ? *this : astype(out_dtype);
  NDArray out = empty(out_shape, out_dtype, device());
  if (out.size_) device().reduce(op, in.permute(order).view(), out.view());
  return keepdims ? out.reshape(keep_shape) : out;
}

// ---------------------------------------------------------------- linear algebra and layout
NDArray NDArray::matmul(const NDArray& other) const {
  check_same_device("matmul", *this, other);
  if (ndim() == 0 || other.ndim() == 0)
    fail<ValueError>("[matmul] operands must have at least one dimension, got shapes ",
                     shape_str(shape_), " and ", shape_str(other.shape_));
  // numpy: a 1-D left operand is a row, a 1-D right operand a column; both dropped after.
  NDArray a = ndim() == 1 ? NDArray(buffer_, {1, shape_[0]}, {0, strides_[0]}, offset_) : *this;
  NDArray b = other.ndim() == 1 ? NDArray(other.buffer_, {other.shape_[0], 1},
                                          {other.strides_[0], 0}, other.offset_)
                                : other;
  int64_t m = a.shape_[a.ndim() - 2], k = a.shape_[a.ndim() - 1];
  int64_t k2 = b.shape_[b.ndim() - 2], n = b.shape_[b.ndim() - 1];
  if (k != k2)
    fail<ValueError>("[matmul] shapes ", shape_str(shape_), " and ", shape_str(other.shape_),
                     " are not aligned: ", k, " (dim ", ndim() - 1, ") != ", k2);
  Shape batch = broadcast_shapes("matmul", Shape(a.shape_.begin(), a.shape_.end() - 2),
                                 Shape(b.shape_.begin(), b.shape_.end() - 2));
  DType dtype = promote_types(a.dtype(), b.dtype());
  if (a.dtype() != dtype) a = a.astype(dtype);
  if (b.dtype() != dtype) b = b.astype(dtype);
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.insert(a_shape.end(), {m, k});
  b_shape.insert(b_shape.end(), {k, n});
  out_shape.insert(out_shape.end(), {m, n});
  checked_numel("matmul", out_shape, dtype_size(dtype));
  NDArray out = empty(out_shape, dtype, device());
  if (out.size_) {
    if (k == 0) {
      out.fill(0);
    } else {
      device().matmul(a.broadcast_to(a_shape).view(), b.broadcast_to(b_shape).view(), out.view());
    }
  }
  Shape result_shape = batch;
  if (ndim() > 1) result_shape.push_back(m);
  if (other.ndim() > 1) result_shape.push_back(n);
  return result_shape == out_shape ? out : out.reshape(result_shape);
}

// pad: a new array of the padded shape filled with `value`, with this array written into
// its middle; one (low, high) pair of non-negative widths per dimension.
NDArray NDArray::pad(const std::vector<std::pair<int64_t, int64_t>>& widths, double value) const {
  // BEGIN SOLUTION hw4
  if (int64_t(widths.size()) != ndim())
    fail<ValueError>("[pad] got ", widths.size(), " (low, high) pairs for an array of shape ",
                     shape_str(shape_));
  Shape shape = shape_;
  IndexKey inner;
  for (int64_t i = 0; i < ndim(); ++i) {
    auto [lo, hi] = widths[i];
    if (lo < 0 || hi < 0) fail<ValueError>("[pad] negative pad width on axis ", i);
    shape[i] = checked_add("pad", checked_add("pad", shape[i], lo, "the padded size"), hi,
                           "the padded size");
    inner.push_back(Index::slice(lo, lo + shape_[i]));
  }
  checked_numel("pad", shape, dtype_size(dtype()));
  NDArray out = full(shape, value, dtype(), device());
  out.getitem(inner).assign(*this);
  return out;
  // END SOLUTION
}

std::optional<Axes> NDArray::memory_order() const {
  Axes order(static_cast<size_t>(ndim()));
  std::iota(order.begin(), order.end(), int64_t(0));
  if (is_compact_ || size_ <= 1) return order;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return strides_[size_t(x)] > strides_[size_t(y)]; });
  if (!permute(order).is_compact()) return std::nullopt;
  return order;
}

NDArray NDArray::from_memory_order(const NDArray& stored, const Shape& shape, const Axes& order) {
  Shape in_memory;
  Axes inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    in_memory.push_back(shape[size_t(order[i])]);
    inverse[size_t(order[i])] = int64_t(i);
  }
  return stored.reshape(in_memory).permute(inverse);
}

NDArray NDArray::concatenate(const std::vector<NDArray>& arrays, int64_t axis) {
  if (arrays.empty()) fail<ValueError>("[concatenate] needs at least one array");
  const NDArray& first = arrays[0];
  if (first.ndim() == 0) fail<ValueError>("[concatenate] zero-dimensional arrays cannot be joined");
  axis = normalize_axis("concatenate", axis, first.ndim());
  Shape shape = first.shape_;
  shape[axis] = 0;
  DType dtype = first.dtype();
  for (const NDArray& a : arrays) {
    check_same_device("concatenate", first, a);
    bool ok = a.ndim() == first.ndim();
    for (int64_t i = 0; ok && i < a.ndim(); ++i) ok = i == axis || a.shape_[i] == first.shape_[i];
    if (!ok)
      fail<ValueError>("[concatenate] shapes ", shape_str(first.shape_), " and ",
                       shape_str(a.shape_), " differ outside axis ", axis);
    shape[axis] += a.shape_[axis];
    dtype = promote_types(dtype, a.dtype());
  }
  // Arrays laid out alike in another axis order (the NCHW views of NHWC convolution results
  // that a U-Net's skips join) give a result in that order too: the copies run along memory,
  // and the next convolution reads its NHWC input without a transpose.
  std::optional<Axes> order = first.memory_order();
  for (const NDArray& a : arrays)
    if (order && !a.permute(*order).is_compact()) order.reset();
  NDArray out = empty(shape, dtype, first.device());
  if (order) out = from_memory_order(out, shape, *order);
  int64_t at = 0;
  for (const NDArray& a : arrays) {
    IndexKey key(size_t(axis), Index::all());
    key.push_back(Index::slice(at, at + a.shape_[axis]));
    out.getitem(key).assign(a.dtype() == dtype ? a : a.astype(dtype));
    at += a.shape_[axis];
  }
  return out;
}

NDArray NDArray::stack(const std::vector<NDArray>& arrays, int64_t axis) {
  if (arrays.empty()) fail<ValueError>("[stack] needs at least one array");
  axis = normalize_axis("stack", axis, arrays[0].ndim() + 1);
  std::vector<NDArray> expanded;
  for (const NDArray& a : arrays) {
    if (a.shape_ != arrays[0].shape_)
      fail<ValueError>("[stack] all arrays must have the same shape, got ",
                       shape_str(arrays[0].shape_), " and ", shape_str(a.shape_));
    Shape shape = a.shape_;
    Strides strides = a.strides_;
    shape.insert(shape.begin() + axis, 1);
    strides.insert(strides.begin() + axis, 0);
    expanded.emplace_back(a.buffer_, shape, strides, a.offset_);
  }
  return concatenate(expanded, axis);
}

}  // namespace needle
