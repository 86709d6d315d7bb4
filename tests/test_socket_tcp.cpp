// SPDX-License-Identifier: MIT
// Description: TCP sockets over loopback: every method, EOF, and the real kernel failures.
#include "test_support.hpp"

#include <csignal>
#include <cstring>
#include <numeric>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using test::bytes;
using test::make_tcp_pair;
using test::text;

TEST_CASE("accept, connect, send and recv carry bytes both ways") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    CHECK(co_await client.send(bytes("hello")) == 5);
    std::array<std::byte, 16> buf;
    std::size_t n = co_await server.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "hello");
    CHECK(co_await server.send_all(bytes("world!")) == 6);
    n = co_await client.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "world!");
    CHECK(client.peer_name() == server.sock_name());
    CHECK(server.peer_name() == client.sock_name());
    CHECK(client.peer_name().to_string().rfind("127.0.0.1:", 0) == 0);
  });
}

TEST_CASE("accept reports the peer's address") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    coring::socket client(ctx, AF_INET, SOCK_STREAM);
    co_await client.connect(listener.sock_name());
    address peer;
    coring::socket server = co_await listener.accept(peer);
    CHECK(peer == client.sock_name());
    CHECK(server.is_open());
  });
}

TEST_CASE("tcp_listen and tcp_connect take host:port text, IPv4 and IPv6") {
  std::string where;
  SUBCASE("IPv4: 127.0.0.1:0") { where = "127.0.0.1:0"; }
  SUBCASE("IPv6: [::1]:0") { where = "[::1]:0"; }
  io_context ctx;
  test::run_on(ctx, [where](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, where);
    std::string to = listener.sock_name().to_string();
    CHECK(listener.sock_name().port() != 0);
    coring::socket client = co_await tcp_connect(ctx, to);
    coring::socket server = co_await listener.accept();
    CHECK(client.get_option<sockopt::no_delay>().value);
    co_await client.send_all(bytes("x"));
    std::array<std::byte, 1> b;
    CHECK(co_await server.recv(b) == 1);
  });
}

TEST_CASE("recv returns 0 once the peer shut down writing and everything was read") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    co_await client.send_all(bytes("last words"));
    client.shutdown(SHUT_WR);
    std::string got = co_await test::read_all(server);
    CHECK(got == "last words");
    std::array<std::byte, 8> buf;
    CHECK(co_await server.recv(buf) == 0);  // EOF stays EOF
    // Half-close: the other direction still works.
    co_await server.send_all(bytes("reply"));
    std::size_t n = co_await client.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "reply");
  });
}

TEST_CASE("connect to a closed port fails with ECONNREFUSED") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    address closed;
    {
      coring::socket probe(ctx, AF_INET, SOCK_STREAM);
      probe.bind(address::loopback_v4());
      closed = probe.sock_name();
    }  // bound, never listened, closed: nothing accepts on that port
    coring::socket s(ctx, AF_INET, SOCK_STREAM);
    try {
      co_await s.connect(closed);
      FAIL("connect succeeded");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_refused);
      CHECK(std::string(e.what()).find("connect") != std::string::npos);
    }
    coring::socket s2(ctx, AF_INET, SOCK_STREAM);
    auto r = co_await as_result(s2.connect(closed));
    CHECK_FALSE(r);
    CHECK(r.error() == std::errc::connection_refused);
  });
}

TEST_CASE("a peer closing with SO_LINGER 0 makes recv fail with ECONNRESET") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    client.set_option(sockopt::linger{true, 0});
    CHECK(client.get_option<sockopt::linger>().enabled);
    co_await client.close();  // RST
    CHECK_FALSE(client.is_open());
    std::array<std::byte, 8> buf;
    auto r = co_await as_result(server.recv(buf));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::connection_reset);
  });
}

TEST_CASE("sending to a closed peer gives EPIPE, not SIGPIPE") {
  // SIGPIPE is at its default disposition (tests/support/main.cpp): a signal would kill us.
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    co_await client.close();
    std::vector<std::byte> chunk(4096);
    std::error_code last;
    for (int i = 0; i < 100 && !last; ++i) {  // the first sends may still succeed (fact 3)
      auto r = co_await as_result(server.send(chunk));
      if (!r) last = r.error();
    }
    CHECK((last == std::errc::broken_pipe || last == std::errc::connection_reset));
    try {
      co_await server.send_all(chunk);
      FAIL("send_all succeeded");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::broken_pipe);
      CHECK(std::string(e.what()).find("0 of 4096 bytes sent") != std::string::npos);
    }
  });
}

namespace {
task<std::string> drain(coring::socket& s) { co_return co_await test::read_all(s); }

task<> send_then_close(coring::socket& s, std::span<const std::byte> data, std::size_t& sent) {
  sent = co_await s.send_all(data);
  s.shutdown(SHUT_WR);
}
}  // namespace

TEST_CASE("8 MiB through send_all with a small SO_SNDBUF arrives intact") {
  io_context ctx;
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        auto pair = co_await make_tcp_pair(ctx);
        auto& [client, server] = pair;
        // Only the send buffer is small: a tiny receive buffer as well makes loopback TCP crawl
        // (silly-window avoidance against a 64 KiB MSS), whatever the API.
        client.set_option(sockopt::send_buffer_size{4096});
        std::vector<std::byte> data(8 << 20);
        for (std::size_t i = 0; i < data.size(); ++i)
          data[i] = static_cast<std::byte>((i * 7 + i / 4093) & 0xff);
        std::size_t sent = 0;
        ctx.spawn(send_then_close(client, data, sent));
        std::string got = co_await drain(server);
        CHECK(sent == data.size());
        REQUIRE(got.size() == data.size());
        CHECK(std::memcmp(got.data(), data.data(), data.size()) == 0);
      },
      60s);
}

TEST_CASE("a plain send can be short with a small buffer and a peer that does not read") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    client.set_option(sockopt::send_buffer_size{4096});
    server.set_option(sockopt::recv_buffer_size{4096});
    std::vector<std::byte> data(4 << 20);
    std::size_t n = co_await client.send(data, MSG_DONTWAIT);
    CHECK(n > 0);
    CHECK(n < data.size());
  });
}

TEST_CASE("a recv deadline expires with timed_out; data that comes first wins") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    std::array<std::byte, 8> buf;
    auto r = co_await as_result(server.recv(buf).with_timeout(20ms));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);
    co_await client.send_all(bytes("on time"));
    std::size_t n = co_await server.recv(buf).with_timeout(10s);
    CHECK(text(std::span(buf).first(n)) == "on time");
  });
}

TEST_CASE(
    "a stop request cancels a pending recv; coring::socket::cancel cancels all on the socket") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    std::array<std::byte, 8> buf;
    auto r = co_await as_result(server.recv(buf).with_stop(stop.get_token()));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::operation_canceled);
    // Already stopped: nothing is submitted at all.
    auto r2 = co_await as_result(server.recv(buf).with_stop(stop.get_token()));
    CHECK(r2.error() == std::errc::operation_canceled);

    auto canceller = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.cancel();
    };
    ctx.spawn(canceller(ctx, server));
    auto r3 = co_await as_result(server.recv(buf));
    CHECK(r3.error() == std::errc::operation_canceled);
    // socket::cancel() sticks: later operations on the socket end at once, data or not.
    co_await client.send_all(bytes("ok"));
    auto r4 = co_await as_result(server.recv(buf));
    CHECK(r4.error() == std::errc::operation_canceled);
    auto r5 = co_await as_result(server.send_all(bytes("no")));
    CHECK(r5.error() == std::errc::operation_canceled);
    CHECK(server.cancelled());
    CHECK_FALSE(client.cancelled());
    // A new socket that reuses the descriptor number is not cancelled.
    int fd = server.fileno();
    server = coring::socket{};
    std::vector<coring::socket> fresh;  // lower numbers may be free: open until fd comes back
    for (int i = 0; i < 64 && (fresh.empty() || fresh.back().fileno() != fd); ++i)
      fresh.emplace_back(ctx, AF_INET, SOCK_STREAM);
    REQUIRE(fresh.back().fileno() == fd);
    CHECK_FALSE(fresh.back().cancelled());
  });
}

TEST_CASE("options round-trip and detach releases the descriptor") {
  io_context ctx;
  coring::socket s(ctx, AF_INET, SOCK_STREAM);
  s.set_option(sockopt::reuse_address{true});
  CHECK(s.get_option<sockopt::reuse_address>().value);
  s.set_option(sockopt::reuse_port{true});
  CHECK(s.get_option<sockopt::reuse_port>().value);
  s.set_option(sockopt::keep_alive{true});
  CHECK(s.get_option<sockopt::keep_alive>().value);
  s.set_option(sockopt::no_delay{true});
  CHECK(s.get_option<sockopt::no_delay>().value);
  s.set_option(sockopt::recv_buffer_size{8192});
  CHECK(s.get_option<sockopt::recv_buffer_size>().value >= 8192);
  int fd = s.fileno();
  CHECK(fd >= 0);
  int released = s.detach();
  CHECK(released == fd);
  CHECK(s.fileno() == -1);
  CHECK_FALSE(s);
  coring::socket again = coring::socket::from_fd(ctx, released);
  CHECK(again.fileno() == fd);
  CHECK_THROWS_AS(coring::socket::from_fd(ctx, -1), std::system_error);
}

TEST_CASE("sync calls on a coring::socket report errno and name the call") {
  io_context ctx;
  coring::socket s(ctx, AF_INET, SOCK_STREAM);
  try {
    (void)s.peer_name();
    FAIL("getpeername succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::not_connected);
    CHECK(std::string(e.what()).find("getpeername") != std::string::npos);
  }
  CHECK_THROWS_AS(s.shutdown(SHUT_RDWR), std::system_error);
  coring::socket a = tcp_listen(ctx, "127.0.0.1:0");
  coring::socket b(ctx, AF_INET, SOCK_STREAM);
  try {
    b.bind(a.sock_name());
    FAIL("bind succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::address_in_use);
    CHECK(std::string(e.what()).find(a.sock_name().to_string()) != std::string::npos);
  }
}

TEST_CASE("close is awaitable, idempotent, and the descriptor is gone afterwards") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int before = test::open_fds();
    coring::socket s(ctx, AF_INET, SOCK_STREAM);
    CHECK(test::open_fds() == before + 1);
    co_await s.close();
    CHECK(test::open_fds() == before);
    co_await s.close();  // nothing to close: completes at once
    CHECK_FALSE(s.is_open());
  });
}

TEST_CASE("send_all_zc sends 8 MiB intact and resumes only after the kernel let go") {
  io_context ctx;
  MESSAGE("IORING_OP_SEND_ZC " << (ctx.features().op_send_zc ? "used" : "absent: plain send"));
  test::run_on(
      ctx,
      [](io_context& ctx) -> task<> {
        auto pair = co_await make_tcp_pair(ctx);
        auto& [client, server] = pair;
        std::vector<std::byte> data(8 << 20);
        for (std::size_t i = 0; i < data.size(); ++i)
          data[i] = static_cast<std::byte>(i * 11 + 3);
        auto sender = [](coring::socket& s, std::vector<std::byte>& d) -> task<> {
          CHECK(co_await s.send_all_zc(d) == d.size());
          s.shutdown(SHUT_WR);
        };
        ctx.spawn(sender(client, data));
        std::string got = co_await test::read_all(server);
        REQUIRE(got.size() == data.size());
        CHECK(std::memcmp(got.data(), data.data(), data.size()) == 0);
        CHECK(ctx.in_flight() == 0);  // the notification CQE arrived before the co_await ended
      },
      60s);
}

TEST_CASE("send_all_zc to a reset peer fails with the errno, not a hang") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    client.set_option(sockopt::linger{true, 0});
    co_await client.close();
    std::vector<std::byte> chunk(65536);
    std::error_code err;
    for (int i = 0; i < 10 && !err; ++i) {
      auto r = co_await as_result(server.send_all_zc(chunk));
      if (!r) err = r.error();
    }
    CHECK((err == std::errc::connection_reset || err == std::errc::broken_pipe));
  });
}

TEST_CASE("deadlines expire on accept and on connect") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0", 1);
    auto r = co_await as_result(listener.accept().with_timeout(20ms));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);
    // Fill the backlog of a listener nobody accepts on: further SYNs are dropped, so a
    // connect cannot complete and only its deadline ends it.
    coring::socket full = tcp_listen(ctx, "127.0.0.1:0", 0);
    std::vector<coring::socket> queued;
    std::error_code err;
    for (int i = 0; i < 64 && !err; ++i) {
      coring::socket c(ctx, AF_INET, SOCK_STREAM);
      auto cr = co_await as_result(c.connect(full.sock_name()).with_timeout(100ms));
      if (cr)
        queued.push_back(std::move(c));
      else
        err = cr.error();
    }
    CHECK(err == std::errc::timed_out);
    CHECK(queued.size() <= 8);
  });
}

TEST_CASE("poll reports POLLOUT at once, POLLIN when data arrives, and hangups") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    unsigned ev = co_await server.poll(POLLOUT).with_timeout(10s);
    CHECK((ev & POLLOUT) != 0);
    auto sender = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      co_await s.send_all(bytes("x"));
    };
    ctx.spawn(sender(ctx, client));
    ev = co_await server.poll(POLLIN).with_timeout(10s);
    CHECK((ev & POLLIN) != 0);
    CHECK((ev & POLLOUT) == 0);  // only what was asked for (and POLLERR/POLLHUP)
    // The free function works on any descriptor.
    ev = co_await coring::poll(ctx, server.fileno(), POLLIN | POLLOUT);
    CHECK((ev & (POLLIN | POLLOUT)) == (POLLIN | POLLOUT));

    // The peer shuts down writing: POLLRDHUP; it closes with a reset: POLLHUP and POLLERR.
    client.shutdown(SHUT_WR);
    ev = co_await server.poll(POLLRDHUP).with_timeout(10s);
    CHECK((ev & POLLRDHUP) != 0);
    client.set_option(sockopt::linger{true, 0});
    co_await client.close();  // RST
    ev = co_await server.poll(POLLOUT).with_timeout(10s);
    CHECK((ev & POLLHUP) != 0);
    CHECK((ev & POLLERR) != 0);
  });
}

TEST_CASE("poll ends by its deadline, a stop request or socket::cancel") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& server = pair.server;
    auto r = co_await as_result(server.poll(POLLIN).with_timeout(20ms));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);

    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    auto s = co_await as_result(server.poll(POLLIN).with_stop(stop.get_token()));
    REQUIRE_FALSE(s);
    CHECK(s.error() == std::errc::operation_canceled);

    auto canceller = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.cancel();
    };
    ctx.spawn(canceller(ctx, server));
    auto c = co_await as_result(server.poll(POLLIN));
    REQUIRE_FALSE(c);
    CHECK(c.error() == std::errc::operation_canceled);
    auto c2 = co_await as_result(server.poll(POLLOUT));  // sticky: ready or not
    CHECK(c2.error() == std::errc::operation_canceled);
  });
}

TEST_CASE("ring recv and send wait as usual on an O_NONBLOCK socket (no EAGAIN)") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await make_tcp_pair(ctx);
    auto& [client, server] = pair;
    const int fl = ::fcntl(server.fileno(), F_GETFL);
    REQUIRE(::fcntl(server.fileno(), F_SETFL, fl | O_NONBLOCK) == 0);
    auto sender = [](io_context& ctx, coring::socket& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      co_await s.send_all(bytes("late"));
    };
    ctx.spawn(sender(ctx, client));
    std::array<std::byte, 8> buf;
    std::size_t n = co_await server.recv(buf).with_timeout(10s);
    CHECK(text(std::span(buf).first(n)) == "late");
    // send_all of more than the buffers hold waits for the reader instead of failing.
    server.set_option(sockopt::send_buffer_size{4096});
    std::vector<std::byte> data(4 << 20, std::byte{7});
    auto reader = test::read_all(client);
    auto writer = [](coring::socket& s, std::span<const std::byte> d) -> task<std::size_t> {
      std::size_t sent = co_await s.send_all(d);
      s.shutdown(SHUT_WR);
      co_return sent;
    };
    auto write = writer(server, data);
    auto both = co_await when_all(std::move(write), std::move(reader));
    CHECK(std::get<0>(both) == data.size());
    CHECK(std::get<1>(both).size() == data.size());
  });
}
