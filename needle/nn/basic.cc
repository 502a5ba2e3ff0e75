// The basic layers (see basic.h). Forwards are written with Tensor ops only, so autograd
// differentiates them; running statistics are updated on NDArrays, outside the graph.
#include "needle/nn/basic.h"

#include "needle/needle.h"

namespace needle::nn {
namespace {

init::Options param_options(const LayerOptions& opts) {
  return init::Options{opts.device, opts.dtype, true};
}

void check_positive(const char* layer, const char* what, int64_t v) {
  if (v <= 0) fail<ValueError>("[", layer, "] ", what, " must be positive, got ", v);
}

}  // namespace

// --- Linear ---

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, const LayerOptions& opts)
    : in_features(in_features), out_features(out_features) {
  check_positive("Linear", "in_features", in_features);
  check_positive("Linear", "out_features", out_features);
  // BEGIN SOLUTION hw2
  weight =
      init::kaiming_uniform(in_features, out_features, std::nullopt, "relu", param_options(opts));
  if (has_bias) {
    Tensor b = init::kaiming_uniform(out_features, 1, std::nullopt, "relu", param_options(opts));
    bias = Tensor(b.data().reshape({1, out_features}), true);
  }
  // END SOLUTION
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Tensor Linear::forward(const Tensor& x) {
  if (x.ndim() < 1 || x.shape().back() != in_features)
    fail<ValueError>("[Linear] expected input (..., ", in_features, "), got ",
                     shape_str(x.shape()));
  // BEGIN SOLUTION hw2
  Tensor out = matmul(x, weight);
  if (bias.defined()) out = out + broadcast_to(bias, out.shape());
  return out;
  // END SOLUTION
}

// --- Shape and activations ---

Tensor Flatten::forward(const Tensor& x) {
  if (x.ndim() < 1) fail<ValueError>("[Flatten] expected input with a batch axis, got a scalar");
  int64_t rest = 1;
  for (size_t i = 1; i < x.shape().size(); ++i) rest *= x.shape()[i];
  return reshape(x, {x.shape()[0], rest});
}

Tensor ReLU::forward(const Tensor& x) {
  return relu(x);
}
Tensor Tanh::forward(const Tensor& x) {
  return tanh(x);
}
Tensor Sigmoid::forward(const Tensor& x) {
  return sigmoid(x);
}

// --- Containers ---

void ModuleList::push_back(ModulePtr module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

Sequential::Sequential() : modules_(std::make_shared<ModuleList>()) {
  register_module("modules", modules_);
}

Sequential::Sequential(std::vector<ModulePtr> modules) : Sequential() {
  for (auto& m : modules) modules_->push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor out = x;
  for (const ModulePtr& m : modules_->modules()) out = m->forward(out);
  return out;
}

Residual::Residual(ModulePtr fn) : fn(std::move(fn)) {
  register_module("fn", this->fn);
}

Tensor Residual::forward(const Tensor& x) {
  return fn->forward(x) + x;
}

// --- Loss ---

Tensor SoftmaxLoss::forward(const Tensor& logits, const Tensor& y) {
  if (logits.ndim() != 2)
    fail<ValueError>("[SoftmaxLoss] expected logits (batch, classes), got ",
                     shape_str(logits.shape()));
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  if (y.size() != n || y.ndim() > 1)
    fail<ValueError>("[SoftmaxLoss] expected labels (", n, ",) for logits ",
                     shape_str(logits.shape()), ", got ", shape_str(y.shape()));
  // BEGIN SOLUTION hw2
  Tensor y_one_hot = init::one_hot(k, y, {&logits.device(), logits.dtype(), false});
  Tensor lse = summation(logsumexp(logits, Axes{1}));
  Tensor zy = summation(logits * y_one_hot);
  return (lse - zy) / double(n);
  // END SOLUTION
}

// --- Normalization ---

BatchNorm1d::BatchNorm1d(int64_t dim, double eps, double momentum, const LayerOptions& opts)
    : dim(dim), eps(eps), momentum(momentum) {
  check_positive("BatchNorm1d", "dim", dim);
  // BEGIN SOLUTION hw2
  weight = init::ones({dim}, param_options(opts));
  bias = init::zeros({dim}, param_options(opts));
  // END SOLUTION
  running_mean = init::zeros({dim}, {opts.device, opts.dtype, false});
  running_var = init::ones({dim}, {opts.device, opts.dtype, false});
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  if (x.ndim() != 2 || x.shape()[1] != dim)
    fail<ValueError>("[BatchNorm1d] expected input (batch, ", dim, "), got ", shape_str(x.shape()));
  // BEGIN SOLUTION hw2
  const Shape& shape = x.shape();
  const double n = double(shape[0]);
  Tensor normed;
  if (training()) {
    Tensor mean = summation(x, Axes{0}) / n;
    Tensor xm = x - broadcast_to(mean, shape);
    Tensor var = summation(xm * xm, Axes{0}) / n;
    // Running statistics: plain arrays, no graph.
    const DType dt = running_mean.dtype();
    running_mean.set_data(running_mean.data() * (1 - momentum) + mean.data().astype(dt) * momentum);
    running_var.set_data(running_var.data() * (1 - momentum) + var.data().astype(dt) * momentum);
    normed = xm / broadcast_to((var + eps).pow(0.5), shape);
  } else {
    Tensor mean = broadcast_to(running_mean, shape);
    Tensor stdev = broadcast_to((running_var + eps).pow(0.5), shape);
    normed = (x - mean) / stdev;
  }
  return normed * broadcast_to(weight, shape) + broadcast_to(bias, shape);
  // END SOLUTION
}

LayerNorm1d::LayerNorm1d(int64_t dim, double eps, const LayerOptions& opts) : dim(dim), eps(eps) {
  check_positive("LayerNorm1d", "dim", dim);
  // BEGIN SOLUTION hw2
  weight = init::ones({dim}, param_options(opts));
  bias = init::zeros({dim}, param_options(opts));
  // END SOLUTION
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Tensor LayerNorm1d::forward(const Tensor& x) {
  if (x.ndim() < 1 || x.shape().back() != dim)
    fail<ValueError>("[LayerNorm1d] expected input (..., ", dim, "), got ", shape_str(x.shape()));
  // BEGIN SOLUTION hw2
  const Shape& shape = x.shape();
  const double d = double(dim);
  Tensor mean = broadcast_to(summation(x, Axes{-1}, true) / d, shape);
  Tensor xm = x - mean;
  Tensor var = summation(xm * xm, Axes{-1}, true) / d;
  Tensor stdev = broadcast_to((var + eps).pow(0.5), shape);
  return xm / stdev * broadcast_to(weight, shape) + broadcast_to(bias, shape);
  // END SOLUTION
}

// --- Dropout ---

Dropout::Dropout(double p) : p(p) {
  if (!(p >= 0.0 && p <= 1.0)) fail<ValueError>("[Dropout] p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  // BEGIN SOLUTION hw2
  if (!training() || p == 0.0) return x;
  if (p == 1.0) return x * Tensor::zeros_like(x);
  Tensor mask = init::randb(x.shape(), 1.0 - p, {&x.device(), x.dtype(), false});
  return x * Tensor(mask.data() / (1.0 - p));
  // END SOLUTION
}

}  // namespace needle::nn
