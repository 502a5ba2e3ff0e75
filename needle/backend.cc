// The backend registry and the printable names of kernel ops.
#include "needle/backend.h"

#include <map>
#include <mutex>

namespace needle {

namespace {
struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<Backend>> backends;
};
// Function-local static: safe to use from other translation units' static initializers.
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

void register_backend(std::unique_ptr<Backend> backend) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::string name = backend->name();
  r.backends[name] = std::move(backend);
}

Backend& find_backend(const std::string& name) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.backends.find(name);
  if (it == r.backends.end()) {
    std::string known;
    for (auto& kv : r.backends) known += (known.empty() ? "" : ", ") + kv.first;
    fail<RuntimeError>("unknown device '", name, "' (known: ", known, ")");
  }
  return *it->second;
}

Backend& require_backend(const std::string& name) {
  Backend& b = find_backend(name);
  if (!b.enabled()) fail<RuntimeError>("device '", name, "' is not available: ", b.disabled_reason());
  return b;
}

std::vector<Backend*> all_backends() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<Backend*> out;
  for (auto& kv : r.backends) out.push_back(kv.second.get());
  return out;
}

Backend& default_backend() {
  static Backend& cpu = find_backend("cpu");
  return cpu;
}

const char* op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::negate: return "negate";
    case UnaryOp::abs: return "abs";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::erf: return "erf";
    case UnaryOp::sign: return "sign";
  }
  return "?";
}

const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::subtract: return "subtract";
    case BinaryOp::multiply: return "multiply";
    case BinaryOp::divide: return "divide";
    case BinaryOp::power: return "power";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
  }
  return "?";
}

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

}  // namespace needle
