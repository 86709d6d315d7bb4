// SPDX-License-Identifier: MIT
// Description: UDP over loopback: send_to/recv_from (IPv4, IPv6), connected UDP, truncation,
// MSG_PEEK, IP_PKTINFO/IPV6_PKTINFO, and the kernel's failures.
#include "test_support.hpp"

#include <array>
#include <string>

#include <netinet/in.h>

using namespace coring;
using test::bytes;
using test::text;

namespace {

coring::socket udp_bound(io_context& ctx, const address& where) {
  coring::socket s(ctx, where.family(), SOCK_DGRAM);
  s.bind(where);
  return s;
}

}  // namespace

TEST_CASE("send_to and recv_from carry datagrams and report the sender, IPv4 and IPv6") {
  address where;
  SUBCASE("over IPv4") { where = address::loopback_v4(); }
  SUBCASE("over IPv6") { where = address::loopback_v6(); }
  io_context ctx;
  test::run_on(ctx, [where](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, where);
    coring::socket b = udp_bound(ctx, where);
    CHECK(co_await a.send_to(bytes("ping"), b.sock_name()) == 4);
    std::array<std::byte, 64> buf;
    datagram d = co_await b.recv_from(buf);
    CHECK(d.size == 4);
    CHECK_FALSE(d.truncated);
    CHECK(text(std::span(buf).first(d.size)) == "ping");
    CHECK(d.from == a.sock_name());
    CHECK(co_await b.send_to(bytes("pong!"), d.from) == 5);
    datagram r = co_await a.recv_from(buf);
    CHECK(text(std::span(buf).first(r.size)) == "pong!");
    CHECK(r.from == b.sock_name());
    // An empty datagram is a datagram of size 0, not EOF.
    CHECK(co_await a.send_to({}, b.sock_name()) == 0);
    datagram e = co_await b.recv_from(buf);
    CHECK(e.size == 0);
    CHECK(e.from == a.sock_name());
  });
}

TEST_CASE("connected UDP sockets use send and recv") {
  address where;
  SUBCASE("over IPv4") { where = address::loopback_v4(); }
  SUBCASE("over IPv6") { where = address::loopback_v6(); }
  io_context ctx;
  test::run_on(ctx, [where](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, where);
    coring::socket b = udp_bound(ctx, where);
    co_await a.connect(b.sock_name());
    co_await b.connect(a.sock_name());
    CHECK(co_await a.send(bytes("one")) == 3);
    std::array<std::byte, 16> buf;
    std::size_t n = co_await b.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "one");
    CHECK(b.peer_name() == a.sock_name());
  });
}

TEST_CASE("recv_from reports a datagram longer than the buffer as truncated") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, address::loopback_v4());
    coring::socket b = udp_bound(ctx, address::loopback_v4());
    co_await a.send_to(bytes("0123456789"), b.sock_name());
    co_await a.send_to(bytes("next"), b.sock_name());
    co_await a.send_to(bytes("abcdefghij"), b.sock_name());
    std::array<std::byte, 4> small;
    datagram d = co_await b.recv_from(small);
    CHECK(d.truncated);
    CHECK(d.size == small.size());  // never more than the buffer by default
    CHECK(text(small) == "0123");
    // The rest of a truncated datagram is gone; the next one is intact.
    datagram n = co_await b.recv_from(small);
    CHECK_FALSE(n.truncated);
    CHECK(text(std::span(small).first(n.size)) == "next");
    // With MSG_TRUNC the kernel reports the full length.
    datagram f = co_await b.recv_from(small, MSG_TRUNC);
    CHECK(f.truncated);
    CHECK(f.size == 10);
    CHECK(text(small) == "abcd");
  });
}

TEST_CASE("recv_from with MSG_PEEK leaves the datagram queued") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, address::loopback_v6());
    coring::socket b = udp_bound(ctx, address::loopback_v6());
    co_await a.send_to(bytes("peek"), b.sock_name());
    std::array<std::byte, 16> buf;
    datagram p = co_await b.recv_from(buf, MSG_PEEK);
    CHECK(text(std::span(buf).first(p.size)) == "peek");
    datagram d = co_await b.recv_from(buf);
    CHECK(text(std::span(buf).first(d.size)) == "peek");
    CHECK(d.from == p.from);
  });
}

TEST_CASE("IP_PKTINFO and IPV6_PKTINFO report each datagram's destination and interface") {
  address any, loop;  // the receiver binds the wildcard, the sender a loopback address
  SUBCASE("IP_PKTINFO: IPv4") {
    any = address::parse("0.0.0.0:0");
    loop = address::loopback_v4();
  }
  SUBCASE("IPV6_PKTINFO: IPv6") {
    any = address::parse("[::]:0");
    loop = address::loopback_v6();
  }
  io_context ctx;
  test::run_on(ctx, [any, loop](io_context& ctx) -> task<> {
    coring::socket rx(ctx, any.family(), SOCK_DGRAM);
    if (any.family() == AF_INET)
      rx.set_option(sockopt::packet_info_v4{true});
    else
      rx.set_option(sockopt::packet_info_v6{true});
    rx.bind(any);  // wildcard: the destination is only known from the control message
    address to = loop;
    to.set_port(rx.sock_name().port());
    coring::socket tx = udp_bound(ctx, loop);
    // Source selection through the same control message on the sending side.
    ancillary src;
    src.add_packet_info(loop);
    std::array<std::span<const std::byte>, 2> out{bytes("pkt"), bytes("info")};
    CHECK(co_await tx.send_msg(out, src, &to) == 7);
    std::array<std::byte, 16> buf;
    std::array<std::span<std::byte>, 1> in{std::span(buf)};
    control_buffer control(control_buffer::space_for_packet_info());
    message_info m = co_await rx.recv_msg(in, control);
    CHECK(text(std::span(buf).first(m.size)) == "pktinfo");
    CHECK(m.from == tx.sock_name());
    REQUIRE(control.pktinfo().has_value());
    CHECK(control.pktinfo()->destination.host() == loop.host());
    CHECK(control.pktinfo()->interface_index != 0);  // lo
  });
}

TEST_CASE("connected UDP to a port nobody listens on reports ECONNREFUSED, IPv4 and IPv6") {
  address where;
  SUBCASE("over IPv4") { where = address::loopback_v4(); }
  SUBCASE("over IPv6") { where = address::loopback_v6(); }
  io_context ctx;
  test::run_on(ctx, [where](io_context& ctx) -> task<> {
    address closed;
    {
      coring::socket tmp = udp_bound(ctx, where);
      closed = tmp.sock_name();
    }
    coring::socket a = udp_bound(ctx, where);
    co_await a.connect(closed);
    co_await a.send(bytes("anyone?"));  // the ICMP port unreachable arrives asynchronously
    std::array<std::byte, 16> buf;
    try {
      (void)co_await a.recv_from(buf).with_timeout(std::chrono::seconds(5));
      FAIL("recv_from should fail");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_refused);
    }
  });
}

TEST_CASE("send_to and recv_from on a closed socket throw EBADF, not crash") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, address::loopback_v4());
    address self = a.sock_name();
    co_await a.close();
    std::array<std::byte, 4> buf;
    auto r = co_await as_result(a.send_to(bytes("x"), self));
    CHECK(r.error() == std::errc::bad_file_descriptor);
    auto d = co_await as_result(a.recv_from(buf));
    CHECK(d.error() == std::errc::bad_file_descriptor);
  });
}

TEST_CASE("send_to a wrong-family address fails with a clear error") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket a = udp_bound(ctx, address::loopback_v4());
    auto r = co_await as_result(a.send_to(bytes("x"), address::loopback_v6(9)));
    CHECK_FALSE(r.has_value());
  });
}
