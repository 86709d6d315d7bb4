// SPDX-License-Identifier: MIT
// Description: echo server: straight-line coroutine per client, thousands of clients at once,
// graceful shutdown on SIGINT/SIGTERM, optional idle timeout.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* usage =
    "usage: echo_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "                   [--plain | --oneshot] [--threads N]\n"
    "  Echoes every byte back to every client. Default 127.0.0.1:9000; --port 0 picks a free\n"
    "  port. Prints the address it listens on. On SIGINT or SIGTERM it stops accepting, lets\n"
    "  replies in flight finish (at most --grace seconds, default 2), closes its clients and\n"
    "  exits 0. --idle-timeout disconnects clients silent for that long (default: off).\n"
    "  By default each client keeps one multishot recv armed on a buffer ring shared by all\n"
    "  clients. --oneshot submits one recv per buffer instead (tighter per-client bound on\n"
    "  ring buffers, one more SQE per message); --plain uses a private 4 KiB buffer per client.\n"
    "  --threads N (default 1) runs N threads, each with its own ring, buffer ring and\n"
    "  SO_REUSEPORT listener on the same port (thread per core: they share nothing).\n";

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
  std::size_t accepted = 0;
};

// One client's error (a reset, a broken pipe, the idle timeout) ends that client only.
coring::task<> serve_client(server& srv, coring::socket s) {
  example::client_list::node me(srv.clients, s);
  std::string peer = s.peer_name().to_string();
  try {
    // An echo of more than one buffer goes out in several sends; without TCP_NODELAY the last
    // one waits for the client's delayed ACK (~40 ms per message).
    s.set_option(coring::sockopt::no_delay{true});
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
      ++srv.accepted;
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

// Shutdown of one server: stop accepting; end every client's reading side: its pending recv
// sees EOF, a reply being sent still goes out, then the client's loop ends and closes the
// connection. After the grace period, cancel what is left and wait until the kernel has let go
// of everything (LIFETIME: the clients use srv and the ring, destroyed before the io_context).
coring::task<> shut_down(server& srv, coring::socket& listener, std::chrono::nanoseconds grace) {
  listener.cancel();
  co_await example::drain(srv.ctx, srv.clients, srv.accepting, grace);
}

coring::task<> run(server& srv, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds grace) {
  srv.ctx.spawn(accept_loop(srv, listener));
  int sig = co_await signals.wait();
  std::fprintf(stderr, "echo_server: %s, shutting down (%zu clients)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", srv.clients.count);
  co_await shut_down(srv, listener, grace);
}

coring::task<int> next_signal(coring::signal_set& signals) { co_return co_await signals.wait(); }

struct options {
  std::chrono::nanoseconds idle, grace;
  bool plain, multishot, coop;
};

coring::io_context_options ring_options(const options& o) {
  return coring::io_context_options{.defer_taskrun = !o.coop};
}

// The shared buffer ring (4,096 x 4 KiB), unless --plain or the kernel has none.
coring::buffer_ring* make_ring(coring::io_context& ctx, const options& o,
                               std::optional<coring::buffer_ring>& ring) {
  if (!o.plain && ctx.features().buf_ring) ring.emplace(ctx, 4096, 4096);
  return ring ? &*ring : nullptr;
}

// --threads: one listener per thread on the same address (SO_REUSEPORT: the kernel spreads new
// connections across them). Bound, not yet listening.
coring::socket reuse_port_socket(coring::io_context& ctx, const coring::address& at) {
  coring::socket s(ctx, at.family(), SOCK_STREAM);
  s.set_option(coring::sockopt::reuse_address{true});
  s.set_option(coring::sockopt::reuse_port{true});
  s.bind(at);
  return s;
}

// One worker of --threads: its own io_context (created on its thread: the ring belongs to it),
// buffer ring and listener; serves until the main thread requests stop through execute().
class worker {
 public:
  worker(const coring::address& at, const options& o) {
    thread_ = std::thread([this, at, o] {
      try {
        coring::io_context ctx(ring_options(o));
        std::optional<coring::buffer_ring> ring;
        server srv{ctx, make_ring(ctx, o, ring), o.idle, o.multishot, {}, false};
        coring::socket listener = reuse_port_socket(ctx, at);
        listener.listen();
        ready_ = true;
        ready_.notify_one();
        coring::sync_wait(ctx, serve(srv, std::move(listener), o.grace));
        accepted_ = srv.accepted;
      } catch (...) {
        if (!ready_) {
          failed_ = std::current_exception();
          ready_ = true;
          ready_.notify_one();
          return;
        }
        std::fprintf(stderr, "echo_server: a worker failed\n");
      }
    });
    ready_.wait(false);
    if (failed_) {
      thread_.join();
      std::rethrow_exception(failed_);
    }
  }
  /// Asks the worker to shut down gracefully and waits for it. Returns: how many connections
  /// it accepted. LIFETIME: only the stop source is touched, never the worker's io_context, which
  /// is gone if the worker ended early; a stop request reaches its sleep on the worker's thread.
  std::size_t stop_and_join() {
    stop_.request_stop();
    thread_.join();
    return accepted_;
  }

 private:
  coring::task<> serve(server& srv, coring::socket listener, std::chrono::nanoseconds grace) {
    srv.ctx.spawn(accept_loop(srv, listener));
    // Wait for the stop request (a sleep the request cancels), then shut down like main does.
    auto tok = stop_.get_token();
    while (!tok.stop_requested())
      (void)co_await coring::as_result(
          coring::sleep_for(srv.ctx, std::chrono::hours(1)).with_stop(tok));
    co_await shut_down(srv, listener, grace);
  }

  std::stop_source stop_;  // requested by the main thread, seen by the worker's sleep
  std::exception_ptr failed_;          // set before ready_ if the worker could not start
  std::size_t accepted_ = 0;           // set when the worker ends (read after join)
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  auto seconds = [](double s) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
  };
  options o{};
  o.idle = seconds(args.get_double("--idle-timeout", 0, 0, 86400));
  o.grace = seconds(args.get_double("--grace", 2, 0, 3600));
  o.plain = args.flag("--plain");
  o.multishot = !args.flag("--oneshot");
  // For benchmarks: the ring's task-run mode (DEFER_TASKRUN costs CPU at some loads).
  o.coop = args.flag("--coop-taskrun");
  int threads = static_cast<int>(args.get_int("--threads", 1, 1, 256));
  args.done();
  example::raise_fd_limit();
  try {
    coring::io_context ctx(ring_options(o));
    // Created before any worker starts: the signals stay blocked in every thread (workers
    // inherit the mask) and arrive only through this signalfd.
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    if (threads == 1) {
      std::optional<coring::buffer_ring> ring;
      coring::buffer_ring* shared = make_ring(ctx, o, ring);
      coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
      std::printf("echo_server listening on %s\n", listener.sock_name().to_string().c_str());
      std::fflush(stdout);
      server srv{ctx, shared, o.idle, o.multishot, {}, false};
      coring::sync_wait(ctx, run(srv, std::move(listener), signals, o.grace));
      return 0;
    }
    // Thread per core: with --port 0, the first worker's port is the one all others share.
    coring::address at = coring::address::ip(host, port);
    std::vector<std::unique_ptr<worker>> workers;
    {
      // Hold the port while the workers bind it (a port-0 bind picks it); bound, not listening,
      // so it takes no connections.
      coring::socket holder = reuse_port_socket(ctx, at);
      at = holder.sock_name();
      for (int i = 0; i < threads; ++i) workers.push_back(std::make_unique<worker>(at, o));
    }
    std::printf("echo_server listening on %s (%d threads)\n", at.to_string().c_str(), threads);
    std::fflush(stdout);
    int sig = coring::sync_wait(ctx, next_signal(signals));
    std::fprintf(stderr, "echo_server: %s, shutting down %d threads\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", threads);
    std::string per_thread;
    for (auto& w : workers) per_thread += " " + std::to_string(w->stop_and_join());
    std::printf("echo_server: connections accepted per thread:%s\n", per_thread.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
