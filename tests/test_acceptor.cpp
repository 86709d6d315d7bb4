// SPDX-License-Identifier: MIT
// Description: acceptor (multishot accept): many connections from one SQE, EMFILE without
// spinning and with recovery, backpressure, cancellation, per-wait deadlines and stop tokens,
// and teardown.
#include "test_support.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

task<std::vector<coring::socket>> connect_many(io_context& ctx, address to, int n) {
  std::vector<coring::socket> v;
  for (int i = 0; i < n; ++i) {
    coring::socket s(ctx, to.family(), SOCK_STREAM);
    co_await s.connect(to);  // completes from the backlog: nobody needs to accept yet
    v.push_back(std::move(s));
  }
  co_return v;
}

// Restores RLIMIT_NOFILE when the test ends, whatever happens.
struct fd_limit_guard {
  rlimit saved{};
  fd_limit_guard() { getrlimit(RLIMIT_NOFILE, &saved); }
  ~fd_limit_guard() { setrlimit(RLIMIT_NOFILE, &saved); }
};

// Multishot churn. The soak size is 200 clients x 1,000 reconnects (liburing's
// accept-mshot-stress scale); 50 (10,000 connections) take about 1 s, release or g++ -O0
// ASan+UBSan. Raise k_churn_rounds for a soak run: clients leave with RST (SO_LINGER {1,0}), so
// no TIME_WAIT piles up and the ephemeral ports (32768-60999) are reusable at once, however
// often the test runs.
constexpr int k_churn_clients = 200;
constexpr int k_churn_rounds = 50;
constexpr auto k_churn_deadline = std::chrono::seconds(40);    // clients stop; watchdog at 60 s
constexpr auto k_churn_op_timeout = std::chrono::seconds(10);  // a stuck op fails, not hangs

struct churn_stats {
  std::chrono::steady_clock::time_point deadline;
  int accepted = 0;  // sockets the acceptor handed out
  int echoed = 0;    // connections whose echo the client received and verified
  int served = 0;    // server tasks that ended
  int resets = 0;    // server reads ended by the client's RST: expected, not an error
  int errors = 0;    // anything else
  std::string first_error;
  void fail(std::string what) {
    if (errors++ == 0) first_error = std::move(what);
  }
};

// One server connection: echo until the client leaves (EOF or, as here, its RST).
task<> churn_serve(coring::socket s, churn_stats& st) {
  std::array<std::byte, 64> buf;
  try {
    for (int i = 0; i < 64; ++i) {  // a client sends one message of < 64 bytes
      auto n = co_await as_result(s.recv(buf));
      if (!n) {
        if (n.error() == std::errc::connection_reset)
          ++st.resets;
        else
          st.fail("server recv: " + n.error().message());
        break;
      }
      if (*n == 0) break;
      co_await s.send_all(std::span(buf).first(*n));
    }
  } catch (const std::exception& e) {
    st.fail(std::string("server: ") + e.what());
  }
  ++st.served;
}

// Accepts `total` connections from one acceptor and serves each in `servers`.
task<> churn_accept(acceptor& acc, int total, churn_stats& st, task_group& servers) {
  while (st.accepted < total) {
    auto r = co_await as_result(acc.accept());
    if (!r) {
      // operation_canceled: the clients ended short (their errors are counted) and the
      // listener was cancelled to end this loop.
      if (r.error() != std::errc::operation_canceled) st.fail("accept: " + r.error().message());
      break;
    }
    ++st.accepted;
    servers.spawn(churn_serve(std::move(*r), st));
  }
}

// One client: `rounds` times connect, send a message, verify the echo, leave with RST.
task<> churn_client(io_context& ctx, address to, int id, int rounds, churn_stats& st) {
  for (int round = 0; round < rounds; ++round) {
    if (std::chrono::steady_clock::now() > st.deadline) {
      st.fail("client " + std::to_string(id) + ": deadline reached at round " +
              std::to_string(round));
      break;
    }
    char msg[32];
    const int len = std::snprintf(msg, sizeof msg, "client %d round %d", id, round);
    const std::string_view sent(msg, static_cast<std::size_t>(len));
    try {
      coring::socket s(ctx, to.family(), SOCK_STREAM);
      s.set_option(sockopt::linger{true, 0});  // close() sends RST: no TIME_WAIT, port reusable
      co_await s.connect(to).with_timeout(k_churn_op_timeout);
      co_await s.send_all(test::bytes(sent)).with_timeout(k_churn_op_timeout);
      std::array<std::byte, 64> buf;
      std::size_t got = 0;
      while (got < sent.size()) {  // each pass reads >= 1 byte or ends
        std::size_t n =
            co_await s.recv(std::span(buf).subspan(got)).with_timeout(k_churn_op_timeout);
        if (n == 0) break;
        got += n;
      }
      if (test::text(std::span(buf).first(got)) == sent)
        ++st.echoed;
      else
        st.fail("client " + std::to_string(id) + ": echo mismatch");
      co_await s.close();
    } catch (const std::exception& e) {
      st.fail("client " + std::to_string(id) + ": " + e.what());
    }
  }
}

}  // namespace

TEST_CASE("an acceptor serves 200 connections from one multishot accept" *
          test::skip_unless(test::ring_supports(test::feature::multishot_accept))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener);
    auto clients = co_await connect_many(ctx, listener.sock_name(), 200);
    std::vector<coring::socket> served;
    for (int i = 0; i < 200; ++i)
      served.push_back(co_await acc.accept());
    CHECK(served.size() == 200);
    for (auto& s : served)
      CHECK(s.peer_name().is_ip());
    // One SQE stays armed for all of them.
    CHECK(ctx.in_flight() == 1);
  });
}

TEST_CASE(
    "EMFILE on accept without back-off: reported once, no spinning, and recovery when fds "
    "free up") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    auto clients = co_await connect_many(ctx, listener.sock_name(), 20);
    fd_limit_guard guard;
    std::vector<coring::socket> served;
    {
      // Room for exactly 5 more descriptors; the limit is read when the accept is prepared.
      rlimit tight = guard.saved;
      tight.rlim_cur = static_cast<rlim_t>(test::open_fds() + 5 + 3);
      setrlimit(RLIMIT_NOFILE, &tight);
      // Back-off off: accept() reports EMFILE itself (tests/test_scope.cpp tests the back-off).
      acceptor acc(listener, {.back_off = {}});
      std::error_code err;
      for (int i = 0; i < 20 && !err; ++i) {
        auto r = co_await as_result(acc.accept());
        if (r)
          served.push_back(std::move(*r));
        else
          err = r.error();
      }
      // The multishot ended with the error and is not re-armed behind our back: no spin.
      const std::size_t in_flight = ctx.in_flight();
      // TRICKY: restore the limit before comparing error codes: UBSan's vptr check opens a pipe
      // to probe memory and reports a false "invalid vptr" while descriptors are exhausted.
      setrlimit(RLIMIT_NOFILE, &guard.saved);
      CHECK(in_flight == 0);
      CHECK(err == std::errc::too_many_files_open);
      CHECK(served.size() >= 3);
      CHECK(served.size() < 20);
      // Descriptors are back: the connections waiting in the backlog are accepted now.
      while (served.size() < 20)
        served.push_back(co_await acc.accept());
    }
    CHECK(served.size() == 20);
  });
}

TEST_CASE("backpressure: an acceptor nobody asks stops at max_queued; the backlog keeps the rest" *
          test::skip_unless(test::ring_supports(test::feature::multishot_accept))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener, {.max_queued = 4});
    auto first_client = co_await connect_many(ctx, listener.sock_name(), 1);
    coring::socket first = co_await acc.accept();  // arms the multishot
    auto clients = co_await connect_many(ctx, listener.sock_name(), 30);
    // Cancelled after 4 queued: nothing accepts behind our back.
    const bool idle = co_await test::kernel_idle(ctx);
    CHECK(idle);
    std::vector<coring::socket> served;
    for (int i = 0; i < 30; ++i)
      served.push_back(co_await acc.accept());
    CHECK(served.size() == 30);
  });
}

namespace {
// Accepts n connections in a loop, like a server, and greets each with one byte.
task<> greet_loop(acceptor& acc, int n, int& served) {
  for (int i = 0; i < n; ++i) {
    coring::socket s = co_await acc.accept();
    co_await s.send_all(test::bytes("x"));
    ++served;
  }
}
}  // namespace

TEST_CASE(
    "an accept() waiting when the backpressure cancel ends the multishot re-arms it "
    "(max_queued 1, a server loop, 20 clients one after another)" *
    test::skip_unless(test::ring_supports(test::feature::multishot_accept))) {
  io_context ctx;
  int served_and_greeted = test::run_on(
      ctx,
      [](io_context& ctx) -> task<int> {
        coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
        acceptor acc(listener, {.max_queued = 1});
        int served = 0, greeted = 0;
        ctx.spawn(greet_loop(acc, 20, served));
        for (int i = 0; i < 20; ++i) {
          // Each connection fills the queue (1), which cancels the multishot; the loop takes it and
          // waits again while that cancel is still on its way: the cancel's end must re-arm.
          auto client = co_await connect_many(ctx, listener.sock_name(), 1);
          std::array<std::byte, 1> b{};
          auto r = co_await as_result(client[0].recv(b).with_timeout(5s));
          if (!r || *r != 1) break;  // not greeted within 5 s: the acceptor stopped accepting
          ++greeted;
        }
        if (served < 20) listener.cancel();  // lets the loop end if it still waits
        co_return served + greeted;
      },
      60s);
  CHECK(served_and_greeted == 40);
}

TEST_CASE("destroying an acceptor closes connections it accepted but did not hand out" *
          test::skip_unless(test::ring_supports(test::feature::multishot_accept))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    int before = test::open_fds();
    {
      acceptor acc(listener, {.max_queued = 8});
      auto clients = co_await connect_many(ctx, listener.sock_name(), 5);
      coring::socket one = co_await acc.accept();
      // The other 4 are accepted into the acceptor's queue by the kernel, which tells nobody:
      // watch the descriptor count (5 clients + 5 accepted) instead of an in_flight() that
      // stays 1 while the multishot is armed.
      for (int i = 0; i < 1000 && test::open_fds() < before + 10; ++i)
        co_await sleep_for(ctx, 1ms);
      CHECK(test::open_fds() == before + 10);
    }
    const bool idle = co_await test::kernel_idle(ctx);
    CHECK(idle);
    CHECK(test::open_fds() == before);
  });
}

TEST_CASE("listener.cancel() ends a waiting accept and every later one with operation_canceled") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener);
    auto canceller = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 5ms);
      s.cancel();
    };
    ctx.spawn(canceller(ctx, listener));
    auto r = co_await as_result(acc.accept());
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
    // The cancel sticks: a later accept() ends at once, even with a connection waiting (an
    // accept loop between two accepts, e.g. backing off, cannot miss it).
    auto c = co_await connect_many(ctx, listener.sock_name(), 1);
    auto r2 = co_await as_result(acc.accept());
    REQUIRE_FALSE(r2);
    CHECK(r2.error() == std::errc::operation_canceled);
    CHECK(listener.cancelled());
    CHECK(ctx.in_flight() == 0);
  });
}

TEST_CASE("the acceptor falls back to one accept per call when multishot is off") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener, {.max_queued = 64, .multishot = false});
    auto clients = co_await connect_many(ctx, listener.sock_name(), 10);
    for (int i = 0; i < 10; ++i) {
      coring::socket s = co_await acc.accept();
      CHECK(s.is_open());
    }
  });
}

TEST_CASE("multishot accept churn" *
          test::skip_unless(test::ring_supports(test::feature::multishot_accept))) {
  constexpr int total = k_churn_clients * k_churn_rounds;
  // Declared before the io_context, so that it also bounds the context's teardown.
  test::watchdog w(std::chrono::seconds(60), "multishot accept churn");
  io_context ctx;
  const int fds_before = test::open_fds();
  churn_stats st;
  std::size_t in_flight_after_churn = 0, in_flight_after_probe = 0;
  auto body = [](io_context& ctx, churn_stats& st, std::size_t& after_churn,
                 std::size_t& after_probe) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    const address to = listener.sock_name();
    {
      acceptor acc(listener);
      task_group servers(ctx), accepting(ctx), clients(ctx);
      accepting.spawn(churn_accept(acc, total, st, servers));
      for (int c = 0; c < k_churn_clients; ++c)
        clients.spawn(churn_client(ctx, to, c, k_churn_rounds, st));
      co_await clients.join();
      if (st.accepted < total) listener.cancel();  // a client ended short: end the accept loop
      co_await accepting.join();
      co_await servers.join();
      // Every client and server socket is closed: at most the multishot accept is in flight.
      after_churn = ctx.in_flight();
      // The acceptor still serves (re-armed by this accept if the multishot had ended).
      coring::socket probe(ctx, to.family(), SOCK_STREAM);
      probe.set_option(sockopt::linger{true, 0});
      co_await probe.connect(to);
      coring::socket served = co_await acc.accept();
      CHECK(served.peer_name() == probe.sock_name());
      after_probe = ctx.in_flight();
      co_await probe.close();  // RST first: neither side keeps a TIME_WAIT
      co_await served.close();
    }  // ~acceptor cancels the multishot; its final CQE frees the acceptor's state
  };
  const auto t0 = std::chrono::steady_clock::now();
  st.deadline = t0 + k_churn_deadline;
  sync_wait(ctx, body(ctx, st, in_flight_after_churn, in_flight_after_probe));
  // Reap the cancelled multishot's final CQE (and the listener's, if it was cancelled).
  for (int i = 0; i < 100 && ctx.in_flight() > 0; ++i)
    ctx.run_once(true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("multishot accept churn: "
          << k_churn_clients << " clients x " << k_churn_rounds << " reconnects = " << total
          << " connections: " << st.accepted << " accepted, " << st.echoed << " echoed, "
          << st.resets << " RST seen by the server, " << st.errors
          << " errors, in flight after churn " << in_flight_after_churn << ", " << secs << " s ("
          << static_cast<long>(total / secs) << " connections/s)");
  CHECK_MESSAGE(st.errors == 0, "first error: " << st.first_error);
  CHECK(st.accepted == total);
  CHECK(st.echoed == total);
  CHECK(st.served == total);
  CHECK(in_flight_after_churn <= 1);
  CHECK(in_flight_after_probe == 1);  // exactly the multishot accept
  CHECK(ctx.in_flight() == 0);
  CHECK(test::open_fds() == fds_before);
}

// ---- per-wait deadlines and stop tokens ----

namespace {

// A plain blocking connect, off the ring: when it returns the handshake is done and the
// listener's accept completion waits in the kernel, not yet reaped.
int raw_connect(const address& to) {
  int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::connect(fd, to.data(), to.size()) == 0);
  return fd;
}

address raw_sock_name(int fd) {
  address a;
  socklen_t len = address::capacity();
  REQUIRE(::getsockname(fd, a.data(), &len) == 0);
  a.resize(len);
  return a;
}

task<> with_timeout_then_accept(io_context& ctx, bool multishot) {
  coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
  acceptor acc(listener, {.multishot = multishot});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = co_await as_result(acc.accept().with_timeout(20ms));
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  // The throwing form, and a deadline that has already passed.
  bool threw = false;
  try {
    co_await acc.accept().with_timeout(0ms);
  } catch (const std::system_error& e) {
    threw = e.code() == std::errc::timed_out;
  }
  CHECK(threw);
  // The acceptor goes on: the next accept() gets a connection, well within its deadline.
  auto clients = co_await connect_many(ctx, listener.sock_name(), 1);
  coring::socket s = co_await acc.accept().with_timeout(10s);
  CHECK(s.peer_name() == clients[0].sock_name());
  // The timer does not outlive its use once nothing else is armed (one accept per call).
  if (!multishot) {
    const bool idle = co_await test::kernel_idle(ctx);
    CHECK(idle);
  }
}

}  // namespace

TEST_CASE(
    "accept().with_timeout ends with timed_out when nobody connects; the next accept() "
    "still gets a connection") {
  io_context ctx;
  SUBCASE("multishot accept") { test::run(ctx, with_timeout_then_accept(ctx, true)); }
  SUBCASE("one accept per call") { test::run(ctx, with_timeout_then_accept(ctx, false)); }
}

TEST_CASE(
    "accept().with_stop: a stop request ends the wait with operation_canceled; the "
    "acceptor goes on") {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener);
    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    std::stop_token tok = stop.get_token();
    auto op = as_result(acc.accept().with_stop(tok));
    auto r = co_await op;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
    // Already stopped: ends at once.
    auto op2 = as_result(acc.accept().with_stop(tok).with_timeout(10s));
    auto r2 = co_await op2;
    REQUIRE_FALSE(r2);
    CHECK(r2.error() == std::errc::operation_canceled);
    // Not a socket cancel: the acceptor still accepts.
    auto clients = co_await connect_many(ctx, listener.sock_name(), 1);
    std::stop_source unused;
    auto op3 = acc.accept().with_stop(unused.get_token());
    coring::socket s = co_await op3;
    CHECK(s.peer_name() == clients[0].sock_name());
  };
  test::run(ctx, body(ctx));
}

TEST_CASE(
    "a stop request from another thread ends a waiting accept() with operation_canceled "
    "(200 rounds, both before and while it waits)") {
  constexpr int rounds = 200;
  test::watchdog w(60s, "cross-thread accept stop");
  io_context ctx;
  std::vector<std::stop_source> sources(rounds);
  std::atomic<int> waiting{-1};  // the round whose accept() is about to wait
  int cancelled = 0, other = 0;
  auto body = [](io_context& ctx, std::vector<std::stop_source>& sources, std::atomic<int>& waiting,
                 int& cancelled, int& other) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener);
    for (int i = 0; i < rounds; ++i) {
      std::stop_token tok = sources[static_cast<std::size_t>(i)].get_token();
      waiting.store(i);  // the other thread may request stop from now on
      auto op = as_result(acc.accept().with_stop(tok));
      auto r = co_await op;
      if (!r && r.error() == std::errc::operation_canceled)
        ++cancelled;
      else
        ++other;
    }
    auto clients = co_await connect_many(ctx, listener.sock_name(), 1);
    coring::socket s = co_await acc.accept().with_timeout(10s);
    CHECK(s.peer_name() == clients[0].sock_name());
  };
  std::thread stopper([&] {
    for (int i = 0; i < rounds; ++i) {
      for (int t = 0; t < 10'000'000 && waiting.load() < i; ++t)
        std::this_thread::yield();
      sources[static_cast<std::size_t>(i)].request_stop();
    }
  });
  test::run(ctx, body(ctx, sources, waiting, cancelled, other), 50s);
  stopper.join();
  CHECK(cancelled == rounds);
  CHECK(other == 0);
}

TEST_CASE(
    "a connection that arrives in the loop turn of a stop request is handed out, not "
    "lost") {
  test::watchdog w(30s, "accept stop race");
  io_context ctx;
  coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
  acceptor acc(listener);
  struct outcome {
    int stage = 0;
    std::vector<coring::socket> accepted;
    std::vector<std::error_code> errors;
  } out;
  auto waiter = [](acceptor& acc, std::stop_token tok, outcome& out) -> task<> {
    out.stage = 1;
    auto op = as_result(acc.accept().with_stop(tok));
    auto r = co_await op;
    if (r)
      out.accepted.push_back(std::move(*r));
    else
      out.errors.push_back(r.error());
    // The connection was not handed out: it waits for this accept().
    if (!r) {
      auto r2 = co_await as_result(acc.accept().with_timeout(5s));
      if (r2)
        out.accepted.push_back(std::move(*r2));
      else
        out.errors.push_back(r2.error());
    }
    out.stage = 2;
  };
  std::stop_source stop;
  ctx.spawn(waiter(acc, stop.get_token(), out));
  ctx.run_once(false);  // the waiter waits; the multishot accept is submitted
  REQUIRE(out.stage == 1);
  const int client = raw_connect(listener.sock_name());
  stop.request_stop();  // the same loop turn: the accept completion is not reaped yet
  for (int i = 0; i < 100 && out.stage < 2; ++i)
    ctx.run_once(true);
  REQUIRE(out.stage == 2);
  REQUIRE(out.accepted.size() == 1);
  CHECK(out.accepted[0].peer_name() == raw_sock_name(client));
  // Reaped after the stop ended the wait: the first accept() was cancelled, the second got it.
  REQUIRE(out.errors.size() == 1);
  CHECK(out.errors[0] == std::errc::operation_canceled);
  ::close(client);
}

TEST_CASE(
    "io_context::shutdown with an accept().with_timeout waiting destroys the waiter "
    "without resuming it") {
  test::watchdog w(30s, "accept teardown");
  const int fds_before = test::open_fds();
  auto waiter = [](acceptor& acc, int& resumed) -> task<> {
    test::counted alive;
    auto r = co_await as_result(acc.accept().with_timeout(10s));
    ++resumed;
  };
  auto owner = [](coring::socket& l, int& resumed) -> task<> {
    test::counted alive;
    acceptor acc(l);
    auto r = co_await as_result(acc.accept().with_timeout(10s));
    ++resumed;
  };
  int resumed = 0;
  test::counted::reset();
  SUBCASE("the acceptor lives in the waiting frame") {
    io_context ctx;
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    ctx.spawn(owner(listener, resumed));
    ctx.run_once(false);
    CHECK(ctx.in_flight() == 2);  // the accept and the wait's timer
    CHECK(test::counted::live == 1);
    ctx.shutdown();
    CHECK(ctx.in_flight() == 0);
    CHECK(ctx.spawned() == 0);
  }
  SUBCASE("the acceptor outlives the waiting frame") {
    io_context ctx;
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    acceptor acc(listener);
    ctx.spawn(waiter(acc, resumed));
    ctx.run_once(false);
    CHECK(ctx.in_flight() == 2);
    ctx.shutdown();
    CHECK(ctx.in_flight() == 0);
    CHECK(ctx.spawned() == 0);
    CHECK(test::counted::live == 0);
  }  // ~acceptor after the frame: frees its state
  CHECK(resumed == 0);
  CHECK(test::counted::live == 0);
  CHECK(test::open_fds() == fds_before);
}
