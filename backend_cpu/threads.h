// Threading of the CPU backend: one team of threads (threads.cc) runs every parallel loop,
// sized by one setting. The GEMM libraries (Eigen, OpenBLAS) run single-threaded and are
// handed one block of a product per thread (matmul.cc, conv.cc), so no second thread pool
// competes with the team for the cores. The one exception is a single large product, which
// OpenBLAS threads itself with the same thread count (its own blocking beats our split there).
#pragma once

#include <algorithm>
#include <cstdint>

namespace needle::cpu {

// Number of threads the CPU kernels may use; n <= 0 restores the default (the number of
// cores, or OMP_NUM_THREADS when set).
void set_num_threads(int n);
int get_num_threads();

// Below this many elements a kernel runs on the calling thread: waking a thread team and
// joining it costs a few microseconds, and on this 2-core machine a second thread bought
// nothing for a 64k-float add (10 us either way).
constexpr int64_t kParallelGrain = int64_t(1) << 17;
// Grain for element-wise ops that call a transcendental function (exp, tanh, pow, ...):
// each element costs ~10x more, so threads pay off sooner.
constexpr int64_t kParallelGrainHeavy = 4096;

// Threads to use for `work` units of which `grain` justify one thread: 1 below the grain,
// never more than get_num_threads().
int threads_for(int64_t work, int64_t grain = kParallelGrain);

// Runs body(context, t, team) for t in [0, team) on the team's threads, the caller being
// thread 0; team is nt, or 1 (everything on the caller) when called from inside a parallel
// loop or while another thread's loop holds the team. An exception thrown by any thread (a
// homework stub's NotImplemented, say) is rethrown here instead of terminating.
using TeamBody = void (*)(const void* context, int64_t t, int64_t team);
void run_on_team(int nt, TeamBody body, const void* context);

// Runs fn(t, team) on a team of nt threads (inline when nt <= 1), as run_on_team.
template <class Fn>
void parallel(int nt, const Fn& fn) {
  if (nt <= 1) {
    fn(int64_t(0), int64_t(1));
    return;
  }
  run_on_team(
      nt, [](const void* f, int64_t t, int64_t team) { (*static_cast<const Fn*>(f))(t, team); },
      &fn);
}

// While alive, OpenBLAS runs on `threads` threads; the caller's setting comes back after.
// The library is shared with numpy and PyTorch in the same process, so its global thread
// count is theirs too: it is set only around our own GEMM calls. (A no-op without OpenBLAS.)
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int saved_ = 1;
  int threads_ = 1;
};

// The t-th of `team` near-equal parts of [0, total).
inline int64_t part_begin(int64_t total, int64_t t, int64_t team) {
  return total * t / team;
}

// Runs body(first, last, t) over near-equal ranges of [0, rows) on the CPU team, t the
// thread's index in [0, nt) and nt = threads_rows(rows, row_work, grain): the row kernels
// (softmax, layer norm, losses), where row_work is the cost of one row in elements.
inline int threads_rows(int64_t rows, int64_t row_work, int64_t grain) {
  return int(std::max<int64_t>(1, std::min<int64_t>(threads_for(rows * row_work, grain), rows)));
}
template <class Body>
void parallel_row_ranges(int nt, int64_t rows, const Body& body) {
  parallel(nt, [&](int64_t t, int64_t team) {
    body(part_begin(rows, t, team), part_begin(rows, t + 1, team), t);
  });
}
// Runs row(r) for every r in [0, rows) on the CPU team: rows of row_work elements each,
// of per-element cost `grain` says (kParallelGrainHeavy for an exp per element).
template <class Row>
void parallel_for_rows(int64_t rows, int64_t row_work, int64_t grain, const Row& row) {
  if (rows <= 0) return;
  parallel_row_ranges(threads_rows(rows, row_work, grain), rows,
                      [&](int64_t r0, int64_t r1, int64_t) {
                        for (int64_t r = r0; r < r1; ++r) row(r);
                      });
}

}  // namespace needle::cpu
