// SPDX-License-Identifier: MIT
// Description: UDP echo server: every datagram goes back to its sender with send_to; IPv4 or
// IPv6; exits 0 on SIGINT/SIGTERM.
//
// One socket, one loop: recv_from tells who sent the datagram, send_to answers that address.
// There are no connections, so there is no per-client state and nothing to drain at shutdown:
// cancel the pending receive and return.
//
// Oversized datagrams: the buffer holds --buffer-size bytes (default 64 KiB, more than any UDP
// datagram over IPv4 or IPv6 without jumbograms can carry, so truncation needs a smaller
// --buffer-size). A longer datagram is cut by the kernel; we report it on stderr and echo the
// part that fit. Echoing the prefix rather than dropping the datagram means the client sees the
// cut as a shorter reply at once, instead of waiting for a reply that never comes.
//
// Forged sources: UDP does not check source addresses, and an echo server answers whatever
// source a datagram names. One datagram forged with our own address as its source would make
// us echo to ourselves for ever (each echo is another such datagram: 100% CPU), and one naming
// another echo-like service (echo, chargen, ...) starts the same loop between the two of us. So
// some sources are never answered (bogus_source): our own address, port 0, the ports of the
// services that answer any datagram, and unspecified, multicast or broadcast addresses. The
// drops are logged at most once a second, with a count, so a flood cannot flood the log.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <netinet/in.h>

namespace {

const char* usage =
    "usage: udp_echo_server [--host ADDR] [--port N] [--buffer-size BYTES]\n"
    "  Sends every UDP datagram back to its sender. Default 127.0.0.1:9000; --port 0 picks a\n"
    "  free port; IPv6 hosts (--host ::1) work. Prints the address it listens on.\n"
    "  A datagram longer than --buffer-size (default 65536, 1 to 1048576) is reported on stderr\n"
    "  as truncated and its first BYTES bytes are echoed. Exits 0 on SIGINT or SIGTERM.\n"
    "  Datagrams from a source that would start an endless echo loop are not answered (logged\n"
    "  on stderr at most once a second): our own address (or our port on any address when\n"
    "  listening on 0.0.0.0 or ::), source port 0, ports 7, 13, 17, 19 and 37 (services that\n"
    "  answer any datagram), and unspecified, multicast or broadcast source addresses.\n";

struct server {
  coring::socket& sock;
  std::size_t buffer_size;
  coring::address self;  // the address we are bound to
  // Dropped datagrams (bogus_source): counted, logged at most once a second.
  std::size_t dropped = 0, dropped_unlogged = 0;
  std::chrono::steady_clock::time_point next_drop_log{};
};

// a's IPv4 address in host byte order, also when a is IPv4-mapped IPv6 (::ffff:a.b.c.d, as a
// dual-stack socket on :: reports IPv4 peers); nullopt for any other address.
std::optional<std::uint32_t> ipv4_of(const coring::address& a) {
  if (a.family() == AF_INET)
    return ntohl(reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr.s_addr);
  if (a.family() == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6))
      return std::uint32_t{v6.s6_addr[12]} << 24 | std::uint32_t{v6.s6_addr[13]} << 16 |
             std::uint32_t{v6.s6_addr[14]} << 8 | std::uint32_t{v6.s6_addr[15]};
  }
  return std::nullopt;
}

bool is_unspecified(const coring::address& a) {
  if (auto v4 = ipv4_of(a)) return *v4 == INADDR_ANY;
  return a.family() == AF_INET6 &&
         IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_addr);
}

// Why a datagram from `from` must not be answered (see the top of the file), or nullptr.
const char* bogus_source(const coring::address& from, const coring::address& self) {
  if (from.port() == self.port() && (is_unspecified(self) || from.host() == self.host()))
    return "our own address: the echo would come back to us for ever";
  if (from.port() == 0) return "source port 0";
  switch (from.port()) {
    case 7:
    case 13:
    case 17:
    case 19:
    case 37:  // echo, daytime, qotd, chargen, time
      return "the port of a service that answers any datagram: an echo loop";
    default:
      break;
  }
  if (is_unspecified(from)) return "an unspecified source address";
  if (auto v4 = ipv4_of(from)) {
    if (IN_MULTICAST(*v4)) return "a multicast source address";
    if (*v4 == INADDR_BROADCAST) return "the broadcast address";
  } else if (from.family() == AF_INET6 &&
             IN6_IS_ADDR_MULTICAST(
                 &reinterpret_cast<const sockaddr_in6*>(from.data())->sin6_addr)) {
    return "a multicast source address";
  }
  return nullptr;
}

// Counts a dropped datagram; logs it unless a drop was logged less than a second ago (then the
// next log line gives the count of those not logged).
void note_drop(server& srv, const coring::address& from, const char* why) {
  ++srv.dropped;
  ++srv.dropped_unlogged;
  const auto now = std::chrono::steady_clock::now();
  if (now < srv.next_drop_log) return;
  std::fprintf(stderr, "udp_echo_server: not answering %s: %s", from.to_string().c_str(), why);
  if (srv.dropped_unlogged > 1)
    std::fprintf(stderr, " (and %zu more since the last such line)", srv.dropped_unlogged - 1);
  std::fputc('\n', stderr);
  srv.dropped_unlogged = 0;
  srv.next_drop_log = now + std::chrono::seconds(1);
}

// Receives and answers datagrams until the socket is cancelled. One sender's trouble (a send
// that fails) is logged and the loop goes on: UDP has no connection to close.
coring::task<> echo_loop(server& srv) {
  std::vector<std::byte> buf(srv.buffer_size);
  for (;;) {
    // MSG_TRUNC: size is the datagram's full length, even when only buf.size() bytes were kept.
    auto got = co_await coring::as_result(srv.sock.recv_from(buf, MSG_TRUNC));
    if (!got) {
      if (got.error() == std::errc::operation_canceled) break;  // shutting down
      std::fprintf(stderr, "udp_echo_server: recv_from: %s\n", got.error().message().c_str());
      continue;
    }
    const coring::datagram& d = *got;
    if (const char* why = bogus_source(d.from, srv.self)) {
      note_drop(srv, d.from, why);
      continue;
    }
    const std::size_t kept = std::min(d.size, buf.size());
    if (d.truncated || d.size > buf.size())
      std::fprintf(stderr,
                   "udp_echo_server: datagram of %zu bytes from %s truncated to %zu bytes "
                   "(--buffer-size); echoing those\n",
                   d.size, d.from.to_string().c_str(), kept);
    auto sent = co_await coring::as_result(srv.sock.send_to(std::span(buf).first(kept), d.from));
    if (!sent) {
      if (sent.error() == std::errc::operation_canceled) break;
      std::fprintf(stderr, "udp_echo_server: send_to %s: %s\n", d.from.to_string().c_str(),
                   sent.error().message().c_str());
    }
  }
}

// On SIGINT or SIGTERM, cancels the socket: the cancel is for good, so the echo loop ends at
// its pending operation.
coring::task<> stop_on_signal(server& srv, coring::signal_set& signals) {
  int sig = co_await signals.wait();
  std::fprintf(stderr, "udp_echo_server: %s, shutting down\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  srv.sock.cancel();
  if (srv.dropped > 0)
    std::fprintf(stderr, "udp_echo_server: %zu datagrams from bogus sources were not answered\n",
                 srv.dropped);
}

// Serves until a signal; returns once the echo loop ended (when_all: neither task outlives it).
coring::task<> run(server& srv, coring::signal_set& signals) {
  auto both = coring::when_all(echo_loop(srv), stop_on_signal(srv, signals));  // named: g++ 12
  co_await std::move(both);
}

}  // namespace

int main(int argc, char** argv) {
  // Nothing may kill us for writing to a closed stdout (`udp_echo_server | head -0`): the write
  // fails instead, and serving goes on.
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  auto buffer_size = static_cast<std::size_t>(args.get_int("--buffer-size", 65536, 1, 1 << 20));
  args.done();
  coring::address where;
  try {
    where = coring::address::ip(host, port);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "--host: %s\n%s", e.what(), usage);
    return 2;
  }
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket sock(ctx, where.family(), SOCK_DGRAM);
    sock.bind(where);
    const coring::address self = sock.sock_name();
    std::printf("udp_echo_server listening on %s\n", self.to_string().c_str());
    if (std::fflush(stdout) != 0)  // stdout is gone: say where we listen on stderr instead
      std::fprintf(stderr, "udp_echo_server: stdout: %s; listening on %s\n", std::strerror(errno),
                   self.to_string().c_str());
    server srv{sock, buffer_size, self};
    coring::sync_wait(ctx, run(srv, signals));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udp_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
