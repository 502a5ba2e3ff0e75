// nn::Module: registration, traversal, train/eval, and state dicts (see module.h).
#include "needle/nn/module.h"

#include <set>
#include <sstream>

namespace needle::nn {

Tensor Module::forward(const Tensor&) {
  fail<NotImplemented>("[", type_name(), "] forward(x) is not defined for this module");
}

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos)
    fail<ValueError>("[", type_name(), "] invalid member name '", name,
                     "' (must be non-empty, without '.')");
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  if (taken(parameters_) || taken(buffers_) || taken(children_))
    fail<ValueError>("[", type_name(), "] member '", name, "' is registered twice");
}

void Module::register_parameter(const std::string& name, Tensor* tensor) {
  check_new_name(name);
  parameters_.emplace_back(name, tensor);
}

void Module::register_buffer(const std::string& name, Tensor* tensor) {
  check_new_name(name);
  buffers_.emplace_back(name, tensor);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  if (!module) fail<ValueError>("[", type_name(), "] child '", name, "' is null");
  check_new_name(name);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool buffers,
                     std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_)
    if (tensor->defined()) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor*>> found;
  collect("", false, found);
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(found.size());
  for (auto& [name, t] : found) out.emplace_back(name, *t);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor*>> found;
  collect("", true, found);
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(found.size());
  for (auto& [name, t] : found) out.emplace_back(name, *t);
  return out;
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& entry : children_) out.push_back(entry.second);
  return out;
}

void Module::train(bool mode) {
  training_ = mode;
  for (auto& entry : children_) entry.second->train(mode);
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.set_grad(Tensor());
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t.detach());
  for (auto& [name, t] : named_buffers()) out.emplace(name, t.detach());
  return out;
}

namespace {
std::string join(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << "'" << names[i] << "'";
  return os.str();
}
}  // namespace

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> targets;
  collect("", false, targets);
  collect("", true, targets);

  std::vector<std::string> missing, unexpected;
  std::set<std::string> known;
  for (auto& [name, t] : targets) {
    known.insert(name);
    if (!state.count(name)) missing.push_back(name);
  }
  for (auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);
  if (strict && (!missing.empty() || !unexpected.empty())) {
    std::ostringstream os;
    os << "[load_state_dict] " << type_name() << ": ";
    if (!missing.empty()) os << "missing keys " << join(missing);
    if (!missing.empty() && !unexpected.empty()) os << "; ";
    if (!unexpected.empty()) os << "unexpected keys " << join(unexpected);
    throw ValueError(os.str());
  }

  // Validate and convert everything first, so that a bad entry changes nothing.
  std::vector<std::pair<Tensor*, NDArray>> updates;
  for (auto& [name, target] : targets) {
    auto it = state.find(name);
    if (it == state.end()) continue;
    if (!it->second.defined())
      fail<ValueError>("[load_state_dict] '", name, "' is an undefined tensor");
    const NDArray& src = it->second.data();
    const NDArray& dst = target->data();
    if (src.shape() != dst.shape())
      fail<ValueError>("[load_state_dict] '", name, "' has shape ", shape_str(src.shape()),
                       " in the state dict but ", shape_str(dst.shape()), " in the model");
    NDArray value = src;
    if (value.dtype() != dst.dtype()) value = value.astype(dst.dtype());
    if (&value.device() != &dst.device()) value = value.to(dst.device());
    // Never alias the caller's buffer: later in-place writes must not reach it.
    if (value.buffer() == src.buffer()) value = value.clone();
    updates.emplace_back(target, std::move(value));
  }
  for (auto& [target, value] : updates) target->set_data(value);
}

}  // namespace needle::nn
