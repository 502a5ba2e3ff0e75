// Optimizer updates that must stay fast. The optimizers themselves (SGD, Adam, AdamW,
// schedulers) live in Python (python/needle/optim.py); what they need from C++ is the
// per-parameter update as one call, run by the device's fused kernel where it has one.
//
// Works on NDArrays, never on Tensors: it builds no autograd graph.
#pragma once

#include "needle/ndarray.h"

namespace needle {

// One parameter's Adam update at step t (1-based), the course's rule with L2 weight decay:
// g = grad + wd * param; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
// Returns the new parameter data; m and v (undefined before the parameter's first step)
// hold the new moments afterwards. A grad of another dtype is converted first. Runs as the
// device's kernel::AdamStep where the kernel registry has one (m and v are then updated in
// place), else as NDArray arithmetic. Python's needle.optim.Adam calls it.
NDArray adam_update(const NDArray& param, const NDArray& grad, NDArray& m, NDArray& v, double lr,
                    double beta1, double beta2, double eps, double weight_decay, int64_t t);

}  // namespace needle
