// SPDX-License-Identifier: MIT
// Description: echo server: straight-line coroutine per client, thousands of clients at once,
// graceful shutdown on SIGINT/SIGTERM, optional idle timeout, optional TLS (--tls-cert).
#include <coring/coring.hpp>
#if CORING_HAS_TLS
#include <coring/tls.hpp>
#endif

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* usage =
    "usage: echo_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "                   [--plain | --oneshot] [--threads N] [--batch-delay-us N]\n"
    "                   [--tls-cert FILE --tls-key FILE [--handshake-timeout SECONDS]]\n"
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
    "  also drops a client that does not read what it is sent for that long.\n"
    "  --tls-cert FILE --tls-key FILE (PEM: the certificate chain and its key; both or neither)\n"
    "  serve TLS 1.2 and 1.3 instead: each client's handshake must end within\n"
    "  --handshake-timeout seconds (default 10); a client's close_notify is answered with ours.\n"
    "  A failed handshake or a TLS error ends that client with one log line. TLS clients get\n"
    "  a private 4 KiB buffer each (no buffer ring).\n"
    "  --batch-delay-us N (default 0: off) lets each thread's loop wait up to N microseconds to\n"
    "  gather completions before it wakes (io_context_options::max_batch_delay): less CPU at a\n"
    "  steady load, at most N us more latency per step; an idle server still answers at once.\n";

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

struct options {
  std::chrono::nanoseconds idle, grace;
  bool plain, multishot, coop;
  unsigned ring_buffers = 4096;             // per thread: 4096 / threads, at least 256
  std::chrono::nanoseconds handshake{};     // --handshake-timeout (TLS)
  std::chrono::microseconds batch_delay{};  // --batch-delay-us (issue 14)
#if CORING_HAS_TLS
  std::optional<coring::tls::context> tls;  // --tls-cert: one SSL_CTX shared by every thread
#endif
};

// What one thread's connections share. LIFETIME: every connection holds a shared_ptr to it (in
// its copy of the handler), so the buffer ring outlives any connection, even one that did not
// end at the grace limit and is destroyed by io_context::shutdown later.
struct server {
  std::optional<coring::buffer_ring> ring;  // empty: --plain, or the kernel has no buffer rings
  std::chrono::nanoseconds idle{};
  bool multishot = true;
  std::size_t accepted = 0;
  // TLS: a stream owns its socket, out of reach of the drain's SHUT_RD and cancel, so the
  // drain's stop hook requests `stopping` instead (handshakes and receives end), and `cancel`
  // is the scope's token (requested at the grace limit: sends end too).
  std::stop_source stopping;
  std::stop_token cancel;
#if CORING_HAS_TLS
  std::optional<coring::tls::context> tls;  // set: every client speaks TLS
  std::chrono::nanoseconds handshake{};
#endif
};

// The shared buffer ring (ring_buffers x 4 KiB), unless --plain or the kernel has none. Its
// memory is taken from the system only as the kernel first fills each buffer.
std::shared_ptr<server> make_server(coring::io_context& ctx, const options& o) {
  auto srv = std::make_shared<server>();
  srv->idle = o.idle;
  srv->multishot = o.multishot;
#if CORING_HAS_TLS
  srv->tls = o.tls;
  srv->handshake = o.handshake;
  if (srv->tls) return srv;  // TLS reads records into a private buffer: no ring
#endif
  if (!o.plain && ctx.features().buf_ring) srv->ring.emplace(ctx, o.ring_buffers, 4096);
  return srv;
}

#if CORING_HAS_TLS
// The straight-line loop over TLS: a private buffer, records decrypted by the stream. Returns
// when the client sent close_notify (recv gives 0) or the server stops (the drain).
// Throws: std::system_error: tls_truncated if the client closed without close_notify.
coring::task<> echo(coring::tls::stream& t, const server& srv) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto rx = t.recv(buf).with_stop(srv.stopping.get_token());  // named: g++ 12
    if (srv.idle.count() > 0) std::move(rx).with_timeout(srv.idle);
    std::size_t n = 0;
    try {
      n = co_await std::move(rx);
    } catch (const std::system_error& e) {
      if (e.code() == std::errc::operation_canceled && srv.stopping.stop_requested()) co_return;
      throw;
    }
    if (n == 0) co_return;
    auto tx = t.send_all(std::span(buf).first(n)).with_stop(srv.cancel);
    if (srv.idle.count() > 0) std::move(tx).with_timeout(srv.idle);
    co_await std::move(tx);
  }
}

// One TLS client: the handshake (bounded by --handshake-timeout, ended by the drain), the echo,
// then our close_notify. A failure ends this client with one log line in OpenSSL's words.
coring::task<> serve_tls_client(server& srv, coring::socket& s, const std::string& peer) {
  bool shaken = false;  // the handshake is done
  try {
    s.set_option(coring::sockopt::no_delay{true});
    coring::tls::stream t(*srv.tls, std::move(s));
    auto hs = t.handshake().with_timeout(srv.handshake).with_stop(srv.stopping.get_token());
    co_await std::move(hs);
    shaken = true;
    co_await echo(t, srv);
    // The client's close_notify (or the drain): ours goes out, bounded; a client that is gone
    // by now (it closed right after its close_notify) is no news.
    auto bye = t.shutdown().with_timeout(std::chrono::seconds(1)).with_stop(srv.cancel);
    auto sent = co_await coring::as_result(std::move(bye));
    (void)sent;
  } catch (const std::system_error& e) {
    const std::string who = "client " + peer + ": ";
    if (e.code() == coring::errc::tls_truncated)
      example::log::err().line(who + "closed the connection without close_notify (truncated)");
    else if (e.code() == std::errc::timed_out && !shaken)
      example::log::err().line(who + "no TLS handshake within --handshake-timeout, disconnected");
    else if (e.code() == std::errc::timed_out)
      example::log::err().line(who + "idle for too long, disconnected");
    else if (e.code() != std::errc::operation_canceled)  // the drain's cancel: not news
      example::log::err().line(who + e.what());
  }
}

// With TLS the drain's stop hook requests srv.stopping (a TLS stream owns its socket, so the
// default hook, SHUT_RD on the scope's socket, cannot reach it). Without TLS: the default.
coring::connection_scope_options scope_options(const std::shared_ptr<server>& srv) {
  if (!srv->tls) return {};
  server* p = srv.get();  // serve() holds srv as long as the scope runs the hook
  return {.stop_hook = [p](coring::socket&) { p->stopping.request_stop(); }};
}
#else
coring::connection_scope_options scope_options(const std::shared_ptr<server>&) { return {}; }
#endif

// One client's error (a reset, a broken pipe, the idle timeout) ends that client only.
coring::task<> serve_client(server& srv, coring::socket& s) {
  ++srv.accepted;
  // "?" if the client already left (an RST before we got here): not an error of the server.
  const std::string peer = example::peer_name(s);
#if CORING_HAS_TLS
  if (srv.tls) {
    co_await serve_tls_client(srv, s, peer);
    co_return;
  }
#endif
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
    else if (e.code() != std::errc::operation_canceled)  // the drain's cancel: not news
      example::log::err().line("client " + peer + ": " + e.what());
  }
}

// Accepts on listener (backing off when out of descriptors) and serves each client in its own
// coroutine, until stopped() returns; then drains (see the usage text).
template <class Wait>
coring::task<> serve(coring::io_context& ctx, coring::socket listener, const options& o,
                     std::shared_ptr<server> srv, Wait stopped) {
  coring::connection_scope scope(ctx, scope_options(srv));  // TLS: its own stop hook
  srv->cancel = scope.token();                              // TLS: the grace is over
  scope.serve(std::move(listener), [srv](coring::socket& s) { return serve_client(*srv, s); });
  auto why = stopped(scope);  // named: no temporary around the co_await (g++ 12)
  co_await std::move(why);
  const bool ended = co_await scope.drain(o.grace);  // named: see docs/design.md, "g++ 12"
  if (!ended)
    example::log::err().line("echo_server: " + std::to_string(scope.size()) +
                             " clients did not end after the cancel; destroying them");
}

coring::io_context_options ring_options(const options& o) {
  return coring::io_context_options{.defer_taskrun = !o.coop, .max_batch_delay = o.batch_delay};
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

// The address every worker binds. A plain bind first (no SO_REUSEPORT): it fails with
// "Address already in use" if anything listens there, as a single-thread server would, instead
// of silently joining (and splitting the connections with) another process's SO_REUSEPORT
// group; with port 0 it picks the port.
coring::address claim_address(coring::io_context& ctx, coring::address at) {
  coring::socket probe(ctx, at.family(), SOCK_STREAM);
  probe.set_option(coring::sockopt::reuse_address{true});
  probe.bind(at);
  return probe.sock_name();
}

// What the --threads workers share with main: written before start(), or by one worker each.
struct pool {
  options o;
  coring::address at;
  std::latch listening;               // every worker listens, or failed to
  std::vector<std::size_t> accepted;  // per worker, set when it ends (read after join)
};

// One worker of --threads, on its own thread and io_context (coring::runner): its own buffer
// ring and SO_REUSEPORT listener; serves until the runner's stop (a signal, or a failure).
coring::task<> worker(coring::io_context& ctx, unsigned index, std::stop_token stop, pool& p) {
  std::shared_ptr<server> srv;
  std::optional<coring::socket> listener;
  try {
    srv = make_server(ctx, p.o);
    listener.emplace(reuse_port_socket(ctx, p.at));
    listener->listen();
  } catch (const std::exception& e) {
    p.listening.count_down();
    throw std::runtime_error("thread " + std::to_string(index + 1) +
                             " could not start: " + e.what());
  }
  p.listening.count_down();
  auto until_stop = [&ctx, stop, index, &p](coring::connection_scope&) -> coring::task<> {
    while (!stop.stop_requested())  // request_stop() ends the sleep (it wakes every ring)
      (void)co_await coring::as_result(
          coring::sleep_for(ctx, std::chrono::hours(1)).with_stop(stop));
    if (index == 0)
      example::log::err().line("echo_server: shutting down " + std::to_string(p.accepted.size()) +
                               " threads");
  };
  co_await serve(ctx, std::move(*listener), p.o, srv, until_stop);
  p.accepted[index] = srv->accepted;
}

// Thread per core: with --port 0, the first bind picks the port all workers share.
void run_threads(const std::string& host, std::uint16_t port, const options& o, unsigned threads) {
  coring::address at = [&] {
    coring::io_context ctx(ring_options(o));
    return claim_address(ctx, coring::address::ip(host, port));
  }();
  pool p{o, at, std::latch(threads), std::vector<std::size_t>(threads)};
  coring::runner r(threads, ring_options(o));
  r.stop_on_signals({SIGINT, SIGTERM});
  try {
    r.start([&p](coring::io_context& ctx, unsigned i, std::stop_token stop) {
      return worker(ctx, i, std::move(stop), p);
    });
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("could not start ") + std::to_string(threads) +
                             " threads: " + e.what());
  }
  p.listening.wait();
  if (!r.stop_requested()) {  // else a worker failed (join says why) or a signal came
    std::printf("echo_server listening on %s (%u threads)\n", at.to_string().c_str(), threads);
    std::fflush(stdout);
  }
  r.join();  // rethrows the first worker failure
  std::string per_thread;
  for (std::size_t n : p.accepted) {
    per_thread += ' ';
    per_thread += std::to_string(n);
  }
  std::printf("echo_server: connections accepted per thread:%s\n", per_thread.c_str());
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
  auto threads = static_cast<unsigned>(args.get_int("--threads", 1, 1, 256));
  o.batch_delay = std::chrono::microseconds(args.get_int("--batch-delay-us", 0, 0, 1000000));
  const std::string tls_cert = args.get("--tls-cert", "");
  const std::string tls_key = args.get("--tls-key", "");
  o.handshake =
      example::seconds(args.get_double("--handshake-timeout", 10, args.min_seconds, 3600));
  args.done();
  if (tls_cert.empty() != tls_key.empty()) {
    std::fprintf(stderr,
                 "echo_server: --tls-cert and --tls-key go together: give both or neither\n");
    return 2;
  }
#if !CORING_HAS_TLS
  if (!tls_cert.empty()) {
    std::fprintf(stderr,
                 "echo_server: built without TLS: --tls-cert and --tls-key are not available\n");
    return 2;
  }
#endif
  // Ring buffers per thread: 4,096 in all (16 MiB, touched only as used), at least 256 each.
  o.ring_buffers = 4096;
  while (o.ring_buffers > 256 && o.ring_buffers * threads > 4096)
    o.ring_buffers /= 2;
  example::raise_fd_limit();
  int status = 0;
  try {
#if CORING_HAS_TLS
    if (!tls_cert.empty()) o.tls = coring::tls::context::server(tls_cert, tls_key);
#endif
    if (threads == 1) {
      coring::io_context ctx(ring_options(o));
      coring::signal_set signals(ctx, {SIGINT, SIGTERM});
      auto srv = make_server(ctx, o);
      coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
      std::printf("echo_server listening on %s\n", listener.sock_name().to_string().c_str());
      std::fflush(stdout);
      auto until_signal = [&signals](coring::connection_scope& scope) -> coring::task<> {
        int sig = co_await signals.wait();
        example::log::err().line(std::string("echo_server: ") +
                                 (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", shutting down (" +
                                 std::to_string(scope.size()) + " clients)");
      };
      coring::sync_wait(ctx, serve(ctx, std::move(listener), o, srv, until_signal));
    } else {
      run_threads(host, port, o, threads);
    }
  } catch (const std::exception& e) {
    example::log::err().line(std::string("echo_server: ") + e.what());
    status = 1;
  }
  example::log::flush_all();
  return status;
}
