// needle::distributed: collectives across the processes of a data-parallel job, on MPI
// (CPU buffers) and NCCL (CUDA buffers, bootstrapped over MPI).
//
// init() reads the rank and size that `mpirun` sets; run without mpirun it is a world of one
// process and every collective returns its input, so one script serves both. Collectives
// are in place and must be called in the same order, with the same shapes, on every rank
// (as with MPI itself). Every dtype works: op "sum", "max" and "min" on all of them (for
// bool, sum and max are logical or and min is logical and, as numpy's add/maximum/minimum
// of bools), "mean" on float32 and float64 (the sum, then divided by world_size()).
//
// Two threads keep a job from hanging: collectives queued with all_reduce_async run on a
// communication thread (so they overlap the computation of the calling thread), and a
// watchdog aborts every rank with a message when any collective takes longer than the
// timeout given to init() (another rank failed, exited, or called a different collective).
#pragma once

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "needle/ndarray.h"

namespace needle::distributed {

enum class CollectiveOp { sum, mean, max, min };
CollectiveOp collective_op(const std::string& name);  // "sum", ...; ValueError otherwise
const char* collective_op_name(CollectiveOp op);

// Whether this build can join a multi-process job (compiled with MPI: CMake NEEDLE_MPI).
bool mpi_available();
// Joins the job (idempotent). A collective that does not finish within timeout_seconds
// aborts every rank. Under mpirun without MPI compiled in: RuntimeError saying so.
void init(double timeout_seconds = 300);
bool is_initialized();
// This process's rank, the number of processes, and the rank among those on this machine
// (to pick a GPU). RuntimeError before init().
int rank();
int world_size();
int local_rank();
// Waits for every queued collective, leaves the job (MPI_Finalize when init() started MPI).
void finalize();
// Prints `message` to stderr and ends every rank of the job (MPI_Abort); never returns.
[[noreturn]] void abort(const std::string& message, int exit_code = 1);

void barrier();
// In place: every rank's `array` becomes op over all ranks' arrays. Any strides (a
// non-compact array is reduced through a compact copy and written back).
void all_reduce(NDArray& array, CollectiveOp op);
// In place: every rank's `array` becomes rank `root`'s.
void broadcast(NDArray& array, int root = 0);

// A queued collective: wait() blocks until it is done, then finishes it on the calling
// thread (the division of "mean", the write-back of a non-compact array) and rethrows its
// error, if any. Calling wait() again is a no-op.
class Work {
 public:
  void wait();
  bool is_completed() const;

 private:
  friend struct Engine;
  friend std::shared_ptr<Work> all_reduce_async(const NDArray& array, CollectiveOp op);
  NDArray target_;  // the caller's array
  NDArray buffer_;  // what the collective reduces: target_, or a compact copy of it
  CollectiveOp op_ = CollectiveOp::sum;
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false, finished_ = false;
  std::exception_ptr error_;
};

// Queues an all_reduce on the communication thread and returns at once. Collectives (queued
// or not) run in the order they are called; `array` must not be read or written until wait().
std::shared_ptr<Work> all_reduce_async(const NDArray& array, CollectiveOp op);

}  // namespace needle::distributed
