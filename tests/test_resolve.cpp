// SPDX-License-Identifier: MIT
// Description: resolve (getaddrinfo off the ring's thread) and tcp_connect with host names.
// Only "localhost" and numeric hosts are looked up: no network.
#include "test_support.hpp"

#include <coring/resolve.hpp>
#include <coring/timer.hpp>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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
