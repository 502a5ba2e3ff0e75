// Fused SiLU kernels (contracts in needle/kernels.h): the forward in one pass (the vector
// sigmoid of vecmath.h, then the product) and its adjoint in one more, where the composite
// runs two whole-array kernels forward and seven backward, each with its own temporary.
// Near-equal ranges split over the CPU team; each range goes in L1-sized chunks. Registered
// as the "cpu" kernels kernel::kSilu and kSiluGrad.
#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

// Runs chunk(first, count) over [0, n) in pieces of at most vec::kChunk on the CPU team.
template <class Chunk>
void for_chunks(int64_t n, const Chunk& chunk) {
  parallel(threads_for(n, kParallelGrainHeavy), [&](int64_t t, int64_t team) {
    const int64_t end = part_begin(n, t + 1, team);
    for (int64_t c = part_begin(n, t, team); c < end; c += vec::kChunk)
      chunk(c, std::min(vec::kChunk, end - c));
  });
}

template <class T>
void silu_typed(const View& xv, const View& yv) {
  const T* x = xv.ptr<T>();
  T* y = yv.ptr<T>();
  for_chunks(xv.size(), [&](int64_t c, int64_t m) {
    vec::sigmoid_into(x + c, y + c, m);
    for (int64_t i = 0; i < m; ++i) y[c + i] *= x[c + i];
  });
}

template <class T>
void silu_grad_typed(const View& xv, const View& dyv, const View& dxv) {
  const T* x = xv.ptr<T>();
  const T* dy = dyv.ptr<T>();
  T* dx = dxv.ptr<T>();
  for_chunks(xv.size(), [&](int64_t c, int64_t m) {
    T s[vec::kChunk];
    vec::sigmoid_into(x + c, s, m);
    for (int64_t i = 0; i < m; ++i)
      dx[c + i] = dy[c + i] * s[i] * (T(1) + x[c + i] * (T(1) - s[i]));
  });
}

void silu(const View& x, const View& y) {
  dispatch_floating(x.dtype, kernel::kSilu, [&](auto t) { silu_typed<decltype(t)>(x, y); });
}
void silu_grad(const View& x, const View& dy, const View& dx) {
  dispatch_floating(x.dtype, kernel::kSiluGrad,
                    [&](auto t) { silu_grad_typed<decltype(t)>(x, dy, dx); });
}

NEEDLE_REGISTER_KERNEL(kernel::kSilu, "cpu", silu);
NEEDLE_REGISTER_KERNEL(kernel::kSiluGrad, "cpu", silu_grad);

}  // namespace

}  // namespace needle::cpu
