// Integer-array indexing: gather (take / take_along_axis) and its adjoint scatter_add. Both
// walk the index's shape with the loop nest of strided.h; the indexed array joins the nest
// with stride 0 on `axis`, and each element adds index * (its stride on axis). gather runs
// over threads like any element-wise kernel; scatter_add runs on one thread, since repeated
// indices make different elements write the same output.
#include "backend_cpu/kernels.h"
#include "backend_cpu/strided.h"
#include "needle/kernel_math.h"

namespace needle::cpu {

namespace {

// The strides of `v` with the one along `axis` zeroed: the part of an element's offset that
// does not depend on the index.
Strides without_axis(const View& v, int64_t axis) {
  Strides s = v.strides;
  s[size_t(axis)] = 0;
  return s;
}

// One row of a gather: o[i * so] = src[i * sa + idx[i * si] * a_axis] for i < n, where src
// points at the row's element of `a` with the indexed axis at 0.
template <class T>
void gather_row(const T* src, int64_t sa, const int64_t* idx, int64_t si, int64_t a_axis, T* o,
                int64_t so, int64_t n) {
  // BEGIN SOLUTION hw2
  for (int64_t i = 0; i < n; ++i) o[i * so] = src[i * sa + idx[i * si] * a_axis];
  // END SOLUTION
}

// One row of a scatter_add: dst[i * so + idx[i * si] * out_axis] += v[i * sv] for i < n, in
// order (repeated indices add up), with numpy's wrapping integer addition.
template <class T>
void scatter_add_row(const T* v, int64_t sv, const int64_t* idx, int64_t si, int64_t out_axis,
                     T* dst, int64_t so, int64_t n) {
  // BEGIN SOLUTION hw2
  for (int64_t i = 0; i < n; ++i) {
    T& o = dst[i * so + idx[i * si] * out_axis];
    if constexpr (kmath::is_float_v<T>) {
      o += v[i * sv];
    } else {
      o = kmath::add(o, v[i * sv]);
    }
  }
  // END SOLUTION
}

template <class T>
void gather_typed(const View& a, const View& index, int64_t axis, const View& out) {
  const Strides a_rest = without_axis(a, axis);
  const int64_t a_axis = a.strides[size_t(axis)];
  const auto nest = make_loop_nest<3>(out.shape, {&out.strides, &index.strides, &a_rest});
  const T* pa = a.ptr<T>();
  const int64_t* pi = index.ptr<int64_t>();
  T* po = out.ptr<T>();
  const int64_t so = nest.inner_stride(0), si = nest.inner_stride(1), sa = nest.inner_stride(2);
  for_each_row(nest, kParallelGrain, [&](const std::array<int64_t, 3>& off, int64_t n) {
    gather_row(pa + off[2], sa, pi + off[1], si, a_axis, po + off[0], so, n);
  });
}

template <class T>
void scatter_add_typed(const View& values, const View& index, int64_t axis, const View& out) {
  const Strides out_rest = without_axis(out, axis);
  const int64_t out_axis = out.strides[size_t(axis)];
  const auto nest =
      make_loop_nest<3>(values.shape, {&values.strides, &index.strides, &out_rest});
  if (nest.size == 0) return;
  const T* pv = values.ptr<T>();
  const int64_t* pi = index.ptr<int64_t>();
  T* po = out.ptr<T>();
  const int64_t sv = nest.inner_stride(0), si = nest.inner_stride(1), so = nest.inner_stride(2);
  run_rows(nest, 0, nest.size, [&](const std::array<int64_t, 3>& off, int64_t n) {
    scatter_add_row(pv + off[0], sv, pi + off[1], si, out_axis, po + off[2], so, n);
  });
}

}  // namespace

void gather(const View& a, const View& index, int64_t axis, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) { gather_typed<decltype(t)>(a, index, axis, out); });
}

void scatter_add(const View& values, const View& index, int64_t axis, const View& out) {
  dispatch_dtype(out.dtype,
                 [&](auto t) { scatter_add_typed<decltype(t)>(values, index, axis, out); });
}

}  // namespace needle::cpu
