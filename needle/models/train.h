// Training and evaluation loops for the MNIST-format MLPResNet, shared by the C++ example
// (docs/examples/train_mnist.cc) and the tests, so the example's code path is tested.
//
// run_epoch is the course's epoch(): one pass over a loader, training when given an
// optimizer (model.train()), evaluating otherwise (model.eval(), no graph). train_mnist is
// the course's train_mnist() reading idx files from a directory, with optional limits for
// quick runs.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "needle/data/dataloader.h"
#include "needle/models/mlp_resnet.h"
#include "needle/optim/optimizer.h"

namespace needle::models {

struct EpochResult {
  double error_rate = 0.0;  // wrong predictions / samples
  double mean_loss = 0.0;   // mean SoftmaxLoss over samples
  int64_t samples = 0, batches = 0;
  double seconds = 0.0;
  double accuracy() const { return 1.0 - error_rate; }
};

// Called after each batch with (batch index, batches in this pass, the batch's loss).
using BatchCallback = std::function<void(int64_t, int64_t, double)>;

// One pass over `loader` (at most max_batches batches when >= 0). The first field of each
// batch is flattened to (batch, features); the second holds the class labels.
EpochResult run_epoch(data::DataLoader& loader, nn::Module& model, optim::Optimizer* opt,
                      int64_t max_batches = -1, const BatchCallback& on_batch = {});

struct TrainOptions {
  int64_t epochs = 1;
  int64_t batch_size = 100;
  int64_t hidden_dim = 100;
  int64_t max_batches = -1;  // per pass, for quick runs; -1 = all
  double lr = 0.001;
  double weight_decay = 0.001;
  uint64_t seed = 0;
  Backend* device = nullptr;  // null = the default device
};

struct TrainReport {
  std::vector<EpochResult> train;  // one per epoch
  std::vector<EpochResult> test;   // one per epoch, empty without t10k files
  std::shared_ptr<MLPResNet> model;
};

// Trains MLPResNet(rows * cols, hidden_dim) with Adam on `data_dir`'s
// train-images-idx3-ubyte / train-labels-idx1-ubyte (".gz" or plain), evaluating on the
// t10k files after each epoch when they exist. Progress lines go to `log` when given.
// ValueError when the directory or the training files are missing or malformed.
TrainReport train_mnist(const std::string& data_dir, const TrainOptions& options = {},
                        std::ostream* log = nullptr);

}  // namespace needle::models
