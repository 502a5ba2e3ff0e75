// The CPU backend's kernels, one function per Backend method. CpuBackend (cpu_backend.cc)
// forwards here; the kernels trust that views are consistent (NDArray checked them).
// Defined by family: compact.cc (fill, copy), ewise.cc, reduce.cc, matmul.cc, index.cc. The fused
// kernels (conv.cc, optim.cc) and the thread setting (threads.cc) are not listed here: they
// register themselves in the kernel registry (needle/kernels.h) from their own files.
#pragma once

#include "needle/backend.h"

namespace needle::cpu {

void fill(const View& out, double value);
void copy(const View& in, const View& out);
void unary(UnaryOp op, const View& a, const View& out);
void binary(BinaryOp op, const View& a, const View& b, const View& out);
void binary_scalar(BinaryOp op, const View& a, double s, const View& out, bool scalar_on_left);
void reduce(ReduceOp op, const View& a, const View& out);
void matmul(const View& a, const View& b, const View& out);
// Integer-array indexing (index.cc); see Backend::gather.
void gather(const View& a, const View& index, int64_t axis, const View& out);
void scatter_add(const View& values, const View& index, int64_t axis, const View& out);
// matmul through the teaching GEMMs of gemm.h, gemm_naive and gemm_tiled (floats; integer
// dtypes keep their own loop), whatever NEEDLE_NAIVE_GEMM says: lets tests check them
// without including Eigen (see gemm.h) into code built with other compiler flags.
void matmul_naive(const View& a, const View& b, const View& out);
void matmul_tiled(const View& a, const View& b, const View& out);
}  // namespace needle::cpu
