// Fused LSTM cell kernels (contracts in needle/kernels.h): the forward and the backward of
// one cell step each in a single pass over the (B, 4H) gates, where the composite runs a
// dozen element-wise kernels and allocates as many temporaries. Each row is cut into chunks
// of kChunk columns; per chunk the transcendentals (the gate sigmoids and tanhs) go through
// the shared vector math of backend_cpu/vecmath.h, as the element-wise kernels' contiguous
// paths do (so the results match the composite's), and the
// arithmetic is plain loops the compiler vectorizes. Rows split over the CPU team.
// Registered as the "cpu" kernels kernel::kLstmCell and kLstmCellGrad.
#include <algorithm>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

using vec::sigmoid_into;
using vec::tanh_into;

// Columns per chunk: the chunk's temporaries (ten arrays) stay in L1.
constexpr int64_t kChunk = 256;

// The activations of columns [j, j + n) of one gates row (4H wide): i, f, g, o, and
// c_new = f * c_prev + i * g with t = tanh(c_new).
template <class T>
struct Chunk {
  T i[kChunk], f[kChunk], g[kChunk], o[kChunk], c[kChunk], t[kChunk];

  void compute(const T* gates_row, const T* c_prev, int64_t h, int64_t j, int64_t n) {
    sigmoid_into(gates_row + j, i, n);
    sigmoid_into(gates_row + h + j, f, n);
    tanh_into(gates_row + 2 * h + j, g, n);
    sigmoid_into(gates_row + 3 * h + j, o, n);
    for (int64_t k = 0; k < n; ++k) c[k] = f[k] * c_prev[j + k] + i[k] * g[k];
    tanh_into(c, t, n);
  }
};

// Runs body(row) for every row of a (rows, H) problem on the CPU team. Each element calls
// five transcendental functions, so threads pay off at the heavy grain.
template <class Body>
void parallel_rows(int64_t rows, int64_t h, const Body& body) {
  const int nt = int(std::min<int64_t>(threads_for(rows * h, kParallelGrainHeavy), rows));
  parallel(nt, [&](int64_t t, int64_t team) {
    for (int64_t r = part_begin(rows, t, team); r < part_begin(rows, t + 1, team); ++r) body(r);
  });
}

template <class T>
void lstm_cell_typed(const View& gv, const View& cv, const View& hv, const View& cnv) {
  const int64_t rows = cv.shape[0], h = cv.shape[1];
  const T* gates = gv.ptr<T>();
  const T* c_prev = cv.ptr<T>();
  T* h_new = hv.ptr<T>();
  T* c_new = cnv.ptr<T>();
  parallel_rows(rows, h, [&](int64_t r) {
    Chunk<T> a;
    const T* grow = gates + r * 4 * h;
    const T* cp = c_prev + r * h;
    T* ho = h_new + r * h;
    T* co = c_new + r * h;
    for (int64_t j = 0; j < h; j += kChunk) {
      const int64_t n = std::min(kChunk, h - j);
      a.compute(grow, cp, h, j, n);
      for (int64_t k = 0; k < n; ++k) {
        co[j + k] = a.c[k];
        ho[j + k] = a.o[k] * a.t[k];
      }
    }
  });
}

template <class T>
void lstm_cell_grad_typed(const View& gv, const View& cv, const View& dhv, const View& dcv,
                          const View& dgv, const View& dcpv) {
  const int64_t rows = cv.shape[0], h = cv.shape[1];
  const T* gates = gv.ptr<T>();
  const T* c_prev = cv.ptr<T>();
  const T* dh = dhv.ptr<T>();
  const T* dc = dcv.ptr<T>();
  T* dgates = dgv.ptr<T>();
  T* dc_prev = dcpv.ptr<T>();
  parallel_rows(rows, h, [&](int64_t r) {
    Chunk<T> a;
    const T* grow = gates + r * 4 * h;
    const T* cp = c_prev + r * h;
    const T* dhr = dh + r * h;
    const T* dcr = dc + r * h;
    T* di = dgates + r * 4 * h;
    T* df = di + h;
    T* dg = di + 2 * h;
    T* d_o = di + 3 * h;
    T* dcp = dc_prev + r * h;
    for (int64_t j = 0; j < h; j += kChunk) {
      const int64_t n = std::min(kChunk, h - j);
      a.compute(grow, cp, h, j, n);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t x = j + k;
        const T i = a.i[k], f = a.f[k], g = a.g[k], o = a.o[k], t = a.t[k];
        const T s = dcr[x] + dhr[x] * o * (T(1) - t * t);  // the whole adjoint of c_new
        di[x] = s * g * i * (T(1) - i);
        df[x] = s * cp[x] * f * (T(1) - f);
        dg[x] = s * i * (T(1) - g * g);
        d_o[x] = dhr[x] * t * o * (T(1) - o);
        dcp[x] = s * f;
      }
    }
  });
}

void lstm_cell(const View& gates, const View& c_prev, const View& h_new, const View& c_new) {
  dispatch_floating(gates.dtype, kernel::kLstmCell,
                    [&](auto t) { lstm_cell_typed<decltype(t)>(gates, c_prev, h_new, c_new); });
}

void lstm_cell_grad(const View& gates, const View& c_prev, const View& dh, const View& dc,
                    const View& dgates, const View& dc_prev) {
  dispatch_floating(gates.dtype, kernel::kLstmCellGrad, [&](auto t) {
    lstm_cell_grad_typed<decltype(t)>(gates, c_prev, dh, dc, dgates, dc_prev);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kLstmCell, "cpu", lstm_cell);
NEEDLE_REGISTER_KERNEL(kernel::kLstmCellGrad, "cpu", lstm_cell_grad);

}  // namespace

}  // namespace needle::cpu
