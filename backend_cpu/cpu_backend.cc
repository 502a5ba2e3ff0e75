// The "cpu" backend: host memory buffers (64-byte aligned, so vector loads of a fresh array
// never split a cache line) and the kernels of this folder. Each kernel method checks that
// its views agree (shapes, dtypes), so a bug in a caller raises a clear error instead of
// reading out of bounds, then forwards to the kernel in kernels.h.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <mutex>
#include <vector>

#include "backend_cpu/kernels.h"
#include "needle/backend.h"

namespace needle::cpu {

namespace {

constexpr size_t kAlignment = 64;

// Freed blocks are kept for reuse. A fresh multi-megabyte block costs a page fault per 4 KiB
// on first touch (more than the arithmetic of a simple op), a small one a trip through
// malloc's bins (and its consolidation of every freed fast chunk before each larger
// request); training loops free and re-allocate the same sizes every step. Blocks carry their
// size in a 64-byte header; sizes are rounded to 64 bytes, and to 64 KiB from 64 KiB up, so
// near-equal requests share a bucket.
class BlockCache {
 public:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kEnabled = false;  // let ASan see every free
#else
  static constexpr bool kEnabled = true;
#endif
  static constexpr size_t kLargeBlock = size_t(1) << 16;
  static constexpr size_t kMaxCached = size_t(1) << 28;  // bytes kept at most, all buckets

  void* allocate(size_t bytes) {
    size_t size = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
    if (size >= kLargeBlock) size = (size + kLargeBlock - 1) / kLargeBlock * kLargeBlock;
    if (kEnabled) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* block = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= size;
        return static_cast<char*>(block) + kAlignment;
      }
    }
    void* block = std::aligned_alloc(kAlignment, size + kAlignment);
    if (block == nullptr) fail<RuntimeError>("[cpu] out of memory allocating ", bytes, " bytes");
    *static_cast<size_t*>(block) = size;
    return static_cast<char*>(block) + kAlignment;
  }

  void deallocate(void* ptr) noexcept {
    if (ptr == nullptr) return;
    void* block = static_cast<char*>(ptr) - kAlignment;
    const size_t size = *static_cast<size_t*>(block);
    if (kEnabled) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + size <= kMaxCached) {
        free_[size].push_back(block);
        cached_bytes_ += size;
        return;
      }
    }
    std::free(block);
  }

 private:
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

// Never destroyed, so arrays that outlive static destruction (Python's, at exit) can still
// be freed; the static pointer keeps it reachable for LeakSanitizer.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

void check_view(const char* op, const char* what, const View& v) {
  if (v.strides.size() != v.shape.size())
    fail<ValueError>("[", op, "] ", what, " has shape ", shape_str(v.shape), " but strides ",
                     shape_str(v.strides));
  if (v.data == nullptr && v.size() != 0) fail<ValueError>("[", op, "] ", what, " has no buffer");
}

void check_same_shape(const char* op, const View& x, const View& y) {
  if (x.shape != y.shape)
    fail<ValueError>("[", op, "] shape mismatch: ", shape_str(x.shape), " vs ", shape_str(y.shape));
}

void check_same_dtype(const char* op, const View& x, const View& y) {
  if (x.dtype != y.dtype)
    fail<TypeError>("[", op, "] dtype mismatch: ", dtype_name(x.dtype), " vs ",
                    dtype_name(y.dtype));
}

// Checks the operands of a fused kernel: well-formed, contiguous and of the first one's dtype.
void check_fused_operands(const char* op, std::initializer_list<const View*> views) {
  const View& first = **views.begin();
  for (const View* v : views) {
    check_view(op, "operand", *v);
    check_same_dtype(op, first, *v);
    if (!v->is_contiguous())
      fail<ValueError>("[", op, "] expects contiguous arrays, got strides ", shape_str(v->strides),
                       " for shape ", shape_str(v->shape));
  }
}

// Checks the views of a fused convolution kernel: contiguous rank-4 views of one dtype, an
// input x (N, H, W, Cin), a kernel (kh, kw, Cin, Cout) and output pixels (N, Ho, Wo, Cout).
void check_conv_views(const char* op, const View& x, const View& kernel, const View& pixels,
                      int64_t stride, int64_t padding) {
  check_fused_operands(op, {&x, &kernel, &pixels});
  for (const View* v : {&x, &kernel, &pixels})
    if (v->ndim() != 4)
      fail<ValueError>("[", op, "] expects rank-4 views, got shape ", shape_str(v->shape));
  const int64_t kh = kernel.shape[0], kw = kernel.shape[1];
  const bool fits = stride >= 1 && padding >= 0 && kh >= 1 && kw >= 1 &&
                    x.shape[1] + 2 * padding >= kh && x.shape[2] + 2 * padding >= kw;
  const Shape want{x.shape[0], fits ? (x.shape[1] + 2 * padding - kh) / stride + 1 : 0,
                   fits ? (x.shape[2] + 2 * padding - kw) / stride + 1 : 0, kernel.shape[3]};
  if (!fits || kernel.shape[2] != x.shape[3] || pixels.shape != want)
    fail<ValueError>("[", op, "] input ", shape_str(x.shape), ", kernel ", shape_str(kernel.shape),
                     ", stride ", stride, " and padding ", padding,
                     " do not give output pixels of shape ", shape_str(pixels.shape));
}

}  // namespace

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool enabled() const override { return true; }

  void* allocate(size_t bytes) override { return block_cache().allocate(bytes); }
  void deallocate(void* ptr) noexcept override { block_cache().deallocate(ptr); }
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override {
    if (bytes > 0) std::memcpy(device_dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, device_src, bytes);
  }

  void fill(const View& out, double value) override {
    check_view("fill", "out", out);
    cpu::fill(out, value);
  }

  void copy(const View& in, const View& out) override {
    check_view("copy", "in", in);
    check_view("copy", "out", out);
    check_same_shape("copy", in, out);
    cpu::copy(in, out);
  }

  void unary(UnaryOp op, const View& a, const View& out) override {
    const char* name = op_name(op);
    check_view(name, "input", a);
    check_view(name, "out", out);
    check_same_shape(name, a, out);
    check_same_dtype(name, a, out);
    cpu::unary(op, a, out);
  }

  void binary(BinaryOp op, const View& a, const View& b, const View& out) override {
    const char* name = op_name(op);
    check_view(name, "lhs", a);
    check_view(name, "rhs", b);
    check_view(name, "out", out);
    check_same_shape(name, a, b);
    check_same_shape(name, a, out);
    check_same_dtype(name, a, b);
    check_same_dtype(name, a, out);
    cpu::binary(op, a, b, out);
  }

  void binary_scalar(BinaryOp op, const View& a, double s, const View& out,
                     bool scalar_on_left) override {
    const char* name = op_name(op);
    check_view(name, "input", a);
    check_view(name, "out", out);
    check_same_shape(name, a, out);
    check_same_dtype(name, a, out);
    cpu::binary_scalar(op, a, s, out, scalar_on_left);
  }

  void reduce(ReduceOp op, const View& a, const View& out) override {
    const char* name = op_name(op);
    check_view(name, "input", a);
    check_view(name, "out", out);
    check_same_dtype(name, a, out);
    if (out.ndim() > a.ndim() || !std::equal(out.shape.begin(), out.shape.end(), a.shape.begin()))
      fail<ValueError>("[", name, "] cannot reduce ", shape_str(a.shape), " into ",
                       shape_str(out.shape), ": out must be a leading part of the input shape");
    cpu::reduce(op, a, out);
  }

  void matmul(const View& a, const View& b, const View& out) override {
    check_view("matmul", "lhs", a);
    check_view("matmul", "rhs", b);
    check_view("matmul", "out", out);
    check_same_dtype("matmul", a, b);
    check_same_dtype("matmul", a, out);
    const int64_t nd = a.ndim();
    bool ok = nd >= 2 && b.ndim() == nd && out.ndim() == nd;
    for (int64_t d = 0; ok && d < nd - 2; ++d)
      ok = a.shape[d] == out.shape[d] && b.shape[d] == out.shape[d];
    ok = ok && a.shape[nd - 1] == b.shape[nd - 2] && out.shape[nd - 2] == a.shape[nd - 2] &&
         out.shape[nd - 1] == b.shape[nd - 1];
    if (!ok)
      fail<ValueError>("[matmul] shapes ", shape_str(a.shape), " @ ", shape_str(b.shape), " -> ",
                       shape_str(out.shape), " do not match");
    cpu::matmul(a, b, out);
  }

  void gather(const View& a, const View& index, int64_t axis, const View& out) override {
    cpu::gather(a, index, axis, out);
  }
  void scatter_add(const View& values, const View& index, int64_t axis,
                   const View& out) override {
    cpu::scatter_add(values, index, axis, out);
  }

  bool conv2d(const View& x, const View& w, int64_t stride, int64_t padding,
              const View& out) override {
    check_conv_views("conv2d", x, w, out, stride, padding);
    cpu::conv2d(x, w, stride, padding, out);
    return true;
  }

  bool conv2d_weight_grad(const View& x, const View& grad, int64_t stride, int64_t padding,
                          const View& out) override {
    check_conv_views("conv2d_weight_grad", x, out, grad, stride, padding);
    cpu::conv2d_weight_grad(x, grad, stride, padding, out);
    return true;
  }

  bool adam_step(const View& param, const View& grad, const View& m, const View& v,
                 const View& param_out, const AdamStep& step) override {
    check_fused_operands("adam_step", {&param, &grad, &m, &v, &param_out});
    for (const View* view : {&grad, &m, &v, &param_out})
      check_same_shape("adam_step", param, *view);
    cpu::adam_step(param, grad, m, v, param_out, step);
    return true;
  }
};

NEEDLE_REGISTER_BACKEND(CpuBackend);

}  // namespace needle::cpu
