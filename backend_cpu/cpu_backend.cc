// The "cpu" backend: host memory buffers (64-byte aligned, so vector loads of a fresh array
// never split a cache line) and the kernels of this folder. The kernel methods forward to
// kernels.h and trust their views: NDArray validates and promotes once, before any kernel
// runs, and the raw-handle entry points of the bindings (python/src/device.cc) check what
// they build. The fused kernels register themselves from conv.cc and optim.cc.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend_cpu/kernels.h"
#include "backend_cpu/workspace.h"
#include "needle/backend.h"

namespace needle::cpu {

namespace {

constexpr size_t kAlignment = 64;

// Freed blocks are kept for reuse. A fresh multi-megabyte block costs a page fault per 4 KiB
// on first touch (more than the arithmetic of a simple op), a small one a trip through
// malloc's bins (and its consolidation of every freed fast chunk before each larger
// request); training loops free and re-allocate the same sizes every step. Blocks carry their
// size in a 64-byte header; sizes are rounded to 64 bytes, and to 64 KiB from 64 KiB up, so
// near-equal requests share a bucket. The cache keeps up to a quarter of physical memory:
// enough for a whole training step's arrays (a U-Net step at batch 64 peaks at 3.5 GB; with
// a 256 MiB cap, 300 MB of fresh pages faulted in every step, a tenth of its time).
//
// Blocks of 4 MiB and more are huge-page blocks, as numpy's: 2 MiB-aligned, sized in 2 MiB
// steps, madvise(MADV_HUGEPAGE)d, so the kernel backs them with transparent huge pages where
// it does so only on request (the usual "madvise" setting): one fault and one TLB entry per
// 2 MiB instead of per 4 KiB (an MPI all-reduce of 16 MB ran at 0.66x numpy's without).
// Their sizes live in a map, not in a header, which would cost them a whole extra 2 MiB.
class BlockCache {
 public:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kEnabled = false;  // let ASan see every free
#else
  static constexpr bool kEnabled = true;
#endif
  static constexpr size_t kLargeBlock = size_t(1) << 16;
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kHugeBlock = 2 * kHugePage;
  const size_t max_cached_ = physical_memory() / 4;  // bytes kept at most, all buckets

  void* allocate(size_t bytes) {
    if (bytes >= kHugeBlock) return allocate_huge(round_up(bytes, kHugePage));
    size_t size = round_up(std::max<size_t>(bytes, 1), kAlignment);
    if (size >= kLargeBlock) size = round_up(size, kLargeBlock);
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
    if (block == nullptr) fail<MemoryError>("[cpu] out of memory allocating ", bytes, " bytes");
    *static_cast<size_t*>(block) = size;
    return static_cast<char*>(block) + kAlignment;
  }

  void deallocate(void* ptr) noexcept {
    if (ptr == nullptr) return;
    if (reinterpret_cast<uintptr_t>(ptr) % kHugePage == 0 && deallocate_huge(ptr)) return;
    void* block = static_cast<char*>(ptr) - kAlignment;
    const size_t size = *static_cast<size_t*>(block);
    if (kEnabled) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + size <= max_cached_) {
        free_[size].push_back(block);
        cached_bytes_ += size;
        return;
      }
    }
    std::free(block);
  }

 private:
  static size_t round_up(size_t n, size_t step) {
    return (n + step - 1) / step * step;
  }

  void* allocate_huge(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_huge_.find(size);
    if (kEnabled && it != free_huge_.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= size;
      huge_sizes_[block] = size;
      return block;
    }
    void* block = std::aligned_alloc(kHugePage, size);
    if (block == nullptr) fail<MemoryError>("[cpu] out of memory allocating ", size, " bytes");
    madvise(block, size, MADV_HUGEPAGE);  // a hint: without THP the block is just a block
    huge_sizes_[block] = size;
    return block;
  }

  // False when `ptr` is not a huge block (an ordinary one may be 2 MiB-aligned too).
  bool deallocate_huge(void* ptr) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = huge_sizes_.find(ptr);
    if (it == huge_sizes_.end()) return false;
    const size_t size = it->second;
    huge_sizes_.erase(it);
    if (kEnabled && cached_bytes_ + size <= max_cached_) {
      free_huge_[size].push_back(ptr);
      cached_bytes_ += size;
    } else {
      std::free(ptr);
    }
    return true;
  }

  static size_t physical_memory() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(1) << 30;
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  std::map<size_t, std::vector<void*>> free_huge_;  // huge blocks (no header) by size
  std::unordered_map<void*, size_t> huge_sizes_;    // live huge blocks
  size_t cached_bytes_ = 0;
};

// Never destroyed, so arrays that outlive static destruction (Python's, at exit) can still
// be freed; the static pointer keeps it reachable for LeakSanitizer.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

}  // namespace

void* workspace_allocate(size_t bytes) {
  return block_cache().allocate(bytes);
}
void workspace_free(void* block) noexcept {
  block_cache().deallocate(block);
}

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

  void fill(const View& out, double value) override { cpu::fill(out, value); }
  void copy(const View& in, const View& out) override { cpu::copy(in, out); }
  void unary(UnaryOp op, const View& a, const View& out) override { cpu::unary(op, a, out); }
  void binary(BinaryOp op, const View& a, const View& b, const View& out) override {
    cpu::binary(op, a, b, out);
  }
  void binary_scalar(BinaryOp op, const View& a, double s, const View& out,
                     bool scalar_on_left) override {
    cpu::binary_scalar(op, a, s, out, scalar_on_left);
  }
  void reduce(ReduceOp op, const View& a, const View& out) override { cpu::reduce(op, a, out); }
  void matmul(const View& a, const View& b, const View& out) override { cpu::matmul(a, b, out); }
  void gather(const View& a, const View& index, int64_t axis, const View& out) override {
    cpu::gather(a, index, axis, out);
  }
  void scatter_add(const View& values, const View& index, int64_t axis, const View& out) override {
    cpu::scatter_add(values, index, axis, out);
  }
};

NEEDLE_REGISTER_BACKEND(CpuBackend);

}  // namespace needle::cpu
