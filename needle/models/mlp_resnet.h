// The course's MLP ResNet (homework 2): residual blocks of Linear / norm / ReLU / Dropout.
//
// Both are Sequentials laid out exactly as python/needle/apps/mlp_resnet.py builds them, so
// parameters get the same dotted names ("modules.2.modules.0.fn.modules.0.weight") and are
// initialized in the same order: a checkpoint moves between C++ and Python unchanged.
#pragma once

#include <functional>

#include "needle/nn/basic.h"

namespace needle::models {

// Makes the normalization layer of a given width (BatchNorm1d by default).
using NormFactory = std::function<nn::ModulePtr(int64_t dim, const nn::LayerOptions& opts)>;
nn::ModulePtr batch_norm_1d(int64_t dim, const nn::LayerOptions& opts);
nn::ModulePtr layer_norm_1d(int64_t dim, const nn::LayerOptions& opts);

// ReLU(x + norm(Linear(Dropout(ReLU(norm(Linear(x))))))), dim -> hidden_dim -> dim:
// Sequential(Residual(Sequential(Linear, norm, ReLU, Dropout, Linear, norm)), ReLU).
class ResidualBlock : public nn::Sequential {
 public:
  ResidualBlock(int64_t dim, int64_t hidden_dim, const NormFactory& norm = batch_norm_1d,
                double drop_prob = 0.1, const nn::LayerOptions& opts = {});
  std::string type_name() const override { return "ResidualBlock"; }
};

// Linear(dim, hidden) -> ReLU -> num_blocks x ResidualBlock(hidden, hidden / 2) ->
// Linear(hidden, num_classes). Input (batch, dim), output logits (batch, num_classes).
class MLPResNet : public nn::Sequential {
 public:
  explicit MLPResNet(int64_t dim, int64_t hidden_dim = 100, int64_t num_blocks = 3,
                     int64_t num_classes = 10, const NormFactory& norm = batch_norm_1d,
                     double drop_prob = 0.1, const nn::LayerOptions& opts = {});
  std::string type_name() const override { return "MLPResNet"; }
};

}  // namespace needle::models
