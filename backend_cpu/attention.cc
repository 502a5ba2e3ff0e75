// Fused scaled dot-product attention on the CPU (contracts in needle/kernels.h):
// FlashAttention-2. The forward walks one block of kBlockQ queries against blocks of kBlockK
// keys: S = scale * Q K^T for the tile (a small GEMM), the mask and the causal diagonal added,
// then an online softmax keeps each row's running max m, its sum l and the unnormalized
// output O = sum exp(s - m) V, rescaling them by exp(m_old - m_new) when the max grows; key
// blocks wholly above the causal diagonal are never visited. At the end O / l is the output and
// m + log l the row's logsumexp, the only thing saved for the backward. No (Tq, Tk) array
// exists: each thread holds one tile of logits.
//
// The backward walks one block of keys against the query blocks that see it, recomputing
// P = exp(S - lse) per tile: dV += P^T dO, dP = dO V^T, dS = P * (dP - delta) with
// delta = rowsum(dO * O), dK += scale * dS^T Q and dQ += scale * dS K. dQ is shared by every
// key block of a head, so a thread owns whole heads when there are enough of them to go
// round; otherwise the key blocks of one head are split over the team, each thread
// accumulating into its own dQ, summed afterwards.
//
// Tile products go through BLAS (OpenBLAS when CMake found it, else Eigen maps), one thread
// each; the exponentials through Eigen's vectorized exp. Work items are handed out through an
// atomic counter, heaviest first (causal rows do unequal work). Dropout redraws its mask from
// kernel::attention_keep in both passes. Registered as the "cpu" kernels kernel::kAttention and
// kernel::kAttentionGrad.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "backend_cpu/threads.h"
#include "needle/kernels.h"
#ifdef NEEDLE_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace needle::cpu {

namespace {

// Queries and keys per tile: a 64 x 64 tile of logits (16 KiB in float32) and the key and
// value blocks (64 x D) stay in L1/L2 while a query block streams over them.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
// A thread's scratch tiles start on a packet boundary, and their rows (kBlockK wide) stay on
// one: Eigen runs the first elements of an unaligned array through scalar std::exp and the
// rest through its vectorized exp, so an unaligned tile's exponentials (and the outputs)
// differed in the last bit with the thread that computed them (seen on AMD EPYC).
template <class T>
using TileBuffer = std::vector<T, Eigen::aligned_allocator<T>>;

// C = alpha * op(A) @ op(B) + beta * C, row-major with leading dimensions; op(X) = X^T when
// the flag is set. C is (m x n) and op(A) (m x k).
template <class T>
void tile_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
#ifdef NEEDLE_WITH_OPENBLAS
  const auto t = [](bool x) { return x ? CblasTrans : CblasNoTrans; };
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, t(ta), t(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
  else
    cblas_dgemm(CblasRowMajor, t(ta), t(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
#else
  using Map = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
  Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(ldc));
  auto with = [](bool trans, const T* p, int64_t rows, int64_t cols, int64_t ld, auto&& fn) {
    if (trans)
      fn(Map(p, cols, rows, Eigen::OuterStride<>(ld)).transpose());
    else
      fn(Map(p, rows, cols, Eigen::OuterStride<>(ld)));
  };
  with(ta, a, m, k, lda, [&](const auto& am) {
    with(tb, b, k, n, ldb, [&](const auto& bm) {
      if (beta == T(0))
        cm.noalias() = alpha * (am * bm);
      else {
        if (beta != T(1)) cm *= beta;
        cm.noalias() += alpha * (am * bm);
      }
    });
  });
#endif
}

// x[0, n) = exp(x[0, n) - shift), vectorized.
template <class T>
void exp_shifted(T* x, int64_t n, T shift) {
  ArrayMap<T> a(x, n);
  a = (a - shift).exp();
}

// The problem as the tile loops see it: pointers of (b, h) = bh, sizes and parameters.
template <class T>
struct Problem {
  int64_t bh_count, heads, tq, tk, d;
  const T *q, *k, *v;
  const T* mask;  // nullptr for none; else element (b, h, i, j) at mask[offset(b, h) + i * m_i + j * m_j]
  int64_t m_b, m_h, m_i, m_j;
  T scale;
  bool causal;
  double dropout;
  uint64_t seed;
  uint32_t threshold;
  T keep_scale;  // 1 / (1 - dropout)

  // The last key query i sees (exclusive end): i + 1 + Tk - Tq under causal, clipped to Tk.
  int64_t key_end(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + 1 + tk - tq, 0, tk) : tk;
  }
  // The first query that sees key j: j - (Tk - Tq) under causal, clipped to [0, Tq].
  int64_t query_begin(int64_t j) const {
    return causal ? std::clamp<int64_t>(j - (tk - tq), 0, tq) : 0;
  }
  const T* mask_of(int64_t bh) const {
    return mask + (bh / heads) * m_b + (bh % heads) * m_h;
  }
};

// Adds the mask and the causal -inf to the (rows x cols) logits tile s (leading dim ld) at
// queries [i0, i0 + rows) and keys [j0, j0 + cols) of head bh.
template <class T>
void mask_tile(const Problem<T>& p, int64_t bh, int64_t i0, int64_t rows, int64_t j0,
               int64_t cols, T* s, int64_t ld) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  if (p.mask) {
    const T* mb = p.mask_of(bh);
    for (int64_t r = 0; r < rows; ++r) {
      const T* mrow = mb + (i0 + r) * p.m_i + j0 * p.m_j;
      T* srow = s + r * ld;
      if (p.m_j == 1) {
        for (int64_t c = 0; c < cols; ++c) srow[c] += mrow[c];
      } else {
        for (int64_t c = 0; c < cols; ++c) srow[c] += mrow[c * p.m_j];
      }
    }
  }
  if (p.causal) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t end = p.key_end(i0 + r) - j0;  // columns from here on are hidden
      for (int64_t c = std::max<int64_t>(end, 0); c < cols; ++c) s[r * ld + c] = kNegInf;
    }
  }
}

// Multiplies the tile's entries by the dropout factor keep / (1 - p) of (bh, i, j).
template <class T>
void dropout_tile(const Problem<T>& p, int64_t bh, int64_t i0, int64_t rows, int64_t j0,
                  int64_t cols, T* s, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t base = uint64_t((bh * p.tq + i0 + r) * p.tk + j0);
    for (int64_t c = 0; c < cols; ++c)
      s[r * ld + c] *= kernel::attention_keep(p.seed, base + uint64_t(c), p.threshold)
                           ? p.keep_scale
                           : T(0);
  }
}

// Per-thread scratch of the forward: one logits tile, the running row statistics, the
// unnormalized output block.
template <class T>
struct ForwardScratch {
  TileBuffer<T> s, m, l, acc;
  ForwardScratch(int64_t d)
      : s(size_t(kBlockQ * kBlockK)), m(size_t(kBlockQ)), l(size_t(kBlockQ)),
        acc(size_t(kBlockQ * d)) {}
};

// Output rows [i0, i0 + rows) of head bh, and their lse.
template <class T>
void forward_block(const Problem<T>& p, int64_t bh, int64_t i0, ForwardScratch<T>& w, T* out,
                   T* lse) {
  // BEGIN SOLUTION hw7
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t d = p.d, rows = std::min(kBlockQ, p.tq - i0);
  const T* q = p.q + (bh * p.tq + i0) * d;
  const T* k = p.k + bh * p.tk * d;
  const T* v = p.v + bh * p.tk * d;
  T *s = w.s.data(), *m = w.m.data(), *l = w.l.data(), *acc = w.acc.data();
  std::fill(m, m + rows, -kInf);
  std::fill(l, l + rows, T(0));
  std::fill(acc, acc + rows * d, T(0));
  const int64_t key_end = p.key_end(i0 + rows - 1);  // the block's last row sees the most keys
  for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
    const int64_t cols = std::min(kBlockK, key_end - j0);
    // S = scale * Q K^T, masked.
    tile_gemm<T>(false, true, rows, cols, d, p.scale, q, d, k + j0 * d, d, T(0), s, kBlockK);
    mask_tile(p, bh, i0, rows, j0, cols, s, kBlockK);
    // The online softmax: a row's new max rescales what it has summed so far.
    for (int64_t r = 0; r < rows; ++r) {
      T* srow = s + r * kBlockK;
      T tile_max = -kInf;
      for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, srow[c]);
      const T m_new = std::max(m[r], tile_max);
      if (m_new == -kInf) {  // nothing visible yet: the tile weighs nothing
        std::fill(srow, srow + cols, T(0));
        continue;
      }
      T alpha;  // exp(m_old - m_new), the factor of what was summed before
      if (m_new == kInf) {  // the row's weight goes to its +inf logits, evenly
        alpha = m[r] == kInf ? T(1) : T(0);
        for (int64_t c = 0; c < cols; ++c) srow[c] = srow[c] == kInf ? T(1) : T(0);
      } else {
        alpha = std::exp(m[r] - m_new);  // 0 when m_old is -inf
        exp_shifted(srow, cols, m_new);
      }
      T sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += srow[c];
      m[r] = m_new;
      l[r] = l[r] * alpha + sum;
      if (alpha != T(1)) {
        T* arow = acc + r * d;
        for (int64_t x = 0; x < d; ++x) arow[x] *= alpha;
      }
    }
    if (p.dropout > 0) dropout_tile(p, bh, i0, rows, j0, cols, s, kBlockK);
    // O += P V.
    tile_gemm<T>(false, false, rows, d, cols, T(1), s, kBlockK, v + j0 * d, d, T(1), acc, d);
  }
  T* o = out + (bh * p.tq + i0) * d;
  T* lrow = lse + bh * p.tq + i0;
  for (int64_t r = 0; r < rows; ++r) {
    const T inv = l[r] > T(0) ? T(1) / l[r] : T(0);  // a row with no visible key gives zeros
    for (int64_t x = 0; x < d; ++x) o[r * d + x] = acc[r * d + x] * inv;
    lrow[r] = l[r] > T(0) ? m[r] + std::log(l[r]) : -kInf;
  }
  // END SOLUTION
}

// Per-thread scratch of the backward: the P and dP tiles, the dK and dV blocks.
template <class T>
struct BackwardScratch {
  TileBuffer<T> p, dp, dk, dv;
  BackwardScratch(int64_t d)
      : p(size_t(kBlockQ * kBlockK)), dp(size_t(kBlockQ * kBlockK)), dk(size_t(kBlockK * d)),
        dv(size_t(kBlockK * d)) {}
};

// dK and dV of keys [j0, j0 + kBlockK) of head bh (written), and their share of dQ (added to
// dq, the head's (Tq, D) block). delta: the head's rowsum(dO * O) - dlse.
template <class T>
void backward_block(const Problem<T>& p, int64_t bh, int64_t j0, const T* out_lse, const T* dout,
                    const T* delta, BackwardScratch<T>& w, T* dq, T* dk, T* dv) {
  // BEGIN SOLUTION hw7
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t d = p.d, cols = std::min(kBlockK, p.tk - j0);
  const T* q = p.q + bh * p.tq * d;
  const T* k = p.k + (bh * p.tk + j0) * d;
  const T* v = p.v + (bh * p.tk + j0) * d;
  const T* go = dout + bh * p.tq * d;
  const T* lse = out_lse + bh * p.tq;
  T *pt = w.p.data(), *dpt = w.dp.data(), *dka = w.dk.data(), *dva = w.dv.data();
  std::fill(dka, dka + cols * d, T(0));
  std::fill(dva, dva + cols * d, T(0));
  for (int64_t i0 = p.query_begin(j0) / kBlockQ * kBlockQ; i0 < p.tq; i0 += kBlockQ) {
    const int64_t rows = std::min(kBlockQ, p.tq - i0);
    // P = exp(scale * Q K^T + mask - lse), recomputed; rows with lse = +-inf pass nothing.
    tile_gemm<T>(false, true, rows, cols, d, p.scale, q + i0 * d, d, k, d, T(0), pt, kBlockK);
    mask_tile(p, bh, i0, rows, j0, cols, pt, kBlockK);
    for (int64_t r = 0; r < rows; ++r) {
      const T x = lse[i0 + r];
      T* prow = pt + r * kBlockK;
      if (x == kInf || x == -kInf)
        std::fill(prow, prow + cols, T(0));
      else
        exp_shifted(prow, cols, x);
    }
    // dP = dO V^T.
    tile_gemm<T>(false, true, rows, cols, d, T(1), go + i0 * d, d, v, d, T(0), dpt, kBlockK);
    if (p.dropout > 0) {
      // dV takes the dropped P; dS the dropped dP against the undropped P.
      dropout_tile(p, bh, i0, rows, j0, cols, dpt, kBlockK);
      std::vector<T> pd(pt, pt + rows * kBlockK);
      dropout_tile(p, bh, i0, rows, j0, cols, pd.data(), kBlockK);
      tile_gemm<T>(true, false, cols, d, rows, T(1), pd.data(), kBlockK, go + i0 * d, d, T(1), dva,
                   d);
    } else {
      // dV += P^T dO.
      tile_gemm<T>(true, false, cols, d, rows, T(1), pt, kBlockK, go + i0 * d, d, T(1), dva, d);
    }
    // dS = scale * P * (dP - delta), into dpt.
    for (int64_t r = 0; r < rows; ++r) {
      const T dl = delta[i0 + r];
      const T* prow = pt + r * kBlockK;
      T* drow = dpt + r * kBlockK;
      for (int64_t c = 0; c < cols; ++c) drow[c] = p.scale * prow[c] * (drow[c] - dl);
    }
    // dK += dS^T Q and dQ += dS K.
    tile_gemm<T>(true, false, cols, d, rows, T(1), dpt, kBlockK, q + i0 * d, d, T(1), dka, d);
    tile_gemm<T>(false, false, rows, d, cols, T(1), dpt, kBlockK, k, d, T(1), dq + i0 * d, d);
  }
  std::copy(dka, dka + cols * d, dk + (bh * p.tk + j0) * d);
  std::copy(dva, dva + cols * d, dv + (bh * p.tk + j0) * d);
  // END SOLUTION
}

template <class T>
Problem<T> problem_of(const View& q, const View& k, const View& v, const View& mask,
                      const kernel::AttentionParams& a) {
  Problem<T> p;
  p.heads = q.shape[1];
  p.bh_count = q.shape[0] * p.heads;
  p.tq = q.shape[2];
  p.tk = k.shape[2];
  p.d = q.shape[3];
  p.q = q.ptr<T>();
  p.k = k.ptr<T>();
  p.v = v.ptr<T>();
  p.mask = mask.data ? mask.ptr<T>() : nullptr;
  if (p.mask) {
    p.m_b = mask.strides[0];
    p.m_h = mask.strides[1];
    p.m_i = mask.strides[2];
    p.m_j = mask.strides[3];
  } else {
    p.m_b = p.m_h = p.m_i = p.m_j = 0;
  }
  p.scale = T(a.scale);
  p.causal = a.causal;
  p.dropout = a.dropout;
  p.seed = a.seed;
  p.threshold = kernel::attention_dropout_threshold(a.dropout);
  p.keep_scale = T(1.0 / (1.0 - a.dropout));
  return p;
}

// Runs item(t, i, scratch) for items 0 .. n-1 on the team, handed out one at a time in
// order (callers order them heaviest first). work: the total multiply-adds, for the grain.
template <class Scratch, class Item>
void run_items(int64_t n, double work, int64_t d, const Item& item) {
  const int nt = int(std::min<int64_t>(threads_for(int64_t(std::min(work, 1e15)), 1 << 20), n));
  std::atomic<int64_t> next{0};
  const ScopedBlasThreads single_threaded_blas(1);
  parallel(nt, [&](int64_t t, int64_t) {
    Scratch scratch(d);
    for (int64_t i = next++; i < n; i = next++) item(t, i, scratch);
  });
}

template <class T>
void attention_typed(const View& qv, const View& kv, const View& vv, const View& mask,
                     const kernel::AttentionParams& a, const View& outv, const View& lsev) {
  const Problem<T> p = problem_of<T>(qv, kv, vv, mask, a);
  T* out = outv.ptr<T>();
  T* lse = lsev.ptr<T>();
  const int64_t blocks = (p.tq + kBlockQ - 1) / kBlockQ;
  // Item n: query block (blocks - 1 - n % blocks) of head n / blocks, the late (heavier
  // under causal) blocks of every head first.
  const int64_t n = p.bh_count * blocks;
  run_items<ForwardScratch<T>>(n, 2.0 * double(p.bh_count) * p.tq * p.tk * p.d, p.d,
                               [&](int64_t, int64_t i, ForwardScratch<T>& w) {
                                 const int64_t blk = blocks - 1 - i / p.bh_count;
                                 forward_block(p, i % p.bh_count, blk * kBlockQ, w, out, lse);
                               });
}

template <class T>
void attention_grad_typed(const View& qv, const View& kv, const View& vv, const View& mask,
                          const View& outv, const View& lsev, const View& doutv,
                          const View& dlsev, const kernel::AttentionParams& a, const View& dqv,
                          const View& dkv, const View& dvv) {
  const Problem<T> p = problem_of<T>(qv, kv, vv, mask, a);
  const T* out = outv.ptr<T>();
  const T* lse = lsev.ptr<T>();
  const T* dout = doutv.ptr<T>();
  const T* dlse = dlsev.ptr<T>();
  T* dq = dqv.ptr<T>();
  T* dk = dkv.ptr<T>();
  T* dv = dvv.ptr<T>();
  const int64_t d = p.d, rows = p.bh_count * p.tq;
  // delta = rowsum(dO * O) - dlse, for every query row; dq starts at zero.
  std::vector<T> delta(static_cast<size_t>(rows));
  parallel(threads_for(rows * d), [&](int64_t t, int64_t team) {
    for (int64_t r = part_begin(rows, t, team); r < part_begin(rows, t + 1, team); ++r) {
      T s = 0;
      for (int64_t x = 0; x < d; ++x) s += dout[r * d + x] * out[r * d + x];
      delta[size_t(r)] = s - dlse[r];
      std::fill(dq + r * d, dq + (r + 1) * d, T(0));
    }
  });
  const int64_t blocks = (p.tk + kBlockK - 1) / kBlockK;
  const double work = 5.0 * double(p.bh_count) * p.tq * p.tk * d;
  const int team = threads_for(int64_t(std::min(work, 1e15)), 1 << 20);
  if (p.bh_count >= 2 * team) {
    // Whole heads per thread: each dQ has one writer.
    run_items<BackwardScratch<T>>(p.bh_count, work, d, [&](int64_t, int64_t bh,
                                                          BackwardScratch<T>& w) {
      for (int64_t j = 0; j < blocks; ++j)
        backward_block(p, bh, j * kBlockK, lse, dout, delta.data() + bh * p.tq, w,
                       dq + bh * p.tq * d, dk, dv);
    });
    return;
  }
  // Few heads: the key blocks of each head over the team, each thread with its own dQ.
  std::vector<std::vector<T>> partial(size_t(team), std::vector<T>(size_t(p.tq * d)));
  for (int64_t bh = 0; bh < p.bh_count; ++bh) {
    for (auto& part : partial) std::fill(part.begin(), part.end(), T(0));
    run_items<BackwardScratch<T>>(blocks, work / double(p.bh_count), d,
                                  [&](int64_t t, int64_t j, BackwardScratch<T>& w) {
                                    backward_block(p, bh, j * kBlockK, lse, dout,
                                                   delta.data() + bh * p.tq, w,
                                                   partial[size_t(t)].data(), dk, dv);
                                  });
    T* dqh = dq + bh * p.tq * d;
    for (const auto& part : partial)
      for (int64_t x = 0; x < p.tq * d; ++x) dqh[x] += part[size_t(x)];
  }
}

void attention(const View& q, const View& k, const View& v, const View& mask,
               const kernel::AttentionParams& a, const View& out, const View& lse) {
  dispatch_floating(q.dtype, kernel::kAttention,
                    [&](auto t) { attention_typed<decltype(t)>(q, k, v, mask, a, out, lse); });
}

void attention_grad(const View& q, const View& k, const View& v, const View& mask,
                    const View& out, const View& lse, const View& dout, const View& dlse,
                    const kernel::AttentionParams& a, const View& dq, const View& dk,
                    const View& dv) {
  dispatch_floating(q.dtype, kernel::kAttentionGrad, [&](auto t) {
    attention_grad_typed<decltype(t)>(q, k, v, mask, out, lse, dout, dlse, a, dq, dk, dv);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kAttention, "cpu", attention);
NEEDLE_REGISTER_KERNEL(kernel::kAttentionGrad, "cpu", attention_grad);

}  // namespace

}  // namespace needle::cpu
