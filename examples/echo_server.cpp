// SPDX-License-Identifier: MIT
// Description: echo server: straight-line coroutine per client, thousands of clients at once,
// graceful shutdown on SIGINT/SIGTERM, optional idle timeout.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <optional>

namespace {

const char* usage =
    "usage: echo_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "                   [--plain | --oneshot]\n"
    "  Echoes every byte back to every client. Default 127.0.0.1:9000; --port 0 picks a free\n"
    "  port. Prints the address it listens on. On SIGINT or SIGTERM it stops accepting, lets\n"
    "  replies in flight finish (at most --grace seconds, default 2), closes its clients and\n"
    "  exits 0. --idle-timeout disconnects clients silent for that long (default: off).\n"
    "  By default each client keeps one multishot recv armed on a buffer ring shared by all\n"
    "  clients. --oneshot submits one recv per buffer instead (tighter per-client bound on\n"
    "  ring buffers, one more SQE per message); --plain uses a private 4 KiB buffer per client.\n";

// The straight-line loop of the README: a private buffer per connection.
coring::task<> echo(coring::socket& s, std::chrono::nanoseconds idle) {
  std::array<std::byte, 4096> buf;
  if (idle.count() == 0) {
    while (std::size_t n = co_await s.recv(buf))
      co_await s.send_all(std::span(buf).first(n));
  } else {
    while (std::size_t n = co_await s.recv(buf).with_timeout(idle))
      co_await s.send_all(std::span(buf).first(n));
  }
}

// The same loop on the fast path: buffers come from a ring shared by all connections and are
// taken only when data arrives, so an idle connection holds no buffer at all.
coring::task<> echo(coring::socket& s, coring::buffer_ring& ring, std::chrono::nanoseconds idle,
                    bool multishot) {
  coring::recv_stream rx(s, ring, {.multishot = multishot, .idle_timeout = idle});
  while (coring::buffer b = co_await rx.next())
    co_await s.send_all(b.data());
}

struct server {
  coring::io_context& ctx;
  coring::buffer_ring* ring;  // null: --plain, or the kernel has no buffer rings
  std::chrono::nanoseconds idle;
  bool multishot;
  example::client_list clients;  // the live clients, so that shutdown can reach them
  bool accepting = false;
};

// One client's error (a reset, a broken pipe, the idle timeout) ends that client only.
coring::task<> serve_client(server& srv, coring::socket s) {
  example::client_list::node me(srv.clients, s);
  std::string peer = s.peer_name().to_string();
  try {
    if (srv.ring)
      co_await echo(s, *srv.ring, srv.idle, srv.multishot);
    else
      co_await echo(s, srv.idle);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::timed_out)
      std::fprintf(stderr, "client %s: idle for too long, disconnected\n", peer.c_str());
    else
      std::fprintf(stderr, "client %s: %s\n", peer.c_str(), e.what());
  }
}

coring::task<> accept_loop(server& srv, coring::socket& listener) {
  srv.accepting = true;
  coring::acceptor acc(listener);
  for (;;) {
    auto client = co_await coring::as_result(acc.accept());
    if (client) {
      srv.ctx.spawn(serve_client(srv, std::move(*client)));
    } else {
      // Out of descriptors or memory: back off instead of spinning; cancelled: shutting down.
      auto next = example::after_accept_error(client.error());
      if (next == example::accept_action::stop) break;
      if (next == example::accept_action::back_off)
        co_await coring::sleep_for(srv.ctx, example::accept_back_off);
    }
  }
  srv.accepting = false;
}

coring::task<> run(server& srv, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds grace) {
  srv.ctx.spawn(accept_loop(srv, listener));
  int sig = co_await signals.wait();
  std::fprintf(stderr, "echo_server: %s, shutting down (%zu clients)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", srv.clients.count);
  // Stop accepting; end every client's reading side: its pending recv sees EOF, a reply being
  // sent still goes out, then the client's loop ends and closes the connection. After the grace
  // period, cancel what is left and wait until the kernel has let go of everything
  // (LIFETIME: the clients use srv and the ring, which main destroys before the io_context).
  listener.cancel();
  co_await example::drain(srv.ctx, srv.clients, srv.accepting, grace);
}

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  double idle_s = args.get_double("--idle-timeout", 0, 0, 86400);
  double grace_s = args.get_double("--grace", 2, 0, 3600);
  bool plain = args.flag("--plain");
  bool multishot = !args.flag("--oneshot");
  // For benchmarks: the ring's task-run mode (DEFER_TASKRUN costs CPU at some loads).
  bool coop = args.flag("--coop-taskrun");
  args.done();
  example::raise_fd_limit();
  try {
    coring::io_context ctx(coring::io_context_options{.defer_taskrun = !coop});
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    std::optional<coring::buffer_ring> ring;
    if (!plain && ctx.features().buf_ring) ring.emplace(ctx, 4096, 4096);
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("echo_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    server srv{ctx, ring ? &*ring : nullptr,
               std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::duration<double>(idle_s)),
               multishot, {}, false};
    coring::sync_wait(ctx, run(srv, std::move(listener), signals,
                               std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::duration<double>(grace_s))));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
