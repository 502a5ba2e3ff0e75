// Trains a small MLP on MNIST-format idx files from C++ alone, built from ops: matmul,
// relu and logsoftmax make the model, autograd the gradients, and the fused adam_update op
// the optimizer step. (Modules, optimizers and datasets are Python's; a C++ program writes
// its model as ops, as here.)
//
//   build/train_mnist /usr/share/datasets/fashion-mnist [--epochs N] [--batch-size N]
//                     [--hidden N] [--lr X] [--max-batches N] [--seed N]
//                     [--load FILE.safetensors] [--save FILE.safetensors]
//
// DATA_DIR holds train-images-idx3-ubyte and train-labels-idx1-ubyte (".gz" too, when
// needle was built with zlib) and, optionally, the t10k test files. Prints per-epoch loss
// and accuracy and, with the test files, "test accuracy: 0.xxxx". The checkpoint holds
// w1 (784, hidden), b1 (hidden,), w2 (hidden, 10), b2 (10,) in float32.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#ifdef NEEDLE_WITH_ZLIB
#include <zlib.h>
#endif

#include "needle/needle.h"
#include "needle/serialize.h"

using namespace needle;

namespace {

const char* kUsage =
    "usage: train_mnist DATA_DIR [--epochs N] [--batch-size N] [--hidden N] [--lr X] "
    "[--max-batches N] [--seed N] [--load FILE] [--save FILE]";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "train_mnist: error: " << message << "\n" << kUsage << "\n";
  std::exit(2);
}

double parse_number(const std::string& flag, const std::string& value, double min) {
  try {
    size_t used = 0;
    const double v = std::stod(value, &used);
    if (used == value.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  usage_error(flag + " expects a number >= " + std::to_string(min) + ", got '" + value + "'");
}

// --- A minimal idx reader: big-endian header, then unsigned bytes ---

bool exists(const std::string& path) {
  return std::ifstream(path).good();
}

std::vector<unsigned char> read_file(const std::string& path) {
#ifdef NEEDLE_WITH_ZLIB
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files as well
  if (!f) throw RuntimeError("cannot open " + path);
  std::vector<unsigned char> out;
  unsigned char chunk[1 << 16];
  int n;
  while ((n = gzread(f, chunk, sizeof chunk)) > 0) out.insert(out.end(), chunk, chunk + n);
  gzclose(f);
  if (n < 0) throw ValueError(path + " is not a readable (gzipped) file");
  return out;
#else
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0)
    throw RuntimeError(path + " is gzipped but needle was built without zlib");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw RuntimeError("cannot open " + path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
#endif
}

// The dims of an idx file of unsigned bytes (magic 0x0000080N, N dims), and its payload.
std::vector<unsigned char> read_idx(const std::string& path, std::vector<int64_t>& dims) {
  std::vector<unsigned char> bytes = read_file(path);
  auto be32 = [&](size_t at) {
    return int64_t(bytes[at]) << 24 | int64_t(bytes[at + 1]) << 16 | int64_t(bytes[at + 2]) << 8 |
           int64_t(bytes[at + 3]);
  };
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08)
    throw ValueError(path + " is not an idx file of unsigned bytes");
  const size_t ndim = bytes[3], header = 4 + 4 * ndim;
  if (bytes.size() < header) throw ValueError(path + " is truncated");
  dims.clear();
  int64_t count = 1;
  for (size_t d = 0; d < ndim; ++d) dims.push_back(be32(4 + 4 * d)), count *= dims.back();
  if (int64_t(bytes.size() - header) != count) throw ValueError(path + " is truncated");
  return {bytes.begin() + int64_t(header), bytes.end()};
}

struct Dataset {
  std::vector<float> images;  // n x 784, scaled to [0, 1]
  std::vector<int64_t> labels;
  int64_t size() const { return int64_t(labels.size()); }
};

std::string find(const std::string& dir, const std::string& name) {
  for (const std::string& p : {dir + "/" + name, dir + "/" + name + ".gz"})
    if (exists(p)) return p;
  return "";
}

Dataset load(const std::string& images_path, const std::string& labels_path) {
  std::vector<int64_t> idims, ldims;
  std::vector<unsigned char> pixels = read_idx(images_path, idims);
  std::vector<unsigned char> labels = read_idx(labels_path, ldims);
  if (idims.size() != 3 || idims[1] * idims[2] != 784 || ldims.size() != 1 || ldims[0] != idims[0])
    throw ValueError(images_path + " and " + labels_path + " are not 28x28 images with labels");
  Dataset d;
  d.images.resize(pixels.size());
  std::transform(pixels.begin(), pixels.end(), d.images.begin(),
                 [](unsigned char p) { return float(p) / 255.0f; });
  d.labels.assign(labels.begin(), labels.end());
  for (int64_t y : d.labels)
    if (y > 9) throw ValueError(labels_path + " has a label outside 0..9");
  return d;
}

// --- The model: logits = relu(x @ w1 + b1) @ w2 + b2 ---

struct Mlp {
  std::map<std::string, Tensor> params;  // w1, b1, w2, b2 (the checkpoint's names)

  Tensor logits(const Tensor& x) const {
    const Tensor &w1 = params.at("w1"), &b1 = params.at("b1");
    const Tensor &w2 = params.at("w2"), &b2 = params.at("b2");
    const int64_t n = x.shape()[0];
    Tensor h =
        relu(matmul(x, w1) + broadcast_to(reshape(b1, {1, b1.shape()[0]}), {n, b1.shape()[0]}));
    return matmul(h, w2) + broadcast_to(reshape(b2, {1, 10}), {n, 10});
  }
};

// Kaiming-uniform weights (bound sqrt(6 / fan_in)) and zero biases, from one seeded mt19937.
Mlp init_mlp(int64_t hidden, std::mt19937& rng) {
  auto uniform = [&](int64_t fan_in, int64_t fan_out) {
    const double bound = std::sqrt(6.0 / double(fan_in));
    std::uniform_real_distribution<float> dist(-float(bound), float(bound));
    std::vector<float> v(size_t(fan_in * fan_out));
    for (float& x : v) x = dist(rng);
    return Tensor::from_vector(v, {fan_in, fan_out}, /*requires_grad=*/true);
  };
  Mlp m;
  m.params["w1"] = uniform(784, hidden);
  m.params["b1"] = Tensor::zeros({hidden}, DType::float32, default_backend(), true);
  m.params["w2"] = uniform(hidden, 10);
  m.params["b2"] = Tensor::zeros({10}, DType::float32, default_backend(), true);
  return m;
}

// A batch of rows [begin, end) of `order`: images (n, 784) and one-hot labels (n, 10).
void batch(const Dataset& d, const std::vector<int64_t>& order, int64_t begin, int64_t end,
           Tensor& x, Tensor& y_one_hot, std::vector<int64_t>& labels) {
  const int64_t n = end - begin;
  std::vector<float> xv(size_t(n * 784)), yv(size_t(n * 10), 0.0f);
  labels.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = order[size_t(begin + i)];
    std::copy_n(d.images.begin() + r * 784, 784, xv.begin() + i * 784);
    labels[size_t(i)] = d.labels[size_t(r)];
    yv[size_t(i * 10 + labels[size_t(i)])] = 1.0f;
  }
  x = Tensor::from_vector(xv, {n, 784});
  y_one_hot = Tensor::from_vector(yv, {n, 10});
}

struct Options {
  int64_t epochs = 2, batch_size = 128, hidden = 128, max_batches = 0, seed = 0;
  double lr = 1e-3;
};

// Adam's state: the moments of each parameter (undefined before its first step), the step.
struct AdamState {
  std::map<std::string, NDArray> m, v;
  int64_t t = 0;
};

// One pass over `d`, training when `adam` is given: returns (mean loss, accuracy).
std::pair<double, double> run_epoch(Mlp& model, const Dataset& d, const Options& o,
                                    std::mt19937& rng, AdamState* adam) {
  std::vector<int64_t> order(size_t(d.size()));
  std::iota(order.begin(), order.end(), 0);
  if (adam) std::shuffle(order.begin(), order.end(), rng);
  double loss_sum = 0.0;
  int64_t correct = 0, seen = 0, batches = 0;
  for (int64_t begin = 0; begin < d.size(); begin += o.batch_size) {
    if (o.max_batches && batches++ >= o.max_batches) break;
    const int64_t end = std::min(d.size(), begin + o.batch_size), n = end - begin;
    Tensor x, y;
    std::vector<int64_t> labels;
    batch(d, order, begin, end, x, y, labels);
    std::optional<NoGradGuard> no_grad;
    if (!adam) no_grad.emplace();
    Tensor logits = model.logits(x);
    // Cross-entropy: the mean over the batch of -log softmax(logits)[label].
    Tensor loss = -summation(logsoftmax(logits) * y) / double(n);
    if (adam) {
      for (auto& [name, p] : model.params) p.set_grad(Tensor());
      loss.backward();
      ++adam->t;
      for (auto& [name, p] : model.params)  // the fused Adam op; it builds no graph
        p.set_data(adam_update(p.data(), p.grad().data(), adam->m[name], adam->v[name], o.lr, 0.9,
                               0.999, 1e-8, 0.0, adam->t));
    }
    std::vector<float> z = logits.to_vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      auto row = z.begin() + i * 10;
      correct += std::max_element(row, row + 10) - row == labels[size_t(i)];
    }
    loss_sum += loss.item() * double(n);
    seen += n;
  }
  return {loss_sum / double(std::max<int64_t>(seen, 1)),
          double(correct) / double(std::max<int64_t>(seen, 1))};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string data_dir, load_path, save_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << "\n";
      return 0;
    }
    if (arg.rfind("--", 0) == 0) {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      const std::string value = argv[++i];
      if (arg == "--epochs")
        o.epochs = int64_t(parse_number(arg, value, 1));
      else if (arg == "--batch-size")
        o.batch_size = int64_t(parse_number(arg, value, 1));
      else if (arg == "--hidden")
        o.hidden = int64_t(parse_number(arg, value, 1));
      else if (arg == "--max-batches")
        o.max_batches = int64_t(parse_number(arg, value, 1));
      else if (arg == "--seed")
        o.seed = int64_t(parse_number(arg, value, 0));
      else if (arg == "--lr")
        o.lr = parse_number(arg, value, 0);
      else if (arg == "--load")
        load_path = value;
      else if (arg == "--save")
        save_path = value;
      else
        usage_error("unknown option " + arg);
    } else if (data_dir.empty()) {
      data_dir = arg;
    } else {
      usage_error("unexpected argument '" + arg + "'");
    }
  }
  if (data_dir.empty()) usage_error("missing DATA_DIR");

  try {
    const std::string train_images = find(data_dir, "train-images-idx3-ubyte");
    const std::string train_labels = find(data_dir, "train-labels-idx1-ubyte");
    if (train_images.empty() || train_labels.empty())
      throw RuntimeError("no train-images-idx3-ubyte / train-labels-idx1-ubyte in " + data_dir);
    const Dataset train = load(train_images, train_labels);
    const std::string test_images = find(data_dir, "t10k-images-idx3-ubyte");
    const std::string test_labels = find(data_dir, "t10k-labels-idx1-ubyte");

    std::mt19937 rng(uint32_t(o.seed));
    Mlp model = init_mlp(o.hidden, rng);
    if (!load_path.empty()) {
      for (auto& [name, t] : load_safetensors(load_path)) {
        auto it = model.params.find(name);
        if (it == model.params.end() || it->second.shape() != t.shape())
          throw ValueError(load_path + ": '" + name + "' does not fit this model");
        it->second.set_data(t.data().astype(DType::float32));
      }
    }
    std::cout << std::fixed << std::setprecision(4);
    AdamState adam;
    for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
      auto [loss, acc] = run_epoch(model, train, o, rng, &adam);
      std::cout << "epoch " << epoch + 1 << ": train loss " << loss << ", accuracy " << acc << "\n";
    }
    if (!test_images.empty() && !test_labels.empty()) {
      Options eval = o;
      eval.max_batches = 0;
      auto [loss, acc] = run_epoch(model, load(test_images, test_labels), eval, rng, nullptr);
      std::cout << "test loss " << loss << "\ntest accuracy: " << acc << "\n";
    }
    if (!save_path.empty()) {
      save_safetensors(model.params, save_path, {{"model", "mlp"}, {"framework", "needle"}});
      std::cout << "saved the model to " << save_path << "\n";
    }
  } catch (const Error& e) {
    std::cerr << "train_mnist: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
