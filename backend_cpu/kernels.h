// The CPU backend's kernels, one function per Backend method. CpuBackend (cpu_backend.cc)
// checks arguments and forwards here; the kernels trust that views are consistent.
// Defined by family: compact.cc (fill, copy), ewise.cc, reduce.cc, matmul.cc, index.cc,
// conv.cc, optim.cc.
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
// matmul through gemm_naive, whatever NEEDLE_NAIVE_GEMM says: lets tests check the teaching
// GEMM without including Eigen (see gemm.h) into code built with other compiler flags.
void matmul_naive(const View& a, const View& b, const View& out);
// Fused NHWC convolution and its weight gradient (conv.cc); see Backend::conv2d.
void conv2d(const View& x, const View& w, int64_t stride, int64_t padding, const View& out);
void conv2d_weight_grad(const View& x, const View& grad, int64_t stride, int64_t padding,
                        const View& out);
// One fused Adam step (optim.cc); see Backend::adam_step.
void adam_step(const View& param, const View& grad, const View& m, const View& v,
               const View& param_out, const AdamStep& step);

}  // namespace needle::cpu
