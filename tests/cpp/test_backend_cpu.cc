// Tests of the CPU backend's kernels against the reference backend (reference_backend.h):
// every kernel and op, on every dtype (special values: float32 and float64), on strided inputs (permuted, stepped, flipped,
// broadcast, offset), over shapes from 0-d and empty up to sizes that take the OpenMP path.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "backend_cpu/kernels.h"
#include "backend_cpu/threads.h"
#include "reference_backend.h"
#include "test_util.h"

using namespace needle;
using namespace needle::testing;

namespace {

const DType kDTypes[] = {DType::float32, DType::float64};
// Every dtype, for the kernels' generic sweeps (integer results must match exactly).
const DType kAllDTypes[] = {DType::bool_, DType::uint8,   DType::int32,
                            DType::int64, DType::float32, DType::float64};

const UnaryOp kUnaryOps[] = {UnaryOp::negate,  UnaryOp::abs, UnaryOp::sqrt,
                             UnaryOp::exp,     UnaryOp::log, UnaryOp::tanh,
                             UnaryOp::sigmoid, UnaryOp::erf, UnaryOp::sign};

const BinaryOp kBinaryOps[] = {
    BinaryOp::add,     BinaryOp::subtract, BinaryOp::multiply, BinaryOp::divide, BinaryOp::power,
    BinaryOp::maximum, BinaryOp::minimum,  BinaryOp::eq,       BinaryOp::ne,     BinaryOp::lt,
    BinaryOp::le,      BinaryOp::gt,       BinaryOp::ge};

const ReduceOp kReduceOps[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min};

// 0-d, size-1 dims, empty, odd sizes, and one shape above the OpenMP grain (132,600 elements
// > kParallelGrain = 131,072).
const std::vector<Shape> kShapes = {{},           {1},           {0},         {7},
                                    {1, 1},       {3, 0, 2},     {4, 1, 3},   {7, 5},
                                    {2, 3, 4, 5}, {2, 1, 17, 3}, {52, 51, 50}};

// Shapes above the OpenMP grain take most of these cases' time (the reference backend walks
// every element), so each (op, dtype) pair runs them with one layout, rotating through the
// layouts with the pair: every op and dtype still takes the parallel path, and so does every
// layout.
bool runs_layout(const Shape& shape, size_t layout, size_t n_layouts, size_t pair) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n < 100000 || layout == pair % n_layouts;
}

size_t pair_of(int op, DType dt) {
  return size_t(op) * 7 + size_t(dt);
}

Backend& cpu_backend() {
  return find_backend("cpu");
}

ReferenceBackend& reference() {
  return reference_backend();
}

// Scalars to try with an op: ties for comparisons, positive bases for power on the left,
// and the exponent 2 that the CPU backend special-cases.
std::vector<double> scalars_for(BinaryOp op, bool on_left) {
  switch (op) {
    case BinaryOp::power:  // 2, 3, -1 and 0.5 have arithmetic fast paths on the right
      return on_left ? std::vector<double>{2.0, 0.5}
                     : std::vector<double>{2.0, 3.0, -1.0, 0.5, -1.5};
    case BinaryOp::eq:
    case BinaryOp::ne:
    case BinaryOp::lt:
    case BinaryOp::le:
    case BinaryOp::gt:
    case BinaryOp::ge:
    case BinaryOp::maximum:
    case BinaryOp::minimum:
      return {1.0, -0.5};
    default:
      return {2.0, -1.5};
  }
}

// A contiguous 1-d float array holding `values` on `backend`.
TestArray vector_on(Backend& backend, DType dtype, const std::vector<double>& values) {
  Layout l{{int64_t(values.size())}, {1}, 0, int64_t(values.size())};
  TestArray t(backend, dtype, l);
  t.upload(values);
  return t;
}

}  // namespace

// Framework code (allocation, host copies, registration): no assignment grades it.
TEST_CASE("cpu backend: registered, enabled, aligned buffers, host copies", "[backend]") {
  Backend& b = cpu_backend();
  CHECK(b.name() == "cpu");
  CHECK(b.enabled());
  CHECK(&require_backend("cpu") == &b);
  for (size_t bytes : {size_t(0), size_t(1), size_t(63), size_t(64), size_t(1000)}) {
    void* p = b.allocate(bytes);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    b.deallocate(p);
  }
  std::vector<double> src = {1.5, -2, 3, 4.25}, dst(4);
  void* p = b.allocate(sizeof(double) * 4);
  b.copy_from_host(p, src.data(), sizeof(double) * 4);
  b.copy_to_host(dst.data(), p, sizeof(double) * 4);
  b.deallocate(p);
  CHECK(dst == src);
  CHECK(cpu::get_num_threads() >= 1);
}

TEST_CASE("cpu blocks of 4 MiB and more are 2 MiB-aligned huge-page blocks", "[backend]") {
  Backend& b = cpu_backend();
  const size_t mib = size_t(1) << 20;
  std::vector<void*> blocks;
  for (size_t bytes : {4 * mib, 4 * mib + 1, 9 * mib, 4 * mib - 64}) {
    char* p = static_cast<char*>(b.allocate(bytes));
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % (bytes >= 4 * mib ? 2 * mib : 64) == 0);
    p[0] = 1;
    p[bytes - 1] = 2;  // the whole request is usable (ASan checks the bounds)
    blocks.push_back(p);
  }
  // An ordinary block that lands 2 MiB-aligned must still free as an ordinary block.
  for (void* p : blocks) b.deallocate(p);
  for (int i = 0; i < 3; ++i) {  // freed huge blocks are reused, and free again
    void* p = b.allocate(9 * mib);
    b.deallocate(p);
  }
}

TEST_CASE("cpu fill writes exactly the strided view", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 1);
  for (DType dt : kAllDTypes)
    for (const auto& shape : kShapes)
      for (const auto& kind : output_layouts()) {
        INFO(dtype_name(dt) << " " << shape_str(shape) << " " << kind.name);
        CHECK(k.fill(dt, shape, kind, -1.25) == "");
      }
}

TEST_CASE("cpu copy between strided views, converting dtypes", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 2);
  const auto ins = input_layouts();
  const auto outs = output_layouts();
  for (DType from : kAllDTypes)
    for (DType to : kAllDTypes)
      for (const auto& shape : kShapes)
        for (size_t i = 0; i < ins.size(); ++i) {
          if (!runs_layout(shape, i, ins.size(), pair_of(int(from), to))) continue;
          const auto& out_kind = outs[i % outs.size()];
          INFO(dtype_name(from) << " -> " << dtype_name(to) << " "
                                << describe(shape, ins[i], out_kind));
          CHECK(k.copy(from, to, shape, ins[i], out_kind) == "");
        }
}

TEST_CASE("cpu copy of transposed matrices (tiled path)", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 3);
  LayoutKind transposed = permuted();
  for (DType dt : kAllDTypes)
    for (const Shape& shape : {Shape{40, 70}, Shape{3, 33, 17}, Shape{300, 257}}) {
      for (int rep = 0; rep < 4; ++rep) {  // several random memory orders
        INFO(dtype_name(dt) << " " << shape_str(shape));
        CHECK(k.copy(dt, dt, shape, transposed, contiguous()) == "");
        CHECK(k.copy(dt, dt, shape, mixed(), contiguous()) == "");
      }
    }
}

TEST_CASE("cpu unary ops on strided views", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 4);
  const auto ins = input_layouts();
  const auto outs = output_layouts();
  for (UnaryOp op : kUnaryOps)
    for (DType dt : kAllDTypes)
      for (const auto& shape : kShapes)
        for (size_t i = 0; i < ins.size(); ++i) {
          if (!runs_layout(shape, i, ins.size(), pair_of(int(op), dt))) continue;
          const auto& out_kind = outs[i % outs.size()];
          INFO(op_name(op) << " " << dtype_name(dt) << " " << describe(shape, ins[i], out_kind));
          CHECK(k.unary(op, dt, shape, ins[i], out_kind) == "");
        }
}

TEST_CASE("cpu unary ops on special values", "[backend][hw0]") {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> specials = {
      0.0,          -0.0, 1.0,   -1.0,  1e-30, -1e-30, 0.5,    -0.5, 9.0,   -9.0, 20.0,
      -20.0,        88.5, -88.5, 100.0, -100., 1000.,  -1000., 1e30, -1e30, inf,  -inf,
      std::nan(""), 3.0,  -3.0,  1e-5,  -1e-5, 15.0,   -15.0,  7.9,  -7.9,  0.1};
  // Long enough for the vector paths, with the specials at every lane position.
  std::vector<double> values;
  for (int rep = 0; rep < 9; ++rep) values.insert(values.end(), specials.begin(), specials.end());
  values.resize(values.size() - 5);
  for (UnaryOp op : kUnaryOps)
    for (DType dt : kDTypes) {
      INFO(op_name(op) << " " << dtype_name(dt));
      TestArray x = vector_on(cpu_backend(), dt, values);
      TestArray got = vector_on(cpu_backend(), dt, std::vector<double>(values.size(), 0));
      TestArray want = vector_on(reference(), dt, std::vector<double>(values.size(), 0));
      cpu_backend().unary(op, x.view(), got.view());
      reference().unary(op, x.view(), want.view());
      const Tolerance tol =
          dt == DType::float64 ? Tolerance{1e-13, 1e-300} : Tolerance{4e-6, 1e-37};
      CHECK(compare(got.download(), want.download(), tol) == "");
    }
}

TEST_CASE("cpu sigmoid is stable for large |x| and sign gives -1/0/1", "[backend][hw0]") {
  for (DType dt : kDTypes) {
    TestArray x = vector_on(cpu_backend(), dt, {-1000, -100, 0, 100, 1000, -2, 2});
    TestArray s = vector_on(cpu_backend(), dt, std::vector<double>(7, 0));
    cpu_backend().unary(UnaryOp::sigmoid, x.view(), s.view());
    auto v = s.download();
    CHECK(v[0] == Approx(0).margin(1e-30));
    CHECK(v[1] == Approx(0).margin(1e-40));
    CHECK(v[2] == 0.5);
    CHECK(v[3] == 1.0);
    CHECK(v[4] == 1.0);
    CHECK(v[5] + v[6] == Approx(1.0));
    cpu_backend().unary(UnaryOp::sign, x.view(), s.view());
    CHECK(s.download() == std::vector<double>{-1, -1, 0, 1, 1, -1, 1});
  }
}

TEST_CASE("cpu binary ops on strided and broadcast views", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 5);
  const auto ins = input_layouts();
  const auto outs = output_layouts();
  for (BinaryOp op : kBinaryOps)
    for (DType dt : kAllDTypes)
      for (const auto& shape : kShapes)
        for (size_t i = 0; i < ins.size(); ++i) {
          if (!runs_layout(shape, i, ins.size(), pair_of(int(op), dt))) continue;
          const auto& b_kind = ins[(i + 2) % ins.size()];
          const auto& out_kind = outs[i % outs.size()];
          INFO(op_name(op) << " " << dtype_name(dt) << " " << describe(shape, ins[i], out_kind)
                           << ", rhs " << b_kind.name);
          CHECK(k.binary(op, dt, shape, ins[i], b_kind, out_kind) == "");
        }
}

TEST_CASE("cpu binary op of an outer broadcast (n,1)+(1,n)", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 6);
  LayoutKind column = contiguous(), row = contiguous();
  column.bcast = {false, true};
  row.bcast = {true, false};
  for (BinaryOp op : {BinaryOp::add, BinaryOp::multiply, BinaryOp::power, BinaryOp::lt})
    for (DType dt : kDTypes)
      for (int64_t n : {5, 300}) {
        INFO(op_name(op) << " " << dtype_name(dt) << " n=" << n);
        CHECK(k.binary(op, dt, {n, n}, column, row, contiguous()) == "");
        CHECK(k.binary(op, dt, {n, n}, row, column, contiguous()) == "");
      }
}

TEST_CASE("cpu binary power on special values", "[backend][hw0]") {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> base, expo;
  for (double x : {-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 10.0, inf, -inf})
    for (double y : {-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 40.0, inf, -inf}) {
      base.push_back(x);
      expo.push_back(y);
    }
  for (DType dt : kDTypes) {
    INFO(dtype_name(dt));
    TestArray a = vector_on(cpu_backend(), dt, base), b = vector_on(cpu_backend(), dt, expo);
    TestArray got = vector_on(cpu_backend(), dt, std::vector<double>(base.size(), 0));
    TestArray want = vector_on(reference(), dt, std::vector<double>(base.size(), 0));
    cpu_backend().binary(BinaryOp::power, a.view(), b.view(), got.view());
    reference().binary(BinaryOp::power, a.view(), b.view(), want.view());
    const Tolerance tol = dt == DType::float64 ? Tolerance{1e-13, 0} : Tolerance{4e-6, 0};
    CHECK(compare(got.download(), want.download(), tol) == "");
    // Scalar exponents, including the arithmetic fast paths, on the same special bases.
    for (double s : {2.0, 3.0, -1.0, 0.5, -0.5, 0.0, 1.0, 40.0}) {
      INFO("x ** " << s);
      cpu_backend().binary_scalar(BinaryOp::power, a.view(), s, got.view(), false);
      reference().binary_scalar(BinaryOp::power, a.view(), s, want.view(), false);
      CHECK(compare(got.download(), want.download(), tol) == "");
    }
  }
}

TEST_CASE("cpu binary ops with a scalar on either side", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 7);
  const auto ins = input_layouts();
  const auto outs = output_layouts();
  for (BinaryOp op : kBinaryOps)
    for (DType dt : kAllDTypes)
      for (bool left : {false, true}) {
        const auto scalars = scalars_for(op, left);
        for (size_t si = 0; si < scalars.size(); ++si) {
          const double s = scalars[si];
          if (is_integral(dt) && op == BinaryOp::power && s < 0) continue;  // numpy rejects those
          const size_t pair = pair_of(int(op), dt) + left + si;
          for (const auto& shape : kShapes)
            for (size_t i = 0; i < ins.size(); i += 2) {
              if (!runs_layout(shape, i / 2, ins.size() / 2, pair)) continue;
              const auto& out_kind = outs[(i + 1) % outs.size()];
              INFO(op_name(op) << " " << dtype_name(dt) << " s=" << s << (left ? " (left) " : " ")
                               << describe(shape, ins[i], out_kind));
              CHECK(k.binary_scalar(op, dt, shape, s, left, ins[i], out_kind) == "");
            }
        }
      }
}

TEST_CASE("cpu element-wise ops may write in place", "[backend][hw0]") {
  const LayoutKind strided{"strided", true, true, true, true, 0.0, {}};
  for (DType dt : kDTypes) {
    std::mt19937 rng(8);
    const Shape shape = {37, 1100};  // large: the parallel path
    Layout lx = make_layout(shape, strided, rng), ly = make_layout(shape, mixed(), rng);
    auto base = random_values(lx.base_size, Values::uniform, rng);
    auto other = random_values(ly.base_size, Values::uniform, rng);
    TestArray x(cpu_backend(), dt, lx), ref_x(reference(), dt, lx), y(cpu_backend(), dt, ly);
    x.upload(base);
    ref_x.upload(base);
    y.upload(other);
    cpu_backend().binary(BinaryOp::add, x.view(), y.view(), x.view());
    reference().binary(BinaryOp::add, ref_x.view(), y.view(), ref_x.view());
    cpu_backend().unary(UnaryOp::exp, x.view(), x.view());
    reference().unary(UnaryOp::exp, ref_x.view(), ref_x.view());
    cpu_backend().binary_scalar(BinaryOp::multiply, x.view(), 0.5, x.view(), false);
    reference().binary_scalar(BinaryOp::multiply, ref_x.view(), 0.5, ref_x.view(), false);
    CHECK(compare(x.download(), ref_x.download(), {4e-6, 1e-6}) == "");
  }
}

TEST_CASE("cpu reductions over 1 and 2 trailing axes", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 9);
  const std::vector<Shape> shapes = {
      {1},       {7},           {5, 1},       {4, 1, 3},  {7, 5},     {2, 3, 4, 5}, {1, 300},
      {3, 2000}, {2, 1, 17, 3}, {52, 51, 50}, {2, 70000}, {70000, 2}, {300, 257}};
  for (ReduceOp op : kReduceOps)
    for (DType dt : kAllDTypes)
      for (const auto& shape : shapes)
        for (size_t n_red : {size_t(1), size_t(2)}) {
          if (n_red > shape.size()) continue;
          const auto kinds = input_layouts();
          for (size_t i = 0; i < kinds.size(); ++i) {
            if (!runs_layout(shape, i, kinds.size(), pair_of(int(op), dt) + n_red)) continue;
            const auto& kind = kinds[i];
            INFO(op_name(op) << " " << dtype_name(dt) << " " << shape_str(shape) << " over "
                             << n_red << " axes, " << kind.name);
            CHECK(k.reduce(op, dt, shape, n_red, kind) == "");
          }
        }
}

TEST_CASE("cpu reductions over every axis, zero axes, and empty axes", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 10);
  for (ReduceOp op : kReduceOps)
    for (DType dt : kDTypes) {
      INFO(op_name(op) << " " << dtype_name(dt));
      CHECK(k.reduce(op, dt, {}, 0, contiguous()) == "");
      CHECK(k.reduce(op, dt, {4, 3}, 0, mixed()) == "");
      CHECK(k.reduce(op, dt, {9, 11, 13}, 3, mixed()) == "");
      CHECK(k.reduce(op, dt, {200, 300}, 2, contiguous()) == "");  // split over threads
      CHECK(k.reduce(op, dt, {0, 5}, 1, contiguous()) == "");      // no outputs
    }
  // A sum over zero elements is 0 (max/min over none are rejected by NDArray).
  for (DType dt : kDTypes)
    for (const Shape& shape : {Shape{0}, Shape{3, 0}, Shape{2, 0, 4}}) {
      INFO(dtype_name(dt) << " " << shape_str(shape));
      const size_t kept = shape.size() == 3 ? 1 : shape.size() - 1;
      CHECK(k.reduce(ReduceOp::sum, dt, shape, shape.size() - kept, contiguous()) == "");
      TestArray in(cpu_backend(), dt, make_layout(shape, contiguous(), k.rng()));
      Shape out_shape(shape.begin(), shape.begin() + int64_t(kept));
      TestArray out(cpu_backend(), dt, make_layout(out_shape, contiguous(), k.rng()));
      out.upload(std::vector<double>(size_t(out.layout().base_size), 7.0));
      cpu_backend().reduce(ReduceOp::sum, in.view(), out.view());
      for (double v : out.download()) CHECK(v == 0.0);
    }
}

TEST_CASE("cpu sum over a permuted axis accumulates rows (axis-0 sum)", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 11);
  // (rows, cols) stored row-major, viewed as (cols, rows): the reduced axis has stride cols.
  for (DType dt : kDTypes)
    for (ReduceOp op : kReduceOps)
      for (const Shape& shape : {Shape{9, 30}, Shape{300, 700}, Shape{3, 5, 2000}}) {
        LayoutKind by_columns = contiguous();
        by_columns.name = "reduced axis outermost in memory";
        by_columns.permute = true;
        for (int rep = 0; rep < 3; ++rep) {
          INFO(op_name(op) << " " << dtype_name(dt) << " " << shape_str(shape));
          CHECK(k.reduce(op, dt, shape, 1, by_columns) == "");
          CHECK(k.reduce(op, dt, shape, 2, by_columns) == "");
        }
      }
}

// The backend's own matmul: the fast GEMM (OpenBLAS or Eigen), the integer loop and the
// batch and thread split, all framework code; the teaching GEMMs a student writes are
// graded by "teaching GEMMs ..." below.
TEST_CASE("cpu matmul: shapes, transposed views, batch broadcasting", "[backend]") {
  KernelChecker k(cpu_backend(), reference(), 12);
  struct Case {
    Shape batch;
    std::vector<bool> bcast_a, bcast_b;
    int64_t m, kk, n;
  };
  const std::vector<Case> cases = {
      {{}, {}, {}, 1, 1, 1},
      {{}, {}, {}, 3, 4, 5},
      {{}, {}, {}, 1, 7, 9},
      {{}, {}, {}, 9, 7, 1},
      {{}, {}, {}, 5, 0, 4},
      {{}, {}, {}, 0, 3, 4},
      {{}, {}, {}, 33, 65, 17},
      {{2}, {}, {}, 4, 6, 3},
      {{3}, {true}, {}, 5, 4, 6},
      {{3}, {}, {true}, 5, 4, 6},
      {{2, 3}, {false, true}, {true, false}, 4, 5, 2},
      {{2, 0}, {}, {}, 3, 3, 3},
      {{64}, {}, {true}, 16, 16, 16},
  };
  const auto kinds =
      std::vector<LayoutKind>{contiguous(), permuted(), stepped(), flipped(), mixed()};
  for (DType dt : kAllDTypes)
    for (const auto& c : cases)
      for (size_t i = 0; i < kinds.size(); ++i)
        for (size_t j = 0; j < kinds.size(); j += 2) {
          INFO(dtype_name(dt) << " batch " << shape_str(c.batch) << " " << c.m << "x" << c.kk
                              << " @ " << c.kk << "x" << c.n << " " << kinds[i].name << " @ "
                              << kinds[j].name);
          CHECK(k.matmul(dt, c.batch, c.bcast_a, c.bcast_b, c.m, c.kk, c.n, kinds[i], kinds[j]) ==
                "");
        }
}

TEST_CASE("cpu matmul of large transposed operands (Eigen's threads)", "[backend]") {
  KernelChecker k(cpu_backend(), reference(), 13);
  LayoutKind transposed = contiguous();
  transposed.permute = true;
  for (DType dt : kDTypes)
    for (int rep = 0; rep < 3; ++rep) {
      INFO(dtype_name(dt) << " rep " << rep);
      CHECK(k.matmul(dt, {}, {}, {}, 150, 260, 170, transposed, transposed) == "");
      CHECK(k.matmul(dt, {2}, {}, {true}, 130, 140, 120, transposed, contiguous()) == "");
    }
}

namespace {
// The cpu backend with matmul through one of the teaching GEMMs of gemm.h (gemm_naive or
// gemm_tiled, reached through kernels.h).
class TeachingGemmBackend final : public Backend {
 public:
  using Matmul = void (*)(const View&, const View&, const View&);
  TeachingGemmBackend(std::string name, Matmul matmul) : name_(std::move(name)), matmul_(matmul) {}

  std::string name() const override { return name_; }
  bool enabled() const override { return true; }
  void* allocate(size_t bytes) override { return cpu_backend().allocate(bytes); }
  void deallocate(void* p) noexcept override { cpu_backend().deallocate(p); }
  void copy_from_host(void* d, const void* s, size_t n) override {
    cpu_backend().copy_from_host(d, s, n);
  }
  void copy_to_host(void* d, const void* s, size_t n) override {
    cpu_backend().copy_to_host(d, s, n);
  }
  void fill(const View& o, double v) override { cpu_backend().fill(o, v); }
  void copy(const View& i, const View& o) override { cpu_backend().copy(i, o); }
  void unary(UnaryOp op, const View& a, const View& o) override { cpu_backend().unary(op, a, o); }
  void binary(BinaryOp op, const View& a, const View& b, const View& o) override {
    cpu_backend().binary(op, a, b, o);
  }
  void binary_scalar(BinaryOp op, const View& a, double s, const View& o, bool left) override {
    cpu_backend().binary_scalar(op, a, s, o, left);
  }
  void reduce(ReduceOp op, const View& a, const View& o) override {
    cpu_backend().reduce(op, a, o);
  }
  void matmul(const View& a, const View& b, const View& o) override { matmul_(a, b, o); }
  void gather(const View& a, const View& i, int64_t axis, const View& o) override {
    cpu_backend().gather(a, i, axis, o);
  }
  void scatter_add(const View& v, const View& i, int64_t axis, const View& o) override {
    cpu_backend().scatter_add(v, i, axis, o);
  }

 private:
  std::string name_;
  Matmul matmul_;
};
}  // namespace

TEST_CASE("teaching GEMMs (naive, tiled) on strided and batched operands", "[backend][hw0]") {
  TeachingGemmBackend naive("cpu-naive-gemm", cpu::matmul_naive);
  TeachingGemmBackend tiled("cpu-tiled-gemm", cpu::matmul_tiled);
  for (Backend* gemm : {static_cast<Backend*>(&naive), static_cast<Backend*>(&tiled)}) {
    KernelChecker k(*gemm, reference(), 14);
    for (DType dt : kDTypes)
      for (const auto& ka : {contiguous(), permuted(), stepped(), flipped(), mixed()})
        for (const auto& kb : {contiguous(), permuted(), mixed()}) {
          INFO(gemm->name() << " " << dtype_name(dt) << " " << ka.name << " @ " << kb.name);
          CHECK(k.matmul(dt, {}, {}, {}, 13, 17, 11, ka, kb) == "");  // partial edge tiles
          CHECK(k.matmul(dt, {}, {}, {}, 16, 8, 24, ka, kb) == "");   // whole tiles only
          CHECK(k.matmul(dt, {}, {}, {}, 1, 5, 1, ka, kb) == "");
          CHECK(k.matmul(dt, {}, {}, {}, 3, 0, 2, ka, kb) == "");
          CHECK(k.matmul(dt, {3}, {true}, {}, 4, 6, 5, ka, kb) == "");
          CHECK(k.matmul(dt, {40}, {}, {}, 9, 12, 10, ka, kb) == "");  // batches over threads
        }
  }
}

TEST_CASE("cpu gather and scatter_add on strided views, every dtype", "[backend][hw2]") {
  KernelChecker k(cpu_backend(), reference(), 15);
  const auto ins = input_layouts();
  const auto outs = output_layouts();
  struct Case {
    Shape shape;
    int64_t axis, n_out;
  };
  // Indexed axis first, middle, last; fewer, as many and more indices than entries (repeats);
  // one case above the parallel grain.
  const std::vector<Case> cases = {{{5}, 0, 3},        {{5}, 0, 12},       {{4, 3}, 0, 6},
                                   {{4, 3}, 1, 2},     {{3, 7, 2}, 1, 9},  {{2, 3, 0}, 1, 4},
                                   {{3, 4, 5}, 2, 5},  {{3, 4, 5}, 0, 1},  {{40, 70, 50}, 1, 70}};
  for (DType dt : kAllDTypes)
    for (const auto& c : cases)
      for (size_t i = 0; i < ins.size(); ++i) {
        const auto& idx_kind = ins[(i + 1) % ins.size()];
        const auto& out_kind = outs[i % outs.size()];
        INFO(dtype_name(dt) << " " << shape_str(c.shape) << " axis " << c.axis << " n " << c.n_out
                            << " " << ins[i].name << ", index " << idx_kind.name << ", out "
                            << out_kind.name);
        CHECK(k.gather(dt, c.shape, c.axis, c.n_out, ins[i], idx_kind, out_kind) == "");
        Shape values = c.shape;
        values[size_t(c.axis)] = c.n_out;  // scatter n_out rows back into shape[axis]
        CHECK(k.scatter_add(dt, values, c.axis, c.shape[size_t(c.axis)], ins[i], idx_kind,
                            out_kind) == "");
      }
}

TEST_CASE("cpu kernels run the same with one thread", "[backend][hw0]") {
  KernelChecker k(cpu_backend(), reference(), 15);
  const int before = cpu::get_num_threads();
  cpu::set_num_threads(1);
  CHECK(cpu::get_num_threads() == 1);
  CHECK(k.binary(BinaryOp::add, DType::float32, {52, 51, 50}, mixed(), broadcast(), stepped()) ==
        "");
  CHECK(k.reduce(ReduceOp::sum, DType::float32, {300, 257}, 1, permuted()) == "");
  CHECK(k.matmul(DType::float32, {}, {}, {}, 100, 120, 90, permuted(), contiguous()) == "");
  cpu::set_num_threads(before);
  CHECK(cpu::get_num_threads() == before);
  cpu::set_num_threads(0);  // back to the default
  CHECK(cpu::get_num_threads() >= 1);
}
