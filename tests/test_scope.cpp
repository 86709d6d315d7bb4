// SPDX-License-Identifier: MIT
// Description: connection_scope: the graceful drain (in-flight replies, the grace limit,
// refused connects, one timer), one connection's failure, the acceptor's back-off on EMFILE,
// and io_context::shutdown with connections live.
#include "test_support.hpp"

#include "detail/ring.hpp"  // private: the count of timer SQEs (the no-polling check)

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/socket.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int k_clients = 1000;  // the drain test's clients (2,000 descriptors)

// Timer SQEs this context submitted so far (IORING_OP_TIMEOUT and linked timeouts).
std::uint64_t timeouts(io_context& ctx) {
  return detail::ring_access::native(ctx).timeouts_submitted;
}

// Woken when hit() was called `need` times: a wait on one sleep cancelled by the event.
struct gate {
  explicit gate(int n) : need(n) {}
  void hit() {
    if (++count == need) src.request_stop();
  }
  // Returns: true if the count was reached within limit.
  task<bool> wait(io_context& ctx, std::chrono::milliseconds limit) {
    if (count >= need) co_return true;
    auto sleep = as_result(sleep_for(ctx, limit).with_stop(src.get_token()));
    auto r = co_await std::move(sleep);
    (void)r;
    co_return count >= need;
  }
  int need;
  int count = 0;
  std::stop_source src;
};

// A reply larger than a small send buffer and a small receive buffer hold together: the
// handler's send_all stays in flight until the client reads.
constexpr std::size_t k_reply = 64 * 1024;
const std::vector<std::byte>& reply_bytes() {
  static const std::vector<std::byte> v(k_reply, std::byte{'r'});
  return v;
}

// Reads a request, sends the big reply, and goes on until EOF (the drain's SHUT_RD).
task<> big_reply(coring::socket& s, gate& replying) {
  s.set_option(sockopt::send_buffer_size{4096});
  std::array<std::byte, 256> buf;
  while (std::size_t n = co_await s.recv(buf)) {
    (void)n;
    replying.hit();
    co_await s.send_all(std::span(reply_bytes()));
  }
}

// A client with a small receive window (set before connect).
task<coring::socket> small_client(io_context& ctx, address to) {
  coring::socket c(ctx, to.family(), SOCK_STREAM);
  c.set_option(sockopt::recv_buffer_size{4096});
  co_await c.connect(to);
  co_return c;
}

task<> read_reply(coring::socket& c, int& ok) {
  std::string got = co_await test::read_all(c);
  if (got.size() == k_reply) ++ok;
}

coring::task<> echo(coring::socket& s) {
  std::array<std::byte, 4096> buf;
  while (std::size_t n = co_await s.recv(buf))
    co_await s.send_all(std::span(buf).first(n));
}

// Serves every client with echo until SIGINT or SIGTERM, then drains: new clients are
// refused, replies in flight go out, and what is left after 2 s is cancelled.
coring::task<> serve_until_signal(coring::io_context& ctx, coring::socket listener) {
  coring::connection_scope scope(ctx);
  scope.serve(std::move(listener), echo);
  co_await coring::wait_signal(ctx, SIGINT, SIGTERM);
  const bool all_ended = co_await scope.drain(std::chrono::seconds(2));
  if (!all_ended) std::fputs("some connections were cut at the grace limit\n", stderr);
}

struct drain_result {
  bool ended = false;
  clock_type::duration took{};
  std::uint64_t timers = 0;  // timer SQEs submitted while it ran
};

task<> timed_drain(connection_scope& scope, std::chrono::nanoseconds grace, drain_result& out) {
  const auto t0 = clock_type::now();
  const std::uint64_t before = timeouts(scope.context());
  out.ended = co_await scope.drain(grace);
  out.timers = timeouts(scope.context()) - before;
  out.took = clock_type::now() - t0;
}

// Restores RLIMIT_NOFILE when the test ends, whatever happens.
struct fd_limit_guard {
  rlimit saved{};
  fd_limit_guard() { getrlimit(RLIMIT_NOFILE, &saved); }
  ~fd_limit_guard() { setrlimit(RLIMIT_NOFILE, &saved); }
};

bool ensure_fd_limit(rlim_t n) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur >= n) return true;
  if (rl.rlim_max < n) return false;
  rl.rlim_cur = n;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

}  // namespace

TEST_CASE(
    "drain: 1,000 clients mid-exchange get their in-flight replies, the drain ends within "
    "grace + 1 s and submits no timer but its grace deadline") {
  REQUIRE_MESSAGE(ensure_fd_limit(2 * k_clients + 100), "cannot raise RLIMIT_NOFILE");
  io_context ctx;
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        gate replying(k_clients);
        connection_scope scope(ctx);
        coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
        const address at = listener.sock_name();
        gate* g = &replying;
        scope.serve(std::move(listener), [g](coring::socket& s) { return big_reply(s, *g); });
        std::vector<coring::socket> clients;
        for (int i = 0; i < k_clients; ++i)
          clients.push_back(co_await small_client(ctx, at));
        for (auto& c : clients)
          co_await c.send_all(test::bytes("go"));
        // Every handler has its reply in flight (blocked: nobody reads yet).
        const bool all_replying = co_await replying.wait(ctx, 20s);
        REQUIRE(all_replying);
        CHECK(scope.size() == k_clients);
        drain_result d;
        int ok = 0;
        task_group group(ctx);
        group.spawn(timed_drain(scope, 5s, d));  // starts first: the clients read after it
        for (auto& c : clients)
          group.spawn(read_reply(c, ok));
        co_await group.join();
        CHECK(ok == k_clients);  // every reply in flight went out whole, then EOF
        CHECK(d.ended);
        CHECK(d.took < 6s);
        CHECK(d.timers <= 1);  // the grace deadline only: woken by the last end, no polling
        CHECK(scope.size() == 0);
        CHECK(scope.serving() == 0);
      },
      60s);
}

TEST_CASE(
    "drain: a client that never reads (the stop hook cannot end it) is cancelled at the grace "
    "limit, not reported, and the drain adds one timer at most") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    gate replying(1);
    int reported = 0;
    connection_scope scope(
        ctx, {.on_error = [&](const coring::socket&, std::exception_ptr) { ++reported; }});
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    gate* g = &replying;
    scope.serve(std::move(listener), [g](coring::socket& s) { return big_reply(s, *g); });
    coring::socket c = co_await small_client(ctx, at);
    co_await c.send_all(test::bytes("go"));
    const bool started = co_await replying.wait(ctx, 10s);
    REQUIRE(started);
    drain_result d;
    co_await timed_drain(scope, 300ms, d);
    CHECK(d.ended);
    CHECK(d.took >= 300ms);
    CHECK(d.took < 1300ms);
    CHECK(d.timers <= 2);  // the grace deadline, and the bound on the wait after the cancel
    CHECK(reported == 0);  // operation_canceled during a drain is not news
    CHECK(scope.size() == 0);
  });
}

TEST_CASE(
    "drain: a client connecting during the grace period is refused, one whose connect just "
    "completed is served or reset, never left hanging") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    gate replying(1);
    // The slow client's reply ends with a broken pipe when it goes: not this test's news.
    connection_scope scope(ctx, {.on_error = [](const coring::socket&, std::exception_ptr) {}});
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    gate* g = &replying;
    scope.serve(std::move(listener), [g](coring::socket& s) { return big_reply(s, *g); });
    // One slow client keeps the drain in its grace period.
    coring::socket slow = co_await small_client(ctx, at);
    co_await slow.send_all(test::bytes("go"));
    const bool started = co_await replying.wait(ctx, 10s);
    REQUIRE(started);
    coring::socket just = co_await small_client(ctx, at);  // in the backlog, or accepted already
    drain_result d;
    std::error_code late_connect, late_read, just_read;
    std::size_t just_bytes = 0;
    task_group group(ctx);
    group.spawn(timed_drain(scope, 2s, d));
    group.spawn([&](std::stop_token) -> task<> {
      CHECK(scope.draining());  // spawned after the drain: it has started
      coring::socket late(ctx, at.family(), SOCK_STREAM);
      auto c = co_await as_result(late.connect(at));
      if (c) {
        std::array<std::byte, 16> buf;
        auto r = co_await as_result(late.recv(buf));
        late_read = r ? std::error_code{} : r.error();
      } else {
        late_connect = c.error();
      }
      std::array<std::byte, 16> buf;
      auto r = co_await as_result(just.recv(buf));
      if (r)
        just_bytes = *r;
      else
        just_read = r.error();
      slow =
          coring::socket{};  // let the drain end: the slow client goes (its server side is reset)
    });
    co_await group.join();
    const bool refused =
        late_connect == std::errc::connection_refused || late_read == std::errc::connection_reset;
    CHECK_MESSAGE(refused,
                  "connect: " << late_connect.message() << ", recv: " << late_read.message());
    // Served (its handler saw EOF and closed: 0 bytes) or reset.
    CHECK((just_bytes == 0 && (!just_read || just_read == std::errc::connection_reset)));
    CHECK(d.ended);
  });
}

TEST_CASE("a handler that throws ends only its connection, and the scope reports it") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    std::vector<std::string> errors;
    std::vector<std::string> peers;
    connection_scope scope(ctx, {.on_error = [&](const coring::socket& s, std::exception_ptr e) {
                             try {
                               std::rethrow_exception(e);
                             } catch (const std::exception& x) {
                               errors.push_back(x.what());
                             }
                             peers.push_back(s.peer_name().to_string());
                           }});
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    scope.serve(std::move(listener), [](coring::socket& s) -> task<> {
      std::array<std::byte, 64> buf;
      while (std::size_t n = co_await s.recv(buf)) {
        if (test::text(std::span(buf).first(n)) == "boom") throw std::runtime_error("boom");
        co_await s.send_all(std::span(buf).first(n));
      }
    });
    coring::socket good(ctx, at.family(), SOCK_STREAM);
    co_await good.connect(at);
    coring::socket bad(ctx, at.family(), SOCK_STREAM);
    co_await bad.connect(at);
    co_await bad.send_all(test::bytes("boom"));
    std::array<std::byte, 16> buf;
    auto r = co_await as_result(bad.recv(buf));
    CHECK((!r || *r == 0));  // its connection ended
    co_await good.send_all(test::bytes("hi"));
    std::size_t got = co_await good.recv(buf);
    CHECK(test::text(std::span(buf).first(got)) == "hi");  // the other goes on
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "boom");
    CHECK(peers[0] == bad.sock_name().to_string());
    CHECK(scope.size() == 1);
    const bool ended = co_await scope.drain(2s);
    CHECK(ended);
    CHECK(errors.size() == 1);
  });
}

TEST_CASE(
    "acceptor back-off on EMFILE: accept() waits instead of failing, the error is reported "
    "once, no busy loop, and the clients are accepted once descriptors are free") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    std::vector<coring::socket> clients;
    for (int i = 0; i < 20; ++i) {
      coring::socket c(ctx, at.family(), SOCK_STREAM);
      co_await c.connect(at);  // completes from the backlog
      clients.push_back(std::move(c));
    }
    int reports = 0;
    int last_error = 0;
    acceptor acc(listener, {.on_back_off = [&](std::error_code ec) {
                   ++reports;
                   last_error = ec.value();
                 }});
    std::vector<coring::socket> served;
    fd_limit_guard guard;
    {
      // Room for exactly 5 more descriptors; the limit is read when the accept is prepared.
      rlimit tight = guard.saved;
      tight.rlim_cur = static_cast<rlim_t>(test::open_fds() + 5 + 3);
      setrlimit(RLIMIT_NOFILE, &tight);
      const auto t0 = clock_type::now();
      bool timed_out = false;
      for (int i = 0; i < 20 && !timed_out; ++i) {
        auto r = co_await as_result(acc.accept().with_timeout(450ms));
        if (r)
          served.push_back(std::move(*r));
        else
          timed_out = true;  // the acceptor backs off: no EMFILE reaches the caller
      }
      const auto took = clock_type::now() - t0;
      const acceptor_stats st = acc.stats();
      setrlimit(RLIMIT_NOFILE, &guard.saved);  // before comparing error codes (UBSan, see
                                               // test_acceptor.cpp)
      CHECK(timed_out);
      CHECK(served.size() >= 3);
      CHECK(served.size() < 20);
      CHECK(reports == 1);
      CHECK(last_error == EMFILE);
      // One back-off per 100 ms, one accept submission per back-off: no busy loop.
      const auto periods = std::chrono::duration_cast<std::chrono::milliseconds>(took) / 100ms;
      CHECK(st.back_offs >= 1);
      CHECK(st.back_offs <= static_cast<std::uint64_t>(periods) + 1);
      // Without multishot accept (the epoll backend) each accepted client took one more.
      const std::uint64_t per_accept = ctx.features().accept_multishot ? 0 : served.size();
      CHECK(st.submissions <= st.back_offs + 2 + per_accept);
    }
    // Descriptors are back: the next back-off's end accepts the connections left.
    while (served.size() < 20) {
      auto r = co_await as_result(acc.accept().with_timeout(2s));
      REQUIRE(r);
      served.push_back(std::move(*r));
    }
    CHECK(served.size() == 20);
    CHECK(reports == 1);
    const std::uint64_t per_accept = ctx.features().accept_multishot ? 0 : served.size();
    CHECK(acc.stats().submissions <= acc.stats().back_offs + 3 + per_accept);
  });
}

TEST_CASE(
    "io_context::shutdown with connections live destroys their frames without resuming them") {
  test::counted::reset();
  bool resumed = false;
  {
    io_context ctx;
    connection_scope scope(ctx);
    gate started(10);
    std::vector<coring::socket> clients;
    test::run_on(ctx, [&](io_context& ctx) -> task<> {
      coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
      const address at = listener.sock_name();
      scope.serve(std::move(listener), [&](coring::socket& s) -> task<> {
        test::counted local;
        started.hit();
        std::array<std::byte, 16> buf;
        (void)co_await s.recv(buf);
        resumed = true;
      });
      for (int i = 0; i < 10; ++i) {
        coring::socket c(ctx, at.family(), SOCK_STREAM);
        co_await c.connect(at);
        clients.push_back(std::move(c));
      }
      const bool all = co_await started.wait(ctx, 10s);
      REQUIRE(all);
    });
    CHECK(scope.size() == 10);
    CHECK(test::counted::live == 10);
    ctx.shutdown();
    CHECK(test::counted::live == 0);
    CHECK(scope.size() == 0);
    CHECK(scope.serving() == 0);
    CHECK(!resumed);
  }
  CHECK(!resumed);
}

TEST_CASE("spawn() after the drain started resets the connection instead of ignoring it") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    connection_scope scope(ctx);
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    acceptor acc(listener);
    coring::socket c(ctx, at.family(), SOCK_STREAM);
    co_await c.connect(at);
    coring::socket s = co_await acc.accept();
    const bool ended = co_await scope.drain(1s);
    CHECK(ended);
    scope.spawn(std::move(s), echo);
    CHECK(scope.size() == 0);
    std::array<std::byte, 16> buf;
    auto r = co_await as_result(c.recv(buf));
    REQUIRE(!r);
    CHECK(r.error() == std::errc::connection_reset);
  });
}

TEST_CASE("the README's graceful server: echo until SIGTERM, then drain, refuse and end") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address at = listener.sock_name();
    task_group group(ctx);
    task<> server = serve_until_signal(ctx, std::move(listener));
    group.spawn(std::move(server));
    coring::socket c(ctx, at.family(), SOCK_STREAM);
    co_await c.connect(at);
    co_await c.send_all(test::bytes("hi"));
    std::array<std::byte, 16> buf;
    std::size_t n = co_await c.recv(buf);
    CHECK(test::text(std::span(buf).first(n)) == "hi");
    // The server called wait_signal before it accepted us: SIGTERM is blocked and queued.
    ::raise(SIGTERM);
    std::size_t eof = co_await c.recv(buf);  // the drain's SHUT_RD ended echo: it closed
    CHECK(eof == 0);
    co_await group.join();
    coring::socket late(ctx, at.family(), SOCK_STREAM);
    auto r = co_await as_result(late.connect(at));
    CHECK(r.error() == std::errc::connection_refused);
  });
}
