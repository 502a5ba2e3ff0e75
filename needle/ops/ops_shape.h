// Shape and layout ops: reshape, broadcast_to, transpose, permute, flip, dilate, undilate,
// pad, concat, and indexing (getitem / setitem) with gradients.
//
// Most of these are views in the forward direction (NDArray rewrites metadata only); their
// gradients are the inverse layout change, or a summation for broadcast_to.
#pragma once

#include <utility>

#include "needle/ops/op.h"

namespace needle {

class Reshape final : public TensorOp {
 public:
  explicit Reshape(Shape shape) : shape(std::move(shape)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("reshape")
  const Shape shape;
};

class BroadcastTo final : public TensorOp {
 public:
  explicit BroadcastTo(Shape shape) : shape(std::move(shape)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("broadcast_to")
  const Shape shape;
};

// The course's transpose: swaps a pair of axes (default: the last two). A full
// permutation of the axes (of length ndim != 2) is accepted too.
class Transpose final : public TensorOp {
 public:
  explicit Transpose(std::optional<Axes> axes = std::nullopt) : axes(std::move(axes)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("transpose")
  const std::optional<Axes> axes;
};

class Permute final : public TensorOp {
 public:
  explicit Permute(Axes axes) : axes(std::move(axes)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("permute")
  const Axes axes;
};

class Flip final : public TensorOp {
 public:
  explicit Flip(Axes axes) : axes(std::move(axes)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("flip")
  const Axes axes;
};

// Inserts `dilation` zeros after every element along each of `axes` (size n -> n*(1+d)).
class Dilate final : public TensorOp {
 public:
  Dilate(Axes axes, int64_t dilation) : axes(std::move(axes)), dilation(dilation) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("dilate")
  const Axes axes;
  const int64_t dilation;
};

// The inverse of Dilate: keeps every (1+dilation)-th element along each of `axes`.
class UnDilate final : public TensorOp {
 public:
  UnDilate(Axes axes, int64_t dilation) : axes(std::move(axes)), dilation(dilation) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("undilate")
  const Axes axes;
  const int64_t dilation;
};

using PadWidths = std::vector<std::pair<int64_t, int64_t>>;

// Pads each axis with (low, high) elements of `value`.
class Pad final : public TensorOp {
 public:
  explicit Pad(PadWidths widths, double value = 0.0) : widths(std::move(widths)), value(value) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("pad")
  const PadWidths widths;
  const double value;
};

// Joins any number of tensors along an existing axis.
class Concat final : public TensorOp {
 public:
  explicit Concat(int64_t axis) : axis(axis) {}
  NEEDLE_DECLARE_OP_BODY("concat")
  const int64_t axis;
};

// a[key] (ints drop their axis; slices may have any nonzero step).
class GetItem final : public TensorOp {
 public:
  explicit GetItem(IndexKey key) : key(std::move(key)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("getitem")
  const IndexKey key;
};

// The adjoint of GetItem: an array of `shape`, zero except that [key] holds the input.
class ScatterItem final : public TensorOp {
 public:
  ScatterItem(IndexKey key, Shape shape) : key(std::move(key)), shape(std::move(shape)) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("scatter_item")
  const IndexKey key;
  const Shape shape;
};

// (a, v) -> a copy of a with [key] = v (v broadcast to the selected view).
class SetItem final : public TensorOp {
 public:
  explicit SetItem(IndexKey key) : key(std::move(key)) {}
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("setitem")
  const IndexKey key;
};

// --- Functions ---
Tensor reshape(const Tensor& a, const Shape& shape);
Tensor broadcast_to(const Tensor& a, const Shape& shape);
Tensor transpose(const Tensor& a, const std::optional<Axes>& axes = std::nullopt);
Tensor permute(const Tensor& a, const Axes& axes);
Tensor flip(const Tensor& a, const Axes& axes);
Tensor dilate(const Tensor& a, const Axes& axes, int64_t dilation);
Tensor undilate(const Tensor& a, const Axes& axes, int64_t dilation);
Tensor pad(const Tensor& a, const PadWidths& widths, double value = 0.0);
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis = 0);
Tensor getitem(const Tensor& a, const IndexKey& key);
Tensor setitem(const Tensor& a, const IndexKey& key, const Tensor& value);
// In place, as Python's `t[key] = v`: without a graph, writes into t's data; otherwise t
// becomes the node setitem(old t, key, v). Like PyTorch, a leaf that requires grad refuses.
void setitem_inplace(const Tensor& t, const IndexKey& key, const Tensor& value);

// Sums `a` down to `shape` (the adjoint of broadcasting `shape` to a.shape()).
Tensor sum_to_shape(const Tensor& a, const Shape& shape);

}  // namespace needle
