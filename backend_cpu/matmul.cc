// Batched matrix product: a loop over the batch dimensions (stride 0 where a batch operand
// is broadcast) around the GEMM of gemm.h. Large single products are parallelized by Eigen
// itself; many small ones are spread over OpenMP threads, one GEMM per batch entry.
#include "backend_cpu/gemm.h"
#include "backend_cpu/kernels.h"
#include "backend_cpu/threads.h"

namespace needle::cpu {

namespace {

// Below this many multiply-adds a GEMM gains nothing from Eigen's own threads; a batch of
// them is split over threads by batch entry instead.
constexpr int64_t kSmallGemmFlops = int64_t(1) << 21;
// Multiply-adds that justify one more thread.
constexpr int64_t kGemmGrain = int64_t(1) << 16;

// Gemm: a callable with gemm<T>'s signature.
template <class T, class Gemm>
void matmul_typed(const Gemm& gemm_fn, const View& a, const View& b, const View& out) {
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
  auto one = [&](int64_t batch) {
    int64_t rest = batch, oa = 0, ob = 0, oo = 0;
    for (int64_t d = nd - 3; d >= 0; --d) {
      const int64_t i = rest % out.shape[d];
      rest /= out.shape[d];
      oa += i * a.strides[d];
      ob += i * b.strides[d];
      oo += i * out.strides[d];
    }
    gemm_fn(m, n, k, pa + oa, a_rs, a_cs, pb + ob, b_rs, b_cs, po + oo, o_rs, o_cs);
  };
  const int threads = get_num_threads();  // also applies the thread count to Eigen
  const int64_t flops = m * n * k;
#ifdef NEEDLE_WITH_OPENBLAS
  // OpenBLAS threads each large product itself and cannot tell it runs inside our team:
  // parallelize over the batch only for products too small for its threads.
  const bool over_batches = batches > 1 && flops < kSmallGemmFlops;
#else
  // Eigen runs single-threaded inside a parallel region, so whole products can be shared out.
  const bool over_batches = batches > 1 && (flops < kSmallGemmFlops || batches >= threads);
#endif
  if (over_batches) {
    parallel(threads_for(batches * flops, kGemmGrain), [&](int64_t t, int64_t team) {
      const int64_t end = part_begin(batches, t + 1, team);
      for (int64_t i = part_begin(batches, t, team); i < end; ++i) one(i);
    });
  } else {
    for (int64_t i = 0; i < batches; ++i) one(i);
  }
}

}  // namespace

void matmul(const View& a, const View& b, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    matmul_typed<T>(gemm<T>, a, b, out);
  });
}

void matmul_naive(const View& a, const View& b, const View& out) {
  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    matmul_typed<T>(gemm_naive<T>, a, b, out);
  });
}

}  // namespace needle::cpu
