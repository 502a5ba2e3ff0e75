// Host entry points of the CUDA kernels, one per Backend kernel method, grouped by the file
// that defines them. CudaBackend (cuda_backend.cu) checks that a device is present and then
// forwards here; each entry point trusts its views (NDArray validated them), picks the
// dtype and launches. The fused kernels (conv.cu, pool.cu) are not listed here: they
// register themselves in the kernel registry (needle/kernels.h) from their own files.
#pragma once

#include "needle/backend.h"

namespace needle::cuda {

// compact.cu
void fill(const View& out, double value);
void copy(const View& in, const View& out);

// ewise.cu
void unary(UnaryOp op, const View& a, const View& out);
void binary(BinaryOp op, const View& a, const View& b, const View& out);
void binary_scalar(BinaryOp op, const View& a, double s, const View& out, bool scalar_on_left);

// reduce.cu
void reduce(ReduceOp op, const View& a, const View& out);

// matmul.cu
void matmul(const View& a, const View& b, const View& out);

// index.cu
void gather(const View& a, const View& index, int64_t axis, const View& out);
void scatter_add(const View& values, const View& index, int64_t axis, const View& out);

}  // namespace needle::cuda
