// The "cuda" Backend: device buffers (cudaMalloc / cudaFree / cudaMemcpy) and the kernel
// methods, which forward to the kernel families in compact.cu, ewise.cu, reduce.cu and
// matmul.cu. Whether a GPU is present is probed once, lazily, and never aborts: without a
// driver or a device the backend stays registered, reports enabled() == false with the
// CUDA error text, and every method throws RuntimeError naming the op.
#include <string>

#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"

namespace needle::cuda {
namespace {

struct Probe {
  bool ok = false;
  std::string reason;
};

// Asks the runtime for devices on first use and remembers the answer.
const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();  // do not leave the error for the next launch check
      p.reason =
          std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(err) + ")";
    } else if (count < 1) {
      p.reason = "no CUDA device (cudaGetDeviceCount found 0 devices)";
    } else {
      p.ok = true;
    }
    return p;
  }();
  return result;
}

class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  bool enabled() const override { return probe().ok; }
  std::string disabled_reason() const override { return probe().reason; }

  void* allocate(size_t bytes) override {
    require("allocate");
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, bytes ? bytes : 1);
    if (err != cudaSuccess) {
      cudaGetLastError();
      fail<RuntimeError>("[cuda] allocate: cannot allocate ", bytes,
                         " bytes on the GPU: ", cudaGetErrorString(err));
    }
    return ptr;
  }
  // Errors are dropped: this runs from destructors, possibly after the runtime shut down.
  void deallocate(void* ptr) noexcept override {
    if (!ptr) return;
    if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
  }
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override {
    require("copy_from_host");
    if (bytes == 0) return;
    NEEDLE_CUDA_CHECK("copy_from_host",
                      cudaMemcpy(device_dst, host_src, bytes, cudaMemcpyHostToDevice));
  }
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override {
    require("copy_to_host");
    if (bytes == 0) return;
    NEEDLE_CUDA_CHECK("copy_to_host",
                      cudaMemcpy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost));
  }
  void synchronize() override {
    require("synchronize");
    NEEDLE_CUDA_CHECK("synchronize", cudaDeviceSynchronize());
  }

  void fill(const View& out, double value) override {
    require("fill");
    cuda::fill(out, value);
  }
  void copy(const View& in, const View& out) override {
    require("copy");
    cuda::copy(in, out);
  }
  void unary(UnaryOp op, const View& a, const View& out) override {
    require(op_name(op));
    cuda::unary(op, a, out);
  }
  void binary(BinaryOp op, const View& a, const View& b, const View& out) override {
    require(op_name(op));
    cuda::binary(op, a, b, out);
  }
  void binary_scalar(BinaryOp op, const View& a, double s, const View& out,
                     bool scalar_on_left) override {
    require(op_name(op));
    cuda::binary_scalar(op, a, s, out, scalar_on_left);
  }
  void reduce(ReduceOp op, const View& a, const View& out) override {
    require(op_name(op));
    cuda::reduce(op, a, out);
  }
  void matmul(const View& a, const View& b, const View& out) override {
    require("matmul");
    cuda::matmul(a, b, out);
  }
  void gather(const View& a, const View& index, int64_t axis, const View& out) override {
    require("gather");
    cuda::gather(a, index, axis, out);
  }
  void scatter_add(const View& values, const View& index, int64_t axis,
                   const View& out) override {
    require("scatter_add");
    cuda::scatter_add(values, index, axis, out);
  }

 private:
  void require(const char* op) const {
    const Probe& p = probe();
    if (!p.ok) fail<RuntimeError>("[cuda] ", op, ": ", p.reason);
  }
};

NEEDLE_REGISTER_BACKEND(CudaBackend);

}  // namespace
}  // namespace needle::cuda
