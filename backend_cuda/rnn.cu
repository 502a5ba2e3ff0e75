// Fused LSTM cell kernels on the GPU (contracts in needle/kernels.h): one thread per
// (row, hidden unit) element of a contiguous (B, H) problem reads its four gate
// pre-activations and c_prev, and writes h_new and c_new (forward) or its four gate
// adjoints and dc_prev (backward, which recomputes the activations rather than reading
// saved ones). Neighbouring threads read neighbouring columns of each gate, so every load
// and store is coalesced. The sigmoid is cuda_common.cuh's sigmoid_of.
// Registered as the "cuda" kernels kernel::kLstmCell and kLstmCellGrad.
#include "backend_cuda/cuda_common.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

// The activations of element (r, j): i, f, g, o, and t = tanh(c_new) with c_new returned.
template <class T>
struct Cell {
  T i, f, g, o, c, t;
  __device__ Cell(const T* __restrict__ gates, const T* __restrict__ c_prev, int64_t r, int64_t j,
                  int64_t h) {
    const T* row = gates + r * 4 * h + j;
    i = sigmoid_of(row[0]);
    f = sigmoid_of(row[h]);
    g = tanh(row[2 * h]);
    o = sigmoid_of(row[3 * h]);
    c = f * c_prev[r * h + j] + i * g;
    t = tanh(c);
  }
};

template <class T>
__global__ void lstm_cell_kernel(const T* __restrict__ gates, const T* __restrict__ c_prev,
                                 T* __restrict__ h_new, T* __restrict__ c_new, int64_t rows,
                                 int64_t h) {
  const int64_t total = rows * h;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t r = e / h, j = e % h;
    const Cell<T> a(gates, c_prev, r, j, h);
    c_new[e] = a.c;
    h_new[e] = a.o * a.t;
  }
}

template <class T>
__global__ void lstm_cell_grad_kernel(const T* __restrict__ gates, const T* __restrict__ c_prev,
                                      const T* __restrict__ dh, const T* __restrict__ dc,
                                      T* __restrict__ dgates, T* __restrict__ dc_prev, int64_t rows,
                                      int64_t h) {
  const int64_t total = rows * h;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t r = e / h, j = e % h;
    const Cell<T> a(gates, c_prev, r, j, h);
    const T s = dc[e] + dh[e] * a.o * (T(1) - a.t * a.t);  // the whole adjoint of c_new
    T* d = dgates + r * 4 * h + j;
    d[0] = s * a.g * a.i * (T(1) - a.i);
    d[h] = s * c_prev[e] * a.f * (T(1) - a.f);
    d[2 * h] = s * a.i * (T(1) - a.g * a.g);
    d[3 * h] = dh[e] * a.t * a.o * (T(1) - a.o);
    dc_prev[e] = s * a.f;
  }
}

void lstm_cell(const View& gates, const View& c_prev, const View& h_new, const View& c_new) {
  const int64_t rows = c_prev.shape[0], h = c_prev.shape[1];
  dispatch_floating(gates.dtype, kernel::kLstmCell, [&](auto t) {
    using T = decltype(t);
    if (rows * h == 0) return;
    lstm_cell_kernel<T><<<grid_for(rows * h), kThreads>>>(gates.ptr<T>(), c_prev.ptr<T>(),
                                                          h_new.ptr<T>(), c_new.ptr<T>(), rows, h);
    check_launch(kernel::kLstmCell);
  });
}

void lstm_cell_grad(const View& gates, const View& c_prev, const View& dh, const View& dc,
                    const View& dgates, const View& dc_prev) {
  const int64_t rows = c_prev.shape[0], h = c_prev.shape[1];
  dispatch_floating(gates.dtype, kernel::kLstmCellGrad, [&](auto t) {
    using T = decltype(t);
    if (rows * h == 0) return;
    lstm_cell_grad_kernel<T>
        <<<grid_for(rows * h), kThreads>>>(gates.ptr<T>(), c_prev.ptr<T>(), dh.ptr<T>(),
                                           dc.ptr<T>(), dgates.ptr<T>(), dc_prev.ptr<T>(), rows, h);
    check_launch(kernel::kLstmCellGrad);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kLstmCell, "cuda", lstm_cell);
NEEDLE_REGISTER_KERNEL(kernel::kLstmCellGrad, "cuda", lstm_cell_grad);

}  // namespace
}  // namespace needle::cuda
