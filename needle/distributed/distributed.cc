// needle::distributed's engine (see distributed.h): the state of the job, the communication
// thread that runs queued collectives in order, the watchdog that turns a hung collective
// into an abort of the whole job, and the dispatch of each collective to its device's
// Communicator.
#include "needle/distributed/distributed.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <thread>
#include <vector>

#include "needle/distributed/communicator.h"

namespace needle::distributed {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::map<std::string, CommunicatorFactory>& factories() {
  static std::map<std::string, CommunicatorFactory> registry;
  return registry;
}

void check_op_dtype(const char* name, CollectiveOp op, DType dtype) {
  if (op == CollectiveOp::mean && !is_floating(dtype))
    fail<TypeError>("[", name, "] op 'mean' needs a float32 or float64 array, got ",
                    dtype_name(dtype), " (use 'sum')");
}

std::vector<InitHook>& init_hooks() {
  static std::vector<InitHook> hooks;
  return hooks;
}

}  // namespace

void register_init_hook(InitHook hook) {
  init_hooks().push_back(std::move(hook));
}

void register_communicator(const std::string& device, CommunicatorFactory factory) {
  factories()[device] = std::move(factory);
}

CollectiveOp collective_op(const std::string& name) {
  if (name == "sum") return CollectiveOp::sum;
  if (name == "mean") return CollectiveOp::mean;
  if (name == "max") return CollectiveOp::max;
  if (name == "min") return CollectiveOp::min;
  fail<ValueError>("[all_reduce] op must be 'sum', 'mean', 'max' or 'min', got '", name, "'");
}

const char* collective_op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::sum:
      return "sum";
    case CollectiveOp::mean:
      return "mean";
    case CollectiveOp::max:
      return "max";
    case CollectiveOp::min:
      return "min";
  }
  return "?";
}

namespace {

// What the watchdog names when a collective hangs; `array` is valid while it runs.
struct Running {
  const char* name = "";
  CollectiveOp op = CollectiveOp::sum;
  const NDArray* array = nullptr;  // null for a barrier

  std::string describe() const {
    std::string s = name;
    if (std::string(name) == "all_reduce") s += std::string("(") + collective_op_name(op) + ")";
    if (array)
      s += " of " + shape_str(array->shape()) + " " + dtype_name(array->dtype()) + " on " +
           array->device().name();
    return s;
  }
};

// A non-compact caller's array gets the result of its compact copy (`target` is a handle:
// assigning through it writes the caller's memory).
void write_back(const NDArray& buffer, NDArray target) {
  if (buffer.buffer() != target.buffer()) target.assign(buffer);
}

// After the sum of a "mean", the division; then the write-back.
void finish(CollectiveOp op, int world_size, const NDArray& buffer, const NDArray& target) {
  if (op == CollectiveOp::mean) {
    View v = buffer.view();
    buffer.device().binary_scalar(BinaryOp::multiply, v, 1.0 / world_size, v, false);
  }
  write_back(buffer, target);
}

}  // namespace

// The job's state. Collectives run one at a time (MPI is started with
// MPI_THREAD_SERIALIZED), on the communication thread when queued, on the caller's thread
// otherwise, and always in call order: a direct call first waits for the queue to drain.
// A direct call allocates nothing and formats nothing, so a small message costs what MPI
// costs; the watchdog formats its message only when it fires.
struct Engine {
  bool initialized = false;
  bool started_transport = false;
  transport::World world;
  double timeout_seconds = 300;

  std::mutex collective_mutex;  // held while a collective runs
  std::map<const Backend*, std::unique_ptr<Communicator>> communicators;

  std::thread worker;
  std::mutex queue_mutex;
  std::condition_variable queue_cv, drained_cv;
  std::deque<std::shared_ptr<Work>> queue;
  std::atomic<int> pending{0};        // queued or running on the worker
  std::atomic<bool> stopping{false};  // set by finalize(), read by both threads

  std::thread watchdog;
  std::mutex watch_mutex;
  std::condition_variable watch_cv;
  int64_t running_since_ns = 0;  // 0 when no collective runs; guarded by watch_mutex
  Running running;

  static Engine& get() {
    static Engine* engine = new Engine();  // never destroyed: its threads may outlive statics
    return *engine;
  }

  void require_initialized(const char* name) const {
    if (!initialized)
      fail<RuntimeError>("[", name, "] needle.distributed is not initialized: call init() first");
  }

  Communicator& communicator(const Backend& device) {
    auto found = communicators.find(&device);
    if (found != communicators.end()) return *found->second;
    auto factory = factories().find(device.name());
    if (factory == factories().end())
      fail<RuntimeError>("[distributed] no communicator for device '", device.name(),
                         "' in this build (CUDA tensors need NCCL at build time)");
    return *(communicators[&device] = factory->second());
  }

  // Runs fn(communicator, view) on `buffer` (compact; null for a barrier) with the
  // collective mutex held and the watchdog watching.
  template <class Fn>
  void run(const char* name, CollectiveOp op, const NDArray* buffer, Fn&& fn) {
    std::lock_guard<std::mutex> lock(collective_mutex);
    Communicator* c = buffer ? &communicator(buffer->device()) : nullptr;
    {
      std::lock_guard<std::mutex> watch(watch_mutex);
      running = Running{name, op, buffer};
      running_since_ns = now_ns();
    }
    struct Unwatch {
      Engine& e;
      ~Unwatch() {
        std::lock_guard<std::mutex> watch(e.watch_mutex);
        e.running_since_ns = 0;
      }
    } unwatch{*this};
    fn(c, buffer ? buffer->view() : View{});
  }

  void run_all_reduce(CollectiveOp op, const NDArray& buffer) {
    CollectiveOp wire = op == CollectiveOp::mean ? CollectiveOp::sum : op;
    run("all_reduce", op, &buffer,
        [wire](Communicator* c, const View& v) { c->all_reduce(v, wire); });
  }

  // Runs a queued all_reduce and marks it done (its error kept for wait()).
  void execute(Work& work) {
    std::exception_ptr error;
    try {
      run_all_reduce(work.op_, work.buffer_);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(work.mutex_);
      work.error_ = error;
      work.done_ = true;
    }
    work.done_cv_.notify_all();
  }

  void wait_until_drained() {
    if (pending.load() == 0) return;
    std::unique_lock<std::mutex> lock(queue_mutex);
    drained_cv.wait(lock, [&] { return pending.load() == 0; });
  }

  void enqueue(std::shared_ptr<Work> work) {
    {
      std::lock_guard<std::mutex> lock(queue_mutex);
      pending++;
      queue.push_back(std::move(work));
    }
    queue_cv.notify_one();
  }

  void worker_loop() {
    for (;;) {
      std::shared_ptr<Work> work;
      {
        std::unique_lock<std::mutex> lock(queue_mutex);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping, and nothing left
        work = std::move(queue.front());
        queue.pop_front();
      }
      execute(*work);
      {
        std::lock_guard<std::mutex> lock(queue_mutex);
        if (--pending == 0) drained_cv.notify_all();
      }
    }
  }

  // Polls once a second (so starting a collective costs no wake-up) and aborts the job
  // when one has run longer than the timeout.
  void watchdog_loop() {
    std::unique_lock<std::mutex> lock(watch_mutex);
    while (!stopping) {
      if (running_since_ns && double(now_ns() - running_since_ns) / 1e9 > timeout_seconds) {
        std::fprintf(stderr,
                     "needle.distributed: rank %d of %d: %s did not finish within %g s (another "
                     "rank failed, exited, or called a different collective); aborting the job\n",
                     world.rank, world.size, running.describe().c_str(), timeout_seconds);
        std::fflush(stderr);
        transport::abort_job(1);
      }
      watch_cv.wait_for(lock, std::chrono::seconds(1));
    }
  }

  // Checks an all_reduce's arguments; false when there is nothing to communicate.
  bool start_all_reduce(const NDArray& array, CollectiveOp op) const {
    require_initialized("all_reduce");
    check_op_dtype("all_reduce", op, array.dtype());
    return world.size > 1 && array.size() > 0;
  }
};

bool mpi_available() {
  return transport::mpi_compiled();
}

void init(double timeout_seconds) {
  Engine& e = Engine::get();
  if (!(timeout_seconds > 0))
    fail<ValueError>("[init] timeout must be positive, got ", timeout_seconds, " s");
  e.timeout_seconds = timeout_seconds;
  if (e.initialized) return;
  if (transport::launched_by_mpirun()) {
    if (!transport::mpi_compiled())
      fail<RuntimeError>(
          "[init] this process was started by mpirun, but needle was built without MPI: install "
          "libopenmpi-dev (.ci/install-deps does) and rebuild (CMake option NEEDLE_MPI)");
    e.world = transport::start();
    e.started_transport = true;
  }
  e.initialized = true;
  for (const InitHook& hook : init_hooks()) hook(e.world.rank, e.world.size, e.world.local_rank);
  if (e.world.size > 1) {
    e.stopping = false;
    e.worker = std::thread([&e] { e.worker_loop(); });
    e.watchdog = std::thread([&e] { e.watchdog_loop(); });
  }
}

bool is_initialized() {
  return Engine::get().initialized;
}

int rank() {
  Engine::get().require_initialized("rank");
  return Engine::get().world.rank;
}

int world_size() {
  Engine::get().require_initialized("world_size");
  return Engine::get().world.size;
}

int local_rank() {
  Engine::get().require_initialized("local_rank");
  return Engine::get().world.local_rank;
}

void finalize() {
  Engine& e = Engine::get();
  if (!e.initialized) return;
  if (e.worker.joinable()) {
    {
      std::lock_guard<std::mutex> lock(e.queue_mutex);
      e.stopping = true;
    }
    e.queue_cv.notify_all();
    e.worker.join();
    {
      std::lock_guard<std::mutex> lock(e.watch_mutex);
      e.watch_cv.notify_all();
    }
    e.watchdog.join();
  }
  e.communicators.clear();
  if (e.started_transport) transport::stop();
  e.started_transport = false;
  e.initialized = false;
  e.world = transport::World{};
}

void abort(const std::string& message, int exit_code) {
  Engine& e = Engine::get();
  std::fprintf(stderr, "needle.distributed: rank %d of %d: %s; aborting the job\n", e.world.rank,
               e.world.size, message.c_str());
  std::fflush(stderr);
  if (e.started_transport) transport::abort_job(exit_code);
  std::_Exit(exit_code);
}

void barrier() {
  Engine& e = Engine::get();
  e.require_initialized("barrier");
  if (e.world.size == 1) return;
  e.wait_until_drained();
  e.run("barrier", CollectiveOp::sum, nullptr,
        [](Communicator*, const View&) { transport::barrier(); });
}

void all_reduce(NDArray& array, CollectiveOp op) {
  Engine& e = Engine::get();
  if (!e.start_all_reduce(array, op)) return;  // one rank: the reduction of one array is itself
  NDArray buffer = array.is_compact() ? array : array.compact();
  e.wait_until_drained();
  e.run_all_reduce(op, buffer);
  finish(op, e.world.size, buffer, array);
}

std::shared_ptr<Work> all_reduce_async(const NDArray& array, CollectiveOp op) {
  Engine& e = Engine::get();
  auto work = std::make_shared<Work>();
  work->target_ = work->buffer_ = array;
  work->op_ = op;
  if (!e.start_all_reduce(array, op)) {
    work->done_ = work->finished_ = true;  // nothing to communicate, so nothing to finish
    return work;
  }
  if (!array.is_compact()) work->buffer_ = array.compact();
  e.enqueue(work);
  return work;
}

void broadcast(NDArray& array, int root) {
  Engine& e = Engine::get();
  e.require_initialized("broadcast");
  if (root < 0 || root >= e.world.size)
    fail<IndexError>("[broadcast] root ", root, " is not a rank of this job of ", e.world.size);
  if (e.world.size == 1 || array.size() == 0) return;
  NDArray buffer = array.is_compact() ? array : array.compact();
  e.wait_until_drained();
  e.run("broadcast", CollectiveOp::sum, &buffer,
        [root](Communicator* c, const View& v) { c->broadcast(v, root); });
  write_back(buffer, array);
}

void Work::wait() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return done_; });
    if (finished_) return;
    finished_ = true;
  }
  if (error_) std::rethrow_exception(error_);
  finish(op_, Engine::get().world.size, buffer_, target_);
}

bool Work::is_completed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

}  // namespace needle::distributed
