// cuBLAS plumbing shared by the CUDA files that call it (matmul.cu, conv.cu): the status
// check that turns a failed call into needle::RuntimeError naming the op, the one process-
// wide handle, and typed wrappers that pick the float or double routine by overload.
#pragma once

#include <cublas_v2.h>

#include <mutex>

#include "needle/error.h"

namespace needle::cuda {

#define NEEDLE_CUBLAS_CHECK(op, expr)                                                          \
  do {                                                                                         \
    cublasStatus_t needle_cublas_status_ = (expr);                                             \
    if (needle_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                      \
      ::needle::fail<::needle::RuntimeError>("[cuda] ", (op), ": cuBLAS ",                     \
                                             cublasGetStatusName(needle_cublas_status_), ": ", \
                                             cublasGetStatusString(needle_cublas_status_));    \
    }                                                                                          \
  } while (0)

// Created on first use (a failure names `op`, the caller) and kept for the life of the
// process (destroying it at exit could run after the CUDA runtime has shut down). Inline,
// so every file shares this one handle.
// It runs on the default stream, as the hand-written kernels do, so GEMMs and kernels are
// ordered without extra synchronization.
inline cublasHandle_t cublas_handle(const char* op) {
  static std::mutex mutex;
  static cublasHandle_t handle = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (!handle) NEEDLE_CUBLAS_CHECK(op, cublasCreate(&handle));
  return handle;
}

// Column-major C (m x n) = alpha op(A) (m x k) op(B) (k x n) + beta C, as cublas<t>gemm.
inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* a, int lda,
                           const float* b, int ldb, const float* beta, float* c, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const double* alpha, const double* a, int lda,
                           const double* b, int ldb, const double* beta, double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace needle::cuda
