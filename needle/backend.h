// The Backend interface: the one small set of kernels a device implements, plus the
// registry that finds backends by name ("cpu", "cuda"). NDArray (ndarray.h) turns every
// array operation into calls on this interface; nothing above it knows which device runs.
//
// A kernel sees Views: a device buffer, a dtype, a shape and strides (in elements) and an
// offset. Inputs may be arbitrary strided views, including broadcast dimensions with
// stride 0; kernels keep a fast path for the all-contiguous case. Unless a method says
// otherwise, `out` may be any (non-overlapping) strided view of the same shape.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "needle/dtype.h"
#include "needle/error.h"

namespace needle {

struct View {
  // Base of the device buffer; element i lives at data[offset + sum(idx * stride)].
  void* data = nullptr;
  DType dtype = DType::float32;
  Shape shape;
  Strides strides;
  int64_t offset = 0;

  int64_t ndim() const { return int64_t(shape.size()); }
  int64_t size() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  // Row-major contiguous (strides equal the compact strides; size-1 dims ignored).
  bool is_contiguous() const { return is_row_major(shape, strides); }
  static bool is_row_major(const Shape& shape, const Strides& strides) {
    int64_t expected = 1;
    for (int64_t i = int64_t(shape.size()) - 1; i >= 0; --i) {
      if (shape[size_t(i)] != 1 && strides[size_t(i)] != expected) return false;
      expected *= shape[size_t(i)];
    }
    return true;
  }
  template <class T>
  T* ptr() const {
    return static_cast<T*>(data) + offset;
  }
};

enum class UnaryOp { negate, abs, sqrt, exp, log, tanh, sigmoid, erf, sign };
enum class BinaryOp {
  add,
  subtract,
  multiply,
  divide,
  power,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge
};
enum class ReduceOp { sum, max, min };

// The scalars of one Adam step (see Backend::adam_step): bias_correction1 = 1 - beta1^t,
// bias_correction2 = 1 - beta2^t.
struct AdamStep {
  double lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
};

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu", "cuda", ...: the name users pass to select the device.
  virtual std::string name() const = 0;
  // False when the device cannot run here (CUDA not compiled in, or no GPU present).
  virtual bool enabled() const = 0;
  // Why enabled() is false, for error messages ("no CUDA device found").
  virtual std::string disabled_reason() const { return ""; }

  // --- Buffers (sizes in bytes) ---
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr) noexcept = 0;
  virtual void copy_from_host(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* device_src, size_t bytes) = 0;
  // Blocks until queued work is done (a no-op on synchronous backends).
  virtual void synchronize() {}

  // --- Kernels ---
  // out[...] = value.   (fill, scalar setitem)
  virtual void fill(const View& out, double value) = 0;
  // out[...] = in[...]; same shape, dtypes may differ (converts).   (compact, setitem, astype)
  virtual void copy(const View& in, const View& out) = 0;
  // out = op(a).
  virtual void unary(UnaryOp op, const View& a, const View& out) = 0;
  // out = op(a, b); a, b, out share one shape (broadcasting is stride 0 in a or b).
  virtual void binary(BinaryOp op, const View& a, const View& b, const View& out) = 0;
  // out = op(a, s), or op(s, a) when scalar_on_left.
  virtual void binary_scalar(BinaryOp op, const View& a, double s, const View& out,
                             bool scalar_on_left) = 0;
  // out[i...] = reduce over j... of a[i..., j...]. The reduced axes are the trailing
  // a.ndim() - out.ndim() axes of `a`; `out` is contiguous with shape a.shape[:out.ndim()].
  // A reduction over zero elements gives 0 for sum; NDArray rejects max/min over none.
  virtual void reduce(ReduceOp op, const View& a, const View& out) = 0;
  // Batched matrix product: a (B..., m, k), b (B..., k, n) -> out (B..., m, n).
  // a, b and out have the same rank and batch shape (batch broadcasting arrives as stride 0);
  // out is contiguous. Each matrix of a or b may have any strides.
  virtual void matmul(const View& a, const View& b, const View& out) = 0;
  // Integer-array indexing along `axis` (numpy's take_along_axis with broadcast indices):
  // `index` (int64) and `out` (resp. `values`) share one shape; the array indexed has the
  // same rank and that shape on every axis but `axis`. Every index lies in
  // [0, size along axis) (NDArray checks and wraps them).
  //   gather:      out[p] = a[p with p[axis] = index[p]]
  //   scatter_add: out[p with p[axis] = index[p]] += values[p]; repeated indices accumulate.
  virtual void gather(const View& a, const View& index, int64_t axis, const View& out) = 0;
  virtual void scatter_add(const View& values, const View& index, int64_t axis,
                           const View& out) = 0;

  // --- Optional fused kernels ---
  // A backend may run a composite operation as one kernel. These return false (the default)
  // to make the caller compose the operation from the kernels above. Every view is
  // contiguous and of one dtype; shapes are checked by the caller.
  // NHWC convolution with zero padding: x (N, H, W, Cin), w (kh, kw, Cin, Cout) ->
  // out (N, Ho, Wo, Cout), Ho = (H + 2 * padding - kh) / stride + 1 (Wo likewise).
  virtual bool conv2d(const View& /*x*/, const View& /*w*/, int64_t /*stride*/, int64_t /*padding*/,
                      const View& /*out*/) {
    return false;
  }
  // Its weight gradient: x (N, H, W, Cin), grad (N, Ho, Wo, Cout) -> out (kh, kw, Cin, Cout),
  // out[i, j, c, d] = sum over n, y, x of
  //   xpad[n, y * stride + i, x * stride + j, c] * grad[n, y, x, d].
  virtual bool conv2d_weight_grad(const View& /*x*/, const View& /*grad*/, int64_t /*stride*/,
                                  int64_t /*padding*/, const View& /*out*/) {
    return false;
  }
  // One Adam step for one parameter, element by element: g = grad + weight_decay * param;
  // m = beta1 m + (1 - beta1) g and v = beta2 v + (1 - beta2) g^2, both updated in place;
  // param_out = param - lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps).
  virtual bool adam_step(const View& /*param*/, const View& /*grad*/, const View& /*m*/,
                         const View& /*v*/, const View& /*param_out*/, const AdamStep& /*step*/) {
    return false;
  }
};

// --- Registry ---
// Backends register once at start-up (see NEEDLE_REGISTER_BACKEND). Lookup by name throws
// RuntimeError for an unknown name; it returns disabled backends so callers can ask enabled().
void register_backend(std::unique_ptr<Backend> backend);
Backend& find_backend(const std::string& name);
// Like find_backend, but throws RuntimeError with disabled_reason() when it cannot run here.
Backend& require_backend(const std::string& name);
std::vector<Backend*> all_backends();
Backend& default_backend();  // "cpu"

namespace detail {
struct BackendRegistrar {
  explicit BackendRegistrar(std::function<std::unique_ptr<Backend>()> make) {
    register_backend(make());
  }
};
}  // namespace detail

#define NEEDLE_CONCAT_INNER(a, b) a##b
#define NEEDLE_CONCAT(a, b) NEEDLE_CONCAT_INNER(a, b)
// Registers a backend at static-initialization time: NEEDLE_REGISTER_BACKEND(CpuBackend).
#define NEEDLE_REGISTER_BACKEND(Type)                                                           \
  static ::needle::detail::BackendRegistrar NEEDLE_CONCAT(needle_backend_registrar_, __LINE__)( \
      [] { return std::unique_ptr<::needle::Backend>(new Type()); })

}  // namespace needle
