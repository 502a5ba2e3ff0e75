// Adversarial inputs at the C++ level (issue 8, section 3): sizes that overflow 64 bits,
// strides near 2^63, every int64 as a slice bound, axis 0 of a 0-d array, +inf in
// logsumexp, and checkpoints that are FIFOs, directories, invalid UTF-8 or impossible shapes.
// Each is an error naming the op, or numpy's answer.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <limits>

#include "needle/checked.h"
#include "needle/needle.h"
#include "needle/serialize.h"
#include "temp_dir.h"

using namespace needle;

namespace {
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

NDArray arange(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(i);
  return NDArray::from_vector(v, {n});
}
std::vector<float> values(const NDArray& a) {
  return a.to_vector<float>();
}

template <class E, class F>
void check_throws(F&& f, const std::string& needle_text) {
  try {
    f();
    FAIL("no exception; expected one containing " << needle_text);
  } catch (const E& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains(needle_text));
  }
}
}  // namespace

TEST_CASE("checked sizes: counts and byte sizes beyond 64 bits are ValueErrors", "[adversarial]") {
  CHECK(checked_numel("t", {2, 3}) == 6);
  CHECK(checked_numel("t", {}) == 1);
  CHECK(checked_numel("t", {0, int64_t(1) << 40}) == 0);
  CHECK_THROWS_AS(checked_numel("t", {int64_t(1) << 32, int64_t(1) << 32}), ValueError);
  CHECK_THROWS_AS(checked_numel("t", {0, int64_t(1) << 62, int64_t(1) << 62}), ValueError);
  CHECK_THROWS_AS(checked_numel("t", {int64_t(1) << 62}, 4), ValueError);
  CHECK_THROWS_AS(checked_numel("t", {-1}), ValueError);

  check_throws<ValueError>([] { NDArray::empty({int64_t(1) << 62}); }, "[empty]");
  check_throws<ValueError>([] { NDArray::full({int64_t(1) << 62}, 1.0); }, "[empty]");
  check_throws<ValueError>(
      [] {
        NDArray::empty({int64_t(1) << 32, int64_t(1) << 32});
      },
      "(4294967296, 4294967296)");
  NDArray e = NDArray::empty({0});
  check_throws<ValueError>([&] { e.reshape({int64_t(1) << 32, int64_t(1) << 32}); }, "[reshape]");
  check_throws<ValueError>(
      [&] {
        e.reshape({-1, int64_t(1) << 62, int64_t(1) << 62});
      },
      "[reshape]");
  NDArray m = NDArray::full({2, 2}, 1.0);
  check_throws<ValueError>([&] { m.pad({{int64_t(1) << 62, 0}, {0, 0}}); }, "[pad]");
  check_throws<ValueError>([&] { m.pad({{kMax, 1}, {0, 0}}); }, "[pad]");
  NDArray a = NDArray::empty({int64_t(1) << 32, 0}), b = NDArray::empty({0, int64_t(1) << 32});
  check_throws<ValueError>([&] { a.matmul(b); }, "[matmul]");
  NDArray one = NDArray::full({1, 1}, 1.0);
  check_throws<ValueError>(
      [&] {
        one.broadcast_to({int64_t(1) << 32, int64_t(1) << 32});
      },
      "[broadcast_to]");
  CHECK_THROWS_AS(Buffer(default_backend(), -1, DType::float32), ValueError);
#if !defined(__SANITIZE_ADDRESS__)  // ASan aborts on an allocation this size instead
  // Valid but unallocatable: MemoryError (32 TiB).
  CHECK_THROWS_AS(NDArray::empty({int64_t(1) << 43}), MemoryError);
#endif
}

TEST_CASE("as_strided bounds checks do not overflow", "[adversarial]") {
  NDArray a = arange(4);
  CHECK_THROWS_AS(a.as_strided({2}, {int64_t(1) << 62}), ValueError);
  CHECK_THROWS_AS(a.as_strided({3}, {kMax}), ValueError);
  CHECK_THROWS_AS(a.as_strided({2, 2}, {-(int64_t(1) << 62), int64_t(1) << 62}), ValueError);
  CHECK_THROWS_AS(a.as_strided({2, 2, 2}, {int64_t(1) << 62, int64_t(1) << 62, kMin}), ValueError);
  CHECK(values(a.as_strided({2, 2}, {1, 2})) == std::vector<float>{0, 2, 1, 3});
  CHECK(a.as_strided({0, 3}, {kMax, kMax}).size() == 0);
  CHECK(view_fits({1}, {kMax}, 3, 4));  // one element: the stride is never applied
  CHECK_FALSE(view_fits({2}, {kMin}, 3, 4));
}

TEST_CASE("slices: every int64 is a valid bound or step, absent is not a value", "[adversarial]") {
  NDArray a = arange(4);
  CHECK(values(a.getitem({Index::slice(Index::kNone, Index::kNone, kMin)})) ==
        std::vector<float>{3});
  CHECK(values(a.getitem({Index::slice(Index::kNone, Index::kNone, kMax)})) ==
        std::vector<float>{0});
  CHECK(values(a.getitem({Index::slice(Index::kNone, Index::kNone, -kMax)})) ==
        std::vector<float>{3});
  CHECK(values(a.getitem({Index::slice(kMin, kMax)})) == std::vector<float>{0, 1, 2, 3});
  CHECK(values(a.getitem({Index::slice(kMax, kMin, -1)})) == std::vector<float>{3, 2, 1, 0});
  CHECK(a.getitem({Index::slice(kMin, Index::kNone, -1)}).size() == 0);
  CHECK(values(a.getitem({Index::slice(1, Index::kNone, kMin)})) == std::vector<float>{1});
  NDArray b = arange(4);
  b.setitem({Index::slice(Index::kNone, Index::kNone, kMin)}, 5.0);
  CHECK(values(b) == std::vector<float>{0, 1, 2, 5});
  NDArray m = arange(6).reshape({2, 3});
  NDArray v = m.getitem({Index::new_axis(), Index::at(1), Index::new_axis(false)});
  CHECK(v.shape() == Shape{1, 0, 3});
  CHECK(m.getitem({Index::at(1), Index::new_axis(), Index::slice(Index::kNone, Index::kNone, -1),
                   Index::new_axis()})
            .shape() == Shape{1, 3, 1});
  CHECK_THROWS_AS(a.getitem({Index::at(kMin)}), IndexError);
  CHECK_THROWS_AS(a.getitem({Index::at(kMax)}), IndexError);
}

TEST_CASE("a 0-d array has no axis 0", "[adversarial]") {
  NDArray s = NDArray::full({}, 2.0);
  check_throws<IndexError>([&] { s.flip({0}); }, "[flip] axis 0 is out of range");
  check_throws<IndexError>([&] { s.swapaxes(0, 0); }, "[swapaxes]");
  check_throws<IndexError>([&] { s.sum(Axes{0}); }, "[sum]");
  check_throws<IndexError>([&] { s.max(Axes{-1}); }, "[max]");
  CHECK(s.sum().item() == 2.0);
  CHECK(s.sum(Axes{}).item() == 2.0);
  Tensor t(s, true);
  check_throws<IndexError>([&] { summation(t, Axes{0}); }, "axis 0 is out of range");
  check_throws<IndexError>([&] { dilate(t, {0}, 1); }, "[dilate]");
  check_throws<IndexError>([&] { undilate(t, {0}, 1); }, "[undilate]");
  check_throws<IndexError>([&] { transpose(t, Axes{0, 1}); }, "[transpose]");
  check_throws<IndexError>([&] { logsoftmax(t); }, "[logsoftmax]");
  check_throws<IndexError>([&] { split(t, 0); }, "[split]");
}

TEST_CASE("logsumexp of a slice holding +inf is +inf", "[adversarial]") {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x(NDArray::from_vector(std::vector<float>{1, float(inf), 1, -float(inf)}, {2, 2}));
  std::vector<float> got = logsumexp(x, Axes{1}).data().to_vector<float>();
  CHECK(std::isinf(got[0]));
  CHECK(got[0] > 0);
  CHECK(got[1] == Approx(1.0));
}

TEST_CASE("checkpoints: only regular files, valid UTF-8 headers and shapes that fit",
          "[adversarial][serialize]") {
  needle::testing::TempDir dir;
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_throws<ValueError>([&] { load_safetensors(fifo); }, "not a regular file");
  check_throws<ValueError>([&] { load_safetensors(dir.path.string()); }, "is a directory");
  ArrayDict arrays{{"a", NDArray::full({2}, 1.0)}};
  check_throws<ValueError>([&] { save_safetensors(arrays, fifo); }, "not a regular file");
  struct stat st;
  REQUIRE(::stat(fifo.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));

  auto write = [&](const std::string& name, const std::string& header) {
    const std::string path = dir / name;
    std::ofstream out(path, std::ios::binary);
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(char(n >> (8 * i)));
    out << header;
    return path;
  };
  const std::string bad_utf8 =
      write("utf8", "{\"\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}");
  check_throws<ValueError>([&] { load_safetensors(bad_utf8); }, "not valid UTF-8");
  const std::string huge =
      write("huge",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,4611686018427387904],"
            "\"data_offsets\":[0,0]}}");
  check_throws<ValueError>([&] { load_safetensors(huge); }, "too large");
}

TEST_CASE("a save removes the temp files that killed saves of the same target left",
          "[adversarial][serialize]") {
  needle::testing::TempDir dir;
  const std::string target = dir / "m.safetensors";
  const std::string dead = target + ".tmp-999999999-abcdef";
  const std::string unrelated = dir / "other.tmp-999999999-abcdef";
  std::ofstream(dead).put('x');
  std::ofstream(unrelated).put('x');
  save_safetensors(ArrayDict{{"a", NDArray::full({2}, 1.0)}}, target);
  CHECK_FALSE(std::ifstream(dead).good());
  CHECK(std::ifstream(unrelated).good());
  CHECK(dir.count_files() == 2);
}
