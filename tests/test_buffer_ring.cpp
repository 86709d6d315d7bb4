// SPDX-License-Identifier: MIT
// Description: provided-buffer ring and recv_stream: multishot delivery, EOF, ENOBUFS re-arm,
// backpressure, fallback, per-wait deadlines and stop tokens, and lifetimes.
#include "test_support.hpp"

#include <stop_token>
#include <string>
#include <vector>

#include <sys/socket.h>

using namespace coring;
using namespace std::chrono_literals;
using test::bytes;

namespace {

// The byte at offset i of a test stream.
std::byte pat(std::size_t i) { return static_cast<std::byte>((i * 31 + i / 251) & 0xff); }

task<> send_pattern(coring::socket& s, std::size_t total, std::size_t chunk) {
  std::vector<std::byte> buf(chunk);
  for (std::size_t off = 0; off < total; off += chunk) {
    std::size_t n = std::min(chunk, total - off);
    for (std::size_t i = 0; i < n; ++i)
      buf[i] = pat(off + i);
    co_await s.send_all(std::span(buf).first(n));
  }
  s.shutdown(SHUT_WR);
}

// Reads the stream to EOF and checks every byte. Returns: bytes received.
task<std::size_t> check_pattern(recv_stream& rx, std::size_t& bad) {
  std::size_t off = 0;
  while (buffer b = co_await rx.next()) {
    for (std::byte x : b.data())
      if (x != pat(off++)) ++bad;
  }
  co_return off;
}

}  // namespace

TEST_CASE("recv_stream delivers every byte in order and then EOF as an empty buffer" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 64, 4096);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    ctx.spawn(send_pattern(pair.client, 1 << 20, 65536));
    std::size_t bad = 0;
    std::size_t got = co_await check_pattern(rx, bad);
    CHECK(got == (1u << 20));
    CHECK(bad == 0);
    buffer after = co_await rx.next();  // EOF stays EOF
    CHECK_FALSE(after);
    CHECK(ring.available() == ring.count());
  });
}

TEST_CASE("a multishot recv_stream delivers every byte in order and then EOF" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 64, 4096);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring, {.max_queued = 8, .multishot = true});
    ctx.spawn(send_pattern(pair.client, 1 << 20, 65536));
    std::size_t bad = 0;
    std::size_t got = co_await check_pattern(rx, bad);
    CHECK(got == (1u << 20));
    CHECK(bad == 0);
    CHECK(ring.available() == ring.count());
  });
}

TEST_CASE("an idle recv_stream holds no buffer; data takes one only while it is held" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    co_await pair.client.send_all(bytes("hello"));
    buffer b = co_await rx.next();
    CHECK(test::text(b.data()) == "hello");
    CHECK(ring.available() == ring.count() - 1);
    b.reset();
    CHECK(ring.available() == ring.count());
  });
}

TEST_CASE("ENOBUFS: a ring of 2 buffers and 4,096 sends of 64 bytes lose nothing" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        buffer_ring ring(ctx, 2, 64);
        auto pair = co_await test::make_tcp_pair(ctx);
        recv_stream rx(pair.server, ring, {.max_queued = 16, .multishot = true});
        ctx.spawn(send_pattern(pair.client, 4096 * 64, 64));
        std::size_t bad = 0;
        // Hold each buffer across a loop turn so the ring really runs dry.
        std::size_t off = 0;
        while (buffer b = co_await rx.next()) {
          co_await sleep_for(ctx, 0ms);
          for (std::byte x : b.data())
            if (x != pat(off++)) ++bad;
        }
        CHECK(off == 4096u * 64);
        CHECK(bad == 0);
      },
      60s);
}

TEST_CASE("backpressure: a stream nobody reads holds at most max_queued ring buffers" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        buffer_ring ring(ctx, 64, 1024);
        auto pair = co_await test::make_tcp_pair(ctx);
        recv_stream rx(pair.server, ring, {.max_queued = 4});
        co_await pair.client.send_all(bytes("x"));
        buffer first = co_await rx.next();  // arms the multishot
        // The client now sends 1 MiB that nobody consumes.
        std::vector<std::byte> big(1 << 20, std::byte{7});
        auto r = co_await as_result(pair.client.send(big, MSG_DONTWAIT));
        CHECK(r);
        unsigned min_available = ring.count();
        for (int turn = 0; turn < 200; ++turn) {
          co_await sleep_for(ctx, 1ms);
          min_available = std::min(min_available, ring.available());
        }
        // 1 held by `first` + at most max_queued queued.
        CHECK(min_available >= ring.count() - 1 - 4);
        // And all of it still arrives once the consumer reads.
        first.reset();
        std::size_t total = 0;
        pair.client.shutdown(SHUT_WR);
        while (buffer b = co_await rx.next())
          total += b.size();
        CHECK(total == *r);
      },
      60s);
}

TEST_CASE("a ring running low falls back to a private buffer and loses nothing" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        buffer_ring ring(ctx, 16, 256);
        auto pair = co_await test::make_tcp_pair(ctx);
        // Hold every ring buffer outside the stream under test.
        auto other = co_await test::make_tcp_pair(ctx);
        recv_stream hog(other.server, ring, {.max_queued = 16});
        std::vector<buffer> held;
        std::vector<std::byte> chunk(256, std::byte{1});
        while (ring.available() > 0) {
          co_await other.client.send_all(chunk);
          held.push_back(co_await hog.next());
        }
        CHECK(ring.available() == 0);
        recv_stream rx(pair.server, ring);
        ctx.spawn(send_pattern(pair.client, 100'000, 1000));
        std::size_t bad = 0;
        CHECK(co_await check_pattern(rx, bad) == 100'000);
        CHECK(bad == 0);
      },
      60s);
}

TEST_CASE("a reset peer ends the stream with ECONNRESET after the data that came first" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    co_await pair.client.send_all(bytes("data"));
    buffer b = co_await rx.next();
    CHECK(test::text(b.data()) == "data");
    pair.client.set_option(sockopt::linger{true, 0});
    co_await pair.client.close();
    auto r = co_await as_result(rx.next());
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::connection_reset);
  });
}

TEST_CASE("destroying an armed recv_stream cancels it and returns every buffer" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    {
      recv_stream rx(pair.server, ring);
      co_await pair.client.send_all(bytes("abc"));
      buffer b = co_await rx.next();
      CHECK(b.size() == 3);
    }  // armed multishot: cancelled; its state is freed by the final completion
    const bool idle = co_await test::kernel_idle(ctx);
    CHECK(idle);
    CHECK(ring.available() == ring.count());
    // A new stream on the same socket works.
    recv_stream rx2(pair.server, ring);
    co_await pair.client.send_all(bytes("def"));
    buffer b2 = co_await rx2.next();
    CHECK(test::text(b2.data()) == "def");
  });
}

TEST_CASE("socket::cancel ends a waiting next() with operation_canceled" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    auto canceller = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 5ms);
      s.cancel();
    };
    ctx.spawn(canceller(ctx, pair.server));
    auto r = co_await as_result(rx.next());
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
  });
}

TEST_CASE("an idle timeout ends a silent stream with timed_out; activity keeps it alive" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    // Margins for valgrind and ASan -O0: the talker's gaps (250 ms) are a quarter of the idle
    // timeout (1 s), and its 6 gaps together (1.5 s) are longer than the timeout, so a timer
    // that activity did not restart would fire before the last message.
    constexpr auto idle = std::chrono::milliseconds(1000), gap = std::chrono::milliseconds(250);
    recv_stream rx(pair.server, ring, {.idle_timeout = idle});
    auto talker = [](io_context& ctx, coring::socket& s, std::chrono::milliseconds gap) -> task<> {
      for (int i = 0; i < 6; ++i) {
        co_await sleep_for(ctx, gap);
        co_await s.send_all(bytes("."));
      }
    };
    ctx.spawn(talker(ctx, pair.client, gap));
    int got = 0;
    const auto start = std::chrono::steady_clock::now();
    auto last = start;
    for (;;) {
      auto r = co_await as_result(rx.next());
      if (!r) {
        CHECK(r.error() == std::errc::timed_out);
        break;
      }
      got += static_cast<int>(r->size());
      last = std::chrono::steady_clock::now();
    }
    const auto end = std::chrono::steady_clock::now();
    CHECK(got == 6);  // the activity kept restarting the idle timer
    CHECK(last - start >= 6 * gap);
    CHECK(end - last >= idle * 9 / 10);  // it ended only after an idle timeout of silence
  });
}

// ---- per-wait deadlines and stop tokens ----

namespace {

task<> timeout_then_data(io_context& ctx, bool multishot) {
  buffer_ring ring(ctx, 16, 1024);
  auto pair = co_await test::make_tcp_pair(ctx);
  recv_stream rx(pair.server, ring, {.multishot = multishot});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = co_await as_result(rx.next().with_timeout(20ms));
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  // Not the idle timeout: the stream goes on, and what is sent afterwards arrives intact.
  co_await pair.client.send_all(bytes("after the deadline"));
  buffer b = co_await rx.next().with_timeout(10s);
  CHECK(test::text(b.data()) == "after the deadline");
  b.reset();
  // A shorter deadline after that longer one is kept too (the stream's timer was set for 10 s).
  const auto t1 = std::chrono::steady_clock::now();
  auto r2 = co_await as_result(rx.next().with_timeout(20ms));
  REQUIRE_FALSE(r2);
  CHECK(r2.error() == std::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - t1 < 5s);
  pair.client.shutdown(SHUT_WR);
  buffer end = co_await rx.next().with_timeout(10s);
  CHECK_FALSE(end);
  CHECK(ring.available() == ring.count());
}

// Reads the stream to EOF with a short deadline on every wait while the sender pauses now and
// then: many waits end by their deadline, and no byte is lost, duplicated or reordered.
task<std::size_t> check_pattern_with_deadlines(recv_stream& rx, std::size_t& bad, int& timeouts) {
  std::size_t off = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    auto r = co_await as_result(rx.next().with_timeout(200us));
    if (!r) {
      if (r.error() != std::errc::timed_out) throw std::system_error(r.error());
      ++timeouts;
      continue;
    }
    if (!*r) break;
    for (std::byte x : r->data())
      if (x != pat(off++)) ++bad;
  }
  co_return off;
}

task<> send_pattern_slowly(io_context& ctx, coring::socket& s, std::size_t total,
                           std::size_t chunk) {
  std::vector<std::byte> buf(chunk);
  int n = 0;
  for (std::size_t off = 0; off < total; off += chunk) {
    std::size_t len = std::min(chunk, total - off);
    for (std::size_t i = 0; i < len; ++i)
      buf[i] = pat(off + i);
    co_await s.send_all(std::span(buf).first(len));
    if (++n % 8 == 0) co_await sleep_for(ctx, 1ms);
  }
  s.shutdown(SHUT_WR);
}

}  // namespace

TEST_CASE(
    "next().with_timeout ends with timed_out while the peer is silent; data sent "
    "afterwards is received intact" *
    test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  SUBCASE("one recv per buffer") { test::run(ctx, timeout_then_data(ctx, false)); }
  SUBCASE("multishot recv") { test::run(ctx, timeout_then_data(ctx, true)); }
}

TEST_CASE("next().with_timeout on every wait of a stream that pauses loses no byte" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  auto body = [](io_context& ctx, bool multishot) -> task<> {
    buffer_ring ring(ctx, 64, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring, {.max_queued = 4, .multishot = multishot});
    ctx.spawn(send_pattern_slowly(ctx, pair.client, 256 * 1024, 4096));
    std::size_t bad = 0;
    int timeouts = 0;
    std::size_t got = co_await check_pattern_with_deadlines(rx, bad, timeouts);
    MESSAGE("waits ended by their deadline: " << timeouts);
    CHECK(got == 256u * 1024);
    CHECK(bad == 0);
    CHECK(ring.available() == ring.count());
  };
  SUBCASE("one recv per buffer") { test::run(ctx, body(ctx, false), 60s); }
  SUBCASE("multishot recv") { test::run(ctx, body(ctx, true), 60s); }
}

TEST_CASE(
    "next().with_stop: a stop request ends the wait with operation_canceled; the stream "
    "goes on" *
    test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    std::stop_token tok = stop.get_token();
    auto op = as_result(rx.next().with_stop(tok));
    auto r = co_await op;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
    co_await pair.client.send_all(bytes("still here"));
    buffer b = co_await rx.next().with_timeout(10s);
    CHECK(test::text(b.data()) == "still here");
  };
  test::run(ctx, body(ctx));
}

TEST_CASE("data that arrives in the loop turn of a stop request is handed out, not lost" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  test::watchdog w(30s, "next stop race");
  io_context ctx;
  auto pair = test::run(ctx, test::make_tcp_pair(ctx));
  buffer_ring ring(ctx, 16, 1024);
  recv_stream rx(pair.server, ring, {.multishot = true});
  struct outcome {
    int stage = 0;
    std::string received;
    std::vector<std::error_code> errors;
  } out;
  auto waiter = [](recv_stream& rx, std::stop_token tok, outcome& out) -> task<> {
    out.stage = 1;
    auto op = as_result(rx.next().with_stop(tok));
    auto r = co_await op;
    if (r)
      out.received += test::text(r->data());
    else
      out.errors.push_back(r.error());
    if (!r) {  // the data was not handed out: it waits for this next()
      auto r2 = co_await as_result(rx.next().with_timeout(5s));
      if (r2)
        out.received += test::text(r2->data());
      else
        out.errors.push_back(r2.error());
    }
    out.stage = 2;
  };
  std::stop_source stop;
  ctx.spawn(waiter(rx, stop.get_token(), out));
  ctx.run_once(false);  // the waiter waits; the reception is submitted
  REQUIRE(out.stage == 1);
  // Off the ring: the data is in the socket and its completion waits in the kernel.
  REQUIRE(::send(pair.client.fileno(), "raced", 5, 0) == 5);
  stop.request_stop();  // the same loop turn: the completion is not reaped yet
  for (int i = 0; i < 100 && out.stage < 2; ++i)
    ctx.run_once(true);
  REQUIRE(out.stage == 2);
  CHECK(out.received == "raced");
  REQUIRE(out.errors.size() == 1);
  CHECK(out.errors[0] == std::errc::operation_canceled);
}

TEST_CASE(
    "io_context::shutdown with a next().with_timeout waiting destroys the waiter "
    "without resuming it" *
    test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  test::watchdog w(30s, "next teardown");
  const int fds_before = test::open_fds();
  int resumed = 0;
  test::counted::reset();
  {
    io_context ctx;
    auto pair = test::run(ctx, test::make_tcp_pair(ctx));
    buffer_ring ring(ctx, 16, 1024);
    auto waiter = [](coring::socket& s, buffer_ring& ring, int& resumed) -> task<> {
      test::counted alive;
      recv_stream rx(s, ring, {.multishot = true, .idle_timeout = 20s});
      auto r = co_await as_result(rx.next().with_timeout(10s));
      ++resumed;
    };
    ctx.spawn(waiter(pair.server, ring, resumed));
    ctx.run_once(false);
    CHECK(ctx.in_flight() == 2);  // the reception and the stream's timer
    CHECK(test::counted::live == 1);
    ctx.shutdown();  // before the ring goes: the stream's destructor gives buffers back to it
    CHECK(ctx.in_flight() == 0);
    CHECK(ctx.spawned() == 0);
    CHECK(ring.available() == ring.count());
  }
  CHECK(resumed == 0);
  CHECK(test::counted::live == 0);
  CHECK(test::open_fds() == fds_before);
}
