// MLPResNet and its ResidualBlock (see mlp_resnet.h). Layers are created in the Python
// version's order, so a seeded run draws the same initial values layer by layer.
#include "needle/models/mlp_resnet.h"

#include <memory>

namespace needle::models {

nn::ModulePtr batch_norm_1d(int64_t dim, const nn::LayerOptions& opts) {
  return std::make_shared<nn::BatchNorm1d>(dim, 1e-5, 0.1, opts);
}

nn::ModulePtr layer_norm_1d(int64_t dim, const nn::LayerOptions& opts) {
  return std::make_shared<nn::LayerNorm1d>(dim, 1e-5, opts);
}

ResidualBlock::ResidualBlock(int64_t dim, int64_t hidden_dim, const NormFactory& norm,
                             double drop_prob, const nn::LayerOptions& opts) {
  // BEGIN SOLUTION hw2
  auto linear1 = std::make_shared<nn::Linear>(dim, hidden_dim, true, opts);
  auto norm1 = norm(hidden_dim, opts);
  auto relu = std::make_shared<nn::ReLU>();
  auto dropout = std::make_shared<nn::Dropout>(drop_prob);
  auto linear2 = std::make_shared<nn::Linear>(hidden_dim, dim, true, opts);
  auto norm2 = norm(dim, opts);
  auto inner = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{linear1, norm1, relu, dropout, linear2, norm2});
  push_back(std::make_shared<nn::Residual>(inner));
  push_back(std::make_shared<nn::ReLU>());
  // END SOLUTION
}

MLPResNet::MLPResNet(int64_t dim, int64_t hidden_dim, int64_t num_blocks, int64_t num_classes,
                     const NormFactory& norm, double drop_prob, const nn::LayerOptions& opts) {
  // BEGIN SOLUTION hw2
  push_back(std::make_shared<nn::Linear>(dim, hidden_dim, true, opts));
  push_back(std::make_shared<nn::ReLU>());
  for (int64_t i = 0; i < num_blocks; ++i)
    push_back(std::make_shared<ResidualBlock>(hidden_dim, hidden_dim / 2, norm, drop_prob, opts));
  push_back(std::make_shared<nn::Linear>(hidden_dim, num_classes, true, opts));
  // END SOLUTION
}

}  // namespace needle::models
