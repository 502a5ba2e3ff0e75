// Workspace<T>: uninitialized scratch memory for a CPU kernel, taken from the CPU backend's
// block cache (cpu_backend.cc) and given back to it when the workspace goes out of scope.
// The cache hands out blocks freed earlier, so a kernel's multi-megabyte workspace costs no
// page faults and no zeroing per call, as a std::vector of that size does (a fresh mapping
// each time: ResNet9's weight gradients spent 7 % of the step in memset and page faults).
#pragma once

#include <cstddef>

namespace needle::cpu {

void* workspace_allocate(size_t bytes);
void workspace_free(void* block) noexcept;

template <class T>
class Workspace {
 public:
  explicit Workspace(size_t count)
      : data_(static_cast<T*>(workspace_allocate(count * sizeof(T)))) {}
  ~Workspace() { workspace_free(data_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  T* data() const { return data_; }

 private:
  T* data_;
};

}  // namespace needle::cpu
