// Optimizer updates and schedulers (see optimizer.h). Every update is NDArray arithmetic:
// no Tensor op runs here, so no graph is built whatever the grad mode.
#include "needle/optim/optimizer.h"

#include <cmath>

namespace needle::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : lr(lr), params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].defined()) fail<ValueError>("[optimizer] parameter ", i, " is undefined");
}

void Optimizer::reset_grad() {
  for (Tensor& p : params_) p.set_grad(Tensor());
}

NDArray Optimizer::grad_of(size_t i) const {
  const Tensor& p = params_[i];
  Tensor g = p.grad();
  if (!g.defined()) return NDArray();
  NDArray grad = g.data();
  if (grad.shape() != p.shape())
    fail<ValueError>("[optimizer] parameter ", i, " has shape ", shape_str(p.shape()),
                     " but its grad has shape ", shape_str(grad.shape()));
  if (grad.dtype() != p.dtype()) grad = grad.astype(p.dtype());
  return grad;
}

double Optimizer::clip_grad_norm(double max_norm) {
  double total_sq = 0.0;
  for (const Tensor& p : params_) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    NDArray g64 = g.data().astype(DType::float64);
    total_sq += (g64 * g64).sum().item();
  }
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const Tensor& p : params_) {
      Tensor g = p.grad();
      if (g.defined()) p.set_grad(Tensor(g.data() * coef));  // a new tensor, not in place
    }
  }
  return total;
}

// --- SGD ---

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double weight_decay)
    : Optimizer(std::move(params), lr), momentum(momentum), weight_decay(weight_decay) {
  if (lr < 0) fail<ValueError>("[SGD] lr must be non-negative, got ", lr);
  if (momentum < 0 || momentum >= 1)
    fail<ValueError>("[SGD] momentum must be in [0, 1), got ", momentum);
  u_.resize(params_.size());
}

void SGD::step() {
  // BEGIN SOLUTION hw2
  for (size_t i = 0; i < params_.size(); ++i) {
    NDArray grad = grad_of(i);
    if (!grad.defined()) continue;
    const NDArray& data = params_[i].data();
    if (weight_decay != 0.0) grad = grad + data * weight_decay;
    if (momentum != 0.0) {
      grad = u_[i].defined() ? u_[i] * momentum + grad * (1.0 - momentum) : grad * (1.0 - momentum);
      u_[i] = grad;
    }
    params_[i].set_data(data - grad * lr);
  }
  // END SOLUTION
}

// --- Adam / AdamW ---

Adam::Adam(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps,
           double weight_decay)
    : Optimizer(std::move(params), lr),
      beta1(beta1),
      beta2(beta2),
      eps(eps),
      weight_decay(weight_decay) {
  if (lr < 0) fail<ValueError>("[Adam] lr must be non-negative, got ", lr);
  if (beta1 < 0 || beta1 >= 1 || beta2 < 0 || beta2 >= 1)
    fail<ValueError>("[Adam] betas must be in [0, 1), got ", beta1, " and ", beta2);
  m_.resize(params_.size());
  v_.resize(params_.size());
}

void Adam::step() {
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    NDArray grad = grad_of(i);
    if (!grad.defined()) continue;
    params_[i].set_data(adam_update(params_[i].data(), grad, m_[i], v_[i], lr, beta1, beta2, eps,
                                    weight_decay, t_));
  }
}

NDArray adam_update(const NDArray& param, const NDArray& grad, NDArray& m, NDArray& v, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t) {
  if (grad.shape() != param.shape())
    fail<ValueError>("[adam_update] parameter of shape ", shape_str(param.shape()),
                     " has a grad of shape ", shape_str(grad.shape()));
  if (t < 1) fail<ValueError>("[adam_update] step t must be >= 1, got ", t);
  if (m.defined() != v.defined() ||
      (m.defined() && (m.shape() != param.shape() || v.shape() != param.shape())))
    fail<ValueError>("[adam_update] moments do not match the parameter of shape ",
                     shape_str(param.shape()));
  NDArray g = grad.dtype() == param.dtype() ? grad : grad.astype(param.dtype());
  // BEGIN SOLUTION hw2
  const double c1 = 1.0 - std::pow(beta1, double(t));
  const double c2 = 1.0 - std::pow(beta2, double(t));
  if (!m.defined()) {  // zero moments: the first step's update is then the usual one
    m = NDArray::full(param.shape(), 0.0, param.dtype(), param.device());
    v = NDArray::full(param.shape(), 0.0, param.dtype(), param.device());
  }
  // The backend's fused kernel, where it has one: a single pass over the five arrays.
  NDArray p = param.compact(), out = NDArray::empty(param.shape(), param.dtype(), param.device());
  g = g.compact();
  if (m.dtype() == p.dtype() && m.is_compact() && v.is_compact() &&
      p.device().adam_step(p.view(), g.view(), m.view(), v.view(), out.view(),
                           {lr, beta1, beta2, eps, weight_decay, c1, c2}))
    return out;
  if (weight_decay != 0.0) g = g + param * weight_decay;
  m = m * beta1 + g * (1.0 - beta1);
  v = v * beta2 + g * g * (1.0 - beta2);
  return param - (m / c1) / ((v / c2).sqrt() + eps) * lr;
  // END SOLUTION
}

AdamW::AdamW(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps,
             double weight_decay)
    : Adam(std::move(params), lr, beta1, beta2, eps, 0.0), decoupled_weight_decay(weight_decay) {}

void AdamW::step() {
  if (decoupled_weight_decay != 0.0) {
    const double scale = 1.0 - lr * decoupled_weight_decay;
    for (Tensor& p : params_)
      if (p.grad().defined()) p.set_data(p.data() * scale);
  }
  Adam::step();
}

// --- Schedulers ---

LRScheduler::LRScheduler(Optimizer& optimizer)
    : optimizer_(optimizer), base_lr_(optimizer.lr), last_lr_(optimizer.lr) {}

void LRScheduler::step() {
  ++last_epoch_;
  last_lr_ = get_lr();
  optimizer_.lr = last_lr_;
}

LambdaLR::LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda)
    : LRScheduler(optimizer), lr_lambda_(std::move(lr_lambda)) {
  if (!lr_lambda_) fail<ValueError>("[LambdaLR] lr_lambda is empty");
  start();
}

double LambdaLR::get_lr() const {
  return base_lr_ * lr_lambda_(last_epoch_);
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size(step_size), gamma(gamma) {
  if (step_size <= 0) fail<ValueError>("[StepLR] step_size must be positive, got ", step_size);
  start();
}

double StepLR::get_lr() const {
  return base_lr_ * std::pow(gamma, double(last_epoch_ / step_size));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max(t_max), eta_min(eta_min) {
  if (t_max <= 0) fail<ValueError>("[CosineAnnealingLR] T_max must be positive, got ", t_max);
  start();
}

double CosineAnnealingLR::get_lr() const {
  const double pi = std::acos(-1.0);
  return eta_min +
         (base_lr_ - eta_min) * (1 + std::cos(pi * double(last_epoch_) / double(t_max))) / 2;
}

CosineWarmupLR::CosineWarmupLR(Optimizer& optimizer, int64_t warmup_steps, int64_t total_steps,
                               double min_lr)
    : LRScheduler(optimizer), warmup_steps(warmup_steps), total_steps(total_steps), min_lr(min_lr) {
  if (warmup_steps < 0 || total_steps <= warmup_steps)
    fail<ValueError>("[CosineWarmupLR] need 0 <= warmup_steps < total_steps, got ", warmup_steps,
                     " and ", total_steps);
  start();
}

double CosineWarmupLR::get_lr() const {
  const int64_t t = last_epoch_;
  if (t < warmup_steps) return base_lr_ * double(t) / double(warmup_steps);
  const double progress =
      std::min(1.0, double(t - warmup_steps) / double(total_steps - warmup_steps));
  const double pi = std::acos(-1.0);
  return min_lr + (base_lr_ - min_lr) * 0.5 * (1 + std::cos(pi * progress));
}

}  // namespace needle::optim
