// SPDX-License-Identifier: MIT
// Description: end to end: tcp_proxy in front of echo_server and of the test's own targets
// (verified load, a GiB each way with half-close, target down or silent, resets, backpressure,
// SIGTERM).
#include "process.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <sys/socket.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

constexpr auto read_limit = 30s;  // one receive: generous for the sanitizer builds

/// The port a server printed on its first line ("NAME listening on 127.0.0.1:PORT").
std::uint16_t listening_port(test::child& c, const std::string& name) {
  auto line = c.read_line(10s);
  REQUIRE(line);
  CHECK(line->find(name + " listening on 127.0.0.1:") != std::string::npos);
  const int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return static_cast<std::uint16_t>(port);
}

/// A running tcp_proxy in front of 127.0.0.1:target_port.
struct proxy {
  test::child proc;
  std::uint16_t port = 0;
  proxy(std::uint16_t target_port, std::vector<std::string> extra = {}, bool capture_stderr = false)
      : proc(argv(target_port, std::move(extra)), test::child_options{capture_stderr}) {
    port = listening_port(proc, "tcp_proxy");
  }
  static std::vector<std::string> argv(std::uint16_t target_port, std::vector<std::string> extra) {
    std::vector<std::string> a{test::example_path("TCP_PROXY"), "--listen", "127.0.0.1:0", "--to",
                               "127.0.0.1:" + std::to_string(target_port)};
    // meson runs this program once per copy strategy (TCP_PROXY_COPY: recv, stream, ...).
    if (const char* copy = std::getenv("TCP_PROXY_COPY"); copy && *copy) {
      a.push_back("--copy");
      a.push_back(copy);
    }
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  address at() const { return address::loopback_v4(port); }
};

/// A running echo_server on a free port.
struct echo_server {
  test::child proc{{test::example_path("ECHO_SERVER"), "--port", "0"}};
  std::uint16_t port = listening_port(proc, "echo_server");
};

/// A kilobyte count from /proc/PID/status ("VmRSS", "VmHWM"), or 0 if absent.
std::size_t status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream v(line.substr(field.size() + 1));
      std::size_t kib = 0;
      v >> kib;
      return kib;
    }
  return 0;
}

// ---- a byte stream every byte of which is checked ----

/// The stream: 1 MiB blocks of one random block, each block's first 8 bytes replaced by its
/// index, so that a lost, repeated or reordered block is seen as well as a changed byte.
class pattern {
 public:
  static constexpr std::size_t block = std::size_t(1) << 20;
  explicit pattern(std::uint64_t seed) : base_(block) {
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < block; i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(base_.data() + i, &v, 8);
    }
  }
  /// Writes the stream's bytes [offset, offset + out.size()) into out.
  void fill(std::span<std::byte> out, std::uint64_t offset) const {
    walk(out.size(), offset, [&](std::size_t at, std::span<const std::byte> want) {
      std::memcpy(out.data() + at, want.data(), want.size());
      return true;
    });
  }
  /// True if got holds the stream's bytes from offset on.
  bool matches(std::span<const std::byte> got, std::uint64_t offset) const {
    return walk(got.size(), offset, [&](std::size_t at, std::span<const std::byte> want) {
      return std::memcmp(got.data() + at, want.data(), want.size()) == 0;
    });
  }

 private:
  // Calls f(position in the caller's span, the stream's bytes there) piece by piece.
  template <class F>
  bool walk(std::size_t size, std::uint64_t offset, F f) const {
    std::size_t at = 0;
    while (at < size) {
      const std::uint64_t x = offset + at;
      const std::uint64_t index = x / block;
      const std::size_t in = static_cast<std::size_t>(x % block);
      std::array<std::byte, 8> stamp;
      std::memcpy(stamp.data(), &index, 8);
      std::span<const std::byte> want =
          in < 8 ? std::span<const std::byte>(stamp).subspan(in)
                 : std::span<const std::byte>(base_).subspan(in, block - in);
      want = want.first(std::min(want.size(), size - at));
      if (!f(at, want)) return false;
      at += want.size();
    }
    return true;
  }
  std::vector<std::byte> base_;
};

/// Sends the stream's bytes [from, to) on s.
task<> send_stream(coring::socket& s, const pattern& p, std::uint64_t from, std::uint64_t to) {
  std::vector<std::byte> buf(256 * 1024);
  for (std::uint64_t off = from; off < to;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), to - off));
    p.fill(std::span(buf).first(n), off);
    co_await s.send_all(std::span(buf).first(n));
    off += n;
  }
}

/// What a receiver got: bytes, and bytes that were not the stream's.
struct received {
  std::uint64_t bytes = 0;
  std::uint64_t wrong_reads = 0;  // receives whose bytes differed from the stream's
};

/// Receives until EOF (each receive bounded by read_limit), checking every byte against p.
task<received> receive_stream(coring::socket& s, const pattern& p) {
  std::vector<std::byte> buf(256 * 1024);
  received r;
  for (;;) {
    std::size_t n = co_await s.recv(buf).with_timeout(read_limit);
    if (n == 0) break;
    if (!p.matches(std::span(buf).first(n), r.bytes)) ++r.wrong_reads;
    r.bytes += n;
  }
  co_return r;
}

}  // namespace

TEST_CASE("echo_client's 1000 verified connections pass through tcp_proxy to echo_server") {
  echo_server target;
  proxy px(target.port);
  test::child client({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", test::example_path("ECHO_CLIENT"),
                      "--port", std::to_string(px.port), "--connections", "1000", "--count", "10",
                      "--size", "2000"});
  const std::string out = client.read_rest(120s);
  auto st = client.wait(10s);
  REQUIRE(st.has_value());
  CHECK_MESSAGE(*st == 0, out);
  CHECK_MESSAGE(out.find("1000 connections x 10 messages x 2000 bytes: 1000 ok, 0 failed, "
                         "20000000 bytes echoed and verified, 0 mismatches") != std::string::npos,
                out);
  CHECK_MESSAGE(!test::sanitizer_report(out), out);
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("a GiB each way with half-close crosses tcp_proxy with every byte in place") {
  // 1 GiB each way: about 5 s in the gcc ASan+UBSan build (-O0), 2-5 s in a normal one.
  constexpr std::uint64_t total = std::uint64_t(1) << 30;
  io_context ctx;
  coring::socket listener = tcp_listen(ctx, address::loopback_v4());
  proxy px(listener.sock_name().port());
  const pattern up(1), down(2);
  received at_target, at_client;
  test::run_on(
      ctx,
      [&](io_context& ctx) -> task<> {
        // The client: sends `total`, then shuts down its writing side, and reads the answer.
        auto client_side = [&]() -> task<> {
          coring::socket c = co_await tcp_connect(ctx, px.at());
          auto answer = receive_stream(c, down);
          auto sending = [&]() -> task<> {
            co_await send_stream(c, up, 0, total);
            c.shutdown(SHUT_WR);
          };
          auto both = when_all(sending(), std::move(answer));
          auto results = co_await std::move(both);
          at_client = std::get<1>(results);
        };
        // The target: reads to EOF (the client's half-close came through), then answers with
        // `total` bytes and closes.
        auto target_side = [&]() -> task<> {
          coring::socket t = co_await listener.accept();
          at_target = co_await receive_stream(t, up);
          co_await send_stream(t, down, 0, total);
        };
        auto run = when_all(client_side(), target_side());
        co_await std::move(run);
      },
      300s);
  CHECK(at_target.bytes == total);
  CHECK(at_target.wrong_reads == 0);
  CHECK(at_client.bytes == total);
  CHECK(at_client.wrong_reads == 0);
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("a target that refuses closes the client at once and is logged") {
  io_context ctx;
  coring::socket closed_port(ctx, AF_INET,
                             SOCK_STREAM);  // bound, never listening: connect is refused
  closed_port.bind(address::loopback_v4());
  const std::uint16_t target_port = closed_port.sock_name().port();
  proxy px(target_port, {}, true);
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    coring::socket c = co_await tcp_connect(ctx, px.at());
    std::array<std::byte, 16> buf;
    auto r = co_await as_result(c.recv(buf).with_timeout(10s));
    // EOF, or a reset: either way not the deadline.
    if (r)
      CHECK(*r == 0);
    else
      CHECK(r.error() == std::errc::connection_reset);
  });
  CHECK(px.proc.wait_stderr_for("cannot connect to 127.0.0.1:" + std::to_string(target_port), 10s));
  CHECK(px.proc.stderr_seen().find("refused") != std::string::npos);
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("a target that never answers the connect closes the client at --connect-timeout") {
  io_context ctx;
  // A listener with backlog 0 that never accepts: once one connection waits in its queue, the
  // kernel drops further SYNs, so the proxy's connect gets no answer at all.
  coring::socket silent = tcp_listen(ctx, address::loopback_v4(), 0);
  const std::uint16_t target_port = silent.sock_name().port();
  proxy px(target_port, {"--connect-timeout", "0.3"}, true);
  double seconds = 0;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    coring::socket filler = co_await tcp_connect(ctx, address::loopback_v4(target_port));
    coring::socket c = co_await tcp_connect(ctx, px.at());
    const auto t0 = std::chrono::steady_clock::now();
    std::array<std::byte, 16> buf;
    auto r = co_await as_result(c.recv(buf).with_timeout(10s));
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r)
      CHECK(*r == 0);
    else
      CHECK(r.error() == std::errc::connection_reset);
  });
  CHECK(seconds >= 0.25);
  CHECK(seconds < 5);
  CHECK(px.proc.wait_stderr_for("cannot connect to 127.0.0.1:" + std::to_string(target_port), 10s));
  CHECK(px.proc.stderr_seen().find("timed out") != std::string::npos);
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("a client's reset mid-transfer ends the target's connection") {
  io_context ctx;
  coring::socket listener = tcp_listen(ctx, address::loopback_v4());
  proxy px(listener.sock_name().port());
  const pattern up(3);
  std::uint64_t got = 0;
  std::error_code end;  // how the target's connection ended (empty: EOF)
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    coring::socket c = co_await tcp_connect(ctx, px.at());
    auto sending = send_stream(c, up, 0, 64 << 20);  // far more than the kernel buffers take
    auto target_side = [&]() -> task<> {
      coring::socket t = co_await listener.accept();
      std::vector<std::byte> buf(64 * 1024);
      // Reads until data is flowing (64 KiB through), then lets the client reset.
      while (got < buf.size()) {
        std::size_t n = co_await t.recv(buf).with_timeout(read_limit);
        REQUIRE(n > 0);
        got += n;
      }
      c.set_option(sockopt::linger{true, 0});
      c.cancel();  // the client's send ends; its socket closes with a reset below
      // Reads on: the connection must end (EOF or reset), well before the deadline.
      for (;;) {
        auto r = co_await as_result(t.recv(buf).with_timeout(10s));
        if (!r) {
          end = r.error();
          break;
        }
        if (*r == 0) break;
        got += *r;
      }
    };
    auto sender = [&]() -> task<> {
      auto attempt = as_result(std::move(sending));  // named: see the g++ 12 notes
      auto r = co_await std::move(attempt);
      CHECK((!r && r.error() == std::errc::operation_canceled));
      auto closing = c.close();  // SO_LINGER 0: the proxy sees a reset
      co_await std::move(closing);
    };
    auto both = when_all(sender(), target_side());
    co_await std::move(both);
  });
  CHECK(end != std::errc::timed_out);
  CHECK(got >= 64 * 1024);
  CHECK(got < (64 << 20));
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("a target that does not read stops the client, and the proxy's memory stays bounded") {
  constexpr std::uint64_t total = std::uint64_t(100) << 20;
  constexpr std::size_t bound_kib = 32 * 1024;  // growth of the proxy's RSS we accept
  io_context ctx;
  coring::socket listener = tcp_listen(ctx, address::loopback_v4());
  proxy px(listener.sock_name().port());
  const std::size_t rss0 = status_kib(px.proc.pid(), "VmRSS");
  REQUIRE(rss0 > 0);
  const pattern up(4);
  std::uint64_t sent_before_stall = 0;
  std::size_t rss_stalled = 0;
  received at_target;
  test::run_on(
      ctx,
      [&](io_context& ctx) -> task<> {
        coring::socket c = co_await tcp_connect(ctx, px.at());
        coring::socket t = co_await listener.accept();
        // Phase 1: the target reads nothing. The client sends until a send makes no progress
        // for a second (the only way to see that nothing moves is to wait for it, bounded).
        std::vector<std::byte> buf(256 * 1024);
        std::uint64_t sent = 0;
        while (sent < total) {
          const auto n =
              static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), total - sent));
          up.fill(std::span(buf).first(n), sent);
          auto r = co_await as_result(c.send(std::span(buf).first(n)).with_timeout(1s));
          if (!r) {
            REQUIRE(r.error() == std::errc::timed_out);
            break;
          }
          sent += *r;
        }
        sent_before_stall = sent;
        rss_stalled = status_kib(px.proc.pid(), "VmRSS");
        // Phase 2: the target reads everything; the client sends the rest, then EOF.
        auto rest = [&]() -> task<> {
          co_await send_stream(c, up, sent, total);
          c.shutdown(SHUT_WR);
        };
        auto reading = receive_stream(t, up);
        auto both = when_all(rest(), std::move(reading));
        auto results = co_await std::move(both);
        at_target = std::get<1>(results);
      },
      120s);
  INFO("sent before the stall: " << sent_before_stall << " bytes; RSS " << rss0 << " KiB, "
                                 << rss_stalled << " KiB when stalled");
  CHECK(sent_before_stall < total / 2);
  CHECK(rss_stalled < rss0 + bound_kib);
  CHECK(status_kib(px.proc.pid(), "VmHWM") < rss0 + bound_kib);
  CHECK(at_target.bytes == total);
  CHECK(at_target.wrong_reads == 0);
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
}

TEST_CASE("SIGTERM with connections open ends tcp_proxy promptly with status 0") {
  echo_server target;
  proxy px(target.port);
  io_context ctx;
  constexpr int n = 20;
  std::vector<coring::socket> clients;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    for (int i = 0; i < n; ++i) {
      coring::socket c = co_await tcp_connect(ctx, px.at());
      co_await c.send_all(test::bytes("ping\n"));
      std::array<std::byte, 5> buf;
      std::size_t got = 0;
      while (got < buf.size()) {
        std::size_t k = co_await c.recv(std::span(buf).subspan(got)).with_timeout(read_limit);
        REQUIRE(k > 0);
        got += k;
      }
      CHECK(test::text(buf) == "ping\n");
      clients.push_back(std::move(c));
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(seconds < 1.5);  // the drain's EOFs end every connection, well within --grace (2 s)
  test::run_on(ctx, [&](io_context&) -> task<> {
    for (coring::socket& c : clients) {
      std::array<std::byte, 16> buf;
      auto r = co_await as_result(c.recv(buf).with_timeout(10s));
      CHECK((r && *r == 0));  // EOF: the clients were closed, not left hanging
    }
  });
}

TEST_CASE("SIGTERM with clients that send and never read ends tcp_proxy at --grace") {
  echo_server target;
  proxy px(target.port, {"--grace", "0.5"});
  io_context ctx;
  constexpr int n = 20;
  std::vector<coring::socket> clients;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    for (int i = 0; i < n; ++i)
      clients.push_back(co_await tcp_connect(ctx, px.at()));
  });
  // Each client sends until its socket buffer is full (MSG_DONTWAIT) and never reads: the
  // echoes pile up toward it, and the proxy's sends to it block.
  std::vector<char> chunk(64 * 1024, 'x');
  for (coring::socket& c : clients)
    for (int k = 0; k < 1000; ++k)
      if (::send(c.fileno(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) break;
  const auto t0 = std::chrono::steady_clock::now();
  px.proc.signal(SIGTERM);
  CHECK(px.proc.wait(10s) == 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(seconds < 2.5);  // --grace 0.5, then the cancel: at most 1 s more
}
