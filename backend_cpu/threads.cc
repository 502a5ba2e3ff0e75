// The CPU backend's threads: the team that runs every parallel loop (parallel() in
// threads.h), and its size, one atomic setting (default: OMP_NUM_THREADS, else every core
// this process may run on). Eigen, built without OpenMP, runs on its caller's thread;
// OpenBLAS's count is set for the length of our own calls (threads.h). The setting is
// registered as the "cpu" kernels set_num_threads / get_num_threads (needle/kernels.h),
// which is how the bindings reach it.
//
// The team is our own, not OpenMP's: libgomp reads how long an idle thread spins before it
// sleeps (GOMP_SPINCOUNT) once, when the library loads, and the first library to load it
// decides for the whole process. With PyTorch imported first, needle's MLPResNet step ran
// 5-25 % slower on a host whose two CPUs are one core's hyperthreads (and 5 % faster on a
// two-core host): its speed depended on the import order. Here an idle thread always spins
// for kSpin, then sleeps until the next loop wakes it.
#include "backend_cpu/threads.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "needle/kernels.h"

#ifdef NEEDLE_WITH_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" int openblas_get_num_threads(void);
#endif

namespace needle::cpu {

namespace {
std::atomic<int> g_num_threads{0};  // 0 until first use or set_num_threads
std::mutex g_mutex;

// OMP_NUM_THREADS when set (the variable every numeric library reads), else the CPUs this
// process may run on.
int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) return std::max(1, CPU_COUNT(&cpus));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

// How long a thread with nothing to do keeps checking for work before it sleeps: long enough
// that the next op's loop, a few microseconds later, finds it awake (sleeping at once made a
// ViT step 38 -> 56 ms), short enough that an idle team soon gives its cores back (to the
// other hyperthread of a core, say). MLPResNet step medians on a 2-core host: 2.60 ms at
// 20 us, 2.28 at 100, 2.20 at 500, 2.10 at 3,000 (libgomp's 10,000 spins: 2.25); while
// OpenBLAS threads one large product itself, a spinning thread takes a core from it.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until ready() holds or kSpin has passed; whether ready() held.
template <class Ready>
bool spin_until(const Ready& ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

thread_local bool t_in_loop = false;  // this thread is running a parallel loop's body

// The team: worker threads 1, 2, ... (made when a loop first needs them, then kept), the
// caller of a loop being thread 0. A loop is published as one atomic word, a generation
// count above the team size, so a worker that was asleep or busy can never mistake an old
// loop for a new one; the body and its context are written before the word and read after
// it, and the caller does not return before every worker of the team has finished.
class Team {
 public:
  void run(int nt, TeamBody body, const void* context) {
    if (t_in_loop) return body(context, 0, 1);  // a loop inside a loop runs on its thread
    std::unique_lock<std::mutex> one_loop(run_mutex_, std::try_to_lock);
    if (!one_loop.owns_lock()) return body(context, 0, 1);  // another thread's loop has it
    nt = std::min(nt, kMaxTeam);
    grow(nt - 1);
    body_ = body;
    context_ = context;
    error_ = nullptr;
    pending_.store(nt - 1);
    loop_.store((++generation_ << kTeamBits) | uint64_t(nt));
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    run_share(0, nt);
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(sleep_mutex_);
      caller_waiting_.store(true);
      done_.wait(lock, [&] { return pending_.load() == 0; });
      caller_waiting_.store(false);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static constexpr int kTeamBits = 16;
  static constexpr int kMaxTeam = (1 << kTeamBits) - 1;

  void grow(int workers) {
    while (int(threads_.size()) < workers) {
      const int index = int(threads_.size()) + 1;
      threads_.emplace_back([this, index, seen = loop_.load()] { work(index, seen); });
    }
  }

  // Thread t's share of the current loop; the first exception of any share is kept.
  void run_share(int64_t t, int64_t team) {
    t_in_loop = true;
    try {
      body_(context_, t, team);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    t_in_loop = false;
  }

  void work(int index, uint64_t seen) {
    for (;;) {
      seen = next_loop(seen);
      const int team = int(seen & kMaxTeam);
      if (index >= team) continue;
      run_share(index, team);
      if (pending_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        std::lock_guard<std::mutex> lock(sleep_mutex_);
        done_.notify_one();
      }
    }
  }

  // Waits for a loop other than `seen` (spinning, then asleep) and returns its word.
  uint64_t next_loop(uint64_t seen) {
    auto published = [&] { return loop_.load() != seen; };
    if (!spin_until(published)) {
      std::unique_lock<std::mutex> lock(sleep_mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, published);
      sleepers_.fetch_sub(1);
    }
    return loop_.load(std::memory_order_acquire);
  }

  std::mutex run_mutex_;  // held by the thread whose loop the team runs
  std::vector<std::thread> threads_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> loop_{0};  // (generation << kTeamBits) | team size
  TeamBody body_ = nullptr;
  const void* context_ = nullptr;
  std::atomic<int> pending_{0};  // workers still in the current loop
  std::exception_ptr error_;
  std::mutex error_mutex_;
  // Sleeping: workers wait on wake_ for a new loop, the caller on done_ for the last worker.
  std::mutex sleep_mutex_;
  std::condition_variable wake_, done_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
};

// Made on first use and never destroyed (its threads sleep through the process's exit). A
// child made by fork() has none of the parent's threads, so it starts a team of its own.
Team* g_team = nullptr;
Team& team() {
  static const bool made = [] {
    g_team = new Team;
    return pthread_atfork(nullptr, nullptr, [] { g_team = new Team; }) == 0;
  }();
  (void)made;
  return *g_team;
}
}  // namespace

void run_on_team(int nt, TeamBody body, const void* context) {
  team().run(nt, body, context);
}

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_num_threads.store(n > 0 ? n : default_threads());
}

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_num_threads.load() == 0) g_num_threads.store(default_threads());
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
