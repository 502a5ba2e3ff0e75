// Batched matrix product out (B..., m, n) = a (B..., m, k) @ b (B..., k, n).
// Two paths: cuBLAS (strided-batched GEMM) when every matrix is row- or column-major with a
// unit inner stride and the batch steps by a uniform stride (0 for a broadcast batch), and
// a hand-written tiled shared-memory kernel for everything else (the teaching version).
// NEEDLE_CUDA_GEMM=tiled forces the tiled kernel, so tests can check both paths.
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backend_cuda/cublas_util.cuh"
#include "backend_cuda/cuda_common.cuh"
#include "backend_cuda/cuda_kernels.cuh"
#include "needle/kernel_math.h"

namespace needle::cuda {
namespace {

// Sizes and per-matrix strides (in elements) of one product.
struct MatmulDims {
  int64_t m, n, k;
  int64_t a_row, a_col;  // a[i][p] at a_row * i + a_col * p
  int64_t b_row, b_col;  // b[p][j] at b_row * p + b_col * j
  int64_t o_row, o_col;  // out[i][j] at o_row * i + o_col * j
};

// --- Tiled kernel ---
// A block computes a kTile x kTile tile of one output matrix: kTileThreads^2 threads, each
// accumulating a kPerThread x kPerThread grid of outputs in registers, while the block
// stages kTile x kTileK slices of a and b through shared memory.
constexpr int kTile = 64;
constexpr int kTileK = 16;
constexpr int kTileThreads = 16;
constexpr int kPerThread = kTile / kTileThreads;
static_assert(kPerThread * kTileThreads == kTile, "tile must split evenly across threads");
// The block's two tiles (a's padded by a column, see the kernel) live in static shared memory,
// which is limited to 48 KiB per block, for the widest element type.
static_assert((kTile * (kTileK + 1) + kTileK * kTile) * sizeof(double) <= 48 * 1024,
              "the a and b tiles must fit in 48 KiB of static shared memory");

// Grid-stride over all (batch, row tile, column tile) triples. batch carries the offsets of
// the matrices of a (0), b (1) and out (2) for each batch index.
template <class T>
__global__ void matmul_tiled_kernel(const T* a, const T* b, T* out, MatmulDims d, Indexer<3> batch,
                                    int64_t n_batch) {
  // BEGIN SOLUTION hw3
  // a_tile is padded by one column so that the threads storing a column hit distinct banks.
  __shared__ T a_tile[kTile][kTileK + 1];
  __shared__ T b_tile[kTileK][kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kTileThreads + tx;
  const int64_t row_tiles = (d.m + kTile - 1) / kTile;
  const int64_t col_tiles = (d.n + kTile - 1) / kTile;
  const int64_t n_tiles = n_batch * row_tiles * col_tiles;

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bi = t / (row_tiles * col_tiles);
    const int64_t row0 = (t / col_tiles % row_tiles) * kTile;
    const int64_t col0 = (t % col_tiles) * kTile;
    int64_t base[3];
    offsets_of(batch, bi, base);
    const T* A = a + base[0];
    const T* B = b + base[1];
    T* C = out + base[2];

    T acc[kPerThread][kPerThread];
    for (int i = 0; i < kPerThread; ++i)
      for (int j = 0; j < kPerThread; ++j) acc[i][j] = T(0);

    for (int64_t k0 = 0; k0 < d.k; k0 += kTileK) {
      // Stage a[row0 : row0+kTile, k0 : k0+kTileK] and b[k0 : k0+kTileK, col0 : col0+kTile],
      // with zeros past the edges so the inner loop needs no bounds checks.
      for (int e = tid; e < kTile * kTileK; e += kTileThreads * kTileThreads) {
        const int ar = e / kTileK, ak = e % kTileK;
        const int64_t gi = row0 + ar, gp = k0 + ak;
        a_tile[ar][ak] = (gi < d.m && gp < d.k) ? A[gi * d.a_row + gp * d.a_col] : T(0);
        const int bk = e / kTile, bc = e % kTile;
        const int64_t gq = k0 + bk, gj = col0 + bc;
        b_tile[bk][bc] = (gq < d.k && gj < d.n) ? B[gq * d.b_row + gj * d.b_col] : T(0);
      }
      __syncthreads();
      for (int p = 0; p < kTileK; ++p) {
        T av[kPerThread], bv[kPerThread];
        for (int i = 0; i < kPerThread; ++i) av[i] = a_tile[ty + i * kTileThreads][p];
        for (int j = 0; j < kPerThread; ++j) bv[j] = b_tile[p][tx + j * kTileThreads];
        for (int i = 0; i < kPerThread; ++i)
          for (int j = 0; j < kPerThread; ++j) acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();  // the tiles are rewritten by the next k step
    }

    for (int i = 0; i < kPerThread; ++i) {
      const int64_t gi = row0 + ty + i * kTileThreads;
      for (int j = 0; j < kPerThread; ++j) {
        const int64_t gj = col0 + tx + j * kTileThreads;
        if (gi < d.m && gj < d.n) C[gi * d.o_row + gj * d.o_col] = acc[i][j];
      }
    }
  }
  // END SOLUTION
}

template <class T>
void launch_tiled(const T* a, const T* b, T* out, const MatmulDims& d, const Indexer<3>& batch,
                  int64_t n_batch) {
  const int64_t n_tiles = n_batch * ((d.m + kTile - 1) / kTile) * ((d.n + kTile - 1) / kTile);
  const dim3 threads(kTileThreads, kTileThreads);
  matmul_tiled_kernel<T>
      <<<unsigned(std::min(n_tiles, kMaxBlocks)), threads>>>(a, b, out, d, batch, n_batch);
  check_launch("matmul");
}

// --- cuBLAS path ---
// True when NEEDLE_CUDA_GEMM asks for the tiled kernel ("tiled"); unset, "" or "cublas"
// keep the default (cuBLAS where the layout allows).
bool force_tiled() {
  const char* v = std::getenv("NEEDLE_CUDA_GEMM");
  if (!v || !*v || std::strcmp(v, "cublas") == 0) return false;
  if (std::strcmp(v, "tiled") == 0) return true;
  fail<ValueError>("[cuda] matmul: NEEDLE_CUDA_GEMM must be 'tiled' or 'cublas', got '", v, "'");
}

// How cuBLAS (column-major) reads an R x C row-major-indexed matrix with strides (sr, sc)
// as its transpose, which is what the row-major product needs (see try_cublas): a
// row-major matrix is its transpose in column-major order (op N, ld = sr); a column-major
// matrix needs op T (ld = sc). The stride of a size-1 dimension is meaningless and ignored.
struct GemmOperand {
  bool ok = false;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 0;
};
GemmOperand gemm_operand(int64_t rows, int64_t cols, int64_t sr, int64_t sc) {
  if (sc == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? cols : sr;
    if (ld >= std::max<int64_t>(cols, 1) && ld <= INT_MAX) return {true, CUBLAS_OP_N, ld};
  }
  if (sr == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? rows : sc;
    if (ld >= std::max<int64_t>(rows, 1) && ld <= INT_MAX) return {true, CUBLAS_OP_T, ld};
  }
  return {};
}

cublasStatus_t gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                    int m, int n, int k, const float* alpha, const float* a,
                                    int lda, long long sa, const float* b, int ldb, long long sb,
                                    const float* beta, float* c, int ldc, long long sc, int count) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, count);
}
cublasStatus_t gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                    int m, int n, int k, const double* alpha, const double* a,
                                    int lda, long long sa, const double* b, int ldb, long long sb,
                                    const double* beta, double* c, int ldc, long long sc,
                                    int count) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, count);
}

// Runs the product with cuBLAS and returns true, or returns false when the layout does not
// fit a strided-batched GEMM. Row-major out = a @ b is column-major out^T = b^T @ a^T, so
// cuBLAS gets (m', n', k') = (n, m, k) with b as its first operand and a as its second.
template <class T>
bool try_cublas(const T* a, const T* b, T* out, const MatmulDims& d, const Indexer<3>& batch) {
  if (batch.ndim != 1) return false;  // the batch does not step uniformly
  const int64_t count = batch.shape[0];
  const int64_t sa = batch.strides[0][0], sb = batch.strides[1][0], so = batch.strides[2][0];
  if (sa < 0 || sb < 0 || so < 0) return false;
  if (d.m > INT_MAX || d.n > INT_MAX || d.k > INT_MAX || count > INT_MAX) return false;
  const GemmOperand ga = gemm_operand(d.m, d.k, d.a_row, d.a_col);
  const GemmOperand gb = gemm_operand(d.k, d.n, d.b_row, d.b_col);
  const GemmOperand go = gemm_operand(d.m, d.n, d.o_row, d.o_col);
  if (!ga.ok || !gb.ok || !go.ok || go.op != CUBLAS_OP_N) return false;
  const T alpha = 1, beta = 0;
  NEEDLE_CUBLAS_CHECK(
      "matmul", gemm_strided_batched(cublas_handle("matmul"), gb.op, ga.op, int(d.n), int(d.m),
                                     int(d.k), &alpha, b, int(gb.ld), sb, a, int(ga.ld), sa, &beta,
                                     out, int(go.ld), so, int(count)));
  return true;
}

}  // namespace

void matmul(const View& a, const View& b, const View& out) {
  const int64_t nd = out.ndim();
  if (out.size() == 0) return;
  MatmulDims d;
  d.m = out.shape[nd - 2];
  d.n = out.shape[nd - 1];
  d.k = a.shape[nd - 1];
  if (d.k == 0) return fill(out, 0.0);  // empty sums
  d.a_row = a.strides[nd - 2], d.a_col = a.strides[nd - 1];
  d.b_row = b.strides[nd - 2], d.b_col = b.strides[nd - 1];
  d.o_row = out.strides[nd - 2], d.o_col = out.strides[nd - 1];

  const Shape batch_shape(out.shape.begin(), out.shape.end() - 2);
  const Strides sa(a.strides.begin(), a.strides.end() - 2);
  const Strides sb(b.strides.begin(), b.strides.end() - 2);
  const Strides so(out.strides.begin(), out.strides.end() - 2);
  const Indexer<3> batch = make_indexer<3>("matmul", batch_shape, {&sa, &sb, &so});
  const int64_t n_batch = out.size() / (d.m * d.n);
  const bool tiled = force_tiled();

  dispatch_dtype(out.dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (kmath::is_float_v<T>) {  // integers: the tiled kernel only
      if (!tiled && try_cublas<T>(a.ptr<T>(), b.ptr<T>(), out.ptr<T>(), d, batch)) return;
    }
    launch_tiled<T>(a.ptr<T>(), b.ptr<T>(), out.ptr<T>(), d, batch, n_batch);
  });
}

}  // namespace needle::cuda
