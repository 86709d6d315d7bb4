// SPDX-License-Identifier: MIT
// Description: raw ICMP sockets (CAP_NET_RAW) and ICMP datagram ("ping") sockets: an echo
// request to 127.0.0.1 gets its reply through send_to / recv_from.
#include "test_support.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <unistd.h>

using namespace coring;

namespace {

std::uint16_t checksum(const unsigned char* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2)
    sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<std::uint16_t>(~sum));
}

/// An ICMP echo request with id, seq and an 8-byte payload.
std::array<unsigned char, 16> echo_request(std::uint16_t id, std::uint16_t seq) {
  std::array<unsigned char, 16> pkt{};
  icmphdr h{};
  h.type = ICMP_ECHO;
  h.un.echo.id = htons(id);
  h.un.echo.sequence = htons(seq);
  std::memcpy(pkt.data(), &h, sizeof h);
  std::memcpy(pkt.data() + sizeof h, "coring!!", 8);
  std::uint16_t c = checksum(pkt.data(), pkt.size());
  std::memcpy(pkt.data() + offsetof(icmphdr, checksum), &c, sizeof c);
  return pkt;
}

}  // namespace

TEST_CASE("raw ICMP socket: echo request to 127.0.0.1 gets its echo reply" *
          test::skip_unless(test::can_open(test::icmp_socket::raw))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket s(ctx, AF_INET, SOCK_RAW, IPPROTO_ICMP);
    CHECK(s.type() == SOCK_RAW);
    CHECK(s.protocol() == IPPROTO_ICMP);
    const std::uint16_t id = static_cast<std::uint16_t>(::getpid());
    auto req = echo_request(id, 1);
    CHECK(co_await s.send_to(std::as_bytes(std::span(req)), address::loopback_v4()) == req.size());
    std::array<std::byte, 1500> buf;
    for (int tries = 0; tries < 16; ++tries) {
      datagram d = co_await s.recv_from(buf).with_timeout(std::chrono::seconds(5));
      CHECK(d.from.host() == "127.0.0.1");
      // A raw IPv4 socket receives the IP header too (and our own request, on loopback).
      auto* p = reinterpret_cast<const unsigned char*>(buf.data());
      std::size_t ihl = static_cast<std::size_t>(p[0] & 0x0f) * 4;
      REQUIRE(d.size >= ihl + sizeof(icmphdr) + 8);
      icmphdr h;
      std::memcpy(&h, p + ihl, sizeof h);
      if (h.type != ICMP_ECHOREPLY || ntohs(h.un.echo.id) != id) continue;
      CHECK(ntohs(h.un.echo.sequence) == 1);
      CHECK(std::memcmp(p + ihl + sizeof h, "coring!!", 8) == 0);
      co_return;
    }
    FAIL("no echo reply among 16 packets");
  });
}

TEST_CASE("ICMP datagram (ping) socket: echo request gets a reply without IP header" *
          test::skip_unless(test::can_open(test::icmp_socket::datagram))) {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::socket s(ctx, AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    CHECK(s.type() == SOCK_DGRAM);
    CHECK(s.protocol() == IPPROTO_ICMP);
    auto req = echo_request(0, 7);  // the kernel sets the id (the socket's "port") and checksum
    CHECK(co_await s.send_to(std::as_bytes(std::span(req)), address::loopback_v4()) == req.size());
    std::array<std::byte, 256> buf;
    datagram d = co_await s.recv_from(buf).with_timeout(std::chrono::seconds(5));
    CHECK(d.from.host() == "127.0.0.1");
    REQUIRE(d.size == req.size());
    icmphdr h;
    std::memcpy(&h, buf.data(), sizeof h);
    CHECK(h.type == ICMP_ECHOREPLY);
    CHECK(ntohs(h.un.echo.sequence) == 7);
    CHECK(std::memcmp(buf.data() + sizeof h, "coring!!", 8) == 0);
    // Truncation works for ICMP too.
    co_await s.send_to(std::as_bytes(std::span(req)), address::loopback_v4());
    std::array<std::byte, 4> small;
    datagram t = co_await s.recv_from(small).with_timeout(std::chrono::seconds(5));
    CHECK(t.truncated);
  });
}
