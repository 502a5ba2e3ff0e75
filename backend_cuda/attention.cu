// Fused scaled dot-product attention on the GPU (contracts in needle/kernels.h), tiled with an
// online softmax as on the CPU (backend_cpu/attention.cc), in three kernels:
//  - forward: one block per (b, h, tile of kRows queries), one warp per query row. The block
//    stages tiles of 32 keys and values in shared memory; lane c computes the logit of key c
//    of the tile, the warp reduces the tile's max and sum with shuffles, rescales its running
//    output (each lane holds D / 32 of its columns in registers) and adds P V. Writes the
//    output and each row's logsumexp; key tiles wholly above the causal diagonal are skipped.
//  - dK / dV: one block per (b, h, tile of kRows keys), one warp per key row, streaming tiles
//    of 32 queries (q, dO and each query's delta = rowsum(dO * O) - dlse) through shared
//    memory; lane c recomputes P of query c from the saved logsumexp.
//  - dQ: one block per (b, h, tile of kRows queries), one warp per query row, streaming key
//    and value tiles as the forward does.
// Splitting dQ from dK / dV gives every output one writer, so no atomics. Dropout redraws its
// mask from kernel::attention_keep in every kernel. D is at most kMaxD (32 registers per lane
// for the output row); shared memory is sized per launch. Device code does not throw: the
// launchers check what can fail. Registered as the "cuda" kernels kernel::kAttention and
// kernel::kAttentionGrad.
#include <limits>
#include <type_traits>

#include "backend_cuda/cuda_common.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRows = 8;  // warps per block: query rows (forward, dQ) or key rows (dK / dV)
constexpr int kTile = 32;  // keys (forward, dQ) or queries (dK / dV) per shared-memory tile
constexpr int kMaxD = 32 * 8;
enum : unsigned { kAll = 0xffffffffu };  // every lane of a warp: the shuffles' mask

// The problem as the kernels see it (by value).
template <class T>
struct Problem {
  const T *q, *k, *v, *mask;
  int64_t heads, tq, tk, d;
  int64_t m_b, m_h, m_i, m_j;  // the mask's strides (mask == nullptr: none)
  T scale, keep_scale;
  bool causal;
  bool dropout;
  uint64_t seed;
  uint32_t threshold;

  __device__ int64_t key_end(int64_t i) const {
    if (!causal) return tk;
    const int64_t e = i + 1 + tk - tq;
    return e < 0 ? 0 : e > tk ? tk : e;
  }
  __device__ int64_t query_begin(int64_t j) const {
    if (!causal) return 0;
    const int64_t b = j - (tk - tq);
    return b < 0 ? 0 : b > tq ? tq : b;
  }
  // The logit's additive terms for (bh, i, j): the mask, and -inf above the causal diagonal.
  __device__ T bias(int64_t bh, int64_t i, int64_t j) const {
    if (j >= key_end(i)) return -std::numeric_limits<T>::infinity();
    if (!mask) return T(0);
    return mask[(bh / heads) * m_b + (bh % heads) * m_h + i * m_i + j * m_j];
  }
  // The dropout factor of (bh, i, j): keep / (1 - p), or 1 without dropout.
  __device__ T factor(int64_t bh, int64_t i, int64_t j) const {
    if (!dropout) return T(1);
    return kernel::attention_keep(seed, uint64_t((bh * tq + i) * tk + j), threshold) ? keep_scale
                                                                                     : T(0);
  }
};

template <class T>
__device__ inline T warp_max(T x) {
  for (int o = kWarp / 2; o > 0; o /= 2) x = max(x, __shfl_xor_sync(kAll, x, o));
  return x;
}
template <class T>
__device__ inline T warp_sum(T x) {
  for (int o = kWarp / 2; o > 0; o /= 2) x += __shfl_xor_sync(kAll, x, o);
  return x;
}

// Rows [r0, r0 + n) of a (rows, d) matrix into shared memory with row stride ld, zeros past
// the end; the whole block takes part.
template <class T>
__device__ void stage(T* sh, int64_t ld, const T* src, int64_t r0, int64_t rows, int64_t n,
                      int64_t d) {
  for (int64_t e = threadIdx.x; e < n * d; e += blockDim.x) {
    const int64_t r = e / d, x = e % d;
    sh[r * ld + x] = r0 + r < rows ? src[(r0 + r) * d + x] : T(0);
  }
}

template <class T, int kSlots>
__global__ void attention_forward_kernel(Problem<T> p, T* __restrict__ out, T* __restrict__ lse) {
  // BEGIN SOLUTION hw7
  constexpr T kInf = std::numeric_limits<T>::infinity();
  extern __shared__ unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int64_t d = p.d, ld = d + 1;  // padded rows: lane c reads row c without bank conflicts
  T* q_sh = smem;                     // kRows x d
  T* k_sh = q_sh + kRows * d;         // kTile x ld
  T* v_sh = k_sh + kTile * ld;        // kTile x d
  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t i = i0 + warp;
  const bool row = i < p.tq;
  stage(q_sh, d, p.q + bh * p.tq * d, i0, p.tq, kRows, d);
  T acc[kSlots];
  for (int s = 0; s < kSlots; ++s) acc[s] = T(0);
  T m = -kInf, l = T(0);
  const int64_t i_last = min(i0 + kRows, p.tq) - 1;
  const int64_t key_end = p.key_end(i_last);
  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    __syncthreads();
    stage(k_sh, ld, p.k + bh * p.tk * d, j0, p.tk, kTile, d);
    stage(v_sh, d, p.v + bh * p.tk * d, j0, p.tk, kTile, d);
    __syncthreads();
    if (!row) continue;
    const int64_t j = j0 + lane;
    T s = -kInf;
    if (j < p.tk) {
      T dot = 0;
      for (int64_t x = 0; x < d; ++x) dot += q_sh[warp * d + x] * k_sh[lane * ld + x];
      s = p.scale * dot + p.bias(bh, i, j);
    }
    const T m_new = max(m, warp_max(s));
    if (m_new == -kInf) continue;  // nothing visible yet
    T alpha, e;
    if (m_new == kInf) {  // the weight goes to the +inf logits, evenly
      alpha = m == kInf ? T(1) : T(0);
      e = s == kInf ? T(1) : T(0);
    } else {
      alpha = exp(m - m_new);
      e = exp(s - m_new);
    }
    l = l * alpha + warp_sum(e);
    m = m_new;
    if (j < p.tk) e *= p.factor(bh, i, j);
    for (int sl = 0; sl < kSlots; ++sl) acc[sl] *= alpha;
    for (int c = 0; c < kTile; ++c) {
      const T pc = __shfl_sync(kAll, e, c);
      for (int sl = 0; sl < kSlots; ++sl) {
        const int64_t x = lane + sl * kWarp;
        if (x < d) acc[sl] += pc * v_sh[c * d + x];
      }
    }
  }
  if (!row) return;
  const T inv = l > T(0) ? T(1) / l : T(0);
  for (int sl = 0; sl < kSlots; ++sl) {
    const int64_t x = lane + sl * kWarp;
    if (x < d) out[(bh * p.tq + i) * d + x] = acc[sl] * inv;
  }
  if (lane == 0) lse[bh * p.tq + i] = l > T(0) ? m + log(l) : -kInf;
  // END SOLUTION
}

// P of (bh, i, j) from the logit and the row's logsumexp: 0 where lse is +-inf.
template <class T>
__device__ inline T prob(T s, T lse_i) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  return lse_i == kInf || lse_i == -kInf ? T(0) : exp(s - lse_i);
}

template <class T, int kSlots>
__global__ void attention_dkdv_kernel(Problem<T> p, const T* __restrict__ out,
                                      const T* __restrict__ lse, const T* __restrict__ dout,
                                      const T* __restrict__ dlse, T* __restrict__ dk,
                                      T* __restrict__ dv) {
  // BEGIN SOLUTION hw7
  extern __shared__ unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int64_t d = p.d, ld = d + 1;
  T* k_sh = smem;                // kRows x d
  T* v_sh = k_sh + kRows * d;    // kRows x d
  T* q_sh = v_sh + kRows * d;    // kTile x ld
  T* do_sh = q_sh + kTile * ld;  // kTile x ld
  T* delta_sh = do_sh + kTile * ld;
  T* lse_sh = delta_sh + kTile;
  const int64_t tiles = (p.tk + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * kRows;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t j = j0 + warp;
  const bool row = j < p.tk;
  stage(k_sh, d, p.k + bh * p.tk * d, j0, p.tk, kRows, d);
  stage(v_sh, d, p.v + bh * p.tk * d, j0, p.tk, kRows, d);
  T dk_acc[kSlots], dv_acc[kSlots];
  for (int s = 0; s < kSlots; ++s) dk_acc[s] = dv_acc[s] = T(0);
  const int64_t i_begin = p.query_begin(j0) / kTile * kTile;
  const T* qh = p.q + bh * p.tq * d;
  const T* doh = dout + bh * p.tq * d;
  for (int64_t i0 = i_begin; i0 < p.tq; i0 += kTile) {
    __syncthreads();
    stage(q_sh, ld, qh, i0, p.tq, kTile, d);
    stage(do_sh, ld, doh, i0, p.tq, kTile, d);
    if (threadIdx.x < kTile) {
      const int64_t i = i0 + threadIdx.x;
      T s = 0;
      if (i < p.tq) {
        for (int64_t x = 0; x < d; ++x) s += doh[i * d + x] * out[(bh * p.tq + i) * d + x];
        s -= dlse[bh * p.tq + i];
      }
      delta_sh[threadIdx.x] = s;
      lse_sh[threadIdx.x] = i < p.tq ? lse[bh * p.tq + i] : std::numeric_limits<T>::infinity();
    }
    __syncthreads();
    if (!row) continue;
    const int64_t i = i0 + lane;
    T pf = 0, ds = 0;  // the dropped P and dS of (i, j)
    if (i < p.tq) {
      T qk = 0, dov = 0;
      for (int64_t x = 0; x < d; ++x) {
        qk += q_sh[lane * ld + x] * k_sh[warp * d + x];
        dov += do_sh[lane * ld + x] * v_sh[warp * d + x];
      }
      const T pr = prob(p.scale * qk + p.bias(bh, i, j), lse_sh[lane]);
      const T f = p.factor(bh, i, j);
      pf = pr * f;
      ds = p.scale * pr * (dov * f - delta_sh[lane]);
    }
    for (int c = 0; c < kTile; ++c) {
      const T pc = __shfl_sync(kAll, pf, c), dc = __shfl_sync(kAll, ds, c);
      for (int sl = 0; sl < kSlots; ++sl) {
        const int64_t x = lane + sl * kWarp;
        if (x < d) {
          dv_acc[sl] += pc * do_sh[c * ld + x];
          dk_acc[sl] += dc * q_sh[c * ld + x];
        }
      }
    }
  }
  if (!row) return;
  for (int sl = 0; sl < kSlots; ++sl) {
    const int64_t x = lane + sl * kWarp;
    if (x < d) {
      dk[(bh * p.tk + j) * d + x] = dk_acc[sl];
      dv[(bh * p.tk + j) * d + x] = dv_acc[sl];
    }
  }
  // END SOLUTION
}

template <class T, int kSlots>
__global__ void attention_dq_kernel(Problem<T> p, const T* __restrict__ out,
                                    const T* __restrict__ lse, const T* __restrict__ dout,
                                    const T* __restrict__ dlse, T* __restrict__ dq) {
  // BEGIN SOLUTION hw7
  extern __shared__ unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int64_t d = p.d, ld = d + 1;
  T* q_sh = smem;                // kRows x d
  T* do_sh = q_sh + kRows * d;   // kRows x d
  T* k_sh = do_sh + kRows * d;   // kTile x ld
  T* v_sh = k_sh + kTile * ld;   // kTile x ld
  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t i = i0 + warp;
  const bool row = i < p.tq;
  stage(q_sh, d, p.q + bh * p.tq * d, i0, p.tq, kRows, d);
  stage(do_sh, d, dout + bh * p.tq * d, i0, p.tq, kRows, d);
  __syncthreads();
  T delta = 0, lse_i = 0;
  if (row) {
    for (int64_t x = lane; x < d; x += kWarp)
      delta += do_sh[warp * d + x] * out[(bh * p.tq + i) * d + x];
    delta = warp_sum(delta) - dlse[bh * p.tq + i];
    lse_i = lse[bh * p.tq + i];
  }
  T acc[kSlots];
  for (int s = 0; s < kSlots; ++s) acc[s] = T(0);
  const int64_t key_end = p.key_end(min(i0 + kRows, p.tq) - 1);
  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    __syncthreads();
    stage(k_sh, ld, p.k + bh * p.tk * d, j0, p.tk, kTile, d);
    stage(v_sh, ld, p.v + bh * p.tk * d, j0, p.tk, kTile, d);
    __syncthreads();
    if (!row) continue;
    const int64_t j = j0 + lane;
    T ds = 0;
    if (j < p.tk) {
      T qk = 0, dov = 0;
      for (int64_t x = 0; x < d; ++x) {
        qk += q_sh[warp * d + x] * k_sh[lane * ld + x];
        dov += do_sh[warp * d + x] * v_sh[lane * ld + x];
      }
      const T pr = prob(p.scale * qk + p.bias(bh, i, j), lse_i);
      ds = p.scale * pr * (dov * p.factor(bh, i, j) - delta);
    }
    for (int c = 0; c < kTile; ++c) {
      const T dc = __shfl_sync(kAll, ds, c);
      for (int sl = 0; sl < kSlots; ++sl) {
        const int64_t x = lane + sl * kWarp;
        if (x < d) acc[sl] += dc * k_sh[c * ld + x];
      }
    }
  }
  if (!row) return;
  for (int sl = 0; sl < kSlots; ++sl) {
    const int64_t x = lane + sl * kWarp;
    if (x < d) dq[(bh * p.tq + i) * d + x] = acc[sl];
  }
  // END SOLUTION
}

template <class T>
Problem<T> problem_of(const View& q, const View& k, const View& v, const View& mask,
                      const kernel::AttentionParams& a) {
  Problem<T> p;
  p.q = q.ptr<T>();
  p.k = k.ptr<T>();
  p.v = v.ptr<T>();
  p.mask = mask.data ? mask.ptr<T>() : nullptr;
  p.heads = q.shape[1];
  p.tq = q.shape[2];
  p.tk = k.shape[2];
  p.d = q.shape[3];
  p.m_b = p.mask ? mask.strides[0] : 0;
  p.m_h = p.mask ? mask.strides[1] : 0;
  p.m_i = p.mask ? mask.strides[2] : 0;
  p.m_j = p.mask ? mask.strides[3] : 0;
  p.scale = T(a.scale);
  p.keep_scale = T(1.0 / (1.0 - a.dropout));
  p.causal = a.causal;
  p.dropout = a.dropout > 0;
  p.seed = a.seed;
  p.threshold = kernel::attention_dropout_threshold(a.dropout);
  return p;
}

// Calls fn(std::integral_constant<int, slots>) with the register slots per lane D needs.
template <class Fn>
void with_slots(const char* op, int64_t d, const Fn& fn) {
  if (d > kMaxD)
    fail<ValueError>("[", op, "] the CUDA kernel supports head dimensions D <= ", kMaxD, ", got ",
                     d);
  if (d <= 32) return fn(std::integral_constant<int, 1>{});
  if (d <= 64) return fn(std::integral_constant<int, 2>{});
  if (d <= 128) return fn(std::integral_constant<int, 4>{});
  return fn(std::integral_constant<int, 8>{});
}

// Lets kernel use `smem` bytes of dynamic shared memory (above 48 KiB it must opt in). The
// launches themselves are written out at each call site (kernel<<<blocks, kThreads, smem>>>),
// so homework 7's student version can put a NotImplemented in front of each one.
template <class Kernel>
void allow_smem(const char* op, Kernel kernel, size_t smem) {
  if (smem > 48 * 1024)
    NEEDLE_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               int(smem)));
}
constexpr int kThreads = kRows * kWarp;  // threads per block: kRows warps

void attention(const View& q, const View& k, const View& v, const View& mask,
               const kernel::AttentionParams& a, const View& out, const View& lse) {
  dispatch_floating(q.dtype, kernel::kAttention, [&](auto t) {
    using T = decltype(t);
    const Problem<T> p = problem_of<T>(q, k, v, mask, a);
    const int64_t bh = q.shape[0] * q.shape[1], d = p.d;
    if (bh * p.tq == 0) return;
    with_slots(kernel::kAttention, d, [&](auto slots) {
      const size_t smem = sizeof(T) * size_t(kRows * d + kTile * (d + 1) + kTile * d);
      constexpr int kS = decltype(slots)::value;
      allow_smem(kernel::kAttention, attention_forward_kernel<T, kS>, smem);
      const unsigned blocks = unsigned(bh * ((p.tq + kRows - 1) / kRows));
      attention_forward_kernel<T, kS><<<blocks, kThreads, smem>>>(p, out.ptr<T>(), lse.ptr<T>());
      check_launch(kernel::kAttention);
    });
  });
}

void attention_grad(const View& q, const View& k, const View& v, const View& mask,
                    const View& out, const View& lse, const View& dout, const View& dlse,
                    const kernel::AttentionParams& a, const View& dq, const View& dk,
                    const View& dv) {
  dispatch_floating(q.dtype, kernel::kAttentionGrad, [&](auto t) {
    using T = decltype(t);
    const Problem<T> p = problem_of<T>(q, k, v, mask, a);
    const int64_t bh = q.shape[0] * q.shape[1], d = p.d;
    if (bh * p.tq * p.tk == 0) return;
    with_slots(kernel::kAttentionGrad, d, [&](auto slots) {
      constexpr int kS = decltype(slots)::value;
      const size_t kv_smem = sizeof(T) * size_t(2 * kRows * d + 2 * kTile * (d + 1) + 2 * kTile);
      allow_smem(kernel::kAttentionGrad, attention_dkdv_kernel<T, kS>, kv_smem);
      const unsigned key_blocks = unsigned(bh * ((p.tk + kRows - 1) / kRows));
      attention_dkdv_kernel<T, kS><<<key_blocks, kThreads, kv_smem>>>(
          p, out.ptr<T>(), lse.ptr<T>(), dout.ptr<T>(), dlse.ptr<T>(), dk.ptr<T>(), dv.ptr<T>());
      check_launch(kernel::kAttentionGrad);
      const size_t q_smem = sizeof(T) * size_t(2 * kRows * d + 2 * kTile * (d + 1));
      allow_smem(kernel::kAttentionGrad, attention_dq_kernel<T, kS>, q_smem);
      const unsigned query_blocks = unsigned(bh * ((p.tq + kRows - 1) / kRows));
      attention_dq_kernel<T, kS><<<query_blocks, kThreads, q_smem>>>(
          p, out.ptr<T>(), lse.ptr<T>(), dout.ptr<T>(), dlse.ptr<T>(), dq.ptr<T>());
      check_launch(kernel::kAttentionGrad);
    });
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kAttention, "cuda", attention);
NEEDLE_REGISTER_KERNEL(kernel::kAttentionGrad, "cuda", attention_grad);

}  // namespace
}  // namespace needle::cuda
