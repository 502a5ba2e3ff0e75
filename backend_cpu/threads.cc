// The CPU backend's thread count: one atomic setting that sizes the OpenMP team. Eigen is
// pinned to one thread; OpenBLAS's count is set for the length of our own calls (threads.h).
// The setting is registered as the "cpu" kernels set_num_threads / get_num_threads
// (needle/kernels.h), which is how the bindings reach it.
#include "backend_cpu/threads.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>

#include "needle/kernels.h"

#ifdef NEEDLE_WITH_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" int openblas_get_num_threads(void);
#endif

namespace needle::cpu {

namespace {
std::atomic<int> g_num_threads{0};  // 0 until first use or set_num_threads
std::mutex g_mutex;

// OMP_NUM_THREADS when set, else every core. Not omp_get_max_threads(): other libraries in
// the process change that at run time (importing PyTorch sets it to 1).
int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1, omp_get_num_procs());
}

void apply(int n) {
  g_num_threads.store(n);
  omp_set_num_threads(n);
  Eigen::setNbThreads(1);
}
}  // namespace

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_mutex);
  apply(n > 0 ? n : default_threads());
}

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_num_threads.load() == 0) apply(default_threads());
  return g_num_threads.load();
}

#ifdef NEEDLE_WITH_OPENBLAS
ScopedBlasThreads::ScopedBlasThreads(int threads)
    : saved_(openblas_get_num_threads()), threads_(threads) {
  if (saved_ != threads_) openblas_set_num_threads(threads_);
}
ScopedBlasThreads::~ScopedBlasThreads() {
  if (saved_ != threads_) openblas_set_num_threads(saved_);
}
#else
ScopedBlasThreads::ScopedBlasThreads(int threads) : threads_(threads) {}
ScopedBlasThreads::~ScopedBlasThreads() = default;
#endif

int threads_for(int64_t work, int64_t grain) {
  if (work < grain) return 1;
  int64_t by_work = std::max<int64_t>(2, 2 * work / grain);
  return int(std::min<int64_t>(by_work, get_num_threads()));
}

NEEDLE_REGISTER_KERNEL(kernel::kSetNumThreads, "cpu", set_num_threads);
NEEDLE_REGISTER_KERNEL(kernel::kGetNumThreads, "cpu", get_num_threads);

}  // namespace needle::cpu
