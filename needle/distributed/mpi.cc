// The MPI transport of needle::distributed and its CPU communicator: MPI's C API on host
// buffers. Compiled against MPI when CMake finds it (NEEDLE_WITH_MPI); without it, only
// mpi_compiled() and launched_by_mpirun() work, and init() says how to get MPI.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "needle/distributed/communicator.h"

#if NEEDLE_WITH_MPI
// The C API only: without these, mpi.h in C++ also declares the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace needle::distributed::transport {

bool launched_by_mpirun() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var)) return true;
  return false;
}

#if NEEDLE_WITH_MPI

namespace {

bool started_mpi = false;

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, message, &length);
  fail<RuntimeError>("[", what, "] MPI error: ", std::string(message, size_t(length)));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::bool_:
      return MPI_C_BOOL;
    case DType::uint8:
      return MPI_UINT8_T;
    case DType::int32:
      return MPI_INT32_T;
    case DType::int64:
      return MPI_INT64_T;
    case DType::float32:
      return MPI_FLOAT;
    case DType::float64:
      return MPI_DOUBLE;
  }
  fail<TypeError>("[distributed] no MPI type for ", dtype_name(d));
}

// bool sums and maxima are logical or, minima logical and (numpy's add/maximum/minimum).
MPI_Op mpi_op(CollectiveOp op, DType d) {
  bool logical = d == DType::bool_;
  switch (op) {
    case CollectiveOp::sum:
    case CollectiveOp::mean:
      return logical ? MPI_LOR : MPI_SUM;
    case CollectiveOp::max:
      return logical ? MPI_LOR : MPI_MAX;
    case CollectiveOp::min:
      return logical ? MPI_LAND : MPI_MIN;
  }
  return MPI_SUM;
}

// MPI counts are int: calls fn(pointer, count) on chunks of at most 2^30 elements.
template <class Fn>
void for_each_chunk(const View& buffer, Fn&& fn) {
  constexpr int64_t kMaxCount = int64_t(1) << 30;
  const int64_t item = int64_t(dtype_size(buffer.dtype));
  char* data = static_cast<char*>(buffer.data) + buffer.offset * item;
  for (int64_t done = 0, n = buffer.size(); done < n; done += kMaxCount)
    fn(data + done * item, int(std::min(kMaxCount, n - done)));
}

class MpiCommunicator final : public Communicator {
 public:
  void all_reduce(const View& buffer, CollectiveOp op) override {
    for_each_chunk(buffer, [&](char* data, int count) {
      check(MPI_Allreduce(MPI_IN_PLACE, data, count, mpi_type(buffer.dtype),
                          mpi_op(op, buffer.dtype), MPI_COMM_WORLD),
            "all_reduce");
    });
  }
  void broadcast(const View& buffer, int root) override {
    for_each_chunk(buffer, [&](char* data, int count) {
      check(MPI_Bcast(data, count, mpi_type(buffer.dtype), root, MPI_COMM_WORLD), "broadcast");
    });
  }
};

NEEDLE_REGISTER_COMMUNICATOR("cpu", MpiCommunicator);

}  // namespace

bool mpi_compiled() {
  return true;
}

World start() {
  int initialized = 0, provided = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "init");
    started_mpi = true;
  }
  if (provided < MPI_THREAD_SERIALIZED)
    fail<RuntimeError>("[init] MPI gives thread level ", provided,
                       "; the communication thread needs MPI_THREAD_SERIALIZED or more");
  // Errors come back as codes (and then as exceptions), not as an abort inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  World w;
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &node),
        "init");
  MPI_Comm_rank(node, &w.local_rank);
  MPI_Comm_free(&node);
  return w;
}

void stop() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (started_mpi && !finalized) MPI_Finalize();
  started_mpi = false;
}

void barrier() {
  check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

void broadcast_bytes(void* data, size_t bytes, int root) {
  check(MPI_Bcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
}

void abort_job(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

#else  // built without MPI

bool mpi_compiled() {
  return false;
}

namespace {
[[noreturn]] void no_mpi() {
  fail<RuntimeError>("[distributed] needle was built without MPI (CMake option NEEDLE_MPI)");
}
}  // namespace

World start() {
  no_mpi();
}
void stop() {}
void barrier() {
  no_mpi();
}
void broadcast_bytes(void*, size_t, int) {
  no_mpi();
}
void abort_job(int exit_code) {
  std::_Exit(exit_code);
}

#endif

}  // namespace needle::distributed::transport
