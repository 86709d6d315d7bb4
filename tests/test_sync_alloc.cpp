// SPDX-License-Identifier: MIT
// Description: channel ping-pong with zero heap allocations per item in steady state, counted by
// replacing the global operator new in this test program.
#include "test_support.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

#include "count_allocations.hpp"  // this program counts operator new calls

using namespace coring;

namespace {

constexpr int warmup = 1000, measured = 100'000;

/// Sends back every item it receives, plus one, until the channel closes.
task<> ponger(channel<int>& in, channel<int>& out) {
  while (true) {
    std::optional<int> v = co_await in.receive();
    if (!v) break;
    co_await out.send(*v + 1);
  }
  out.close();
}

}  // namespace

TEST_CASE("channel ping-pong makes no allocation per item in steady state") {
  io_context ctx;
  long counted = -1;
  int bad = 0;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    channel<int> ping(ctx, 1), pong(ctx, 1);
    ctx.spawn(ponger(ping, pong));
    long before = 0;
    for (int i = 0; i < warmup + measured; ++i) {
      if (i == warmup) before = coring::test::allocations();
      co_await ping.send(i);
      std::optional<int> v = co_await pong.receive();
      if (!v || *v != i + 1) ++bad;
    }
    counted = coring::test::allocations() - before;
    ping.close();
    std::optional<int> end = co_await pong.receive();
    CHECK_FALSE(end.has_value());
  });
  CHECK(bad == 0);
  MESSAGE("allocations over ", measured, " round trips: ", counted);
  CHECK(counted == 0);
}
