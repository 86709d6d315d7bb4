// SPDX-License-Identifier: MIT
// Description: issue 14: recv_stream over recv bundles (IORING_RECVSEND_BUNDLE) and incremental
// buffer rings (IOU_PBUF_RING_INC), each case with the features on and forced off: small
// messages, messages spanning buffers, ring exhaustion and recovery, peer close, cancel.
#include "test_support.hpp"

#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <sys/socket.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// The byte at offset i of a test stream.
std::byte pat(std::size_t i) { return static_cast<std::byte>((i * 31 + i / 251) & 0xff); }

std::vector<std::byte> pattern(std::size_t from, std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = pat(from + i);
  return v;
}

// Sends total pattern bytes in chunks, then shuts down (FIN) or closes the socket.
task<> send_pattern(coring::socket& s, std::size_t from, std::size_t total, std::size_t chunk,
                    bool close_after) {
  for (std::size_t off = 0; off < total; off += chunk) {
    const std::vector<std::byte> buf = pattern(from + off, std::min(chunk, total - off));
    co_await s.send_all(buf);
  }
  if (close_after)
    co_await s.close();
  else
    s.shutdown(SHUT_WR);
}

// Checks b against the pattern at off (advanced); counts mismatches in bad.
void check(const buffer& b, std::size_t& off, std::size_t& bad, std::size_t max_size) {
  if (b.size() > max_size) ++bad;
  for (std::byte x : b.data())
    if (x != pat(off++)) ++bad;
}

struct mode {
  const char* name;
  bool bundle, inc;
};
constexpr mode modes[] = {{"bundles and incremental buffers", true, true},
                          {"bundles only", true, false},
                          {"incremental buffers only", false, true},
                          {"both forced off", false, false}};

io_context_options options(const mode& m) {
  io_context_options o;
  o.recv_bundle = m.bundle;
  o.pbuf_inc = m.inc;
  return o;
}

// The ring buffer a received byte lies in (buffers of 4 KiB in a page-aligned mapping).
std::uintptr_t buffer_of(const std::byte* p) { return reinterpret_cast<std::uintptr_t>(p) / 4096; }

}  // namespace

TEST_CASE("many small messages arrive byte-exact; incremental buffers hold many of them each" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  for (const mode& m : modes) {
    const std::string name = m.name;
    CAPTURE(name);
    io_context ctx(options(m));
    INFO(ctx.features().describe());
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      buffer_ring ring(ctx, 64, 4096);
      CHECK(ring.incremental() == ctx.features().pbuf_inc);
      auto pair = co_await test::make_tcp_pair(ctx);
      recv_stream rx(pair.server, ring, {.max_queued = 8, .multishot = true});
      // 20 messages of 50 bytes, one at a time, each piece held: an incremental ring puts them
      // all in one buffer (1,000 bytes of 4,096), a plain one takes a buffer for each.
      std::vector<buffer> held;
      std::size_t off = 0, bad = 0;
      for (int i = 0; i < 20; ++i) {
        const std::vector<std::byte> msg = pattern(off, 50);
        co_await pair.client.send_all(msg);
        buffer b = co_await rx.next();
        REQUIRE(b);
        check(b, off, bad, ring.buffer_size());
        held.push_back(std::move(b));
      }
      CHECK(off == 1000u);
      std::set<std::uintptr_t> buffers;
      for (const buffer& b : held)
        buffers.insert(buffer_of(b.data().data()));
      if (ring.incremental()) {
        CHECK(buffers.size() == 1);
        CHECK(ring.available() == ring.count() - 1);
      } else {
        CHECK(buffers.size() == held.size());
        CHECK(ring.available() == ring.count() - held.size());
      }
      held.clear();
      CHECK(ring.available() == ring.count());
      // Then 5,000 more of 64 bytes as fast as they go: every byte in order.
      ctx.spawn(send_pattern(pair.client, off, 5000 * 64, 64, false));
      while (buffer b = co_await rx.next())
        check(b, off, bad, ring.buffer_size());
      CHECK(off == 1000u + 5000 * 64);
      CHECK(bad == 0);
      CHECK(ring.available() == ring.count());
    });
  }
}

TEST_CASE("data queued ahead of the stream comes as pieces of several buffers, in order" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  for (const mode& m : modes) {
    const std::string name = m.name;
    CAPTURE(name);
    io_context ctx(options(m));
    test::run_on(
        ctx,
        [](io_context& ctx) -> task<> {
          buffer_ring ring(ctx, 64, 1024);
          auto pair = co_await test::make_tcp_pair(ctx);
          // 16 KiB wait in the socket before the first reception is armed.
          const std::vector<std::byte> first = pattern(0, 16384);
          co_await pair.client.send_all(first);
          recv_stream rx(pair.server, ring, {.max_queued = 8, .multishot = true});
          ctx.spawn(send_pattern(pair.client, 16384, 1 << 20, 65536, false));
          std::size_t off = 0, bad = 0, pieces = 0;
          while (buffer b = co_await rx.next()) {
            check(b, off, bad, ring.buffer_size());
            ++pieces;
          }
          CHECK(off == 16384u + (1u << 20));
          CHECK(bad == 0);
          CHECK(pieces >= off / ring.buffer_size());
          if (ctx.features().recv_bundle)
            CHECK(ring.bundled_completions() > 0);
          else
            CHECK(ring.bundled_completions() == 0);
          CHECK(ring.available() == ring.count());
        },
        60s);
  }
}

TEST_CASE("a ring exhausted by a stream that holds its buffers recovers, and nothing is lost" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  for (const mode& m : modes) {
    const std::string name = m.name;
    CAPTURE(name);
    io_context ctx(options(m));
    test::run_on(
        ctx,
        [](io_context& ctx) -> task<> {
          buffer_ring ring(ctx, 8, 256);
          auto hog_pair = co_await test::make_tcp_pair(ctx);
          auto pair = co_await test::make_tcp_pair(ctx);
          recv_stream hog(hog_pair.server, ring, {.max_queued = 16, .multishot = true});
          std::vector<buffer> held;
          const std::vector<std::byte> chunk(256, std::byte{1});
          for (int i = 0; i < 64 && ring.available() > 0; ++i) {
            co_await hog_pair.client.send_all(chunk);
            held.push_back(co_await hog.next());
          }
          CHECK(ring.available() == 0);
          // Another stream still makes progress (ENOBUFS, then its private buffer).
          recv_stream rx(pair.server, ring, {.max_queued = 4, .multishot = true});
          const std::vector<std::byte> a = pattern(0, 20000);
          co_await pair.client.send_all(a);
          std::size_t off = 0, bad = 0;
          for (int i = 0; i < 1000 && off < 20000; ++i) {
            buffer b = co_await rx.next();
            REQUIRE(b);
            check(b, off, bad, ring.buffer_size());
          }
          CHECK(off == 20000u);
          // The hog lets go: everything goes back, and the ring carries data again.
          held.clear();
          CHECK(ring.available() == ring.count());
          ctx.spawn(send_pattern(pair.client, off, 200000, 1000, false));
          while (buffer b = co_await rx.next())
            check(b, off, bad, ring.buffer_size());
          CHECK(off == 220000u);
          CHECK(bad == 0);
          CHECK(ring.available() == ring.count());
        },
        60s);
  }
}

TEST_CASE("a peer that closes in the middle of a bundle: every byte, then the end" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  for (const mode& m : modes) {
    const std::string name = m.name;
    CAPTURE(name);
    io_context ctx(options(m));
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      buffer_ring ring(ctx, 32, 512);
      auto pair = co_await test::make_tcp_pair(ctx);
      recv_stream rx(pair.server, ring, {.max_queued = 4, .multishot = true});
      const std::vector<std::byte> a = pattern(0, 300);
      co_await pair.client.send_all(a);
      buffer b = co_await rx.next();  // armed; then 10,000 bytes and the close at once
      std::size_t off = 0, bad = 0;
      check(b, off, bad, ring.buffer_size());
      b.reset();
      co_await send_pattern(pair.client, 300, 10000, 10000, true);
      while (buffer more = co_await rx.next())
        check(more, off, bad, ring.buffer_size());
      CHECK(off == 10300u);
      CHECK(bad == 0);
      buffer after = co_await rx.next();  // the end stays the end
      CHECK_FALSE(after);
      CHECK(ring.available() == ring.count());
    });
  }
}

TEST_CASE("cancel and destruction with bundle pieces queued return every buffer" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings)) *
          test::skip_unless(test::ring_supports(test::feature::multishot_recv))) {
  for (const mode& m : modes) {
    const std::string name = m.name;
    CAPTURE(name);
    io_context ctx(options(m));
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      buffer_ring ring(ctx, 64, 1024);
      auto pair = co_await test::make_tcp_pair(ctx);
      std::size_t off = 0, bad = 0;
      {
        recv_stream rx(pair.server, ring, {.max_queued = 8, .multishot = true});
        const std::vector<std::byte> a = pattern(0, 8192);
        co_await pair.client.send_all(a);
        buffer b = co_await rx.next();  // one piece out, more queued or in flight
        REQUIRE(b);
        check(b, off, bad, ring.buffer_size());
        pair.server.cancel();
        // What the kernel already gave comes first, then operation_canceled.
        for (int i = 0; i < 100; ++i) {
          auto r = co_await as_result(rx.next());
          if (!r) {
            CHECK(r.error() == std::errc::operation_canceled);
            break;
          }
          REQUIRE(*r);
          check(*r, off, bad, ring.buffer_size());
        }
        CHECK(off <= 8192u);
        CHECK(bad == 0);
        b.reset();
      }
      const bool idle = co_await test::kernel_idle(ctx);
      CHECK(idle);
      CHECK(ring.available() == ring.count());
      // A stream destroyed with pieces queued gives them back too.
      auto pair2 = co_await test::make_tcp_pair(ctx);
      {
        recv_stream rx(pair2.server, ring, {.max_queued = 8, .multishot = true});
        const std::vector<std::byte> a = pattern(0, 6000);
        co_await pair2.client.send_all(a);
        buffer b = co_await rx.next();
        CHECK(b);
      }
      const bool idle2 = co_await test::kernel_idle(ctx);
      CHECK(idle2);
      CHECK(ring.available() == ring.count());
    });
  }
}

TEST_CASE("the options turn recv bundles and incremental rings off, and describe() says so") {
  if (std::getenv("CORING_RECV_BUNDLE") || std::getenv("CORING_PBUF_INC")) {
    MESSAGE("skipped: CORING_RECV_BUNDLE or CORING_PBUF_INC overrides the options");
    return;
  }
  io_context_options o;
  o.recv_bundle = false;
  o.pbuf_inc = false;
  io_context ctx(o);
  CHECK_FALSE(ctx.features().recv_bundle);
  CHECK_FALSE(ctx.features().pbuf_inc);
  const std::string d = ctx.features().describe();
  CHECK(d.find("recv_bundle=0") != std::string::npos);
  CHECK(d.find("pbuf_inc=0") != std::string::npos);
}
