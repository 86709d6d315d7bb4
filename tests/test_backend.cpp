// SPDX-License-Identifier: MIT
// Description: issue 15: choosing the backend (option, CORING_BACKEND, fallback when io_uring is
// denied), features().describe(), and representative operations on the epoll backend.
#include "test_support.hpp"

#include "detail/ring.hpp"  // private: the ring-init fault seam

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include <sys/socket.h>

using namespace coring;
using namespace std::chrono_literals;
using test::bytes;

namespace {

// Sets (or, with null, unsets) CORING_BACKEND for its lifetime, then restores it: the suites
// also run with CORING_BACKEND=epoll, and these tests choose for themselves.
class backend_env {
 public:
  explicit backend_env(const char* value) {
    if (const char* old = std::getenv("CORING_BACKEND")) saved_ = old;
    if (value)
      ::setenv("CORING_BACKEND", value, 1);
    else
      ::unsetenv("CORING_BACKEND");
  }
  ~backend_env() {
    if (saved_)
      ::setenv("CORING_BACKEND", saved_->c_str(), 1);
    else
      ::unsetenv("CORING_BACKEND");
  }
  backend_env(const backend_env&) = delete;
  backend_env& operator=(const backend_env&) = delete;

 private:
  std::optional<std::string> saved_;
};

io_context_options epoll_options() {
  io_context_options o;
  o.backend = backend_kind::epoll;
  return o;
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

}  // namespace

TEST_CASE("io_context_options::backend = epoll runs on epoll and describe() says so") {
  backend_env env(nullptr);
  io_context ctx(epoll_options());
  CHECK(ctx.features().backend == backend_kind::epoll);
  const std::string d = ctx.features().describe();
  MESSAGE(d);
  CHECK(starts_with(d, "backend=epoll"));
  CHECK(ctx.features().backend_reason.find("forced") != std::string::npos);
  // What only the kernel offers is reported absent, so operations take their plain forms.
  CHECK_FALSE(ctx.features().msg_ring);
  CHECK_FALSE(ctx.features().op_send_zc);
  CHECK_FALSE(ctx.features().recv_multishot);
  CHECK(ctx.features().buf_ring);
}

TEST_CASE("CORING_BACKEND overrides the option: epoll, io_uring and auto") {
  {
    backend_env env("epoll");
    io_context ctx;
    CHECK(ctx.features().backend == backend_kind::epoll);
    CHECK(ctx.features().backend_reason == "forced by CORING_BACKEND");
  }
  {
    backend_env env("io_uring");
    detail::inject_ring_init_failure(EPERM);  // io_uring required: no fallback
    const io_context_options o = epoll_options();
    CHECK_THROWS_AS(io_context{o}, std::system_error);
  }
  {
    backend_env env("auto");
    detail::inject_ring_init_failure(EPERM);
    io_context ctx(epoll_options());  // auto from the environment wins over the field
    CHECK(ctx.features().backend == backend_kind::epoll);
    CHECK(ctx.features().backend_reason.find("using epoll") != std::string::npos);
  }
}

TEST_CASE("a denied io_uring falls back to epoll by default and names the cause") {
  backend_env env(nullptr);
  for (int e : {EPERM, EACCES, ENOSYS}) {
    CAPTURE(e);
    detail::inject_ring_init_failure(e);
    io_context ctx;
    CHECK(ctx.features().backend == backend_kind::epoll);
    const std::string& why = ctx.features().backend_reason;
    MESSAGE(why);
    CHECK(starts_with(why, "io_uring_setup: "));
    CHECK(why.find(std::strerror(e)) != std::string::npos);
    CHECK(why.find("; using epoll") != std::string::npos);
    CHECK(starts_with(ctx.features().describe(), "backend=epoll"));
    int n = test::run_on(ctx, [](io_context& ctx) -> task<int> {
      co_await sleep_for(ctx, 1ms);
      co_return 7;
    });
    CHECK(n == 7);
  }
  // Out of memory is not a denial: it still throws.
  detail::inject_ring_init_failure(ENOMEM);
  CHECK_THROWS_AS(io_context{}, std::system_error);
}

TEST_CASE("io_uring forced by the option throws the explained error instead of falling back") {
  backend_env env(nullptr);
  io_context_options o;
  o.backend = backend_kind::io_uring;
  detail::inject_ring_init_failure(EPERM);
  try {
    io_context ctx(o);
    FAIL("io_context constructed despite the injected failure");
  } catch (const std::system_error& ex) {
    CHECK(ex.code() == errc::io_uring_unavailable);
    CHECK(std::string(ex.what()).find("seccomp") != std::string::npos);
  }
}

TEST_CASE("on epoll: bytes go both ways, EOF, timeouts, stop tokens and socket::cancel") {
  io_context ctx(epoll_options());
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    co_await pair.client.send_all(bytes("hello"));
    std::array<std::byte, 16> buf{};
    std::size_t n = co_await pair.server.recv(buf);
    CHECK(test::text(std::span(buf).first(n)) == "hello");
    // A recv with nothing to read times out.
    auto r = co_await as_result(pair.server.recv(buf).with_timeout(20ms));
    CHECK(r.error() == std::errc::timed_out);
    // A stop request cancels a waiting recv.
    std::stop_source stop;
    ctx.spawn([](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 5ms);
      s.request_stop();
    }(ctx, stop));
    auto tok = stop.get_token();
    auto stoppable = as_result(pair.server.recv(buf).with_stop(tok));  // named: g++ 12
    auto r2 = co_await std::move(stoppable);
    CHECK(r2.error() == std::errc::operation_canceled);
    // socket::cancel ends what waits on the socket, for good.
    ctx.spawn([](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 5ms);
      s.cancel();
    }(ctx, pair.server));
    auto r3 = co_await as_result(pair.server.recv(buf));
    CHECK(r3.error() == std::errc::operation_canceled);
  });
}

TEST_CASE("on epoll: 4 MiB through send_all with a small SO_SNDBUF arrives intact") {
  io_context ctx(epoll_options());
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    const int small = 4096;
    pair.client.set_option(SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    std::vector<std::byte> big(std::size_t{4} << 20);
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<std::byte>(i * 7 + i / 4093);
    ctx.spawn([](coring::socket& s, std::span<const std::byte> b) -> task<> {
      co_await s.send_all(b);
      s.shutdown(SHUT_WR);
    }(pair.client, big));
    std::string got = co_await test::read_all(pair.server);
    REQUIRE(got.size() == big.size());
    CHECK(std::memcmp(got.data(), big.data(), big.size()) == 0);
  });
}

TEST_CASE("on epoll: a recv_stream over a buffer_ring delivers every byte, then EOF") {
  io_context ctx(epoll_options());
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    buffer_ring ring(ctx, 16, 1024);
    auto pair = co_await test::make_tcp_pair(ctx);
    recv_stream rx(pair.server, ring);
    std::string sent;
    for (int i = 0; i < 2000; ++i)
      sent += "line " + std::to_string(i) + "\n";
    ctx.spawn([](coring::socket& s, const std::string& text) -> task<> {
      co_await s.send_all(bytes(text));
      s.shutdown(SHUT_WR);
    }(pair.client, sent));
    std::string got;
    for (int i = 0; i < 100000; ++i) {
      buffer b = co_await rx.next();
      if (!b) break;
      got += test::text(b.data());
    }
    CHECK(got == sent);
    CHECK(ring.available() == ring.count());
  });
}

TEST_CASE("on epoll: execute() from another thread wakes a waiting loop") {
  io_context ctx(epoll_options());
  auto guard = ctx.make_work_guard();
  std::atomic<int> ran{0};
  std::thread t([&] {
    ctx.execute([&] {
      ++ran;
      ctx.stop();
    });
  });
  test::watchdog w(std::chrono::seconds(20));
  ctx.run();
  t.join();
  CHECK(ran == 1);
}

TEST_CASE("on epoll: teardown ends waiting operations before their frames are destroyed") {
  std::atomic<int> destroyed{0};
  struct mark {
    std::atomic<int>* n;
    ~mark() { ++*n; }
  };
  {
    io_context ctx(epoll_options());
    test::run_on(ctx, [&destroyed](io_context& ctx) -> task<> {
      auto pair = co_await test::make_tcp_pair(ctx);
      auto held = std::make_shared<test::tcp_pair>(std::move(pair));
      ctx.spawn([](std::shared_ptr<test::tcp_pair> p, std::atomic<int>* d) -> task<> {
        mark m{d};
        std::array<std::byte, 16> buf{};
        co_await p->server.recv(buf);  // never answered
      }(held, &destroyed));
      ctx.spawn([](io_context& ctx, std::atomic<int>* d) -> task<> {
        mark m{d};
        co_await sleep_for(ctx, std::chrono::hours(1));
      }(ctx, &destroyed));
      co_await sleep_for(ctx, 1ms);  // both are parked now
      CHECK(ctx.in_flight() >= 2);
    });
    CHECK(ctx.spawned() == 2);
    ctx.shutdown();
    CHECK(ctx.in_flight() == 0);
  }
  CHECK(destroyed == 2);
}

TEST_CASE(
    "on both backends: an SQE queued for a socket closed in the same turn fails with EBADF "
    "and does not reach the socket that reuses the number") {
  for (const backend_kind kind : {backend_kind::epoll, backend_kind::automatic}) {
    CAPTURE(static_cast<int>(kind));
    io_context_options opts;
    opts.backend = kind;
    io_context ctx(opts);
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      std::pair<coring::socket, coring::socket> first = socket_pair(ctx, SOCK_STREAM);
      auto old = std::make_unique<coring::socket>(std::move(first.second));
      const int number = old->fileno();
      int recv_error = -1;
      // Both start in the same loop turn, in this order: the recv's SQE waits for the turn's
      // submit while the second task closes its socket and opens two new ones.
      ctx.spawn([](coring::socket& s, int& error) -> task<> {
        std::array<std::byte, 8> buf{};
        auto r = co_await as_result(s.recv(buf));
        error = r ? 0 : r.error().value();
      }(*old, recv_error));
      std::optional<std::pair<coring::socket, coring::socket>> fresh;
      ctx.spawn([](std::unique_ptr<coring::socket>& o,
                   std::optional<std::pair<coring::socket, coring::socket>>& f,
                   io_context& ctx) -> task<> {
        o.reset();
        f.emplace(socket_pair(ctx, SOCK_STREAM));
        co_return;
      }(old, fresh, ctx));
      co_await sleep_for(ctx, 5ms);
      REQUIRE(fresh);
      coring::socket& reused = fresh->first.fileno() == number ? fresh->first : fresh->second;
      coring::socket& peer = fresh->first.fileno() == number ? fresh->second : fresh->first;
      REQUIRE(reused.fileno() == number);
      CHECK(recv_error == EBADF);
      co_await peer.send_all(bytes("mine"));
      std::array<std::byte, 8> buf{};
      std::size_t n = co_await reused.recv(buf).with_timeout(5s);
      CHECK(test::text(std::span(buf).first(n)) == "mine");
    });
  }
}
