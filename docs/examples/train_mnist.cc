// Trains the course's MLPResNet on MNIST-format idx files from C++ alone:
//
//   build/train_mnist /usr/share/datasets/fashion-mnist [--epochs N] [--batch-size N]
//                     [--lr X] [--max-batches N] [--seed N] [--save FILE.safetensors]
//
// DATA_DIR holds train-images-idx3-ubyte and train-labels-idx1-ubyte (".gz" or plain) and,
// optionally, the t10k test files. Prints per-epoch loss and accuracy and, with the test
// files, the final "test accuracy: 0.xxxx". The training loop is needle::models::train_mnist,
// the same code the tests run on a small generated dataset.
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>

#include "needle/models/train.h"
#include "needle/serialize.h"

namespace {

const char* kUsage =
    "usage: train_mnist DATA_DIR [--epochs N] [--batch-size N] [--lr X] [--max-batches N] "
    "[--seed N] [--save FILE]";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "train_mnist: error: " << message << "\n" << kUsage << "\n";
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min) {
  try {
    size_t used = 0;
    const long long v = std::stoll(value, &used);
    if (used == value.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  usage_error(flag + " expects an integer >= " + std::to_string(min) + ", got '" + value + "'");
}

double parse_positive(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    const double v = std::stod(value, &used);
    if (used == value.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  usage_error(flag + " expects a positive number, got '" + value + "'");
}

}  // namespace

int main(int argc, char** argv) {
  needle::models::TrainOptions options;
  std::string data_dir, save_path;
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
        options.epochs = parse_int(arg, value, 1);
      else if (arg == "--batch-size")
        options.batch_size = parse_int(arg, value, 1);
      else if (arg == "--max-batches")
        options.max_batches = parse_int(arg, value, 1);
      else if (arg == "--seed")
        options.seed = uint64_t(parse_int(arg, value, 0));
      else if (arg == "--lr")
        options.lr = parse_positive(arg, value);
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
    const needle::models::TrainReport report =
        needle::models::train_mnist(data_dir, options, &std::cout);
    std::cout << std::fixed << std::setprecision(4);
    if (!report.test.empty())
      std::cout << "test accuracy: " << report.test.back().accuracy() << "\n";
    else if (!report.train.empty())
      std::cout << "train accuracy: " << report.train.back().accuracy() << "\n";
    if (!save_path.empty()) {
      needle::save_safetensors(report.model->state_dict(), save_path,
                               {{"model", "MLPResNet"}, {"framework", "needle"}});
      std::cout << "saved the model to " << save_path << "\n";
    }
  } catch (const needle::Error& e) {
    std::cerr << "train_mnist: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
