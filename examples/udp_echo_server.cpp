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
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace {

const char* usage =
    "usage: udp_echo_server [--host ADDR] [--port N] [--buffer-size BYTES]\n"
    "  Sends every UDP datagram back to its sender. Default 127.0.0.1:9000; --port 0 picks a\n"
    "  free port; IPv6 hosts (--host ::1) work. Prints the address it listens on.\n"
    "  A datagram longer than --buffer-size (default 65536, 1 to 1048576) is reported on stderr\n"
    "  as truncated and its first BYTES bytes are echoed. Exits 0 on SIGINT or SIGTERM.\n";

struct server {
  coring::socket& sock;
  std::size_t buffer_size;
  bool running = false;  // the echo loop has not returned yet
};

// Receives and answers datagrams until the socket is cancelled. One sender's trouble (a send
// that fails) is logged and the loop goes on: UDP has no connection to close.
coring::task<> echo_loop(server& srv) {
  srv.running = true;
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
  srv.running = false;
}

coring::task<> run(coring::io_context& ctx, server& srv, coring::signal_set& signals) {
  ctx.spawn(echo_loop(srv));
  int sig = co_await signals.wait();
  std::fprintf(stderr, "udp_echo_server: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  srv.sock.cancel();
  // LIFETIME: the loop's buffer is in its frame and srv in main's; wait (bounded) until the loop
  // has returned and the kernel has let go of its receive before main destroys them.
  for (int i = 0; i < 1000 && (srv.running || ctx.in_flight() > 0); ++i)
    co_await coring::sleep_for(ctx, std::chrono::milliseconds(1));
}

}  // namespace

int main(int argc, char** argv) {
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
    std::printf("udp_echo_server listening on %s\n", sock.sock_name().to_string().c_str());
    std::fflush(stdout);
    server srv{sock, buffer_size};
    coring::sync_wait(ctx, run(ctx, srv, signals));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udp_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
