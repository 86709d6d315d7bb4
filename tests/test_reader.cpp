// SPDX-License-Identifier: MIT
// Description: reader: read_line, read_until and read_exact over plain recv and over a
// buffer ring, lines split across receives, bounds, EOF, deadlines, and zero allocations per
// line (this program replaces the global operator new to count).
#include "test_support.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "count_allocations.hpp"  // this program counts operator new calls

using namespace coring;
using namespace std::chrono_literals;

namespace {

// A reader over the server end of a pair: plain recv, or a recv_stream on a ring of small
// buffers (64 bytes: lines span buffers, and a buffer can hold more than a small reader takes).
struct source {
  std::optional<buffer_ring> ring;
  std::optional<recv_stream> rx;
  std::optional<reader> in;
  source(io_context& ctx, coring::socket& s, bool use_ring, std::size_t max_line,
         unsigned ring_buffer = 64) {
    if (use_ring) {
      ring.emplace(ctx, 64, ring_buffer);
      rx.emplace(s, *ring);
      in.emplace(*rx, max_line);
    } else {
      in.emplace(s, max_line);
    }
  }
};

// Sends text one byte per send, then shuts down writing.
task<> send_bytewise(coring::socket& s, std::string text) {
  for (char& c : text)
    co_await s.send_all(std::string_view(&c, 1));
  s.shutdown(SHUT_WR);
}

// Sends text, then shuts down writing.
task<> send_then_close(coring::socket& s, std::string text) {
  co_await s.send_all(text);
  s.shutdown(SHUT_WR);
}

// Reads whatever is left until EOF (so that no ring buffer is in flight when the ring goes).
task<> drain(reader& in) {
  for (int i = 0; i < 100'000; ++i) {
    auto r = co_await as_result(in.read_exact(1));
    if (!r) break;
  }
}

task<> split_lines(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 64);
  reader& in = *src.in;
  ctx.spawn(send_bytewise(pair.client, "hello\r\nworld\n\nsemi;colon;\r\nlast"));
  std::optional<std::string_view> line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == "hello");
  line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == "world");
  line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == "");  // an empty line is a line
  std::string_view part = co_await in.read_until(';');
  CHECK(part == "semi;");
  part = co_await in.read_until(";\r\n");
  CHECK(part == "colon;\r\n");
  line = co_await in.read_line();  // EOF mid-line: the partial line, as Python's readline
  REQUIRE(line);
  CHECK(*line == "last");
  line = co_await in.read_line();
  CHECK_FALSE(line);
  part = co_await in.read_until('\n');
  CHECK(part.empty());
}

task<> bounds(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 16);
  reader& in = *src.in;
  const std::string exact(16, 'a'), crlf(16, 'c'), over(17, 'b');
  ctx.spawn(send_bytewise(pair.client, exact + "\n" + crlf + "\r\n" + over + "\nok\nxyz;abcd;"));
  std::optional<std::string_view> line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == exact);  // exactly max_line
  line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == crlf);  // exactly max_line, "\r\n" not counted
  try {
    line = co_await in.read_line();
    FAIL("a line one byte over max_line was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::line_too_long);
    CHECK(e.code() == std::errc::message_size);
    CHECK(std::string(e.what()).find("read_line: no line ending within 16 bytes") == 0);
  }
  // Nothing was consumed: the connection is still usable (here: skip the long line).
  CHECK(in.buffered().substr(0, 17) == over);
  std::span<const std::byte> skipped = co_await in.read_exact(16);
  CHECK(skipped.size() == 16);
  line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == "b");
  line = co_await in.read_line();
  REQUIRE(line);
  CHECK(*line == "ok");
  std::string_view part = co_await in.read_until(';', 4);  // exactly max, delimiter included
  CHECK(part == "xyz;");
  auto r = co_await as_result(in.read_until(';', 4));  // one byte over
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::line_too_long);
  part = co_await in.read_until(';', 5);
  CHECK(part == "abcd;");
  auto big = co_await as_result(in.read_exact(17));
  REQUIRE_FALSE(big);
  CHECK(big.error() == std::errc::invalid_argument);
  line = co_await in.read_line();
  CHECK_FALSE(line);
}

task<> exact(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 8);
  reader& in = *src.in;
  ctx.spawn(send_bytewise(pair.client, "0123456789"));
  std::span<const std::byte> b = co_await in.read_exact(4);
  CHECK(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()) == "0123");
  b = co_await in.read_exact(4);
  CHECK(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()) == "4567");
  try {
    b = co_await in.read_exact(4);
    FAIL("read_exact returned fewer bytes than asked");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::unexpected_eof);
    CHECK(std::string(e.what()).find("read_exact: peer closed after 2 of 4 bytes") == 0);
  }
  CHECK(in.buffered() == "89");  // kept
  b = co_await in.read_exact(2);
  CHECK(b.size() == 2);
  auto r = co_await as_result(in.read_exact(1));
  CHECK(r.error() == errc::unexpected_eof);
}

// One send of many short lines to a reader smaller than a ring buffer: each buffer is taken in
// parts, and no byte is lost or repeated.
task<> bulk(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 8);
  reader& in = *src.in;
  std::string text;
  for (int i = 0; i < 500; ++i)
    text += std::to_string(i) + "\n";
  ctx.spawn(send_then_close(pair.client, std::move(text)));
  int bad = 0, lines = 0;
  for (int i = 0; i < 1000; ++i) {
    std::optional<std::string_view> line = co_await in.read_line();
    if (!line) break;
    if (*line != std::to_string(lines)) ++bad;
    ++lines;
  }
  CHECK(lines == 500);
  CHECK(bad == 0);
}

// 200,000 one-byte reads, most answered from the buffer (and, on the ring path, from buffers
// already queued): a run of reads that never wait must not grow the stack.
task<> many_small_reads(io_context& ctx, bool use_ring) {
  constexpr std::size_t total = 200'000;
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 8, 4096);
  reader& in = *src.in;
  std::string text(total, 'z');
  ctx.spawn(send_then_close(pair.client, std::move(text)));
  std::size_t got = 0;
  for (std::size_t i = 0; i < total + 1; ++i) {
    auto r = co_await as_result(in.read_exact(1));
    if (!r) {
      CHECK(r.error() == errc::unexpected_eof);
      break;
    }
    got += r->size();
  }
  CHECK(got == total);
}

task<> stop_after(io_context& ctx, std::stop_source stop, std::chrono::milliseconds d) {
  co_await sleep_for(ctx, d);
  stop.request_stop();
}

task<> silent_peer(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 64);
  reader& in = *src.in;
  co_await pair.client.send_all(std::string_view("partial"));
  auto t0 = std::chrono::steady_clock::now();
  auto r = co_await as_result(in.read_line().with_timeout(50ms));
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(waited >= 40ms);
  CHECK(waited < 5s);
  std::stop_source later;  // a stop request while the read waits
  ctx.spawn(stop_after(ctx, later, 20ms));
  auto l = co_await as_result(in.read_line().with_stop(later.get_token()));
  REQUIRE_FALSE(l);
  CHECK(l.error() == std::errc::operation_canceled);
  std::stop_source stop;  // a stop requested before the read
  stop.request_stop();
  auto s = co_await as_result(in.read_line().with_stop(stop.get_token()));
  REQUIRE_FALSE(s);
  CHECK(s.error() == std::errc::operation_canceled);
  // What arrived before the deadline is kept for the next read.
  ctx.spawn(send_then_close(pair.client, " line\nrest"));
  std::optional<std::string_view> line = co_await in.read_line().with_timeout(5s);
  REQUIRE(line);
  CHECK(*line == "partial line");
  co_await drain(in);
}

// One byte every 20 ms: a read with a deadline ends at the deadline, whatever trickles in.
task<> trickle(coring::socket& s) {
  for (int i = 0; i < 30; ++i) {
    co_await s.send_all(std::string_view("x"));
    co_await sleep_for(s.context(), 20ms);
  }
  s.shutdown(SHUT_WR);
}

task<> slowloris(io_context& ctx, bool use_ring) {
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 4096);
  reader& in = *src.in;
  ctx.spawn(trickle(pair.client));
  auto t0 = std::chrono::steady_clock::now();
  auto r = co_await as_result(in.read_line().with_timeout(150ms));
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(waited < 450ms);  // the trickle lasts 600 ms
  co_await drain(in);
}

// 1,000 lines of warm-up, then 10,000 counted.
task<> no_allocations(io_context& ctx, bool use_ring) {
  constexpr int warmup = 1000, measured = 10'000;
  auto pair = co_await test::make_tcp_pair(ctx);
  source src(ctx, pair.server, use_ring, 256, 4096);
  reader& in = *src.in;
  std::string text;
  for (int i = 0; i < warmup + measured; ++i)
    text += "line " + std::to_string(i) + (i % 2 ? "\r\n" : "\n");
  ctx.spawn(send_then_close(pair.client, std::move(text)));
  long before = 0;
  int bad = 0;
  for (int i = 0; i < warmup + measured; ++i) {
    if (i == warmup) before = coring::test::allocations();
    std::optional<std::string_view> line = co_await in.read_line();
    char want[32];
    int n = std::snprintf(want, sizeof want, "line %d", i);
    if (!line || *line != std::string_view(want, static_cast<std::size_t>(n))) ++bad;
  }
  long counted = coring::test::allocations() - before;
  CHECK(bad == 0);
  CHECK(counted == 0);
  std::optional<std::string_view> end = co_await in.read_line();
  CHECK_FALSE(end);
}

// README: a line echo server on a reader.
task<> echo_lines(coring::socket s) {
  coring::reader in(s, 4096);  // one buffer, allocated once; a longer line throws line_too_long
  // A line ends at "\n" or "\r\n" (not returned); at EOF the last line, then std::nullopt.
  while (auto line = co_await in.read_line().with_timeout(30s)) {  // 30 s for the whole line
    co_await s.send_all(*line);  // *line: valid until the next read on `in`
    co_await s.send_all(std::string_view("\n"));
  }
}

// Tells the peer (synchronously, so that the read below starts in this same turn) and reads.
task<> signal_then_read(coring::socket& s, reader& in, bool& resumed) {
  char r = 'r';
  REQUIRE(::send(s.fileno(), &r, 1, MSG_NOSIGNAL) == 1);
  std::optional<std::string_view> line = co_await in.read_line();
  (void)line;
  resumed = true;
}

// io_context::shutdown() with a read waiting: resumes nothing, and the reader (declared after
// the context, so destroyed first) goes after it without touching freed memory (ASan).
void teardown(bool use_ring) {
  io_context ctx;
  auto pair = test::run(ctx, test::make_tcp_pair(ctx));
  source src(ctx, pair.server, use_ring, 64);
  bool resumed = false;
  ctx.spawn(signal_then_read(pair.server, *src.in, resumed));
  test::run_on(ctx, [&](io_context&) -> task<> {
    std::array<std::byte, 1> b;
    co_await pair.client.recv(b);  // the read is waiting now
  });
  ctx.shutdown();
  CHECK(ctx.in_flight() == 0);
  CHECK_FALSE(resumed);
}

template <class F>
void run_both(F scenario, bool use_ring) {
  io_context ctx;
  test::run_on(ctx, [&](io_context& c) { return scenario(c, use_ring); });
}

#define CORING_BOTH_PATHS(title, scenario)                                                  \
  TEST_CASE(title " (plain recv)") { run_both(scenario, false); }                           \
  TEST_CASE(title " (buffer ring)" *                                                        \
            test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) { \
    run_both(scenario, true);                                                               \
  }

}  // namespace

TEST_SUITE("net") {
  TEST_CASE("the README's line echo server answers each line, then closes at EOF") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      auto pair = co_await test::make_tcp_pair(ctx);
      ctx.spawn(echo_lines(std::move(pair.server)));
      co_await pair.client.send_all(std::string_view("one\r\ntwo\nthree"));
      pair.client.shutdown(SHUT_WR);
      reader replies(pair.client, 64);
      for (std::string_view want : {"one", "two", "three"}) {
        std::optional<std::string_view> line = co_await replies.read_line();
        REQUIRE(line);
        CHECK(*line == want);
      }
      std::optional<std::string_view> end = co_await replies.read_line();
      CHECK_FALSE(end);
    });
  }

  CORING_BOTH_PATHS("read_line and read_until find lines sent one byte at a time", split_lines)
  CORING_BOTH_PATHS("a line at exactly max is read, one byte over is line_too_long", bounds)
  CORING_BOTH_PATHS("read_exact gathers several receives and reports an early EOF", exact)
  CORING_BOTH_PATHS("a reader smaller than what one receive brings loses nothing", bulk)
  CORING_BOTH_PATHS("200,000 reads in a row answered without waiting run in constant stack",
                    many_small_reads)
  CORING_BOTH_PATHS("a read times out on a silent peer and keeps what it received", silent_peer)
  CORING_BOTH_PATHS("a deadline bounds a read from a peer that trickles bytes", slowloris)
  TEST_CASE("io_context teardown with a read waiting resumes nothing (plain recv)") {
    teardown(false);
  }
  TEST_CASE("io_context teardown with a read waiting resumes nothing (buffer ring)" *
            test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
    teardown(true);
  }
  CORING_BOTH_PATHS("reading 10,000 lines allocates nothing in steady state", no_allocations)
}
