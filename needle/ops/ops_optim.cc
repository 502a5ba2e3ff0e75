// The fused Adam update (see ops_optim.h): checks, then the registry's kernel or the
// composite NDArray update (also the kernel's test oracle).
#include "needle/ops/ops_optim.h"

#include <cmath>

#include "needle/kernels.h"

namespace needle {

NDArray adam_update(const NDArray& param, const NDArray& grad, NDArray& m, NDArray& v, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t) {
  if (!param.defined() || !grad.defined())
    fail<ValueError>("[adam_update] parameter and grad must be defined arrays");
  if (grad.shape() != param.shape())
    fail<ValueError>("[adam_update] parameter of shape ", shape_str(param.shape()),
                     " has a grad of shape ", shape_str(grad.shape()));
  if (&grad.device() != &param.device())
    fail<RuntimeError>("[adam_update] parameter on ", param.device().name(), " has a grad on ",
                       grad.device().name());
  if (t < 1) fail<ValueError>("[adam_update] step t must be >= 1, got ", t);
  if (m.defined() != v.defined() ||
      (m.defined() && (m.shape() != param.shape() || v.shape() != param.shape())))
    fail<ValueError>("[adam_update] moments do not match the parameter of shape ",
                     shape_str(param.shape()));
  if (m.defined() && (&m.device() != &param.device() || &v.device() != &param.device()))
    fail<RuntimeError>("[adam_update] moments are not on the parameter's device ",
                       param.device().name());
  NDArray g = grad.dtype() == param.dtype() ? grad : grad.astype(param.dtype());
  const double c1 = 1.0 - std::pow(beta1, double(t));
  const double c2 = 1.0 - std::pow(beta2, double(t));
  if (!m.defined()) {  // zero moments: the first step's update is then the usual one
    m = NDArray::full(param.shape(), 0.0, param.dtype(), param.device());
    v = NDArray::full(param.shape(), 0.0, param.dtype(), param.device());
  }
  // The device's fused kernel, where it has one: a single pass over the five arrays.
  auto* fused = find_kernel<kernel::AdamStep>(kernel::kAdamStep, param.device());
  if (fused && m.dtype() == param.dtype() && v.dtype() == param.dtype() && m.is_compact() &&
      v.is_compact()) {
    NDArray p = param.compact(), gc = g.compact();
    NDArray out = NDArray::empty(param.shape(), param.dtype(), param.device());
    fused(p.view(), gc.view(), m.view(), v.view(), out.view(),
          {lr, beta1, beta2, eps, weight_decay, c1, c2});
    return out;
  }
  // The composite update, from NDArray ops: g = grad + weight_decay * param, then the moments
  // m and v (assigned, so the caller keeps them) and the bias-corrected step with c1 and c2.
  // BEGIN SOLUTION hw2
  if (weight_decay != 0.0) g = g + param * weight_decay;
  m = m * beta1 + g * (1.0 - beta1);
  v = v * beta2 + g * g * (1.0 - beta2);
  return param - (m / c1) / ((v / c2).sqrt() + eps) * lr;
  // END SOLUTION
}

}  // namespace needle
