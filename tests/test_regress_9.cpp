// SPDX-License-Identifier: MIT
// Description: regress #9: a cancel sticks (send_all after partial progress, recv_stream,
// acceptor), and teardown destroys suspended coroutines instead of resuming them.
#include <coring/coring.hpp>

#include "test_support.hpp"

#include <array>
#include <chrono>
#include <cstdlib>
#include <stop_token>
#include <string>
#include <vector>

#include <sys/socket.h>

using namespace std::chrono_literals;
using coring::io_context;
using coring::task;
namespace test = coring::test;

namespace {

// Bytes from the message of a send_all error ("send_all: N of M bytes sent: ...").
std::size_t sent_from_message(const std::string& what) {
  auto at = what.find("send_all: ");
  REQUIRE(at != std::string::npos);
  return std::strtoull(what.c_str() + at + 10, nullptr, 10);
}

task<> read_to_eof(coring::socket& s, std::size_t& total) {
  std::array<std::byte, 65536> buf;
  while (std::size_t n = co_await s.recv(buf).with_timeout(10s))
    total += n;
}

}  // namespace

TEST_CASE("regress #9: socket::cancel ends a send_all that already sent part of its data") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    auto& [client, server] = pair;
    server.set_option(coring::sockopt::send_buffer_size{4096});
    client.set_option(coring::sockopt::recv_buffer_size{4096});
    std::vector<std::byte> big(std::size_t(4) << 20, std::byte{'x'});
    std::string error;
    coring::event done(ctx);
    auto sender = [](coring::socket& s, std::span<const std::byte> data, std::string& error,
                     coring::event& done) -> task<> {
      try {
        co_await s.send_all(data);
      } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::operation_canceled);  // not EINTR from an io-wq worker
        error = e.what();
      }
      done.set();
    };
    auto t = sender(server, big, error, done);
    ctx.spawn(std::move(t));
    // One byte has arrived: the send_all is in flight and has made progress.
    std::array<std::byte, 1> one;
    REQUIRE(co_await client.recv(one).with_timeout(10s) == 1);
    server.cancel();
    // The client does not read, so a send_all that lost the cancel would never end; the
    // watchdog of test::run would fail the test; the bound here fails it sooner.
    auto ended = coring::as_result(done.wait().with_timeout(10s));
    auto r = co_await ended;
    REQUIRE(r);
    REQUIRE(done.is_set());
    REQUIRE_FALSE(error.empty());
    const std::size_t sent = sent_from_message(error);
    CHECK(sent > 0);
    CHECK(sent < big.size());
    CHECK(ctx.in_flight() == 0);  // nothing resubmitted behind our back
    // The client receives exactly what send_all says it sent, then EOF.
    server.shutdown(SHUT_WR);
    std::size_t total = 1;
    co_await read_to_eof(client, total);
    CHECK(total == sent);
  });
}

namespace {

bool state_alive = false;
int resumed_after_state_died = 0;

struct server_state {
  server_state() { state_alive = true; }
  ~server_state() { state_alive = false; }
  std::size_t replies = 0;
};

task<> slow_reader_client(coring::socket& s, server_state& st, test::counted) {
  std::vector<std::byte> big(std::size_t(4) << 20, std::byte{'y'});
  try {
    co_await s.send_all(big);
  } catch (...) {}
  // Teardown must never get here: st may be gone.
  if (!state_alive)
    ++resumed_after_state_died;
  else
    ++st.replies;
}

}  // namespace

TEST_CASE(
    "regress #9: destroying the context with a send_all to a slow reader in flight "
    "resumes nothing") {
  test::counted::reset();
  resumed_after_state_died = 0;
  const int fds_before = test::open_fds();
  {
    test::watchdog w(20s, "teardown with a send_all in flight");
    io_context ctx;
    auto [a, b] = coring::socket_pair(ctx, SOCK_STREAM);
    a.set_option(coring::sockopt::send_buffer_size{4096});
    // The server's order that crashed echo_server: its state is declared after the context,
    // so it is destroyed first, with the client's coroutine suspended in a partial send.
    server_state st;
    ctx.spawn(slow_reader_client(a, st, test::counted{}));
    for (int i = 0; i < 1000 && ctx.in_flight() == 0; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 1);
    CHECK(test::counted::live == 1);
  }
  CHECK(resumed_after_state_died == 0);
  CHECK(test::counted::live == 0);  // the frame was destroyed
  CHECK(test::open_fds() == fds_before);
}

TEST_CASE("regress #9: io_context::shutdown() destroys suspended tasks while their state lives") {
  test::counted::reset();
  resumed_after_state_died = 0;
  test::watchdog w(20s, "shutdown");
  io_context ctx;
  auto [a, b] = coring::socket_pair(ctx, SOCK_STREAM);
  a.set_option(coring::sockopt::send_buffer_size{4096});
  {
    server_state st;
    ctx.spawn(slow_reader_client(a, st, test::counted{}));
    for (int i = 0; i < 1000 && ctx.in_flight() == 0; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 1);
    ctx.shutdown();
    CHECK(ctx.stopping());
    CHECK(ctx.in_flight() == 0);
    CHECK(ctx.spawned() == 0);
    CHECK(test::counted::live == 0);
    CHECK(st.replies == 0);  // destroyed, not resumed
  }
  CHECK(resumed_after_state_died == 0);
  // Afterwards new operations fail at once instead of hanging.
  auto late = [](coring::socket& s) -> task<> {
    std::array<std::byte, 4> buf;
    co_await s.recv(buf);
  };
  auto t = late(b);
  ctx.spawn(std::move(t));  // spawned while stopping: destroyed unstarted
  CHECK(ctx.spawned() == 0);
  ctx.shutdown();  // idempotent
}

TEST_CASE("regress #9: socket::cancel sticks for a recv_stream, after its queued data" *
          test::skip_unless(test::ring_supports(test::feature::provided_buffer_rings))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::buffer_ring ring(ctx, 8, 256);
    auto pair = co_await test::make_tcp_pair(ctx);
    auto& [client, server] = pair;
    coring::recv_stream rx(server, ring);
    co_await client.send_all(test::bytes("abc"));
    coring::buffer b = co_await rx.next();
    CHECK(test::text(b.data()) == "abc");
    server.cancel();
    co_await client.send_all(test::bytes("def"));  // arrives after the cancel: not received
    auto r = co_await coring::as_result(rx.next());
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
    auto r2 = co_await coring::as_result(rx.next());
    CHECK_FALSE(r2);
    CHECK(ctx.in_flight() == 0);
  });
}

namespace {
task<> group_owner(coring::socket& s, int& resumed, test::counted) {
  coring::task_group g(s.context());
  for (int i = 0; i < 10; ++i) {
    auto child = [&s, &resumed](std::stop_token) -> task<> {
      std::array<std::byte, 8> buf;
      try {
        co_await s.recv(buf);
      } catch (...) {}
      ++resumed;
    };
    g.spawn(child);
  }
  co_await g.join();
  ++resumed;
}
}  // namespace

TEST_CASE("regress #9: teardown destroys a task_group's unfinished children with their owner") {
  test::counted::reset();
  int resumed = 0;
  {
    test::watchdog w(20s, "teardown with a task_group");
    io_context ctx;
    auto [a, b] = coring::socket_pair(ctx, SOCK_STREAM);
    ctx.spawn(group_owner(a, resumed, test::counted{}));
    for (int i = 0; i < 1000 && ctx.in_flight() < 10; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 10);
    ctx.shutdown();  // before the sockets go: the children's frames refer to a
    CHECK(test::counted::live == 0);
  }
  CHECK(resumed == 0);
}

namespace {
// A send_all stuck on a peer that never reads; then a socket event (SHUT_RD) wakes its poll,
// and one loop turn later (the kernel's retry waits as task work then) it is cancelled.
task<> cancel_after_wakeup(io_context& ctx, bool by_stop_token) {
  auto pair = co_await test::make_tcp_pair(ctx);
  auto& [client, server] = pair;
  server.set_option(coring::sockopt::send_buffer_size{4096});
  std::stop_source stop;
  coring::event done(ctx);
  auto sender = [](coring::socket& s, std::stop_token tok, coring::event& done) -> task<> {
    std::vector<std::byte> big(std::size_t(4) << 20);
    auto r = co_await coring::as_result(s.send_all(big).with_stop(tok));
    CHECK(r.error() == std::errc::operation_canceled);
    done.set();
  };
  auto t = sender(server, stop.get_token(), done);
  ctx.spawn(std::move(t));
  std::array<std::byte, 1> one;
  REQUIRE(co_await client.recv(one).with_timeout(10s) == 1);  // the send_all is under way
  server.shutdown(SHUT_RD);
  co_await coring::sleep_for(ctx, 0ms);
  if (by_stop_token)
    stop.request_stop();
  else
    server.cancel();
  auto ended = coring::as_result(done.wait().with_timeout(2s));
  auto r = co_await ended;
  CHECK(r);
  CHECK(done.is_set());
  CHECK(ctx.in_flight() == 0);
}
}  // namespace

TEST_CASE("regress #9: a cancel right after a socket event still ends a stuck send_all") {
  for (bool by_stop_token : {false, true}) {
    CAPTURE(by_stop_token);
    io_context ctx;
    test::run(ctx, cancel_after_wakeup(ctx, by_stop_token));
  }
}
