// NDArray: metadata-only views (reshape, permute, broadcast, slicing, flip), the copies
// that materialize them, and the array operations, each turned into Backend kernel calls.
#include "needle/ndarray.h"

#include <algorithm>
#include <numeric>

#include "needle/checked.h"

namespace needle {

// ---------------------------------------------------------------- Buffer
Buffer::Buffer(Backend& backend, int64_t size, DType dtype)
    : backend_(&backend), data_(nullptr), size_(size), dtype_(dtype) {
  if (size < 0) fail<ValueError>("[allocate] negative buffer size ", size);
  // checked_numel refuses a size whose byte count overflows, so the product below fits.
  const int64_t n = checked_numel("allocate", {std::max<int64_t>(size, 1)}, dtype_size(dtype));
  data_ = backend.allocate(size_t(n) * dtype_size(dtype));
}

Buffer::~Buffer() {
  backend_->deallocate(data_);
}

// ---------------------------------------------------------------- helpers
namespace {

// Element count of a shape that an NDArray already holds (valid by construction).
int64_t product(const Shape& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

// Negative entries and sizes that do not fit in 64 bits are a ValueError naming `op`.
void check_shape(const char* op, const Shape& shape) {
  checked_numel(op, shape);
}

bool is_comparison(BinaryOp op) {
  return op == BinaryOp::eq || op == BinaryOp::ne || op == BinaryOp::lt || op == BinaryOp::le ||
         op == BinaryOp::gt || op == BinaryOp::ge;
}

// Whether v is exactly representable in the integer dtype d.
bool fits(double v, DType d) {
  switch (d) {
    case DType::bool_:
      return v == 0 || v == 1;
    case DType::uint8:
      return v >= 0 && v <= 255;
    case DType::int32:
      return v >= -2147483648.0 && v <= 2147483647.0;
    default:
      return true;
  }
}

// The dtype a binary op computes in, given the promoted dtype of its operands.
DType compute_dtype(BinaryOp op, DType promoted) {
  if (is_floating(promoted)) return promoted;
  if (op == BinaryOp::divide) return DType::float64;  // true division, as numpy
  if (op == BinaryOp::power && promoted == DType::bool_) return DType::uint8;  // numpy: int8
  return promoted;
}

// numpy's TypeError for bool subtraction, and its ValueError for negative integer powers
// (checked on the exponent's smallest value).
void check_integer_op(BinaryOp op, DType work, const NDArray* exponent, double scalar_exp) {
  if (op == BinaryOp::subtract && work == DType::bool_)
    fail<TypeError>(
        "[subtract] numpy boolean subtract, the `-` operator, is not supported; "
        "use != (logical xor) instead");
  if (op != BinaryOp::power || is_floating(work)) return;
  const double lo = exponent ? (exponent->size() ? exponent->min().item() : 0) : scalar_exp;
  if (lo < 0) fail<ValueError>("[power] integers to negative integer powers are not allowed");
}

}  // namespace

void NDArray::check_same_device(const char* op, const NDArray& a, const NDArray& b) {
  if (&a.device() != &b.device())
    fail<RuntimeError>("[", op, "] arrays are on different devices: ", a.device().name(), " and ",
                       b.device().name());
}

void NDArray::check_size_matches(const char* op, int64_t size, const Shape& shape) {
  check_shape(op, shape);
  if (size != product(shape))
    fail<ValueError>("[", op, "] ", size, " values cannot fill shape ", shape_str(shape));
}

int64_t NDArray::normalize_axis(const char* op, int64_t axis, int64_t ndim) {
  // As numpy: a 0-d array has no axis at all (axis 0 and -1 are out of range too).
  if (axis < -ndim || axis >= ndim)
    fail<IndexError>("[", op, "] axis ", axis, " is out of range for an array of ", ndim,
                     " dimension", ndim == 1 ? "" : "s");
  return axis < 0 ? axis + ndim : axis;
}

Shape NDArray::broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail<ValueError>("[", op, "] shapes ", shape_str(a), " and ", shape_str(b),
                       " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Strides NDArray::compact_strides(const Shape& shape) {
  Strides strides(shape.size());
  int64_t s = 1;
  for (int64_t i = int64_t(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

// ---------------------------------------------------------------- construction
NDArray::NDArray(std::shared_ptr<Buffer> buffer, Shape shape, Strides strides, int64_t offset)
    : buffer_(std::move(buffer)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      size_(checked_numel("ndarray", shape_)) {
  is_compact_ = offset_ == 0 && buffer_->size() == size_ && View::is_row_major(shape_, strides_);
}

NDArray NDArray::empty(const Shape& shape, DType dtype, Backend& device) {
  checked_numel("empty", shape, dtype_size(dtype));
  if (!device.enabled())
    fail<RuntimeError>("device '", device.name(), "' is not available: ", device.disabled_reason());
  auto buffer = std::make_shared<Buffer>(device, product(shape), dtype);
  return NDArray(std::move(buffer), shape, compact_strides(shape), 0);
}

NDArray NDArray::empty_for_elementwise(const Shape& shape, DType dtype, Backend& device,
                                       const NDArray& like, const NDArray* other) {
  const bool keep =
      !like.is_compact_ && like.size_ > 1 && like.shape_ == shape &&
      (other == nullptr || other->shape_ != shape || other->strides_ == like.strides_);
  NDArray out = empty(shape, dtype, device);
  if (!keep) return out;
  const std::optional<Axes> order = like.memory_order();
  return order ? from_memory_order(out, shape, *order) : out;
}

NDArray NDArray::full(const Shape& shape, double value, DType dtype, Backend& device) {
  NDArray out = empty(shape, dtype, device);
  out.fill(value);
  return out;
}

NDArray NDArray::from_host(const void* data, const Shape& shape, DType dtype, Backend& device) {
  NDArray out = empty(shape, dtype, device);
  if (out.size()) device.copy_from_host(out.buffer_->data(), data, out.size() * dtype_size(dtype));
  return out;
}

View NDArray::view() const {
  return View{buffer_->data(), buffer_->dtype(), shape_, strides_, offset_};
}

void NDArray::to_host(void* dst) const {
  NDArray c = compact();
  if (c.size()) device().copy_to_host(dst, c.buffer_->data(), c.size() * dtype_size(dtype()));
}

double NDArray::item() const {
  if (size_ != 1)
    fail<ValueError>("[item] only size-1 arrays convert to a scalar, got shape ",
                     shape_str(shape_));
  return to_vector<double>()[0];
}

// ---------------------------------------------------------------- views
NDArray NDArray::as_strided(const Shape& shape, const Strides& strides) const {
  checked_numel("as_strided", shape, dtype_size(dtype()));
  if (shape.size() != strides.size())
    fail<ValueError>("[as_strided] shape ", shape_str(shape), " and strides ", shape_str(strides),
                     " differ in length");
  // Every reachable element must lie inside the buffer (checked without overflow).
  if (!view_fits(shape, strides, offset_, buffer_->size()))
    fail<ValueError>("[as_strided] shape ", shape_str(shape), " with strides ", shape_str(strides),
                     " and offset ", offset_, " reaches outside a buffer of ", buffer_->size(),
                     " elements");
  return NDArray(buffer_, shape, strides, offset_);
}

// reshape: after the requested shape is resolved and checked, the view's strides. A compact
// array (or an empty one) takes compact strides. A strided view is reshaped without a copy
// when every group of old dimensions whose product equals a group of new dimensions is laid
// out contiguously relative to itself; else it is a ValueError (the caller compacts first).
NDArray NDArray::reshape(const Shape& requested) const {
  // Resolve one -1 entry.
  Shape shape = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && infer < 0) {
      infer = int64_t(i);
    } else if (shape[i] < 0) {
      fail<ValueError>("[reshape] invalid target shape ", shape_str(requested));
    } else if (!mul_fits(known, shape[i], &known)) {
      fail<ValueError>("[reshape] target shape ", shape_str(requested),
                       " is too large: its size does not fit in 64 bits");
    }
  }
  if (infer >= 0) {
    if (known == 0 || size_ % known != 0)
      fail<ValueError>("[reshape] cannot reshape ", shape_str(shape_), " into ",
                       shape_str(requested));
    shape[infer] = size_ / known;
  }
  if (checked_numel("reshape", shape) != size_)
    fail<ValueError>("[reshape] cannot reshape ", shape_str(shape_), " into ",
                     shape_str(requested));
  // BEGIN SOLUTION hw0
  if (is_compact_ || size_ == 0) return NDArray(buffer_, shape, compact_strides(shape), offset_);

  // A view of strided data: match groups of old and new dims with equal products; inside a
  // group the old dims must be laid out contiguously relative to each other.
  Shape old_shape;
  Strides old_strides;
  for (size_t i = 0; i < shape_.size(); ++i)
    if (shape_[i] != 1) old_shape.push_back(shape_[i]), old_strides.push_back(strides_[i]);
  Strides strides(shape.size(), 0);
  size_t oi = 0, ni = 0;
  while (oi < old_shape.size() && ni < shape.size()) {
    size_t oj = oi + 1, nj = ni + 1;
    int64_t op = old_shape[oi], np = shape[ni];
    while (op != np) {
      if (np < op)
        np *= shape[nj++];
      else
        op *= old_shape[oj++];
    }
    for (size_t k = oi; k + 1 < oj; ++k)
      if (old_strides[k] != old_strides[k + 1] * old_shape[k + 1])
        fail<ValueError>("[reshape] cannot reshape a non-contiguous view of shape ",
                         shape_str(shape_), " with strides ", shape_str(strides_), " into ",
                         shape_str(requested), " without a copy; call compact() first");
    strides[nj - 1] = old_strides[oj - 1];
    for (size_t k = nj - 1; k > ni; --k) strides[k - 1] = strides[k] * shape[k];
    oi = oj;
    ni = nj;
  }
  // Trailing size-1 dims of the new shape keep stride 0 (any stride is valid for them).
  return NDArray(buffer_, shape, strides, offset_);
  // END SOLUTION
}

// permute: the same buffer with shape and strides reordered by axes (negative axes count
// from the end); a ValueError unless axes is a permutation of every dimension.
NDArray NDArray::permute(const Axes& axes) const {
  // BEGIN SOLUTION hw0
  if (int64_t(axes.size()) != ndim())
    fail<ValueError>("[permute] axes ", shape_str(axes), " do not match an array of shape ",
                     shape_str(shape_));
  std::vector<bool> seen(axes.size(), false);
  Shape shape(axes.size());
  Strides strides(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = axes[i] < 0 ? axes[i] + ndim() : axes[i];
    if (a < 0 || a >= ndim() || seen[a])
      fail<ValueError>("[permute] axes ", shape_str(axes), " are not a permutation of ", ndim(),
                       " dimensions");
    seen[a] = true;
    shape[i] = shape_[a];
    strides[i] = strides_[a];
  }
  return NDArray(buffer_, shape, strides, offset_);
  // END SOLUTION
}

NDArray NDArray::swapaxes(int64_t a, int64_t b) const {
  Axes axes(ndim());
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[normalize_axis("swapaxes", a, ndim())],
            axes[normalize_axis("swapaxes", b, ndim())]);
  return permute(axes);
}

// broadcast_to, numpy's rules: align trailing dimensions; a dimension equal to the target's
// keeps its stride, a size-1 (or missing leading) one gets stride 0; any other is a ValueError.
NDArray NDArray::broadcast_to(const Shape& new_shape) const {
  // As numpy, a view's byte size must fit in 64 bits too (so its element loops terminate).
  checked_numel("broadcast_to", new_shape, dtype_size(dtype()));
  // BEGIN SOLUTION hw0
  if (new_shape.size() < shape_.size())
    fail<ValueError>("[broadcast_to] cannot broadcast ", shape_str(shape_), " to ",
                     shape_str(new_shape));
  size_t lead = new_shape.size() - shape_.size();
  Strides strides(new_shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (shape_[i] == new_shape[lead + i]) {
      strides[lead + i] = strides_[i];
    } else if (shape_[i] != 1) {
      fail<ValueError>("[broadcast_to] cannot broadcast ", shape_str(shape_), " to ",
                       shape_str(new_shape));
    }
  }
  return NDArray(buffer_, new_shape, strides, offset_);
  // END SOLUTION
}

// getitem: a view. An integer drops its axis (negative counts from the end, out of range
// is an IndexError), a slice clamps as Python's slice.indices and multiplies the stride by
// its step (zero step: ValueError), a new axis adds a dimension of stride 0; missing
// trailing entries mean ":".
NDArray NDArray::getitem(const IndexKey& key) const {
  // BEGIN SOLUTION hw0
  const int64_t used =
      std::count_if(key.begin(), key.end(), [](const Index& i) { return !i.is_new_axis; });
  if (used > ndim())
    fail<IndexError>("[getitem] too many indices (", used, ") for an array of shape ",
                     shape_str(shape_));
  Shape shape;
  Strides strides;
  int64_t offset = offset_;
  size_t k = 0;  // the next key entry; new axes consume no axis of the array
  for (int64_t axis = 0; axis < ndim() || k < key.size(); ++axis) {
    for (; k < key.size() && key[k].is_new_axis; ++k)
      shape.push_back(key[k].value), strides.push_back(0);
    if (axis >= ndim()) break;
    Index idx = k < key.size() ? key[k++] : Index::all();
    int64_t n = shape_[axis], stride = strides_[axis];
    if (!idx.is_slice) {
      int64_t i = idx.value < 0 ? idx.value + n : idx.value;
      if (i < 0 || i >= n)
        fail<IndexError>("[getitem] index ", idx.value, " is out of bounds for axis ", axis,
                         " with size ", n, " (shape ", shape_str(shape_), ")");
      offset += i * stride;
      continue;
    }
    int64_t step = idx.step;
    if (step == 0) fail<ValueError>("[getitem] slice step cannot be zero");
    // Python's slice.indices(n), written so that no int64 start, stop or step overflows.
    auto clamp = [](int64_t v, int64_t lo, int64_t hi) { return std::min(std::max(v, lo), hi); };
    auto bound = [&](const std::optional<int64_t>& v, int64_t absent, int64_t lo, int64_t hi) {
      return !v ? absent : clamp(*v < 0 ? *v + n : *v, lo, hi);
    };
    int64_t start, length;
    if (step > 0) {
      start = bound(idx.start, 0, 0, n);
      int64_t stop = bound(idx.stop, n, 0, n);
      length = stop > start ? (stop - start - 1) / step + 1 : 0;
    } else {
      start = bound(idx.start, n - 1, -1, n - 1);
      int64_t stop = bound(idx.stop, -1, -1, n - 1);
      length = start > stop ? 1 - (start - stop - 1) / step : 0;  // step < 0: no -step
    }
    if (length > 0) offset += start * stride;
    shape.push_back(length);
    // |step| < n whenever length > 1, so stride * step stays within the axis' reach.
    strides.push_back(length > 1 ? stride * step : stride);
  }
  return NDArray(buffer_, shape, strides, offset);
  // END SOLUTION
}

// flip: a view that walks each of `axes` backwards: its stride negated, the offset moved to
// the axis' last element; a repeated axis is a ValueError.
NDArray NDArray::flip(const Axes& axes) const {
  // BEGIN SOLUTION hw4
  Strides strides = strides_;
  int64_t offset = offset_;
  std::vector<bool> done(ndim(), false);
  for (int64_t a : axes) {
    a = normalize_axis("flip", a, ndim());
    if (done[a]) fail<ValueError>("[flip] repeated axis ", a, " in ", shape_str(axes));
    done[a] = true;
    if (shape_[a] > 0) offset += (shape_[a] - 1) * strides[a];
    strides[a] = -strides[a];
  }
  return NDArray(buffer_, shape_, strides, offset);
  // END SOLUTION
}

// ---------------------------------------------------------------- copies
NDArray NDArray::compact() const {
  return is_compact_ ? *this : clone();
}

NDArray NDArray::clone() const {
  return astype(dtype());
}

NDArray NDArray::astype(DType dtype) const {
  NDArray out = empty(shape_, dtype, device());
  if (size_) device().copy(view(), out.view());
  return out;
}

NDArray NDArray::to(Backend& target) const {
  if (&target == &device()) return *this;
  NDArray c = compact();
  std::vector<char> host(size_t(size_) * dtype_size(dtype()));
  c.to_host(host.data());
  return from_host(host.data(), shape_, dtype(), target);
}

void NDArray::fill(double value) {
  if (size_) device().fill(view(), value);
}

void NDArray::assign(const NDArray& value) {
  check_same_device("setitem", *this, value);
  NDArray src = value.broadcast_to(shape_);
  if (src.buffer_ == buffer_) src = src.clone();  // overlapping source: read it before writing
  if (size_) device().copy(src.view(), view());
}

void NDArray::setitem(const IndexKey& key, const NDArray& value) {
  NDArray target = getitem(key);
  if (!value.defined()) fail<ValueError>("[setitem] value is an undefined array");
  try {
    target.assign(value);
  } catch (const ValueError&) {
    fail<ValueError>("[setitem] could not broadcast a value of shape ", shape_str(value.shape()),
                     " into a selection of shape ", shape_str(target.shape()));
  }
}

void NDArray::setitem(const IndexKey& key, double value) {
  getitem(key).fill(value);
}

// ---------------------------------------------------------------- element-wise
NDArray NDArray::unary(UnaryOp op) const {
  DType work = dtype();
  if (is_integral(work)) {
    if (work == DType::bool_ && (op == UnaryOp::negate || op == UnaryOp::sign))
      fail<TypeError>("[", op_name(op), "] is not supported for bool arrays (as in numpy)");
    if (op != UnaryOp::negate && op != UnaryOp::abs && op != UnaryOp::sign)
      work = math_result_dtype(work);  // float math of integers computes in float
  }
  const NDArray& in = work == dtype() ? *this : astype(work);
  NDArray out = empty_for_elementwise(shape_, work, device(), *this);
  if (size_) device().unary(op, in.view(), out.view());
  return out;
}

DType NDArray::result_dtype(BinaryOp op, DType a, DType b) {
  const DType work = compute_dtype(op, promote_types(a, b));
  return is_comparison(op) && is_integral(work) ? DType::bool_ : work;
}

DType NDArray::scalar_operand_dtype(DType a, const Scalar& s) {
  if (is_floating(a)) return a;
  switch (s.kind) {
    case Scalar::Kind::boolean:
      return a;
    case Scalar::Kind::floating:
      return DType::float64;
    case Scalar::Kind::integer:
      break;
  }
  if (a == DType::bool_) return DType::int64;  // numpy: bool array + Python int is int64
  if (fits(s.value, a)) return a;
  return fits(s.value, DType::int32) ? DType::int32 : DType::int64;
}

// Comparisons of integers compute in the promoted dtype (giving 1 / 0) and convert to bool.
NDArray NDArray::binary(BinaryOp op, const NDArray& a, const NDArray& b) {
  check_same_device(op_name(op), a, b);
  const DType dtype = compute_dtype(op, promote_types(a.dtype(), b.dtype()));
  if (is_integral(dtype)) check_integer_op(op, dtype, &b, 0);
  Shape shape = a.shape_ == b.shape_ ? a.shape_ : broadcast_shapes(op_name(op), a.shape_, b.shape_);
  const NDArray& ca = a.dtype() == dtype ? a : a.astype(dtype);
  const NDArray& cb = b.dtype() == dtype ? b : b.astype(dtype);
  const bool a_full = a.shape_ == shape;
  NDArray out = empty_for_elementwise(shape, dtype, a.device(), a_full ? a : b, a_full ? &b : &a);
  if (out.size_) {
    View va = ca.shape_ == shape ? ca.view() : ca.broadcast_to(shape).view();
    View vb = cb.shape_ == shape ? cb.view() : cb.broadcast_to(shape).view();
    a.device().binary(op, va, vb, out.view());
  }
  return is_comparison(op) && is_integral(dtype) ? out.astype(DType::bool_) : out;
}

NDArray NDArray::scalar(BinaryOp op, Scalar s, bool scalar_on_left) const {
  const DType dtype = compute_dtype(op, scalar_operand_dtype(this->dtype(), s));
  if (is_integral(dtype)) {
    if (op == BinaryOp::power && scalar_on_left) {
      check_integer_op(op, dtype, this, 0);
    } else {
      check_integer_op(op, dtype, nullptr, s.value);
    }
  }
  const NDArray& in = this->dtype() == dtype ? *this : astype(dtype);
  NDArray out = empty_for_elementwise(shape_, dtype, device(), *this);
  if (size_) device().binary_scalar(op, in.view(), s.value, out.view(), scalar_on_left);
  // An integer array compared with any scalar gives bool (a float array keeps 1.0 / 0.0).
  return is_comparison(op) && is_integral(this->dtype()) ? out.astype(DType::bool_) : out;
}

}  // namespace needle
