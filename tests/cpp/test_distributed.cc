// needle::distributed in a world of one process (the multi-process jobs run under mpirun
// from tests/python/test_distributed.py): init/finalize, collectives leaving their input,
// the argument errors, and the autograd grad hooks and end-of-backward callbacks that
// data-parallel training starts its reductions from.
#include <catch2/catch.hpp>

#include "needle/needle.h"

using namespace needle;
namespace dist = needle::distributed;

TEST_CASE("a world of one: collectives return their input", "[distributed]") {
  dist::init();
  REQUIRE(dist::is_initialized());
  CHECK(dist::rank() == 0);
  CHECK(dist::world_size() == 1);
  CHECK(dist::local_rank() == 0);
  NDArray a = NDArray::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  for (const char* op : {"sum", "mean", "max", "min"}) {
    dist::all_reduce(a, dist::collective_op(op));
    CHECK(a.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  }
  NDArray view = a.permute({1, 0});  // not compact: reduced through a copy, written back
  dist::all_reduce(view, dist::CollectiveOp::sum);
  dist::broadcast(view, 0);
  auto work = dist::all_reduce_async(a, dist::CollectiveOp::mean);
  CHECK(work->is_completed());
  work->wait();
  work->wait();  // a second wait is a no-op
  dist::barrier();
  CHECK(a.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  dist::finalize();
  CHECK_FALSE(dist::is_initialized());
  CHECK_THROWS_AS(dist::rank(), RuntimeError);
}

TEST_CASE("collective errors name the collective", "[distributed]") {
  CHECK_THROWS_WITH(dist::barrier(), Catch::Contains("[barrier] needle.distributed is not initialized"));
  dist::init(5);
  NDArray ints = NDArray::from_vector(std::vector<int32_t>{1, 2}, {2});
  CHECK_THROWS_AS(dist::collective_op("prod"), ValueError);
  CHECK_THROWS_WITH(dist::all_reduce(ints, dist::CollectiveOp::mean),
                    Catch::Contains("[all_reduce] op 'mean' needs a float32 or float64 array, got int32"));
  CHECK_THROWS_WITH(dist::broadcast(ints, 1),
                    Catch::Contains("[broadcast] root 1 is not a rank of this job of 1"));
  CHECK_THROWS_AS(dist::init(0), ValueError);
  dist::finalize();
}

TEST_CASE("grad hooks see final grads; queued callbacks run when backward ends", "[autograd]") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2}, {2}, true);
  Tensor b = Tensor::from_vector(std::vector<double>{3, 4}, {2}, true);
  std::vector<std::string> events;
  a.node()->add_grad_hook([&](const NodePtr& node) {
    auto grad = Tensor(std::static_pointer_cast<TensorNode>(node->grad())).to_vector<double>();
    events.push_back("a " + std::to_string(grad[0]) + " " + std::to_string(grad[1]));
    queue_backward_callback([&] {
      events.push_back("end, b has a grad: " + std::to_string(bool(b.node()->grad())));
    });
  });
  (summation(a * b) + summation(a * a)).backward();
  REQUIRE(events.size() == 2);
  CHECK(events[0] == "a 5.000000 8.000000");
  CHECK(events[1] == "end, b has a grad: 1");
  CHECK_THROWS_AS(queue_backward_callback([] {}), RuntimeError);
}
