// Optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate schedulers.
//
// step() works on NDArrays, never on Tensors: it builds no autograd graph, never writes
// into `.grad`, and replaces each parameter's data (Tensor::set_data) with the updated
// array, so the Parameter handles held by modules stay the same objects. Per-parameter
// state (momentum, moment estimates) is kept by parameter position. The update rules are
// the course framework's (API.md); AdamW is PyTorch's decoupled weight decay.
//
// Schedulers follow PyTorch: constructing one applies the schedule at step 0, and each
// step() advances one step and sets optimizer.lr from the optimizer's base lr.
#pragma once

#include <functional>
#include <vector>

#include "needle/tensor.h"

namespace needle::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;

  virtual void step() = 0;
  // Clears every parameter's grad (the course's reset_grad; PyTorch's zero_grad).
  void reset_grad();
  void zero_grad() { reset_grad(); }
  // Scales all gradients by min(1, max_norm / (total L2 norm + 1e-6)), replacing each grad
  // with a new tensor. Returns the total norm before clipping.
  double clip_grad_norm(double max_norm = 0.25);

  const std::vector<Tensor>& params() const { return params_; }
  double lr;

 protected:
  // The gradient of params_[i] as an array in the parameter's dtype; undefined when none.
  NDArray grad_of(size_t i) const;
  std::vector<Tensor> params_;
};

// u = momentum * u + (1 - momentum) * (grad + weight_decay * param); param -= lr * u.
// (Without momentum: param -= lr * (grad + weight_decay * param).)
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, double lr = 0.01, double momentum = 0.0,
               double weight_decay = 0.0);
  void step() override;
  const double momentum, weight_decay;

 private:
  std::vector<NDArray> u_;  // undefined until a parameter's first step
};

// Adam with bias correction; weight decay is added to the gradient (L2, the course's rule).
// g = grad + wd * param; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, double lr = 0.01, double beta1 = 0.9,
                double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0);
  void step() override;
  const double beta1, beta2, eps, weight_decay;
  int64_t t() const { return t_; }

 private:
  int64_t t_ = 0;
  std::vector<NDArray> m_, v_;
};

// One parameter's Adam update by the rule above at step t (1-based): returns the new
// parameter data; m and v (empty before the parameter's first step) hold the new moments
// afterwards. A grad of another dtype is converted first. Runs as one fused kernel where
// the backend has one (Backend::adam_step; m and v are then updated in place), else as
// NDArray arithmetic. Adam::step and Python's needle.optim.Adam both call it.
NDArray adam_update(const NDArray& param, const NDArray& grad, NDArray& m, NDArray& v, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t);

// Adam with decoupled weight decay (PyTorch's AdamW): each parameter that has a gradient is
// first scaled by (1 - lr * weight_decay), then takes the Adam step without L2.
class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, double lr = 0.001, double beta1 = 0.9,
                 double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.01);
  void step() override;
  const double decoupled_weight_decay;
};

// --- Learning-rate schedulers ---

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  // Advances one step and sets optimizer.lr.
  void step();
  double last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  double base_lr() const { return base_lr_; }

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // Derived constructors call this last, once get_lr() can run: applies step 0.
  void start() { step(); }
  virtual double get_lr() const = 0;

  Optimizer& optimizer_;
  double base_lr_;
  int64_t last_epoch_ = -1;
  double last_lr_;
};

// lr = base_lr * lr_lambda(step).
class LambdaLR : public LRScheduler {
 public:
  LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda);

 protected:
  double get_lr() const override;

 private:
  std::function<double(int64_t)> lr_lambda_;
};

// lr = base_lr * gamma ^ (step / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  const int64_t step_size;
  const double gamma;

 protected:
  double get_lr() const override;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  const int64_t t_max;
  const double eta_min;

 protected:
  double get_lr() const override;
};

// Linear warm-up from 0 over warmup_steps, then cosine decay to min_lr at total_steps
// (constant min_lr afterwards).
class CosineWarmupLR : public LRScheduler {
 public:
  CosineWarmupLR(Optimizer& optimizer, int64_t warmup_steps, int64_t total_steps,
                 double min_lr = 0.0);
  const int64_t warmup_steps, total_steps;
  const double min_lr;

 protected:
  double get_lr() const override;
};

}  // namespace needle::optim
