// Fused softmax-family kernels over the last axis (contracts in needle/kernels.h): softmax
// and logsoftmax forward, each one row at a time (the row max, one pass of vector exp that
// also sums, one scaling pass, all in L1 for rows up to a few thousand), and their backward
// passes (a row dot product, then one element-wise pass). The composite runs five to seven
// whole-array kernels with as many temporaries. Rows split over the CPU team. Registered as
// the "cpu" kernels kernel::kSoftmax, kLogSoftmax, kSoftmaxGrad and kLogSoftmaxGrad.
#include <cmath>

#include "backend_cpu/threads.h"
#include "backend_cpu/vecmath.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

// Runs row(offset of the row, D) for every row of a (R, D) problem: an exp per element, so
// threads pay off at the heavy grain.
template <class Row>
void for_rows(const View& v, const Row& row) {
  const int64_t d = v.shape.back(), rows = d ? v.size() / d : 0;
  parallel_for_rows(rows, d, kParallelGrainHeavy, [&](int64_t r) { row(r * d, d); });
}

template <class T>
void softmax_typed(const View& xv, const View& ov) {
  const T* x = xv.ptr<T>();
  T* o = ov.ptr<T>();
  for_rows(xv, [&](int64_t off, int64_t d) {
    const T* xr = x + off;
    T* orow = o + off;
    const T inv = T(1) / vec::exp_shifted_into(xr, vec::row_shift(xr, d), orow, d);
    for (int64_t i = 0; i < d; ++i) orow[i] *= inv;
  });
}

template <class T>
void logsoftmax_typed(const View& xv, const View& ov) {
  const T* x = xv.ptr<T>();
  T* o = ov.ptr<T>();
  for_rows(xv, [&](int64_t off, int64_t d) {
    const T* xr = x + off;
    T* orow = o + off;
    const T m = vec::row_shift(xr, d);
    const T log_s = std::log(vec::exp_shifted_into(xr, m, orow, d));  // orow: scratch
    for (int64_t i = 0; i < d; ++i) orow[i] = (xr[i] - m) - log_s;
  });
}

template <class T>
void softmax_grad_typed(const View& yv, const View& dyv, const View& dxv) {
  const T* y = yv.ptr<T>();
  const T* dy = dyv.ptr<T>();
  T* dx = dxv.ptr<T>();
  for_rows(yv, [&](int64_t off, int64_t d) {
    const T s = vec::dot(dy + off, y + off, d);
    for (int64_t i = 0; i < d; ++i) dx[off + i] = y[off + i] * (dy[off + i] - s);
  });
}

template <class T>
void logsoftmax_grad_typed(const View& yv, const View& dyv, const View& dxv) {
  const T* y = yv.ptr<T>();
  const T* dy = dyv.ptr<T>();
  T* dx = dxv.ptr<T>();
  for_rows(yv, [&](int64_t off, int64_t d) {
    const T s = vec::sum(dy + off, d);
    vec::exp_into(y + off, dx + off, d);
    for (int64_t i = 0; i < d; ++i) dx[off + i] = dy[off + i] - dx[off + i] * s;
  });
}

void softmax(const View& x, const View& out) {
  dispatch_floating(x.dtype, kernel::kSoftmax,
                    [&](auto t) { softmax_typed<decltype(t)>(x, out); });
}
void logsoftmax(const View& x, const View& out) {
  dispatch_floating(x.dtype, kernel::kLogSoftmax,
                    [&](auto t) { logsoftmax_typed<decltype(t)>(x, out); });
}
void softmax_grad(const View& y, const View& dy, const View& dx) {
  dispatch_floating(y.dtype, kernel::kSoftmaxGrad,
                    [&](auto t) { softmax_grad_typed<decltype(t)>(y, dy, dx); });
}
void logsoftmax_grad(const View& y, const View& dy, const View& dx) {
  dispatch_floating(y.dtype, kernel::kLogSoftmaxGrad,
                    [&](auto t) { logsoftmax_grad_typed<decltype(t)>(y, dy, dx); });
}

NEEDLE_REGISTER_KERNEL(kernel::kSoftmax, "cpu", softmax);
NEEDLE_REGISTER_KERNEL(kernel::kLogSoftmax, "cpu", logsoftmax);
NEEDLE_REGISTER_KERNEL(kernel::kSoftmaxGrad, "cpu", softmax_grad);
NEEDLE_REGISTER_KERNEL(kernel::kLogSoftmaxGrad, "cpu", logsoftmax_grad);

}  // namespace

}  // namespace needle::cpu
