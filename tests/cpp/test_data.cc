// needle::data and the C++ training path: idx files (plain and gzipped) written by the
// test, every malformed-file error, MNISTDataset, DataLoader batching and seeded
// shuffling, the real Fashion-MNIST files when installed, and models::train_mnist (the
// code behind docs/examples/train_mnist) reducing the loss on a small generated dataset.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "needle/data/dataloader.h"
#include "needle/data/mnist.h"
#include "needle/init.h"
#include "needle/models/train.h"
#include "temp_dir.h"

using namespace needle;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using needle::testing::TempDir;

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

// A learnable MNIST-like set: class c lights up a horizontal band of rows plus noise.
void write_synthetic_mnist(const TempDir& dir, const std::string& prefix, int64_t count,
                           uint64_t seed) {
  Generator g(seed);
  std::vector<uint8_t> images(static_cast<size_t>(count * 28 * 28));
  std::vector<uint8_t> labels(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t c = g.randint(10);
    labels[size_t(i)] = uint8_t(c);
    for (int64_t r = 0; r < 28; ++r)
      for (int64_t col = 0; col < 28; ++col) {
        double v = 40.0 * g.uniform();
        if (r >= 2 * c + 4 && r < 2 * c + 7) v += 200.0;
        images[size_t((i * 28 + r) * 28 + col)] = uint8_t(std::min(v, 255.0));
      }
  }
  const std::string ext = data::gzip_supported() ? ".gz" : "";
  data::write_idx(dir / (prefix + "-images-idx3-ubyte" + ext), {count, 28, 28}, images);
  data::write_idx(dir / (prefix + "-labels-idx1-ubyte" + ext), {count}, labels);
}

}  // namespace

TEST_CASE("idx files round-trip, plain and gzipped", "[data][hw2]") {
  TempDir dir;
  std::vector<uint8_t> values(2 * 3 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = uint8_t(i * 10);
  data::write_idx(dir / "a.idx", {2, 3, 4}, values);
  auto bytes = read_bytes(dir / "a.idx");
  REQUIRE(bytes.size() == 4 + 3 * 4 + 24);
  CHECK(bytes[2] == 0x08);
  CHECK(bytes[3] == 3);
  CHECK(bytes[7] == 2);  // big-endian dimension
  data::IdxArray a = data::read_idx(dir / "a.idx");
  CHECK(a.shape == Shape{2, 3, 4});
  CHECK(a.data == values);

  if (data::gzip_supported()) {
    data::write_idx(dir / "a.idx.gz", {2, 3, 4}, values);
    auto gz = read_bytes(dir / "a.idx.gz");
    CHECK(gz[0] == 0x1f);
    CHECK(gz[1] == 0x8b);
    data::IdxArray b = data::read_idx(dir / "a.idx.gz");
    CHECK(b.shape == a.shape);
    CHECK(b.data == values);
  } else {
    WARN("built without zlib: gzip cases skipped");
  }
}

TEST_CASE("malformed idx files are ValueErrors naming the file", "[data][hw2]") {
  TempDir dir;
  const std::vector<uint8_t> good{0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9};
  auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& what) {
    const std::string path = dir / "bad.idx";
    write_bytes(path, bytes);
    CHECK_THROWS_AS(data::read_idx(path), ValueError);
    CHECK_THROWS_WITH(data::read_idx(path), Contains(path) && Contains(what));
  };
  write_bytes(dir / "good.idx", good);
  CHECK(data::read_idx(dir / "good.idx").data == std::vector<uint8_t>{7, 8, 9});
  expect_error({1, 2, 8, 1, 0, 0, 0, 3, 7, 8, 9}, "wrong magic number");
  expect_error({0, 0, 8, 0}, "wrong magic number");
  expect_error({0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0}, "unsupported idx element type");
  expect_error({0, 0, 8}, "too short");
  expect_error({0, 0, 8, 2, 0, 0, 0, 3}, "truncated header");
  expect_error({0, 0, 8, 1, 0, 0, 0, 3, 7, 8}, "truncated data");
  expect_error({0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9, 10}, "unexpected bytes");
  expect_error({0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff}, "truncated data");
  CHECK_THROWS_WITH(data::read_idx(dir / "missing.idx"), Contains("missing.idx"));

  if (data::gzip_supported()) {
    data::write_idx(dir / "v.idx.gz", {300}, std::vector<uint8_t>(300, 5));
    auto gz = read_bytes(dir / "v.idx.gz");
    // Truncated at every length: always a clean error.
    for (size_t len = 0; len < gz.size(); len += 3) {
      std::vector<uint8_t> cut(gz.begin(), gz.begin() + std::ptrdiff_t(len));
      const std::string path = dir / "cut.idx.gz";
      write_bytes(path, cut);
      INFO("length " << len);
      CHECK_THROWS_AS(data::read_idx(path), ValueError);
    }
    std::vector<uint8_t> cut(gz.begin(), gz.end() - 8);
    expect_error(cut, "truncated gzip data");
    std::vector<uint8_t> corrupt = gz;
    corrupt[12] ^= 0xff;
    corrupt[13] ^= 0xff;
    write_bytes(dir / "corrupt.idx.gz", corrupt);
    CHECK_THROWS_AS(data::read_idx(dir / "corrupt.idx.gz"), ValueError);
  }
}

TEST_CASE("parse_mnist and MNISTDataset", "[data][hw2]") {
  TempDir dir;
  std::vector<uint8_t> images(3 * 2 * 2);
  for (size_t i = 0; i < images.size(); ++i) images[i] = uint8_t(i * 20);
  data::write_idx(dir / "img", {3, 2, 2}, images);
  data::write_idx(dir / "lbl", {3}, {4, 0, 9});
  data::MnistData d = data::parse_mnist(dir / "img", dir / "lbl");
  CHECK(d.count == 3);
  CHECK(d.rows == 2);
  CHECK(d.images[1] == Approx(20.0f / 255.0f));
  CHECK(d.labels == std::vector<uint8_t>{4, 0, 9});

  data::MNISTDataset ds(dir / "img", dir / "lbl");
  CHECK(ds.size() == 3);
  CHECK(ds.item_shape(0) == Shape{2, 2, 1});
  CHECK(ds.item_shape(1) == Shape{});
  auto batch = ds.get_batch({2, 0}, default_backend(), DType::float32);
  CHECK(batch[0].shape() == Shape{2, 2, 2, 1});
  CHECK(batch[1].to_vector<float>() == std::vector<float>{9, 4});
  CHECK(batch[0].to_vector<float>()[0] == Approx(160.0f / 255.0f));

  data::write_idx(dir / "lbl4", {4}, {1, 2, 3, 4});
  CHECK_THROWS_WITH(data::parse_mnist(dir / "img", dir / "lbl4"),
                    Contains("3 images") && Contains("4 labels"));
  CHECK_THROWS_WITH(data::parse_mnist(dir / "lbl", dir / "lbl"), Contains("(count, rows, cols)"));
  CHECK_THROWS_WITH(data::find_idx_file(dir.path.string(), "nothing"), Contains("nothing.gz"));
  CHECK(data::find_idx_file(dir.path.string(), "img") == dir / "img");
}

TEST_CASE("DataLoader: batches, the short last batch, seeded shuffling", "[data][hw2]") {
  std::vector<float> xs(10 * 2), ys(10);
  for (int i = 0; i < 10; ++i) {
    xs[size_t(2 * i)] = float(i);
    xs[size_t(2 * i + 1)] = float(-i);
    ys[size_t(i)] = float(i % 3);
  }
  auto ds = std::make_shared<data::ArrayDataset>(
      std::vector<data::ArrayDataset::Field>{{{2}, xs}, {{}, ys}});
  data::DataLoader plain(ds, 4);
  CHECK(plain.num_batches() == 3);
  std::vector<Shape> shapes;
  std::vector<float> firsts;
  for (const auto& batch : plain) {
    shapes.push_back(batch[0].shape());
    firsts.push_back(batch[0].to_vector<float>()[0]);
    CHECK_FALSE(batch[0].requires_grad());
  }
  CHECK(shapes == std::vector<Shape>{{4, 2}, {4, 2}, {2, 2}});  // last short batch kept
  CHECK(firsts == std::vector<float>{0, 4, 8});

  manual_seed(123);
  data::DataLoader shuffled(ds, 3, true);
  auto order_of = [&] {
    std::vector<int64_t> ids;  // column 0 of each item is its index
    for (const auto& batch : shuffled) {
      const auto x = batch[0].to_vector<float>();
      for (size_t i = 0; i < x.size(); i += 2) ids.push_back(int64_t(x[i]));
    }
    return ids;
  };
  const auto first = order_of();
  const auto second = order_of();
  CHECK(std::set<int64_t>(first.begin(), first.end()).size() == 10);
  CHECK(first != second);  // a new order every pass
  manual_seed(123);
  CHECK(order_of() == first);  // reproducible from the seed
  CHECK(shuffled.order().size() == 10);

  CHECK_THROWS_AS(data::DataLoader(ds, 0), ValueError);
  CHECK_THROWS_AS(plain.batch(3), IndexError);
  CHECK_THROWS_AS(data::ArrayDataset({{{2}, {1, 2, 3}}}), ValueError);
  CHECK_THROWS_AS(data::ArrayDataset({{{2}, {1, 2}}, {{}, {1, 2}}}), ValueError);
}

TEST_CASE("the real Fashion-MNIST files load when installed", "[data][hw2]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-labels-idx1-ubyte.gz") || !data::gzip_supported()) {
    WARN("Fashion-MNIST not installed (or no zlib): skipped");
    return;
  }
  data::MNISTDataset test(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
  CHECK(test.size() == 10000);
  CHECK(test.rows() == 28);
  CHECK(test.cols() == 28);
  auto batch = test.get_batch({0, 1}, default_backend(), DType::float32);
  for (float v : batch[0].to_vector<float>()) CHECK((v >= 0.0f && v <= 1.0f));
  for (float y : batch[1].to_vector<float>()) CHECK((y >= 0 && y <= 9));
}

TEST_CASE("train_mnist (the C++ example's loop) reduces the loss", "[data][models][hw2]") {
  TempDir dir;
  write_synthetic_mnist(dir, "train", 400, 1);
  write_synthetic_mnist(dir, "t10k", 100, 2);
  models::TrainOptions o;
  o.epochs = 3;
  o.batch_size = 50;
  o.hidden_dim = 32;
  o.lr = 0.01;
  o.seed = 7;
  std::ostringstream log;
  models::TrainReport r = models::train_mnist(dir.path.string(), o, &log);
  REQUIRE(r.train.size() == 3);
  REQUIRE(r.test.size() == 3);
  CHECK(r.train[0].samples == 400);
  CHECK(r.train[0].batches == 8);
  CHECK(r.train.back().mean_loss < 0.7 * r.train.front().mean_loss);
  CHECK(r.test.back().accuracy() > 0.5);
  CHECK_THAT(log.str(), Contains("epoch 3/3"));

  // Same seed, same result.
  models::TrainOptions quick = o;
  quick.epochs = 1;
  quick.max_batches = 2;
  auto a = models::train_mnist(dir.path.string(), quick);
  auto b = models::train_mnist(dir.path.string(), quick);
  CHECK(a.train[0].batches == 2);
  CHECK(a.train[0].mean_loss == b.train[0].mean_loss);

  CHECK_THROWS_WITH(models::train_mnist((dir / "nope")), Contains("does not exist"));
  TempDir empty;
  CHECK_THROWS_WITH(models::train_mnist(empty.path.string()), Contains("train-images-idx3-ubyte"));
}

TEST_CASE("the train_mnist example runs and fails cleanly", "[data][models][example]") {
  const fs::path exe = fs::path("build") / "train_mnist";
  fs::path found;
  for (const fs::path& p : {exe, fs::path("train_mnist"), fs::path("../build/train_mnist")})
    if (fs::exists(p)) found = p;
  if (found.empty()) {
    WARN("train_mnist executable not found from " << fs::current_path() << ": skipped");
    return;
  }
  TempDir dir;
  write_synthetic_mnist(dir, "train", 60, 3);
  const std::string out = dir / "out.txt";
  const std::string cmd = found.string() + " " + dir.path.string() +
                          " --max-batches 2 --batch-size 20 > " + out + " 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Contains("epoch 1/1"));
  const std::string bad = found.string() + " " + (dir / "missing") + " > " + out + " 2>&1";
  CHECK(std::system(bad.c_str()) != 0);
  std::ifstream in2(out);
  const std::string err((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
  CHECK_THAT(err, Contains("error:") && Contains("does not exist"));
}
