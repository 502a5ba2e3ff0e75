// Fused optimizer kernels: one Adam step for one parameter in a single pass over its
// arrays, where the composed update would run a dozen element-wise kernels (and allocate a
// dozen temporaries) per parameter per step.
#include <cmath>

#include "backend_cpu/kernels.h"
#include "backend_cpu/threads.h"

namespace needle::cpu {

namespace {

// Elements [begin, end) of one Adam step; every scalar is a by-value local, so the compiler
// knows no store to the arrays can change them and vectorizes the loop.
template <class T>
void adam_range(const T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                T* __restrict out, int64_t begin, int64_t end, const AdamStep& s) {
  const T b1 = T(s.beta1), b2 = T(s.beta2), wd = T(s.weight_decay), eps = T(s.eps);
  const T one_minus_b1 = T(1 - s.beta1), one_minus_b2 = T(1 - s.beta2);
  const T inv_c1 = T(1 / s.bias_correction1), inv_c2 = T(1 / s.bias_correction2);
  const T lr = T(s.lr);
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T gi = g[i] + wd * p[i];
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T vi = b2 * v[i] + one_minus_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    out[i] = p[i] - lr * (mi * inv_c1) / (std::sqrt(vi * inv_c2) + eps);
  }
}

template <class T>
void adam_step_typed(const View& param, const View& grad, const View& m, const View& v,
                     const View& param_out, const AdamStep& s) {
  const int64_t n = param.size();
  parallel(threads_for(n, kParallelGrainHeavy), [&](int64_t t, int64_t team) {
    adam_range(param.ptr<T>(), grad.ptr<T>(), m.ptr<T>(), v.ptr<T>(), param_out.ptr<T>(),
               part_begin(n, t, team), part_begin(n, t + 1, team), s);
  });
}

}  // namespace

void adam_step(const View& param, const View& grad, const View& m, const View& v,
               const View& param_out, const AdamStep& step) {
  dispatch_floating(param.dtype, "adam_step", [&](auto t) {
    using T = decltype(t);
    adam_step_typed<T>(param, grad, m, v, param_out, step);
  });
}

}  // namespace needle::cpu
