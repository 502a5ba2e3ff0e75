// Umbrella header: the whole C++ API of Needle's core (NDArray, Tensor, autograd, ops,
// the fused-kernel registry); checkpoints are in needle/serialize.h.
//
//   #include "needle/needle.h"
//   needle::Tensor x = needle::Tensor::ones({2, 3}, needle::DType::float32).set_requires_grad();
//   needle::Tensor y = (x * x + 1.0).sum();
//   y.backward();  // x.grad() == 2 * x
#pragma once

#include "needle/autograd.h"
#include "needle/distributed/distributed.h"
#include "needle/kernels.h"
#include "needle/ndarray.h"
#include "needle/ops/op.h"
#include "needle/ops/ops_attention.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_group_norm.h"
#include "needle/ops/ops_index.h"
#include "needle/ops/ops_linalg.h"
#include "needle/ops/ops_loss.h"
#include "needle/ops/ops_nn.h"
#include "needle/ops/ops_norm.h"
#include "needle/ops/ops_optim.h"
#include "needle/ops/ops_reduce.h"
#include "needle/ops/ops_rnn.h"
#include "needle/ops/ops_shape.h"
#include "needle/ops/ops_tuple.h"
#include "needle/tensor.h"
