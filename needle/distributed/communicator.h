// The device side of needle::distributed: a Communicator runs collectives on contiguous
// buffers of one device kind, and the process-wide transport (MPI) that starts the job and
// bootstraps device communicators. The CPU communicator is MPI (mpi.cc); the CUDA one is
// NCCL (backend_cuda/nccl_communicator.cc). Each registers itself for its device name with
// NEEDLE_REGISTER_COMMUNICATOR, so distributed.cc has no per-device code.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "needle/backend.h"
#include "needle/distributed/distributed.h"

namespace needle::distributed {

class Communicator {
 public:
  virtual ~Communicator() = default;
  // In place over every rank; `buffer` is contiguous; op is sum, max or min (mean is a sum
  // that distributed.cc divides). Returns once the result is in `buffer` (a device queue
  // may still hold it: the backend's synchronize() orders it before later kernels).
  virtual void all_reduce(const View& buffer, CollectiveOp op) = 0;
  virtual void broadcast(const View& buffer, int root) = 0;
};

// Registers the factory of `device`'s communicator; distributed.cc calls it on the first
// collective on that device (on every rank at the same point, so it may itself communicate).
using CommunicatorFactory = std::function<std::unique_ptr<Communicator>()>;
void register_communicator(const std::string& device, CommunicatorFactory factory);

// Runs `hook` in init(), once the world is known, before any collective: the CUDA side picks
// the GPU of this rank there, before the job allocates on a device.
using InitHook = std::function<void(int rank, int world_size, int local_rank)>;
void register_init_hook(InitHook hook);

#define NEEDLE_REGISTER_COMMUNICATOR(device, Type)                                                \
  static const bool NEEDLE_CONCAT(needle_communicator_registered_, __LINE__) = [] {               \
    ::needle::distributed::register_communicator(                                                 \
        device, [] { return std::unique_ptr<::needle::distributed::Communicator>(new Type()); }); \
    return true;                                                                                  \
  }()

// The transport (mpi.cc). Every function but mpi_compiled() needs MPI compiled in.
namespace transport {
struct World {
  int rank = 0, size = 1, local_rank = 0;
};
bool mpi_compiled();
// Whether this process was started by mpirun (its environment says so).
bool launched_by_mpirun();
// Starts MPI (or joins it when, e.g., mpi4py started it) with the thread support the
// communication thread needs; RuntimeError when MPI cannot give it.
World start();
void stop();  // MPI_Finalize, when start() initialized MPI
void barrier();
void broadcast_bytes(void* data, size_t bytes, int root);  // host memory, for bootstraps
[[noreturn]] void abort_job(int exit_code);
}  // namespace transport

}  // namespace needle::distributed
