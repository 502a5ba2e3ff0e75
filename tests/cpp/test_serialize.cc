// needle/serialize: safetensors round trips, the header layout read by hand, every kind of
// damaged file (a ValueError naming the file, never a crash — including truncation at
// every length and random byte flips), atomic writes that leave the old file intact when
// a write fails mid-way, and a checkpoint of a model written as ops giving identical
// outputs after loading.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "gradcheck.h"
#include "needle/serialize.h"
#include "temp_dir.h"

using namespace needle;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using needle::testing::TempDir;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A file made of an 8-byte length, `header` and `data`.
std::string file_with(const std::string& header, const std::string& data, int64_t length = -1) {
  uint64_t n = length >= 0 ? uint64_t(length) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

ArrayDict sample_arrays(Backend& dev) {
  ArrayDict d;
  d["w"] = NDArray::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}, dev);
  d["b.bias"] = NDArray::from_vector(std::vector<double>{-0.5, 0.25}, {2}, dev);
  d["scalar"] = NDArray::from_vector(std::vector<float>{7}, {}, dev);
  d["empty"] = NDArray::from_vector(std::vector<float>{}, {0, 3}, dev);
  d["odd \"name\"\n\xc3\xa9"] = NDArray::from_vector(std::vector<float>{9}, {1}, dev);
  return d;
}

}  // namespace

TEST_CASE("safetensors round trip: dtypes, shapes, odd names, metadata", "[serialize]") {
  for (Backend* dev : testing::usable_backends()) {
    INFO("device " << dev->name());
    TempDir dir;
    const std::string path = dir / "a.safetensors";
    ArrayDict in = sample_arrays(*dev);
    // A non-contiguous view is saved by value.
    in["view"] = NDArray::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, *dev).permute({1, 0});
    save_safetensors(in, path, {{"format", "pt"}, {"note", "q\"uote"}});
    Metadata meta;
    ArrayDict out = load_safetensors_arrays(path, *dev, &meta);
    REQUIRE(out.size() == in.size());
    for (auto& [name, a] : in) {
      INFO("tensor " << name);
      REQUIRE(out.count(name));
      CHECK(out[name].shape() == a.shape());
      CHECK(out[name].dtype() == a.dtype());
      CHECK(&out[name].device() == dev);
      CHECK(out[name].to_vector<double>() == a.to_vector<double>());
    }
    CHECK(out["view"].to_vector<float>() == std::vector<float>{1, 3, 2, 4});
    CHECK(meta == Metadata{{"format", "pt"}, {"note", "q\"uote"}});

    TensorDict tensors = load_safetensors(path, *dev);
    CHECK_FALSE(tensors["w"].requires_grad());
    CHECK(dir.count_files() == 1);  // no temporary left behind
  }
}

TEST_CASE("the header layout is standard safetensors", "[serialize]") {
  TempDir dir;
  const std::string path = dir / "h.safetensors";
  ArrayDict d;
  d["a"] = NDArray::from_vector(std::vector<float>{1.5f, -2.0f}, {2});
  d["b"] = NDArray::from_vector(std::vector<double>{3.0}, {1, 1});
  save_safetensors(d, path, {{"k", "v"}});
  const std::string bytes = read_all(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  CHECK(n % 8 == 0);
  REQUIRE(8 + n + 16 == bytes.size());
  const std::string header = bytes.substr(8, n);
  CHECK(header.front() == '{');
  CHECK_THAT(header, Contains(R"("__metadata__":{"k":"v"})"));
  // float64 first (alignment), then float32.
  CHECK_THAT(header, Contains(R"("b":{"dtype":"F64","shape":[1,1],"data_offsets":[0,8]})"));
  CHECK_THAT(header, Contains(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})"));
  double b;
  std::memcpy(&b, bytes.data() + 8 + n, 8);
  CHECK(b == 3.0);
  float a[2];
  std::memcpy(a, bytes.data() + 8 + n + 8, 8);
  CHECK(a[0] == 1.5f);
  CHECK(a[1] == -2.0f);

  // A file written by another tool (unpadded header, extra whitespace, escapes) loads.
  const std::string other = file_with(
      "{\"x\" : {\"shape\": [2], \"dtype\": \"F32\", \"data_offsets\": [0, 8]},"
      " \"\\u00e9\\ud83d\\ude00\": {\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]}}",
      std::string("\0\0\x80\x3f\0\0\0\x40", 8) + std::string("\0\0\0\0\0\0\xf0\x3f", 8));
  write_all(dir / "other", other);
  ArrayDict o = load_safetensors_arrays(dir / "other");
  CHECK(o["x"].to_vector<float>() == std::vector<float>{1.0f, 2.0f});
  CHECK(o["\xc3\xa9\xf0\x9f\x98\x80"].item() == 1.0);
}

TEST_CASE("damaged or foreign files are ValueErrors naming the file", "[serialize]") {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  const std::string f32x2 = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  auto expect = [&](const std::string& bytes, const std::string& what) {
    write_all(path, bytes);
    INFO("expecting: " << what);
    CHECK_THROWS_AS(load_safetensors_arrays(path), ValueError);
    CHECK_THROWS_WITH(load_safetensors_arrays(path), Contains(path) && Contains(what));
  };
  write_all(path, file_with(f32x2, std::string(8, '\0')));
  CHECK(load_safetensors_arrays(path).size() == 1);

  expect("", "too short");
  expect("abc", "too short");
  expect("hello world, this is text", "not a safetensors file");
  expect(file_with(f32x2, std::string(8, '\0'), 1000), "truncated");
  expect(file_with(f32x2, std::string(4, '\0')), "beyond the 4 data bytes");
  expect(file_with(f32x2, std::string(12, '\0')), "4 trailing bytes");
  expect(file_with("[1, 2]", ""), "not a safetensors file");
  expect(file_with("{\"t\": ", ""), "corrupt header");
  expect(file_with("{\"t\":{}} x", ""), "corrupt header");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", ""),
         "corrupt header");
  expect(file_with(std::string(200, '[') + std::string(200, ']'), ""), "not a safetensors file");
  expect(file_with("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", ""),
         "nesting too deep");
  expect(file_with("{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd"),
         "dtype F16");
  expect(file_with("{\"t\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd"),
         "unknown dtype 'Q9'");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                   std::string(8, '\0')),
         "needs 12 bytes");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
                   std::string(8, '\0')),
         "non-negative integer");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
                   std::string(8, '\0')),
         "end before begin");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999,99999999999,99999999999]"
                   ",\"data_offsets\":[0,8]}}",
                   std::string(8, '\0')),
         "too many");
  expect(file_with(
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,184467440737095516160]}}",
             ""),
         "too large");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", ""), "lacks field 'data_offsets'");
  expect(file_with("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}",
                   std::string(8, '\0')),
         "unknown field 'x'");
  expect(file_with("{\"t\":[1]}", ""), "must be a JSON object");
  expect(file_with("{\"__metadata__\":{\"k\":1}}", ""), "not a string");
  const std::string two =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  expect(file_with(two, std::string(12, '\0')), "overlap");
  const std::string gap =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
  expect(file_with(gap, std::string(12, '\0')), "belong to no tensor");
  const std::string dup =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  expect(file_with(dup, std::string(8, '\0')), "names 'a' twice");
  CHECK_THROWS_WITH(load_safetensors_arrays(dir / "missing.safetensors"),
                    Contains("missing.safetensors") && Contains("cannot open"));
}

TEST_CASE("truncation at every length and random corruption never crash", "[serialize]") {
  TempDir dir;
  const std::string path = dir / "good.safetensors";
  save_safetensors(sample_arrays(default_backend()), path, {{"a", "b"}});
  const std::string good = read_all(path);
  for (size_t len = 0; len < good.size(); ++len) {
    write_all(dir / "cut", good.substr(0, len));
    INFO("length " << len);
    CHECK_THROWS_AS(load_safetensors_arrays(dir / "cut"), ValueError);
  }
  std::mt19937 g(5);
  std::uniform_int_distribution<size_t> where(0, good.size() - 1);
  std::uniform_int_distribution<int> flip(1, 255);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bad = good;
    for (int k = 0; k < 3; ++k) bad[where(g)] ^= char(flip(g));
    write_all(dir / "flip", bad);
    try {
      load_safetensors_arrays(dir / "flip");
      ++loaded;  // a flip inside the data is undetectable, and fine
    } catch (const ValueError&) {
      ++refused;
    }
  }
  CHECK(loaded + refused == 300);
  CHECK(refused > 0);
}

TEST_CASE("saving is atomic: a failed write keeps the old file and leaves no temp", "[serialize]") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  ArrayDict small;
  small["x"] = NDArray::from_vector(std::vector<float>{1, 2}, {2});
  save_safetensors(small, path);
  const std::string before = read_all(path);

  ArrayDict big;
  big["y"] = NDArray::full({1 << 18}, 1.0);  // 1 MiB
  // Make the write fail half-way: a 64 KiB file-size limit (EFBIG instead of SIGXFSZ).
  struct rlimit old_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  bool threw = false;
  std::string message;
  try {
    save_safetensors(big, path);
  } catch (const RuntimeError& e) {
    threw = true;
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK_THAT(message, Contains(path) && Contains("write failed"));
  CHECK(read_all(path) == before);  // the old checkpoint is intact
  CHECK(dir.count_files() == 1);    // and no partial temporary remains

  save_safetensors(big, path);  // without the limit it succeeds and replaces the file
  CHECK(load_safetensors_arrays(path).at("y").size() == 1 << 18);

  CHECK_THROWS_WITH(save_safetensors(small, dir / "no/such/dir/x.safetensors"),
                    Contains("no/such/dir/x.safetensors"));
  ArrayDict reserved;
  reserved["__metadata__"] = small["x"];
  CHECK_THROWS_AS(save_safetensors(reserved, dir / "r"), ValueError);
  CHECK_FALSE(fs::exists(dir / "r"));
}

TEST_CASE("a model checkpoint reproduces the outputs", "[serialize]") {
  // A model written as ops (C++ has no module classes): relu(x @ w1 + b1) @ w2.
  TempDir dir;
  auto model = [](const TensorDict& p, const Tensor& x) {
    Tensor h = relu(matmul(x, p.at("w1")) + broadcast_to(p.at("b1"), {5, 8}));
    return matmul(h, p.at("w2"));
  };
  auto random_params = [](int64_t hidden) {
    TensorDict p;
    p["w1"] = testing::random_tensor({12, hidden}, default_backend(), DType::float32);
    p["b1"] = testing::random_tensor({hidden}, default_backend(), DType::float32);
    p["w2"] = testing::random_tensor({hidden, 4}, default_backend(), DType::float32);
    return p;
  };
  TensorDict params = random_params(8);
  Tensor x = testing::random_tensor({5, 12}, default_backend(), DType::float32, false);
  const auto want = model(params, x).to_vector<float>();
  save_safetensors(params, dir / "m.safetensors", {{"model", "mlp"}});

  TensorDict fresh = random_params(8);
  CHECK(model(fresh, x).to_vector<float>() != want);
  Metadata meta;
  TensorDict loaded = load_safetensors(dir / "m.safetensors", default_backend(), &meta);
  CHECK(meta.at("model") == "mlp");
  for (auto& [name, t] : loaded) {
    REQUIRE(fresh.count(name));
    CHECK(t.shape() == fresh.at(name).shape());
    CHECK(t.dtype() == DType::float32);
    CHECK_FALSE(t.requires_grad());
  }
  CHECK(model(loaded, x).to_vector<float>() == want);
}
