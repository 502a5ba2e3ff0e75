// The CPU backend's thread team (backend_cpu/threads.cc): every share of a loop runs once,
// the caller's as share 0; loops inside loops, loops from two threads at once, exceptions,
// a team that has gone to sleep, and a child process made by fork().
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend_cpu/threads.h"

using needle::cpu::parallel;

namespace {
// Runs a loop of nt shares; each share's count and whether share 0 ran on the caller.
struct LoopRecord {
  std::vector<int> runs;
  std::vector<int64_t> teams;
  bool share0_on_caller = false;
};
LoopRecord record_loop(int nt) {
  LoopRecord r;
  r.runs.assign(size_t(nt), 0);
  r.teams.assign(size_t(nt), -1);
  const auto caller = std::this_thread::get_id();
  parallel(nt, [&](int64_t t, int64_t team) {
    ++r.runs[size_t(t)];
    r.teams[size_t(t)] = team;
    if (t == 0) r.share0_on_caller = std::this_thread::get_id() == caller;
  });
  return r;
}
}  // namespace

TEST_CASE("thread team: each share runs once, share 0 on the caller", "[threads]") {
  for (int nt : {2, 3, 5, 2}) {
    const LoopRecord r = record_loop(nt);
    CHECK(r.runs == std::vector<int>(size_t(nt), 1));
    CHECK(r.teams == std::vector<int64_t>(size_t(nt), nt));
    CHECK(r.share0_on_caller);
  }
}

TEST_CASE("thread team: a loop inside a loop runs on its own thread", "[threads]") {
  std::atomic<int> inner_shares{0}, inner_team_sum{0};
  parallel(2, [&](int64_t, int64_t) {
    parallel(4, [&](int64_t t, int64_t team) {
      CHECK(t == 0);
      ++inner_shares;
      inner_team_sum += int(team);
    });
  });
  CHECK(inner_shares == 2);
  CHECK(inner_team_sum == 2);
}

TEST_CASE("thread team: an exception is rethrown once every share has finished", "[threads]") {
  std::atomic<int> finished{0};
  auto loop = [&] {
    parallel(3, [&](int64_t t, int64_t) {
      if (t == 2) throw std::runtime_error("share 2 failed");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ++finished;
    });
  };
  CHECK_THROWS_WITH(loop(), "share 2 failed");
  CHECK(finished == 2);
  CHECK(record_loop(3).runs == std::vector<int>{1, 1, 1});  // the team still works
}

TEST_CASE("thread team: thousands of loops, and loops after the team fell asleep", "[threads]") {
  int64_t total = 0;
  for (int i = 0; i < 5000; ++i) {
    std::atomic<int64_t> sum{0};
    parallel(2, [&](int64_t t, int64_t) { sum += t + 1; });
    total += sum;
  }
  CHECK(total == 5000 * 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // longer than any spin
  CHECK(record_loop(2).runs == std::vector<int>{1, 1});
}

TEST_CASE("thread team: loops from two threads at once all complete", "[threads]") {
  std::atomic<int64_t> shares{0};
  auto loops = [&] {
    for (int i = 0; i < 500; ++i)
      parallel(2, [&](int64_t, int64_t team) { shares += team == 2 ? 1 : 2; });
  };
  std::thread other(loops);
  loops();
  other.join();
  CHECK(shares == 2 * 500 * 2);  // a loop that found the team busy ran whole on its thread
}

TEST_CASE("thread team: a child made by fork() has a team of its own", "[threads]") {
  CHECK(record_loop(2).runs == std::vector<int>{1, 1});  // the parent's team exists
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const LoopRecord r = record_loop(3);
    _exit(r.runs == std::vector<int>{1, 1, 1} && r.share0_on_caller ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
