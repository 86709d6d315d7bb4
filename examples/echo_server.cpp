// SPDX-License-Identifier: MIT
// Description: echo server: straight-line coroutine per client, thousands of clients at once,
// graceful shutdown on SIGINT/SIGTERM, optional idle timeout.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
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
    "  SO_REUSEPORT listener on the same port (thread per core: they share nothing); it fails\n"
    "  like one thread if the port is in use. Ring buffers: 4,096 x 4 KiB shared out among the\n"
    "  threads (a power of two each, at least 256), memory taken only as used. --idle-timeout\n"
    "  also drops a client that does not read what it is sent for that long.\n";

// The straight-line loop of the README: a private buffer per connection.
// idle > 0 bounds both directions: a client that sends nothing for that long, or does not read
// what it is sent for that long (a send_all of one buffer that cannot finish), is dropped.
coring::task<> echo(coring::socket& s, std::chrono::nanoseconds idle) {
  std::array<std::byte, 4096> buf;
  if (idle.count() == 0) {
    while (std::size_t n = co_await s.recv(buf))
      co_await s.send_all(std::span(buf).first(n));
  } else {
    while (std::size_t n = co_await s.recv(buf).with_timeout(idle))
      co_await s.send_all(std::span(buf).first(n)).with_timeout(idle);
  }
}

// The same loop on the fast path: buffers come from a ring shared by all connections and are
// taken only when data arrives, so an idle connection holds no buffer at all.
coring::task<> echo(coring::socket& s, coring::buffer_ring& ring, std::chrono::nanoseconds idle,
                    bool multishot) {
  coring::recv_stream rx(s, ring, {.multishot = multishot, .idle_timeout = idle});
  while (coring::buffer b = co_await rx.next()) {
    auto send = s.send_all(b.data());
    if (idle.count() > 0) std::move(send).with_timeout(idle);  // one loop: a smaller frame
    co_await send;
  }
}

struct server {
  coring::io_context& ctx;
  coring::buffer_ring* ring;  // null: --plain, or the kernel has no buffer rings
  std::chrono::nanoseconds idle;
  bool multishot;
  example::client_list clients;  // the live clients (and the accept loop), for shutdown
  std::size_t accepted = 0;
};

// One client's error (a reset, a broken pipe, the idle timeout) ends that client only.
coring::task<> serve_client(server& srv, coring::socket s) {
  example::client_list::node me(srv.clients, &s);
  // "?" if the client already left (an RST before we got here): not an error of the server.
  const std::string peer = example::peer_name(s);
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
      example::log::err().line("client " + peer + ": idle for too long, disconnected");
    else if (e.code() != std::errc::operation_canceled)  // shutdown's cancel: not news
      example::log::err().line("client " + peer + ": " + e.what());
  }
}

coring::task<> accept_loop(server& srv, coring::socket& listener) {
  example::client_list::node me(srv.clients, nullptr);  // shutdown waits for this loop too
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
}

// Shutdown of one server: stop accepting (the listener's cancel sticks, also for an accept
// loop that is backing off); end every client's reading side: its pending recv sees EOF, a
// reply being sent still goes out, then the client's loop ends and closes the connection.
// After the grace period, cancel what is left (for good: a client that keeps sending or never
// reads ends too). What still runs after that is ended by main's shutdown_guard.
coring::task<> shut_down(server& srv, coring::socket& listener, std::chrono::nanoseconds grace) {
  listener.cancel();
  // Named: g++ 12 miscompiles a co_await of a task inside an if condition (see drain()).
  const bool ended = co_await example::drain(srv.ctx, srv.clients, grace);
  if (!ended)
    example::log::err().line(
        "echo_server: " + std::to_string(srv.clients.count) + " tasks (" +
        std::to_string(srv.clients.tasks_without_socket()) +
        " without a connection) did not end after the cancel; destroying them");
}

coring::task<> run(server& srv, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds grace) {
  srv.ctx.spawn(accept_loop(srv, listener));
  int sig = co_await signals.wait();
  example::log::err().line(std::string("echo_server: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ", shutting down (" + std::to_string(srv.clients.count - 1) +
                           " clients)");
  co_await shut_down(srv, listener, grace);
}

struct options {
  std::chrono::nanoseconds idle, grace;
  bool plain, multishot, coop;
  unsigned ring_buffers = 4096;  // per thread: 4096 / threads, at least 256
};

coring::io_context_options ring_options(const options& o) {
  return coring::io_context_options{.defer_taskrun = !o.coop};
}

// The shared buffer ring (ring_buffers x 4 KiB), unless --plain or the kernel has none. Its
// memory is taken from the system only as the kernel first fills each buffer.
coring::buffer_ring* make_ring(coring::io_context& ctx, const options& o,
                               std::optional<coring::buffer_ring>& ring) {
  if (!o.plain && ctx.features().buf_ring) ring.emplace(ctx, o.ring_buffers, 4096);
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
// buffer ring and listener; serves until the main thread requests stop through its stop_source.
class worker {
 public:
  /// Starts the thread and waits until it listens. Throws: std::runtime_error naming the
  /// worker and why it could not start (the thread has ended then).
  worker(int index, const coring::address& at, const options& o) : index_(index) {
    thread_ = std::thread([this, at, o] {
      try {
        coring::io_context ctx(ring_options(o));
        std::optional<coring::buffer_ring> ring;
        server srv{ctx, make_ring(ctx, o, ring), o.idle, o.multishot, {}};
        example::shutdown_guard guard{ctx};  // LIFETIME: tasks end before srv and ring go
        coring::socket listener = reuse_port_socket(ctx, at);
        listener.listen();
        started(nullptr);
        coring::sync_wait(ctx, serve(srv, std::move(listener), o.grace));
        accepted_ = srv.accepted;
      } catch (const std::exception& e) {
        if (!started(e.what()))
          example::log::err().line("echo_server: thread " + std::to_string(index_) +
                                   " failed: " + e.what());
      }
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return state_ != state::starting; });
    if (state_ == state::failed) {
      lock.unlock();
      thread_.join();
      throw std::runtime_error("thread " + std::to_string(index_) + " could not start: " + why_);
    }
  }
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  /// Stops and joins a worker that is still running (a later worker failed to start, say).
  ~worker() {
    if (thread_.joinable()) stop_and_join();
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
  enum class state { starting, running, failed };
  // Reports the start (why == nullptr) or a failure. Returns: false if the worker had already
  // started (the failure is then the worker's to report).
  bool started(const char* why) {
    std::lock_guard lock(mu_);
    if (state_ != state::starting) return false;
    state_ = why ? state::failed : state::running;
    if (why) why_ = why;
    cv_.notify_one();
    return true;
  }

  coring::task<> serve(server& srv, coring::socket listener, std::chrono::nanoseconds grace) {
    srv.ctx.spawn(accept_loop(srv, listener));
    // Wait for the stop request (a sleep the request cancels), then shut down like main does.
    auto tok = stop_.get_token();
    while (!tok.stop_requested())
      (void)co_await coring::as_result(
          coring::sleep_for(srv.ctx, std::chrono::hours(1)).with_stop(tok));
    co_await shut_down(srv, listener, grace);
  }

  int index_;
  std::stop_source stop_;  // requested by the main thread, seen by the worker's sleep
  std::mutex mu_;
  std::condition_variable cv_;
  state state_ = state::starting;
  std::string why_;           // why it failed to start
  std::size_t accepted_ = 0;  // set when the worker ends (read after join)
  std::thread thread_;
};

// The address every worker binds. A plain bind first (no SO_REUSEPORT): it fails with
// "Address already in use" if anything listens there, as a single-thread server would, instead
// of silently joining (and splitting the connections with) another process's SO_REUSEPORT
// group; with port 0 it picks the port. Then a bound SO_REUSEPORT socket holds the port while
// the workers bind it (bound, not listening: it takes no connections).
coring::address claim_address(coring::io_context& ctx, coring::address at) {
  {
    coring::socket probe(ctx, at.family(), SOCK_STREAM);
    probe.set_option(coring::sockopt::reuse_address{true});
    probe.bind(at);
    at = probe.sock_name();
  }
  return at;
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  options o{};
  o.idle = example::seconds(args.get_double("--idle-timeout", 0, 0, 86400));
  o.grace = example::seconds(args.get_double("--grace", 2, 0, 3600));
  o.plain = args.flag("--plain");
  o.multishot = !args.flag("--oneshot");
  // For benchmarks: the ring's task-run mode (DEFER_TASKRUN costs CPU at some loads).
  o.coop = args.flag("--coop-taskrun");
  int threads = static_cast<int>(args.get_int("--threads", 1, 1, 256));
  args.done();
  // Ring buffers per thread: 4,096 in all (16 MiB, touched only as used), at least 256 each.
  o.ring_buffers = 4096;
  while (o.ring_buffers > 256 && o.ring_buffers * static_cast<unsigned>(threads) > 4096)
    o.ring_buffers /= 2;
  example::raise_fd_limit();
  int status = 0;
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
      server srv{ctx, shared, o.idle, o.multishot, {}};
      example::shutdown_guard guard{ctx};  // LIFETIME: tasks end before srv and ring go
      coring::sync_wait(ctx, run(srv, std::move(listener), signals, o.grace));
    } else {
      // Thread per core: with --port 0, the first bind picks the port all workers share.
      coring::address at = claim_address(ctx, coring::address::ip(host, port));
      std::vector<std::unique_ptr<worker>> workers;  // a failed start stops the others
      {
        coring::socket holder = reuse_port_socket(ctx, at);
        for (int i = 0; i < threads; ++i)
          workers.push_back(std::make_unique<worker>(i + 1, at, o));
      }
      std::printf("echo_server listening on %s (%d threads)\n", at.to_string().c_str(), threads);
      std::fflush(stdout);
      int sig = coring::sync_wait(ctx, signals.wait());
      example::log::err().line(std::string("echo_server: ") +
                               (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", shutting down " +
                               std::to_string(threads) + " threads");
      std::string per_thread;
      for (auto& w : workers)
        per_thread += " " + std::to_string(w->stop_and_join());
      std::printf("echo_server: connections accepted per thread:%s\n", per_thread.c_str());
    }
  } catch (const std::exception& e) {
    example::log::err().line(std::string("echo_server: ") + e.what());
    status = 1;
  }
  example::log::flush_all();
  return status;
}
