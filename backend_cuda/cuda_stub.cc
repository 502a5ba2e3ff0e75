// The "cuda" backend when Needle is built without nvcc: registered so that cuda() exists
// and reports enabled() == false; every use raises a clear RuntimeError.
#include "needle/backend.h"

namespace needle::cuda {
namespace {

class CudaStubBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  bool enabled() const override { return false; }
  std::string disabled_reason() const override {
    return "Needle was built without CUDA (no nvcc found at configure time)";
  }
  [[noreturn]] void unavailable() const { fail<RuntimeError>("[cuda] ", disabled_reason()); }
  void* allocate(size_t) override { unavailable(); }
  void deallocate(void*) noexcept override {}
  void copy_from_host(void*, const void*, size_t) override { unavailable(); }
  void copy_to_host(void*, const void*, size_t) override { unavailable(); }
  void fill(const View&, double) override { unavailable(); }
  void copy(const View&, const View&) override { unavailable(); }
  void unary(UnaryOp, const View&, const View&) override { unavailable(); }
  void binary(BinaryOp, const View&, const View&, const View&) override { unavailable(); }
  void binary_scalar(BinaryOp, const View&, double, const View&, bool) override { unavailable(); }
  void reduce(ReduceOp, const View&, const View&) override { unavailable(); }
  void matmul(const View&, const View&, const View&) override { unavailable(); }
  void gather(const View&, const View&, int64_t, const View&) override { unavailable(); }
  void scatter_add(const View&, const View&, int64_t, const View&) override { unavailable(); }
};

NEEDLE_REGISTER_BACKEND(CudaStubBackend);

}  // namespace
}  // namespace needle::cuda
