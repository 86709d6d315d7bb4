// SPDX-License-Identifier: MIT
// Description: resolve (getaddrinfo on the lookup pool) and tcp_connect with host names: the
// pool's bound, cancellation and teardown. Only "localhost" and numeric hosts are looked up.
#include "test_support.hpp"

#include <coring/resolve.hpp>
#include <coring/timer.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <netdb.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

bool has(const std::vector<address>& v, const std::string& text) {
  return std::any_of(v.begin(), v.end(), [&](const address& a) { return a.to_string() == text; });
}

// Whether this machine's resolver answers for no-such-host.invalid within 10 s. The lookup is
// local on most machines (.invalid never resolves, RFC 6761), but a resolver that asks an
// unreachable name server may take longer: then the case that needs an answer is skipped with
// this reason. A lookup that has not answered in time is left to finish on its own thread.
test::requirement probe_resolver() {
  struct state {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto st = std::make_shared<state>();
  std::thread([st] {
    addrinfo* res = nullptr;
    if (::getaddrinfo("no-such-host.invalid", "80", nullptr, &res) == 0) ::freeaddrinfo(res);
    std::lock_guard lock(st->mu);
    st->done = true;
    st->cv.notify_one();
  }).detach();
  std::unique_lock lock(st->mu);
  const bool answered = st->cv.wait_for(lock, 10s, [&] { return st->done; });
  return {test::requirement::kind::environment, "a resolver that answers for .invalid names",
          answered ? "" : "getaddrinfo(\"no-such-host.invalid\") did not return within 10 s"};
}

const test::requirement& resolver_answers() {
  static const test::requirement r = probe_resolver();
  return r;
}

}  // namespace

TEST_CASE("resolve finds localhost and numeric hosts with the service's port") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    std::vector<address> v = co_await resolve(ctx, "localhost", "9000");
    REQUIRE_FALSE(v.empty());
    CHECK(has(v, "127.0.0.1:9000"));
    std::vector<address> n4 = co_await resolve(ctx, "127.0.0.1", "80", AF_INET, SOCK_DGRAM);
    REQUIRE(n4.size() == 1);
    CHECK(n4[0].to_string() == "127.0.0.1:80");
    std::vector<address> n6 = co_await resolve(ctx, "::1", "443", AF_INET6);
    REQUIRE(n6.size() == 1);
    CHECK(n6[0].to_string() == "[::1]:443");
    std::vector<address> any = co_await resolve(ctx, "", "");  // loopback, port 0
    REQUIRE_FALSE(any.empty());
    CHECK(any[0].port() == 0);
  });
}

TEST_CASE("resolve keeps the ring running while getaddrinfo works on its thread") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int ticks = 0;
    auto ticker = [](io_context& ctx, int& ticks) -> task<> {
      for (int i = 0; i < 3; ++i) {
        co_await sleep_for(ctx, 1ms);
        ++ticks;
      }
    };
    // The ticker's sleeps complete on the ring while the lookup runs; when_all returns once
    // both have finished, so the count is checked without waiting for anything.
    auto both = co_await when_all(ticker(ctx, ticks), resolve(ctx, "localhost", "1"));
    CHECK_FALSE(std::get<1>(both).empty());
    CHECK(ticks == 3);
  });
}

TEST_CASE("resolve of a nonexistent name fails with a resolve_category error naming it" *
          test::skip_unless(resolver_answers())) {
  io_context ctx;
  // The resolver answered the probe within 10 s: the watchdog's 30 s are a wide margin.
  auto outcome = test::run_on(
      ctx,
      [](io_context& ctx) -> task<std::optional<std::system_error>> {
        try {
          (void)co_await resolve(ctx, "no-such-host.invalid", "80");
        } catch (const std::system_error& e) {
          co_return e;
        }
        co_return std::nullopt;
      },
      30s);
  REQUIRE(outcome.has_value());
  const std::system_error& e = *outcome;
  CHECK(e.code().category() == resolve_category());
  CHECK((e.code().value() == EAI_NONAME || e.code().value() == EAI_AGAIN ||
         e.code().value() == EAI_FAIL));
  CHECK(std::string(e.what()).find("no-such-host.invalid:80") != std::string::npos);
  CHECK_FALSE(e.code().message().empty());
}

TEST_CASE("tcp_connect accepts a host name and tries each address in turn") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    std::string to = "localhost:" + std::to_string(listener.sock_name().port());
    coring::socket client = co_await tcp_connect(ctx, to);
    coring::socket server = co_await listener.accept();
    CHECK(client.peer_name() == listener.sock_name());
    co_await client.send_all(std::string_view("hi"));
    std::array<std::byte, 2> b;
    CHECK(co_await server.recv(b) == 2);
    // "[name]:port" is accepted as well.
    coring::socket c2 = co_await tcp_connect(ctx, "[localhost]:" + to.substr(to.find(':') + 1));
    CHECK(c2.is_open());
  });
}

TEST_CASE("tcp_connect by name rethrows the last error when every address fails" *
          test::skip_unless(resolver_answers())) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    address closed;
    {
      coring::socket tmp = tcp_listen(ctx, "127.0.0.1:0");
      closed = tmp.sock_name();
    }
    try {
      (void)co_await tcp_connect(ctx, "localhost:" + std::to_string(closed.port()));
      FAIL("connect should fail");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_refused);
    }
    try {
      (void)co_await tcp_connect(ctx, "no-such-host.invalid:80");
      FAIL("connect should fail");
    } catch (const std::system_error& e) {
      CHECK(e.code().category() == resolve_category());
    }
    CHECK_THROWS_AS((void)co_await tcp_connect(ctx, "localhost"), std::system_error);  // no port
  });
}

TEST_CASE("tcp_connect to a port nobody listens on over IPv6 reports ECONNREFUSED") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    address closed;
    {
      coring::socket tmp = tcp_listen(ctx, "[::1]:0");
      closed = tmp.sock_name();
    }
    coring::socket s(ctx, AF_INET6, SOCK_STREAM);
    auto r = co_await as_result(s.connect(closed));
    CHECK(r.error() == std::errc::connection_refused);
    try {
      (void)co_await tcp_connect(ctx, closed.to_string());
      FAIL("connect should fail");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_refused);
    }
  });
}

// ---- the lookup pool: bounded threads, cancellation, teardown ----

namespace {

// Threads of this process now (/proc/self/task).
std::size_t threads_now() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

// A test's stand-in for a slow name server: while the gate is closed, every pool thread that
// is about to call getaddrinfo blocks in the hook (for at most 20 s); the gate records the hosts
// it saw. Installed by the constructor, opened and removed by the destructor.
class closed_gate {
 public:
  closed_gate() {
    std::lock_guard lock(state().mu);
    state().closed = true;
    state().entered = 0;
    state().seen.clear();
    detail::set_resolve_hook(&hook);
  }
  ~closed_gate() {
    open();
    detail::set_resolve_hook(nullptr);
  }
  closed_gate(const closed_gate&) = delete;
  closed_gate& operator=(const closed_gate&) = delete;

  void open() {
    std::lock_guard lock(state().mu);
    state().closed = false;
    ++state().generation;
    state().cv.notify_all();
  }
  // Waits (at most 10 s) until n lookups are blocked in the hook. Returns: whether they are.
  bool wait_entered(int n) {
    std::unique_lock lock(state().mu);
    return state().cv.wait_for(lock, 10s, [&] { return state().entered >= n; });
  }
  int entered() {
    std::lock_guard lock(state().mu);
    return state().entered;
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(state().mu);
    return state().seen;
  }

 private:
  struct shared {
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;
    unsigned generation = 0;
    int entered = 0;
    std::vector<std::string> seen;
  };
  static shared& state() {
    static shared s;
    return s;
  }
  static void hook(const std::string& host) noexcept {
    shared& s = state();
    std::unique_lock lock(s.mu);
    try {
      s.seen.push_back(host);
    } catch (...) {}
    ++s.entered;
    s.cv.notify_all();
    // A thread released by open() is not caught by the next case's gate.
    const unsigned generation = s.generation;
    s.cv.wait_for(lock, 20s, [&] { return !s.closed || s.generation != generation; });
  }
};

// How a lookup ended: its addresses, or the error it threw.
struct lookup_result {
  bool finished = false;
  std::vector<address> addrs;
  std::error_code error;
};

task<> record(io_context& ctx, std::string host, resolve_options opts, lookup_result& out) {
  try {
    auto lookup = resolve(ctx, std::move(host), "80", std::move(opts));
    out.addrs = co_await std::move(lookup);
  } catch (const std::system_error& e) {
    out.error = e.code();
  }
  out.finished = true;
}

// Runs ctx's loop (at most 1,000 turns) until done() is true. Returns: done().
template <class Done>
bool run_until(io_context& ctx, Done done) {
  for (int i = 0; i < 1000 && !done(); ++i)
    ctx.run_once(true);
  return done();
}

task<> await_elsewhere(task<std::vector<address>>& t) { (void)co_await t; }

task<> connect_with_timeout(io_context& ctx, std::string to, std::chrono::milliseconds timeout,
                            std::optional<std::error_code>& out) {
  connect_options opts;
  opts.timeout = timeout;
  auto connecting = tcp_connect(ctx, to, std::move(opts));
  try {
    coring::socket s = co_await std::move(connecting);
    out = std::error_code();
  } catch (const std::system_error& e) {
    out = e.code();
  }
}

}  // namespace

TEST_CASE("10,000 concurrent lookups of localhost all succeed on a bounded number of threads") {
  test::watchdog w(std::chrono::seconds(50));
  const std::size_t before = threads_now();
  io_context ctx;
  struct tally {
    int ok = 0, failed = 0, started = 0, done = 0, most_waiting = 0;
    std::size_t most_threads = 0;
  } t;
  auto one = [](io_context& ctx, tally& t) -> task<> {
    ++t.started;
    try {
      auto lookup = resolve(ctx, "localhost", "80");
      std::vector<address> v = co_await std::move(lookup);
      if (has(v, "127.0.0.1:80"))
        ++t.ok;
      else
        ++t.failed;
    } catch (const std::system_error&) {
      ++t.failed;
    }
    // Sampled while the others are still queued or running.
    t.most_waiting = std::max(t.most_waiting, t.started - t.done);
    if (++t.done % 200 == 1) t.most_threads = std::max(t.most_threads, threads_now());
  };
  for (int i = 0; i < 10'000; ++i)
    ctx.spawn(one(ctx, t));
  ctx.run();
  CHECK(t.ok == 10'000);
  CHECK(t.failed == 0);
  // They waited together (all started in the first loop turn), on at most the pool's threads
  // beside those the process had already (including the pool's, if earlier cases started it).
  CHECK(t.most_waiting == 10'000);
  CHECK(t.most_threads <= before + detail::resolver_max_threads);
  CHECK(detail::resolver_pool_stats().threads <= detail::resolver_max_threads);
}

TEST_CASE("lookups waiting on one io_context share one descriptor") {
  test::watchdog w(std::chrono::seconds(30));
  io_context ctx;
  closed_gate gate;
  const int before = test::open_fds();
  std::vector<lookup_result> r(1'000);
  for (auto& x : r)
    ctx.spawn(record(ctx, "localhost", {}, x));
  ctx.run_once(false);                    // every lookup is queued or blocked in the gate now
  CHECK(test::open_fds() <= before + 1);  // the context's eventfd
  gate.open();
  ctx.run();
  CHECK(std::all_of(r.begin(), r.end(), [](const lookup_result& x) {
    return x.finished && !x.error && !x.addrs.empty();
  }));
}

TEST_CASE("a stop request drops a queued lookup from the queue and resumes its caller at once") {
  test::watchdog w(std::chrono::seconds(30));
  io_context ctx;
  closed_gate gate;
  // Occupy every pool thread, then queue one more.
  std::vector<lookup_result> busy(detail::resolver_max_threads);
  for (auto& x : busy)
    ctx.spawn(record(ctx, "localhost", {}, x));
  ctx.run_once(false);
  REQUIRE(gate.wait_entered(static_cast<int>(busy.size())));
  std::stop_source stop;
  lookup_result queued;
  ctx.spawn(record(ctx, "127.0.0.2", {.stop = stop.get_token()}, queued));
  ctx.run_once(false);
  CHECK(detail::resolver_pool_stats().queued == 1);
  stop.request_stop();  // on the ring's thread
  REQUIRE(run_until(ctx, [&] { return queued.finished; }));
  CHECK(queued.error == std::errc::operation_canceled);
  CHECK(detail::resolver_pool_stats().queued == 0);        // dropped, not left for a thread
  CHECK(gate.entered() == static_cast<int>(busy.size()));  // the others still wait
  gate.open();
  ctx.run();
  for (const auto& x : busy)
    CHECK((x.finished && !x.error));
  const std::vector<std::string> seen = gate.seen();
  CHECK(std::count(seen.begin(), seen.end(), "127.0.0.2") == 0);  // it never ran
}

TEST_CASE("a stop request from another thread ends a lookup stuck in getaddrinfo at once") {
  test::watchdog w(std::chrono::seconds(30));
  io_context ctx;
  closed_gate gate;
  std::stop_source stop;
  lookup_result r;
  ctx.spawn(record(ctx, "localhost", {.stop = stop.get_token()}, r));
  ctx.run_once(false);
  REQUIRE(gate.wait_entered(1));
  CHECK(detail::resolver_pool_stats().running >= 1);
  std::thread([&] { stop.request_stop(); }).join();
  REQUIRE(run_until(ctx, [&] { return r.finished; }));
  CHECK(r.error == std::errc::operation_canceled);
  CHECK(gate.entered() == 1);  // resumed while getaddrinfo was still blocked
  gate.open();                 // its result is discarded
  // The context goes on resolving.
  auto again = test::run_on(ctx, [](io_context& ctx) -> task<std::vector<address>> {
    auto lookup = resolve(ctx, "localhost", "80");
    co_return co_await std::move(lookup);
  });
  CHECK(has(again, "127.0.0.1:80"));
}

TEST_CASE("resolve with a timeout and a stop token that never fire returns the addresses") {
  io_context ctx;
  std::stop_source stop;
  auto v = test::run_on(ctx, [&stop](io_context& ctx) -> task<std::vector<address>> {
    auto lookup = resolve(ctx, "localhost", "80", {.timeout = 10s, .stop = stop.get_token()});
    co_return co_await std::move(lookup);
  });
  CHECK(has(v, "127.0.0.1:80"));
  // The 10 s timeout was cancelled: the loop has nothing left long before it would fire.
  test::watchdog w(std::chrono::seconds(5));
  const auto start = std::chrono::steady_clock::now();
  ctx.run();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(ctx.in_flight() == 0);
}

TEST_CASE("a lookup past its timeout ends with timed_out, and so does tcp_connect's") {
  test::watchdog w(std::chrono::seconds(30));
  io_context ctx;
  closed_gate gate;
  const auto start = std::chrono::steady_clock::now();
  lookup_result r;
  ctx.spawn(record(ctx, "localhost", {.timeout = 50ms}, r));
  REQUIRE(run_until(ctx, [&] { return r.finished; }));
  CHECK(r.error == std::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(gate.entered() >= 1);  // it timed out while getaddrinfo was blocked
  std::optional<std::error_code> connect_error;
  ctx.spawn(connect_with_timeout(ctx, "localhost:80", 50ms, connect_error));
  REQUIRE(run_until(ctx, [&] { return connect_error.has_value(); }));
  CHECK(*connect_error == std::errc::timed_out);
  gate.open();
  ctx.run();
}

TEST_CASE("an io_context shut down with lookups queued and running leaves nothing behind") {
  test::watchdog w(std::chrono::seconds(30));
  closed_gate gate;
  // Two lookups whose frames outlive their context (their tasks are destroyed after it): the
  // first one submitted runs, the last one stays queued.
  std::optional<task<std::vector<address>>> running, queued;
  std::vector<lookup_result> r(detail::resolver_max_threads + 6);
  {
    io_context ctx;
    running.emplace(resolve(ctx, "localhost", "80"));
    queued.emplace(resolve(ctx, "localhost", "80"));
    ctx.spawn(await_elsewhere(*running));
    for (auto& x : r)
      ctx.spawn(record(ctx, "localhost", {}, x));
    ctx.spawn(await_elsewhere(*queued));
    ctx.run_once(false);
    REQUIRE(gate.wait_entered(static_cast<int>(detail::resolver_max_threads)));
    CHECK(detail::resolver_pool_stats().queued == r.size() + 2 - detail::resolver_max_threads);
    ctx.shutdown();  // destroys the spawned frames: their queued lookups leave the queue
    CHECK(detail::resolver_pool_stats().queued == 1);  // the one whose frame lives on
  }
  for (const auto& x : r)
    CHECK_FALSE(x.finished);  // never resumed
  gate.open();      // the lookups still running end with nobody to tell, the queued one runs
  running.reset();  // their awaiters leave a hub whose context is gone
  queued.reset();
  io_context fresh;
  auto v = test::run_on(fresh, [](io_context& ctx) -> task<std::vector<address>> {
    auto lookup = resolve(ctx, "localhost", "80");
    co_return co_await std::move(lookup);
  });
  CHECK(has(v, "127.0.0.1:80"));
}
