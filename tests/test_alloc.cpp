// SPDX-License-Identifier: MIT
// Description: zero heap allocations per message in steady state, counted by replacing the
// global operator new in this test program.
#include "test_support.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

#include "count_allocations.hpp"  // this program counts operator new calls

using namespace coring;

namespace {

constexpr int warmup = 1000, measured = 10'000;

task<> server_fast(coring::socket s, buffer_ring& ring) {
  recv_stream rx(s, ring);
  while (buffer b = co_await rx.next())
    co_await s.send_all(b.data());
}

task<> server_plain(coring::socket s) {
  std::array<std::byte, 4096> buf;
  while (std::size_t n = co_await s.recv(buf))
    co_await s.send_all(std::span(buf).first(n));
}

// Round trips of 64 bytes; returns allocations counted during the measured ones.
task<long> client(coring::socket& c) {
  std::array<std::byte, 64> out{}, in{};
  long before = 0;
  for (int i = 0; i < warmup + measured; ++i) {
    if (i == warmup) before = coring::test::allocations();
    out[0] = static_cast<std::byte>(i);
    co_await c.send_all(out);
    std::size_t got = 0;
    while (got < in.size())
      got += co_await c.recv(std::span(in).subspan(got));
    if (in[0] != out[0]) co_return -1;
  }
  co_return coring::test::allocations() - before;
}

task<long> run(io_context& ctx, bool fast) {
  coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
  acceptor acc(listener);
  coring::socket c = co_await tcp_connect(ctx, listener.sock_name());
  coring::socket s = co_await acc.accept();
  std::optional<buffer_ring> ring;
  if (fast) {
    ring.emplace(ctx, 64, 4096);
    ctx.spawn(server_fast(std::move(s), *ring));
  } else {
    ctx.spawn(server_plain(std::move(s)));
  }
  long n = co_await client(c);
  c.shutdown(SHUT_WR);
  std::array<std::byte, 1> b;
  co_await c.recv(b);  // server saw EOF and ended: nothing refers to the ring any more
  co_return n;
}

}  // namespace

TEST_CASE("an echo round trip allocates nothing in steady state (plain recv)") {
  io_context ctx;
  long n = test::run(ctx, run(ctx, false));
  MESSAGE("allocations during " << measured << " round trips: " << n);
  CHECK(n == 0);
}

TEST_CASE("an echo round trip allocates nothing in steady state (buffer ring)" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  long n = test::run(ctx, run(ctx, true));
  MESSAGE("allocations during " << measured << " round trips: " << n);
  CHECK(n == 0);
}
