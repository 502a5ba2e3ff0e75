// The CUDA communicator of needle::distributed: NCCL collectives on device buffers, its
// communicator bootstrapped over MPI (rank 0's ncclUniqueId broadcast to every rank). Each
// rank drives the GPU local_rank % device count, chosen when distributed.init() runs, so a
// job must create its CUDA tensors after init(). Compiled with CUDA, MPI and NCCL
// (NEEDLE_WITH_NCCL); otherwise CUDA collectives raise "no communicator for device 'cuda'".
#if NEEDLE_WITH_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include "needle/distributed/communicator.h"

namespace needle::distributed {

namespace {

void check_nccl(ncclResult_t result, const char* what) {
  if (result != ncclSuccess)
    fail<RuntimeError>("[", what, "] NCCL error: ", ncclGetErrorString(result));
}

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail<RuntimeError>("[", what, "] CUDA error: ", cudaGetErrorString(err));
  }
}

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::bool_:
    case DType::uint8:
      return ncclUint8;
    case DType::int32:
      return ncclInt32;
    case DType::int64:
      return ncclInt64;
    case DType::float32:
      return ncclFloat32;
    case DType::float64:
      return ncclFloat64;
  }
  fail<TypeError>("[distributed] no NCCL type for ", dtype_name(d));
}

// bool is stored as 0/1 bytes: or is max, and is min (and a sum of bools would overflow
// 1, so sum is max too).
ncclRedOp_t nccl_op(CollectiveOp op, DType d) {
  switch (op) {
    case CollectiveOp::sum:
    case CollectiveOp::mean:
      return d == DType::bool_ ? ncclMax : ncclSum;
    case CollectiveOp::max:
      return ncclMax;
    case CollectiveOp::min:
      return ncclMin;
  }
  return ncclSum;
}

int device_of_rank(int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no GPU: CPU-only jobs still run
    return 0;
  }
  return count > 0 ? local_rank % count : 0;
}

// Every rank on a machine drives its own GPU (when it has several).
const bool device_chosen_at_init = [] {
  register_init_hook([](int, int world_size, int local_rank) {
    if (world_size > 1 && cudaSetDevice(device_of_rank(local_rank)) != cudaSuccess)
      cudaGetLastError();
  });
  return true;
}();

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator() : device_(device_of_rank(local_rank())) {
    check_cuda(cudaSetDevice(device_), "init");
    ncclUniqueId id;
    if (rank() == 0) check_nccl(ncclGetUniqueId(&id), "init");
    transport::broadcast_bytes(&id, sizeof(id), 0);
    check_nccl(ncclCommInitRank(&comm_, world_size(), id, rank()), "init");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "init");
    check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "init");
  }
  ~NcclCommunicator() override {
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }

  void all_reduce(const View& buffer, CollectiveOp op) override {
    void* data = element_pointer(buffer);
    run("all_reduce", [&] {
      return ncclAllReduce(data, data, size_t(buffer.size()), nccl_type(buffer.dtype),
                           nccl_op(op, buffer.dtype), comm_, stream_);
    });
  }
  void broadcast(const View& buffer, int root) override {
    void* data = element_pointer(buffer);
    run("broadcast", [&] {
      return ncclBroadcast(data, data, size_t(buffer.size()), nccl_type(buffer.dtype), root, comm_,
                           stream_);
    });
  }

 private:
  static void* element_pointer(const View& v) {
    return static_cast<char*>(v.data) + v.offset * int64_t(dtype_size(v.dtype));
  }
  // The collective runs on its own stream after everything queued so far on the default
  // stream (where the kernels that wrote the buffer run), and returns when it is done.
  template <class Launch>
  void run(const char* what, Launch launch) {
    check_cuda(cudaSetDevice(device_), what);  // the calling thread may be the comm thread
    check_cuda(cudaEventRecord(ready_, cudaStreamLegacy), what);
    check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), what);
    check_nccl(launch(), what);
    check_cuda(cudaStreamSynchronize(stream_), what);
  }

  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

NEEDLE_REGISTER_COMMUNICATOR("cuda", NcclCommunicator);

}  // namespace

}  // namespace needle::distributed

#endif  // NEEDLE_WITH_NCCL
