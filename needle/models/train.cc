// The training loops (see train.h).
#include "needle/models/train.h"

#include <sys/stat.h>

#include <chrono>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "needle/data/mnist.h"
#include "needle/init.h"
#include "needle/needle.h"

namespace needle::models {
namespace {

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool idx_exists(const std::string& dir, const std::string& name) {
  struct stat st;
  const std::string base = dir + "/" + name;
  return ::stat((base + ".gz").c_str(), &st) == 0 || ::stat(base.c_str(), &st) == 0;
}

// Number of rows whose largest logit is not at the label.
int64_t count_errors(const Tensor& logits, const Tensor& y) {
  const std::vector<float> z = logits.to_vector<float>();
  const std::vector<float> labels = y.to_vector<float>();
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  int64_t wrong = 0;
  for (int64_t r = 0; r < n; ++r) {
    int64_t best = 0;
    for (int64_t c = 1; c < k; ++c)
      if (z[size_t(r * k + c)] > z[size_t(r * k + best)]) best = c;
    if (best != int64_t(labels[size_t(r)])) ++wrong;
  }
  return wrong;
}

}  // namespace

EpochResult run_epoch(data::DataLoader& loader, nn::Module& model, optim::Optimizer* opt,
                      int64_t max_batches, const BatchCallback& on_batch) {
  const auto start = std::chrono::steady_clock::now();
  nn::SoftmaxLoss loss_fn;
  if (opt) {
    model.train();
  } else {
    model.eval();
  }
  // Evaluation records no graph.
  const bool previous_grad_mode = set_grad_enabled(opt != nullptr);
  EpochResult r;
  double loss_sum = 0.0;
  int64_t errors = 0;
  const int64_t total =
      max_batches >= 0 ? std::min(max_batches, loader.num_batches()) : loader.num_batches();
  try {
    for (auto it = loader.begin(); it != loader.end() && r.batches < total; ++it) {
      const std::vector<Tensor> batch = *it;
      if (batch.size() < 2) fail<ValueError>("[run_epoch] batches need (inputs, labels)");
      Tensor x = batch[0];
      const int64_t n = x.shape()[0];
      x = x.reshape({n, x.size() / n});
      const Tensor& y = batch[1];
      Tensor logits = model(x);
      Tensor loss = loss_fn(logits, y);
      if (opt) {
        opt->reset_grad();
        loss.backward();
        opt->step();
      }
      const double batch_loss = loss.item();
      loss_sum += batch_loss * double(n);
      errors += count_errors(logits, y);
      r.samples += n;
      ++r.batches;
      if (on_batch) on_batch(r.batches - 1, total, batch_loss);
    }
  } catch (...) {
    set_grad_enabled(previous_grad_mode);
    throw;
  }
  set_grad_enabled(previous_grad_mode);
  if (r.samples) {
    r.mean_loss = loss_sum / double(r.samples);
    r.error_rate = double(errors) / double(r.samples);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

TrainReport train_mnist(const std::string& data_dir, const TrainOptions& o, std::ostream* log) {
  if (!is_directory(data_dir))
    fail<ValueError>("[train_mnist] data directory '", data_dir, "' does not exist");
  if (o.epochs < 0 || o.batch_size < 1 || o.hidden_dim < 2)
    fail<ValueError>("[train_mnist] need epochs >= 0, batch_size >= 1 and hidden_dim >= 2");
  manual_seed(o.seed);
  Backend* device = o.device ? o.device : &default_backend();

  // Paths are found one after the other, so a missing images file is reported first.
  const std::string train_images = data::find_idx_file(data_dir, "train-images-idx3-ubyte");
  const std::string train_labels = data::find_idx_file(data_dir, "train-labels-idx1-ubyte");
  auto train_set = std::make_shared<data::MNISTDataset>(train_images, train_labels);
  std::shared_ptr<data::MNISTDataset> test_set;
  if (idx_exists(data_dir, "t10k-images-idx3-ubyte") &&
      idx_exists(data_dir, "t10k-labels-idx1-ubyte")) {
    const std::string test_images = data::find_idx_file(data_dir, "t10k-images-idx3-ubyte");
    const std::string test_labels = data::find_idx_file(data_dir, "t10k-labels-idx1-ubyte");
    test_set = std::make_shared<data::MNISTDataset>(test_images, test_labels);
  }
  if (log)
    *log << "train: " << train_set->size() << " images of " << train_set->rows() << "x"
         << train_set->cols() << "; test: " << (test_set ? test_set->size() : 0) << " images\n";

  TrainReport report;
  const int64_t features = train_set->rows() * train_set->cols();
  report.model = std::make_shared<MLPResNet>(features, o.hidden_dim, 3, 10, batch_norm_1d, 0.1,
                                             nn::LayerOptions{device, DType::float32});
  optim::Adam opt(report.model->parameters(), o.lr, 0.9, 0.999, 1e-8, o.weight_decay);
  data::DataLoader train_loader(train_set, o.batch_size, true, device);
  std::unique_ptr<data::DataLoader> test_loader;
  if (test_set)
    test_loader = std::make_unique<data::DataLoader>(test_set, o.batch_size, false, device);

  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    report.train.push_back(run_epoch(train_loader, *report.model, &opt, o.max_batches));
    const EpochResult& tr = report.train.back();
    if (test_loader)
      report.test.push_back(run_epoch(*test_loader, *report.model, nullptr, o.max_batches));
    if (log) {  // formatted apart, so the caller's stream settings stay as they were
      std::ostringstream line;
      line << std::fixed << std::setprecision(4) << "epoch " << epoch + 1 << "/" << o.epochs
           << ": train loss " << tr.mean_loss << " acc " << tr.accuracy();
      if (test_loader)
        line << " | test loss " << report.test.back().mean_loss << " acc "
             << report.test.back().accuracy();
      line << std::setprecision(1) << " (" << tr.seconds << " s, " << std::setprecision(0)
           << double(tr.samples) / std::max(tr.seconds, 1e-9) << " images/s)\n";
      *log << line.str() << std::flush;
    }
  }
  return report;
}

}  // namespace needle::models
