// NDArray: an n-dimensional array on a device. A value type over a shared device Buffer,
// described by dtype, shape, strides (in elements) and offset. Reshape (when the layout
// allows), permute, broadcast_to, slicing and flip only rewrite that metadata; compact()
// materializes. All arithmetic goes through the Backend interface of the array's device.
#pragma once

#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "needle/backend.h"

namespace needle {

// A device allocation. Arrays share it through shared_ptr; it frees itself on its backend.
class Buffer {
 public:
  Buffer(Backend& backend, int64_t size, DType dtype);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Backend& backend() const { return *backend_; }
  void* data() const { return data_; }
  int64_t size() const { return size_; }  // in elements
  DType dtype() const { return dtype_; }

 private:
  Backend* backend_;
  void* data_;
  int64_t size_;
  DType dtype_;
};

// One entry of an indexing key: an integer (drops the axis), a slice with optional
// start/stop and a non-zero step (negative steps walk backwards, as in Python), or a new
// axis of length 1 or 0 that consumes no axis (numpy's None / True / False). Every int64
// is a valid start, stop or step: "absent" is its own state, not a sentinel value.
struct Index {
  static constexpr std::nullopt_t kNone = std::nullopt;  // an absent start or stop
  bool is_slice = true;
  std::optional<int64_t> start, stop;  // for is_slice
  int64_t step = 1;                    // for is_slice
  int64_t value = 0;                   // for !is_slice: the index, or a new axis' length
  bool is_new_axis = false;            // for !is_slice

  static Index at(int64_t i) { return Index{false, kNone, kNone, 1, i, false}; }
  static Index slice(std::optional<int64_t> start = kNone, std::optional<int64_t> stop = kNone,
                     int64_t step = 1) {
    return Index{true, start, stop, step, 0, false};
  }
  static Index all() { return slice(); }
  // numpy: a[None] and a[True] add a length-1 axis, a[False] a length-0 one.
  static Index new_axis(bool keep = true) { return Index{false, kNone, kNone, 1, keep, true}; }
};
using IndexKey = std::vector<Index>;

// A scalar operand of an array op, with the kind of number it came from: numpy's result
// dtype depends on it (int array + 1 stays int, int array + 1.5 is float64). C++ doubles and
// floats are float scalars, integers and bools integer/bool scalars; the bindings pass a
// Python int as an int64_t. Integers beyond 2^53 lose precision (the value is a double).
struct Scalar {
  enum class Kind : uint8_t { boolean, integer, floating };
  double value = 0;
  Kind kind = Kind::floating;

  Scalar(double v) : value(v) {}  // NOLINT: implicit, so `a + 0.5` reads as before
  Scalar(float v) : value(v) {}   // NOLINT
  Scalar(int v) : value(v), kind(Kind::integer) {}                // NOLINT
  Scalar(long v) : value(double(v)), kind(Kind::integer) {}       // NOLINT
  Scalar(long long v) : value(double(v)), kind(Kind::integer) {}  // NOLINT
  Scalar(bool v) : value(v), kind(Kind::boolean) {}               // NOLINT
};

class NDArray {
 public:
  NDArray() = default;  // an undefined array: defined() is false
  NDArray(std::shared_ptr<Buffer> buffer, Shape shape, Strides strides, int64_t offset);

  // --- Creation ---
  static NDArray empty(const Shape& shape, DType dtype = DType::float32,
                       Backend& device = default_backend());
  static NDArray full(const Shape& shape, double value, DType dtype = DType::float32,
                      Backend& device = default_backend());
  // Copies `shape`'s worth of compact row-major host data of type `dtype`.
  static NDArray from_host(const void* data, const Shape& shape, DType dtype,
                           Backend& device = default_backend());
  template <class T>
  static NDArray from_vector(const std::vector<T>& values, const Shape& shape,
                             Backend& device = default_backend()) {
    check_size_matches("from_vector", int64_t(values.size()), shape);
    return from_host(values.data(), shape, dtype_of<T>(), device);
  }
  static Strides compact_strides(const Shape& shape);

  // --- Metadata ---
  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  DType dtype() const { return buffer_->dtype(); }
  Backend& device() const { return buffer_->backend(); }
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  int64_t ndim() const { return int64_t(shape_.size()); }
  int64_t size() const { return size_; }
  // Compact = row-major contiguous from offset 0 of a buffer holding exactly size() elements
  // (the course's definition, so compact arrays can be reshaped as flat memory).
  bool is_compact() const { return is_compact_; }
  View view() const;

  // --- To and from the host ---
  void to_host(void* dst) const;  // compact row-major, in dtype()
  template <class T>
  std::vector<T> to_vector() const {
    NDArray a = dtype() == dtype_of<T>() ? *this : astype(dtype_of<T>());
    std::vector<T> out(size_t(a.size()));
    a.to_host(out.data());
    return out;
  }
  double item() const;  // the single element of a size-1 array

  // --- Views (no copy) ---
  // A view when the layout allows (always for compact arrays); one -1 entry is inferred.
  // Throws ValueError when the sizes differ or when the strides cannot express the result.
  NDArray reshape(const Shape& new_shape) const;
  NDArray permute(const Axes& axes) const;
  NDArray swapaxes(int64_t a, int64_t b) const;
  // numpy rules: align trailing dims; size-1 (or missing) dims become stride 0.
  NDArray broadcast_to(const Shape& new_shape) const;
  NDArray as_strided(const Shape& shape, const Strides& strides) const;
  NDArray getitem(const IndexKey& key) const;  // missing trailing entries mean ":"
  NDArray flip(const Axes& axes) const;
  // Memory order: the axes from the outermost in memory to the innermost when the array's
  // buffer holds exactly its elements, row-major in some axis order (0, 1, ... for a compact
  // array; 0, 2, 3, 1 for nn.Conv's NCHW view of its NHWC result), so that permute(order) is
  // compact; nullopt otherwise (a slice, a broadcast). from_memory_order is the inverse: `stored`
  // (compact, of shape's element count) seen as an array of `shape` laid out in that order.
  std::optional<Axes> memory_order() const;
  static NDArray from_memory_order(const NDArray& stored, const Shape& shape, const Axes& order);

  // --- Copies ---
  NDArray compact() const;  // *this when already compact
  NDArray clone() const;    // always a fresh compact copy
  NDArray astype(DType dtype) const;
  NDArray to(Backend& device) const;
  void fill(double value);
  // Writes into the view selected by key (a view of this array's buffer): in place.
  void setitem(const IndexKey& key, const NDArray& value);  // value broadcast to the view
  void setitem(const IndexKey& key, double value);
  void assign(const NDArray& value);  // this[...] = value (broadcast)

  // --- Element-wise (numpy broadcasting and dtype promotion; docs/dtypes.md) ---
  // Math ops (sqrt exp log tanh sigmoid erf) of integer or bool arrays compute in float64
  // (int32, int64) or float32 (uint8, bool); negate/abs/sign keep the dtype.
  NDArray unary(UnaryOp op) const;
  // Mixed dtypes promote as np.promote_types; dividing integers gives float64; comparisons
  // give 1.0/0.0 in a float result dtype and bool in an integer one.
  static NDArray binary(BinaryOp op, const NDArray& a, const NDArray& b);
  // numpy's rules for a Python scalar: a float array keeps its dtype; an integer array stays
  // integer with an integer scalar (widened when the value does not fit) and becomes float64
  // with a float scalar; a bool array becomes int64 with an integer scalar.
  NDArray scalar(BinaryOp op, Scalar s, bool scalar_on_left = false) const;
  // The dtype `op` gives for operands (or an array and a scalar) of these dtypes, and the
  // dtype it computes in (they differ for comparisons, which compute in the promoted dtype).
  static DType result_dtype(BinaryOp op, DType a, DType b);
  static DType scalar_operand_dtype(DType a, const Scalar& s);

  NDArray operator-() const { return unary(UnaryOp::negate); }
  NDArray log() const { return unary(UnaryOp::log); }
  NDArray exp() const { return unary(UnaryOp::exp); }
  NDArray tanh() const { return unary(UnaryOp::tanh); }
  NDArray sqrt() const { return unary(UnaryOp::sqrt); }
  NDArray abs() const { return unary(UnaryOp::abs); }
  NDArray pow(Scalar e) const { return scalar(BinaryOp::power, e); }
  NDArray maximum(const NDArray& b) const { return binary(BinaryOp::maximum, *this, b); }
  NDArray maximum(Scalar s) const { return scalar(BinaryOp::maximum, s); }

  // --- Selection and integer indexing (ndarray_index.cc) ---
  // numpy's where: a where cond is nonzero, else b; all three broadcast, a and b promote.
  static NDArray where(const NDArray& cond, const NDArray& a, const NDArray& b);
  // Index of the first largest (smallest) element along axis (nullopt: of the flattened
  // array), as int64; NaN counts as largest and smallest, as in numpy.
  NDArray argmax(std::optional<int64_t> axis = std::nullopt, bool keepdims = false) const;
  NDArray argmin(std::optional<int64_t> axis = std::nullopt, bool keepdims = false) const;
  // numpy's take: indices (int32/int64, any shape, negative ones count from the end) pick
  // entries along axis; the result has shape shape[:axis] + indices.shape + shape[axis+1:].
  NDArray take(const NDArray& indices, int64_t axis = 0) const;
  // The adjoint of take: a zero array of `shape` (values' dtype) into which each entry of
  // values is added at the position take would have read it from; repeated indices add up.
  static NDArray scatter_add(const NDArray& indices, const NDArray& values, int64_t axis,
                             const Shape& shape);

  // --- Reductions: nullopt = every axis; negative axes count from the end ---
  NDArray sum(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  NDArray max(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  NDArray min(const std::optional<Axes>& axes = std::nullopt, bool keepdims = false) const;
  NDArray reduce(ReduceOp op, const std::optional<Axes>& axes, bool keepdims) const;

  // --- Linear algebra and layout ---
  // (..., m, k) @ (..., k, n) with numpy batch broadcasting; 1-D operands as in numpy.
  NDArray matmul(const NDArray& b) const;
  NDArray pad(const std::vector<std::pair<int64_t, int64_t>>& widths, double value = 0) const;
  static NDArray concatenate(const std::vector<NDArray>& arrays, int64_t axis);
  static NDArray stack(const std::vector<NDArray>& arrays, int64_t axis);

  // Helpers shared with the layers above.
  static void check_size_matches(const char* op, int64_t size, const Shape& shape);
  // RuntimeError naming `op` when a and b live on different devices.
  static void check_same_device(const char* op, const NDArray& a, const NDArray& b);
  // Normalizes a possibly negative axis for an array of rank ndim; IndexError names `op`.
  static int64_t normalize_axis(const char* op, int64_t axis, int64_t ndim);
  static Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

 private:
  // A fresh array of this shape for an element-wise result: laid out like `like` when
  // `like` is a dense permutation of a row-major array (a transposed view, say), so the
  // result of a permuted input is one contiguous pass and keeps its memory order; row-major
  // otherwise. `other`, when it has the full shape too, must share like's strides.
  static NDArray empty_for_elementwise(const Shape& shape, DType dtype, Backend& device,
                                       const NDArray& like, const NDArray* other = nullptr);

  std::shared_ptr<Buffer> buffer_;
  Shape shape_;
  Strides strides_;
  int64_t offset_ = 0;
  // Cached at construction; metadata never changes afterwards (every view op builds a new
  // NDArray), so size_ and is_compact_ stay true to shape_/strides_/offset_.
  int64_t size_ = 0;
  bool is_compact_ = false;
};

#define NEEDLE_NDARRAY_BINARY_OPERATOR(sym, op)                     \
  inline NDArray operator sym(const NDArray& a, const NDArray& b) { \
    return NDArray::binary(BinaryOp::op, a, b);                     \
  }                                                                 \
  inline NDArray operator sym(const NDArray& a, Scalar s) {         \
    return a.scalar(BinaryOp::op, s);                               \
  }                                                                 \
  inline NDArray operator sym(Scalar s, const NDArray& a) {         \
    return a.scalar(BinaryOp::op, s, true);                         \
  }
NEEDLE_NDARRAY_BINARY_OPERATOR(+, add)
NEEDLE_NDARRAY_BINARY_OPERATOR(-, subtract)
NEEDLE_NDARRAY_BINARY_OPERATOR(*, multiply)
NEEDLE_NDARRAY_BINARY_OPERATOR(/, divide)
NEEDLE_NDARRAY_BINARY_OPERATOR(==, eq)
NEEDLE_NDARRAY_BINARY_OPERATOR(!=, ne)
NEEDLE_NDARRAY_BINARY_OPERATOR(<, lt)
NEEDLE_NDARRAY_BINARY_OPERATOR(<=, le)
NEEDLE_NDARRAY_BINARY_OPERATOR(>, gt)
NEEDLE_NDARRAY_BINARY_OPERATOR(>=, ge)
#undef NEEDLE_NDARRAY_BINARY_OPERATOR

}  // namespace needle
