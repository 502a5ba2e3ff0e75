// Batched matrix product: a loop over the batch dimensions (stride 0 where a batch operand
// is broadcast) around the GEMM of gemm.h. Threading is ours, on the one OpenMP team: many
// small products are spread over the threads one batch entry each; a mid-sized product is
// cut into one block of rows (or of columns, when it is wider than tall) per thread. Only a
// product that is large in all three dimensions goes to OpenBLAS whole, threaded by
// OpenBLAS: at 2048^3 its own blocking reached 1.5x our split (whose blocks each re-pack B),
// while for the tall, narrow products of a convolution (32768x576 @ 576x64) its second
// thread added almost nothing, and its pool spun against our OpenMP team between calls.
#include <algorithm>

#include "backend_cpu/gemm.h"
#include "backend_cpu/kernels.h"
#include "backend_cpu/threads.h"
#include "needle/kernel_math.h"

namespace needle::cpu {

namespace {

// Below this many multiply-adds a GEMM is not worth splitting; a batch of them is split
// over threads by batch entry instead.
constexpr int64_t kSmallGemmFlops = int64_t(1) << 21;
// Multiply-adds that justify one more thread.
constexpr int64_t kGemmGrain = int64_t(1) << 16;
// A product with every dimension at least this large is threaded by OpenBLAS itself.
constexpr int64_t kLibraryThreadedDim = 1024;

#ifndef NEEDLE_WITH_OPENBLAS
struct BlasLayouts {
  bool ok = false;
};
BlasLayouts blas_layouts(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t) {
  return {};
}
#endif

// Gemm: a callable with gemm<T>'s signature; library_threads: it is OpenBLAS's, which may
// thread one large product itself.
template <class T, class Gemm>
void matmul_typed(const Gemm& gemm_fn, bool library_threads, const View& a, const View& b,
                  const View& out) {
  const int64_t nd = out.ndim();
  const int64_t m = a.shape[nd - 2], k = a.shape[nd - 1], n = b.shape[nd - 1];
  int64_t batches = 1;
  for (int64_t d = 0; d < nd - 2; ++d) batches *= out.shape[d];
  if (batches == 0 || m == 0 || n == 0) return;
  const T* pa = a.ptr<T>();
  const T* pb = b.ptr<T>();
  T* po = out.ptr<T>();
  const int64_t a_rs = a.strides[nd - 2], a_cs = a.strides[nd - 1];
  const int64_t b_rs = b.strides[nd - 2], b_cs = b.strides[nd - 1];
  const int64_t o_rs = out.strides[nd - 2], o_cs = out.strides[nd - 1];
  auto one = [&](int64_t batch, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    int64_t rest = batch, oa = 0, ob = 0, oo = 0;
    for (int64_t d = nd - 3; d >= 0; --d) {
      const int64_t i = rest % out.shape[d];
      rest /= out.shape[d];
      oa += i * a.strides[d];
      ob += i * b.strides[d];
      oo += i * out.strides[d];
    }
    gemm_fn(r1 - r0, c1 - c0, k, pa + oa + r0 * a_rs, a_rs, a_cs, pb + ob + c0 * b_cs, b_rs, b_cs,
            po + oo + r0 * o_rs + c0 * o_cs, o_rs, o_cs);
  };
  const int threads = get_num_threads();
  const int64_t flops = m * n * k;
  if (library_threads && std::min({m, n, k}) >= kLibraryThreadedDim &&
      blas_layouts(m, n, k, a_rs, a_cs, b_rs, b_cs, o_rs, o_cs).ok) {
    const ScopedBlasThreads blas_threads(threads);
    for (int64_t i = 0; i < batches; ++i) one(i, 0, m, 0, n);
    return;
  }
  const ScopedBlasThreads single_threaded_blas(1);
  if (batches > 1 && (flops < kSmallGemmFlops || batches >= threads)) {
    parallel(threads_for(batches * flops, kGemmGrain), [&](int64_t t, int64_t team) {
      const int64_t end = part_begin(batches, t + 1, team);
      for (int64_t i = part_begin(batches, t, team); i < end; ++i) one(i, 0, m, 0, n);
    });
    return;
  }
  // One large product at a time, split into row (or column) blocks, one per thread.
  const int team = threads_for(flops, kSmallGemmFlops);
  for (int64_t i = 0; i < batches; ++i) {
    parallel(team, [&](int64_t t, int64_t nt) {
      if (m >= n)
        one(i, part_begin(m, t, nt), part_begin(m, t + 1, nt), 0, n);
      else
        one(i, 0, m, part_begin(n, t, nt), part_begin(n, t + 1, nt));
    });
  }
}

// The GEMM of integer and bool matrices (gemm's signature): a plain i-p-j loop with numpy's
// wrapping arithmetic (for bool: or of ands). Floats never come here.
template <class T>
void gemm_integer(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs,
                  const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * c_rs;
    for (int64_t j = 0; j < n; ++j) row[j * c_cs] = T(0);
    for (int64_t p = 0; p < k; ++p) {
      const T x = a[i * a_rs + p * a_cs];
      const T* brow = b + p * b_rs;
      for (int64_t j = 0; j < n; ++j)
        row[j * c_cs] = kmath::add(row[j * c_cs], kmath::multiply(x, brow[j * b_cs]));
    }
  }
}

// Which GEMM a float product runs: the backend's fast one, or a teaching version.
enum class GemmKind { fast, naive, tiled };

// The GEMM matmul_typed runs for T: the chosen one for floats, else gemm_integer.
template <class T>
void matmul_dispatch(const View& a, const View& b, const View& out, GemmKind kind) {
  if constexpr (kmath::is_float_v<T>) {
    switch (kind) {
      case GemmKind::naive:
        return matmul_typed<T>(gemm_naive<T>, false, a, b, out);
      case GemmKind::tiled:
        return matmul_typed<T>(gemm_tiled<T>, false, a, b, out);
      case GemmKind::fast:
#if defined(NEEDLE_WITH_OPENBLAS) && !defined(NEEDLE_NAIVE_GEMM)
        return matmul_typed<T>(gemm<T>, true, a, b, out);
#else
        return matmul_typed<T>(gemm<T>, false, a, b, out);
#endif
    }
  } else {
    matmul_typed<T>(gemm_integer<T>, false, a, b, out);
  }
}

void matmul_with(GemmKind kind, const View& a, const View& b, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) { matmul_dispatch<decltype(t)>(a, b, out, kind); });
}

}  // namespace

void matmul(const View& a, const View& b, const View& out) {
  matmul_with(GemmKind::fast, a, b, out);
}

void matmul_naive(const View& a, const View& b, const View& out) {
  matmul_with(GemmKind::naive, a, b, out);
}

void matmul_tiled(const View& a, const View& b, const View& out) {
  matmul_with(GemmKind::tiled, a, b, out);
}

}  // namespace needle::cpu
