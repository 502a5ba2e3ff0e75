// The one GEMM of the CPU backend: C = A @ B on strided matrices, C (m x n), A (m x k),
// B (k x n), every matrix given by a pointer and a (row, column) stride in elements; or
// C += A @ B when asked to accumulate (a sum over blocks of a product, as conv.cc's weight
// gradient, then needs no product buffer and no pass to add it).
//
// Four implementations sit here; gemm<T>() picks the fast one:
//  - gemm_naive: the teaching version, a plain triple loop in i-k-j order (the innermost
//    loop walks rows of B and C, so it vectorizes when they are contiguous);
//  - gemm_tiled: the teaching version with blocking, as the course's tiled matmul: C is
//    computed one kGemmTile x kGemmTile block at a time from small tiles of A and B;
//  - gemm_eigen: Eigen's blocked, vectorized GEMM. Each matrix is mapped
//    in place as row-major or column-major with an outer stride, so transposed views need
//    no copy; only a matrix with neither stride 1 is first compacted into a temporary.
//  - gemm_blas (when CMake found OpenBLAS): cblas_?gemm for every product whose matrices are
//    row- or column-major, which is all of them in practice; Eigen takes the rest. Eigen's
//    AVX2 kernels reach about half of OpenBLAS's speed here, and numpy and PyTorch use it.
// Building with -DNEEDLE_NAIVE_GEMM selects the naive one everywhere. Each runs on the
// calling thread; matmul.cc and conv.cc share the work out over threads.
//
// Include this header only from backend_cpu/ sources. Eigen's templates compile differently
// with and without -mavx2/-mfma; instantiating them in a target built with other flags
// (tests, the Python extension) breaks the one-definition rule, and the linker may mix the
// two versions (misaligned AVX stores inside Eigen's GEMM). Tests reach the teaching GEMMs
// through matmul_naive() and matmul_tiled() in kernels.h instead.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "needle/error.h"
#ifdef NEEDLE_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace needle::cpu {

// C = A @ B as a triple loop: zero C, then for each row i and each p add A[i][p] * B[p][:]
// to C[i][:] (the i-k-j order, so the innermost loop walks rows of B and C).
template <class T>
void gemm_naive(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs) {
  // BEGIN SOLUTION hw0
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * c_rs + j * c_cs] = T(0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) {
      const T a_ip = a[i * a_rs + p * a_cs];
      for (int64_t j = 0; j < n; ++j) c[i * c_rs + j * c_cs] += a_ip * b[p * b_rs + j * b_cs];
    }
  }
  // END SOLUTION
}

// The tile size of gemm_tiled (the course's TILE).
constexpr int64_t kGemmTile = 8;

// C = A @ B one kGemmTile x kGemmTile block of C at a time: the block accumulates in a local
// array over kGemmTile-wide slices of k, and each slice first copies its tile of A and of B
// into small contiguous arrays, zero-padded at the edges of the matrices so the multiply
// loops need no bounds checks. Every element loaded into a tile is used kGemmTile times.
template <class T>
void gemm_tiled(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs) {
  // BEGIN SOLUTION hw0
  constexpr int64_t t = kGemmTile;
  for (int64_t i0 = 0; i0 < m; i0 += t) {
    const int64_t rows = std::min(t, m - i0);
    for (int64_t j0 = 0; j0 < n; j0 += t) {
      const int64_t cols = std::min(t, n - j0);
      T acc[t][t] = {};
      for (int64_t p0 = 0; p0 < k; p0 += t) {
        const int64_t depth = std::min(t, k - p0);
        // A real output's sum meets padding only as 0 * 0 (p beyond depth is zero in both
        // tiles), so no inf or NaN leaks into it; acc's padded rows and columns are dropped.
        T a_tile[t][t] = {}, b_tile[t][t] = {};
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t p = 0; p < depth; ++p) a_tile[i][p] = a[(i0 + i) * a_rs + (p0 + p) * a_cs];
        for (int64_t p = 0; p < depth; ++p)
          for (int64_t j = 0; j < cols; ++j) b_tile[p][j] = b[(p0 + p) * b_rs + (j0 + j) * b_cs];
        for (int64_t i = 0; i < t; ++i)
          for (int64_t p = 0; p < t; ++p) {
            const T x = a_tile[i][p];
            for (int64_t j = 0; j < t; ++j) acc[i][j] += x * b_tile[p][j];
          }
      }
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) c[(i0 + i) * c_rs + (j0 + j) * c_cs] = acc[i][j];
    }
  }
  // END SOLUTION
}

namespace detail {

template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using OuterStride = Eigen::OuterStride<>;

// The stride of a dimension of size 1 is never used: give it the value that lets the
// matrix be mapped directly.
inline void normalize_strides(int64_t rows, int64_t cols, int64_t& rs, int64_t& cs) {
  if (cols == 1) cs = 1;
  if (rows == 1) rs = cs == 1 ? cols : 1;
}

// Calls fn(map) with an Eigen map of the (rows x cols) matrix at p: row-major when its
// columns are contiguous, column-major when its rows are, else over a compacted copy.
template <class T, class Fn>
void with_input_matrix(const T* p, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                       const Fn& fn) {
  normalize_strides(rows, cols, rs, cs);
  if (cs == 1 && rs >= cols) {
    fn(Eigen::Map<const RowMajorMatrix<T>, 0, OuterStride>(p, rows, cols, OuterStride(rs)));
  } else if (rs == 1 && cs >= rows) {
    fn(Eigen::Map<const ColMajorMatrix<T>, 0, OuterStride>(p, rows, cols, OuterStride(cs)));
  } else {
    std::vector<T> tmp(size_t(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) tmp[size_t(i * cols + j)] = p[i * rs + j * cs];
    fn(Eigen::Map<const RowMajorMatrix<T>>(tmp.data(), rows, cols));
  }
}

}  // namespace detail

template <class T>
void gemm_eigen(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs, bool accumulate) {
  using namespace detail;
  normalize_strides(m, n, c_rs, c_cs);
  const bool c_row_major = c_cs == 1 && c_rs >= n;
  const bool c_col_major = !c_row_major && c_rs == 1 && c_cs >= m;
  std::vector<T> c_tmp;  // when C cannot be mapped: compute compact, then scatter
  T* c_data = c;
  if (!c_row_major && !c_col_major) {
    c_tmp.resize(size_t(m * n));
    c_data = c_tmp.data();
    if (accumulate)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c_tmp[size_t(i * n + j)] = c[i * c_rs + j * c_cs];
  }
  auto product = [&](auto&& out) {
    if (k == 0) {
      if (!accumulate) out.setZero();
      return;
    }
    with_input_matrix(a, m, k, a_rs, a_cs, [&](const auto& ma) {
      with_input_matrix(b, k, n, b_rs, b_cs, [&](const auto& mb) {
        if (accumulate)
          out.noalias() += ma * mb;
        else
          out.noalias() = ma * mb;
      });
    });
  };
  if (c_col_major) {
    Eigen::Map<ColMajorMatrix<T>, 0, OuterStride> out(c_data, m, n, OuterStride(c_cs));
    product(out);
  } else {
    Eigen::Map<RowMajorMatrix<T>, 0, OuterStride> out(c_data, m, n,
                                                      OuterStride(c_row_major ? c_rs : n));
    product(out);
  }
  if (!c_tmp.empty()) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * c_rs + j * c_cs] = c_tmp[size_t(i * n + j)];
  }
}

#ifdef NEEDLE_WITH_OPENBLAS
namespace detail {
// BLAS describes a row-major (rows x cols) matrix as itself with leading dimension rs, and a
// column-major one as the transpose of a row-major (cols x rows) one with leading dim cs.
inline bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE& trans,
                        int64_t& ld) {
  normalize_strides(rows, cols, rs, cs);
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) {
    trans = CblasNoTrans, ld = rs;
  } else if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) {
    trans = CblasTrans, ld = cs;
  } else {
    return false;
  }
  return true;
}
}  // namespace detail

// How BLAS sees the three matrices of C = A @ B; ok is false when it cannot express them.
struct BlasLayouts {
  bool ok = false;
  CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
  int64_t lda = 0, ldb = 0, ldc = 0;
};
inline BlasLayouts blas_layouts(int64_t m, int64_t n, int64_t k, int64_t a_rs, int64_t a_cs,
                                int64_t b_rs, int64_t b_cs, int64_t c_rs, int64_t c_cs) {
  BlasLayouts l;
  CBLAS_TRANSPOSE tc;
  l.ok = k > 0 && detail::blas_layout(m, k, a_rs, a_cs, l.ta, l.lda) &&
         detail::blas_layout(k, n, b_rs, b_cs, l.tb, l.ldb) &&
         detail::blas_layout(m, n, c_rs, c_cs, tc, l.ldc) && tc == CblasNoTrans;
  return l;
}

// C = A @ B (C += A @ B when accumulating) through OpenBLAS; false (nothing done) when a
// layout is not expressible in BLAS.
template <class T>
bool gemm_blas(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
               int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs, bool accumulate) {
  const BlasLayouts l = blas_layouts(m, n, k, a_rs, a_cs, b_rs, b_cs, c_rs, c_cs);
  if (!l.ok) return false;
  const T beta = accumulate ? T(1) : T(0);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, l.ta, l.tb, m, n, k, 1.0f, a, l.lda, b, l.ldb, beta, c, l.ldc);
  } else {
    cblas_dgemm(CblasRowMajor, l.ta, l.tb, m, n, k, 1.0, a, l.lda, b, l.ldb, beta, c, l.ldc);
  }
  return true;
}
#endif

namespace detail {
// The GEMM the backend uses: C = A @ B, or C += A @ B when accumulate.
template <class T>
void gemm_fast(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
               int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs, bool accumulate) {
#ifdef NEEDLE_NAIVE_GEMM
  if (accumulate) {  // the teaching loop writes C: compute the product aside, then add it
    std::vector<T> product(size_t(m * n));
    gemm_naive(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, product.data(), n, int64_t(1));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * c_rs + j * c_cs] += product[size_t(i * n + j)];
    return;
  }
  gemm_naive(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs);
#else
#ifdef NEEDLE_WITH_OPENBLAS
  if (gemm_blas(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, accumulate)) return;
#endif
  gemm_eigen(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, accumulate);
#endif
}

}  // namespace detail

// C = A @ B, by the GEMM the backend uses.
template <class T>
void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
          int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs) {
  detail::gemm_fast(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, false);
}

// C += A @ B, by the same GEMM.
template <class T>
void gemm_accumulate(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs,
                     const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t c_rs, int64_t c_cs) {
  detail::gemm_fast(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, true);
}

}  // namespace needle::cpu
