// The fused-kernel registry (see kernels.h): a map from (kernel name, device name) to a
// type-erased function pointer and the function type it was registered with.
#include "needle/kernels.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace needle {

namespace {
struct Entry {
  std::type_index type;
  detail::AnyKernel fn;
};
struct Registry {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, Entry> kernels;
};
// Function-local static: safe to use from other translation units' static initializers.
Registry& registry() {
  static Registry r;
  return r;
}

// The kernel names listed in NEEDLE_KERNELS_OFF (comma-separated), read once: they are never
// registered, on any device, so a whole program (a C++ example, say) runs the composites.
const std::set<std::string>& kernels_off() {
  static const std::set<std::string> off = [] {
    std::set<std::string> names;
    if (const char* env = std::getenv("NEEDLE_KERNELS_OFF")) {
      std::stringstream list(env);
      for (std::string name; std::getline(list, name, ',');)
        if (!name.empty()) names.insert(name);
    }
    return names;
  }();
  return off;
}
}  // namespace

namespace detail {

void register_kernel(const std::string& name, const std::string& device, std::type_index type,
                     AnyKernel fn) {
  if (kernels_off().count(name)) return;
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.kernels.insert_or_assign({name, device}, Entry{type, fn});
}

AnyKernel find_kernel(const std::string& name, const std::string& device, std::type_index type) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.kernels.find({name, device});
  if (it == r.kernels.end()) return nullptr;
  if (it->second.type != type)
    fail<TypeError>("[", name, "] the ", device,
                    " kernel was registered with another function type than the one asked for");
  return it->second.fn;
}

}  // namespace detail

namespace {
std::atomic<bool> stub_fallback{true};
}  // namespace

bool kernel_stub_fallback() { return stub_fallback.load(); }
void set_kernel_stub_fallback(bool on) { stub_fallback.store(on); }

bool unregister_kernel(const std::string& name, const std::string& device) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.kernels.erase({name, device}) > 0;
}

std::vector<std::pair<std::string, std::string>> registered_kernels() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& kv : r.kernels) out.push_back(kv.first);
  return out;
}

KernelDisabled::KernelDisabled(std::string name, std::string device)
    : name_(std::move(name)), device_(std::move(device)), type_(typeid(void)), saved_(nullptr) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.kernels.find({name_, device_});
  if (it == r.kernels.end()) return;
  type_ = it->second.type;
  saved_ = it->second.fn;
  r.kernels.erase(it);
}

KernelDisabled::~KernelDisabled() {
  if (saved_ != nullptr) detail::register_kernel(name_, device_, type_, saved_);
}

}  // namespace needle
