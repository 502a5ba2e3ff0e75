// The basic layers of needle.nn in C++: Linear, the activations, Identity, Flatten,
// Sequential, Residual, SoftmaxLoss, BatchNorm1d, LayerNorm1d and Dropout.
//
// Shapes, parameter names, initialization order and semantics follow API.md (the course
// framework), so that the same model built here and in Python draws its initial values in
// the same order and shares checkpoint names: Linear's weight is (in, out) drawn first by
// kaiming_uniform(in, out), then its bias (1, out) by kaiming_uniform(out, 1) reshaped.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "needle/init.h"
#include "needle/nn/module.h"

namespace needle::nn {

// Device and dtype for a layer's parameters (null device = the default device).
struct LayerOptions {
  Backend* device = nullptr;
  DType dtype = DType::float32;
};

class Identity : public Module {
 public:
  std::string type_name() const override { return "Identity"; }
  Tensor forward(const Tensor& x) override { return x; }
};

// y = x @ weight + bias; x (B, in) -> (B, out).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         const LayerOptions& opts = {});
  std::string type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) override;

  const int64_t in_features, out_features;
  Tensor weight;  // (in_features, out_features)
  Tensor bias;    // (1, out_features), undefined without bias
};

// (B, d1, d2, ...) -> (B, d1 * d2 * ...).
class Flatten : public Module {
 public:
  std::string type_name() const override { return "Flatten"; }
  Tensor forward(const Tensor& x) override;
};

class ReLU : public Module {
 public:
  std::string type_name() const override { return "ReLU"; }
  Tensor forward(const Tensor& x) override;
};

class Tanh : public Module {
 public:
  std::string type_name() const override { return "Tanh"; }
  Tensor forward(const Tensor& x) override;
};

class Sigmoid : public Module {
 public:
  std::string type_name() const override { return "Sigmoid"; }
  Tensor forward(const Tensor& x) override;
};

// A list of modules, named "0", "1", ... (PyTorch's ModuleList); no forward.
class ModuleList : public Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  void push_back(ModulePtr module);
  size_t size() const { return modules_.size(); }
  const ModulePtr& operator[](size_t i) const { return modules_.at(i); }
  const std::vector<ModulePtr>& modules() const { return modules_; }

 private:
  std::vector<ModulePtr> modules_;
};

// Applies its modules in order. They live in a ModuleList child named "modules" (the
// Python attribute), so parameters are named "modules.<i>.<name>".
class Sequential : public Module {
 public:
  Sequential();
  explicit Sequential(std::vector<ModulePtr> modules);
  Sequential(std::initializer_list<ModulePtr> modules)
      : Sequential(std::vector<ModulePtr>(modules)) {}
  std::string type_name() const override { return "Sequential"; }
  Tensor forward(const Tensor& x) override;
  void push_back(ModulePtr module) { modules_->push_back(std::move(module)); }
  size_t size() const { return modules_->size(); }
  const ModulePtr& operator[](size_t i) const { return (*modules_)[i]; }

 private:
  std::shared_ptr<ModuleList> modules_;
};

// fn(x) + x.
class Residual : public Module {
 public:
  explicit Residual(ModulePtr fn);
  std::string type_name() const override { return "Residual"; }
  Tensor forward(const Tensor& x) override;
  const ModulePtr fn;
};

// Mean cross-entropy of logits (B, k) against integer class labels y (B,) (stored as
// floats, as the course's DataLoader yields them).
class SoftmaxLoss : public Module {
 public:
  std::string type_name() const override { return "SoftmaxLoss"; }
  using Module::forward;
  Tensor forward(const Tensor& logits, const Tensor& y);
  Tensor operator()(const Tensor& logits, const Tensor& y) { return forward(logits, y); }
};

// Normalizes each feature of (B, dim) over the batch. Training uses the batch statistics
// and updates running_mean / running_var with `momentum` (the biased batch variance, as
// the course); eval uses the running statistics.
class BatchNorm1d : public Module {
 public:
  explicit BatchNorm1d(int64_t dim, double eps = 1e-5, double momentum = 0.1,
                       const LayerOptions& opts = {});
  std::string type_name() const override { return "BatchNorm1d"; }
  Tensor forward(const Tensor& x) override;

  const int64_t dim;
  const double eps, momentum;
  Tensor weight, bias;               // (dim,), trained
  Tensor running_mean, running_var;  // (dim,), buffers
};

// Normalizes over the last axis (size dim), then scales by weight and adds bias.
class LayerNorm1d : public Module {
 public:
  explicit LayerNorm1d(int64_t dim, double eps = 1e-5, const LayerOptions& opts = {});
  std::string type_name() const override { return "LayerNorm1d"; }
  Tensor forward(const Tensor& x) override;

  const int64_t dim;
  const double eps;
  Tensor weight, bias;  // (dim,)
};

// In training, zeroes each entry with probability p and scales the rest by 1 / (1 - p);
// the identity in eval. The mask is drawn from needle::default_generator().
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  std::string type_name() const override { return "Dropout"; }
  Tensor forward(const Tensor& x) override;
  const double p;
};

}  // namespace needle::nn
