// nn::Module, the base of every layer and model in C++.
//
// A module registers its parameters, buffers and child modules by name in its constructor
// (register_parameter / register_buffer / register_module). Registration stores a pointer
// to the member, so the member Tensor stays the one source of truth: the optimizer and
// load_state_dict update parameters in place (Tensor::set_data), and a module may also
// reassign a member handle. Modules are shared (std::shared_ptr) and never copied.
//
// Names are dotted paths as in PyTorch and the Python package: a child registered as "fn"
// with a parameter "weight" gives "fn.weight". Sequential names its children "modules.0",
// "modules.1", ... as the Python Sequential (which keeps them in `self.modules`) does, so
// a checkpoint written from C++ loads into the same model built in Python and back.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "needle/tensor.h"

namespace needle::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The layer's computation on one input. The default throws NotImplemented; modules with
  // other signatures (SoftmaxLoss) add their own overloads.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // A short type name for messages and printing ("Linear", "Sequential").
  virtual std::string type_name() const { return "Module"; }

  // Parameters of this module and of every descendant, in registration order (depth first).
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // Buffers: saved state that is not trained (BatchNorm's running statistics).
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // The direct children, in registration order.
  std::vector<std::shared_ptr<Module>> children() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }

  // Sets training mode on this module and every descendant.
  void train(bool mode = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Every parameter and buffer by dotted name, detached (the data is shared, not copied).
  std::map<std::string, Tensor> state_dict() const;
  // Copies values into the parameters and buffers (cast to each one's dtype and device).
  // ValueError naming every missing key (state_dict lacks a model entry) and every
  // unexpected key (when `strict`), or the first key whose shape differs, with both
  // shapes. Nothing is changed when an error is raised.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  // Clears the grad of every parameter.
  void zero_grad();

 protected:
  // `tensor` must be a member of this module (it is read through the pointer later). An
  // undefined Tensor (e.g. Linear without bias) is skipped wherever parameters are listed.
  void register_parameter(const std::string& name, Tensor* tensor);
  void register_buffer(const std::string& name, Tensor* tensor);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  // Appends (prefix + name, tensor) for parameters (buffers when `buffers`) recursively.
  void collect(const std::string& prefix, bool buffers,
               std::vector<std::pair<std::string, Tensor*>>& out) const;

  bool training_ = true;
  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace needle::nn
