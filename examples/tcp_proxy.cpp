// SPDX-License-Identifier: MIT
// Description: TCP proxy: each accepted connection is joined to a new connection to the target
// and bytes are copied both ways (half-close and resets propagate, backpressure, bounded memory).
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <latch>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/socket.h>

namespace {

const char* usage =
    "usage: tcp_proxy --listen HOST:PORT --to HOST:PORT [--threads N] [--connect-timeout S]\n"
    "                 [--grace S] [--copy recv|stream|splice]\n"
    "  Accepts TCP connections on --listen (port 0 picks a free port; it prints\n"
    "  \"tcp_proxy listening on HOST:PORT\") and joins each one to a new connection to --to,\n"
    "  copying bytes both ways until both directions ended. An EOF in one direction becomes a\n"
    "  shutdown(SHUT_WR) toward the other side, whose direction goes on (half-close); a reset\n"
    "  or an error on either side resets the other. A target that refuses, or does not answer\n"
    "  within --connect-timeout seconds (default 10, 0: no limit), closes the client at once\n"
    "  and logs one line on stderr.\n"
    "  Memory is bounded per connection: a direction reads again only once the other side\n"
    "  took what it read (a slow side stops the reading of the other; the kernel's socket\n"
    "  buffers hold the rest). How a direction copies:\n"
    "  --copy recv (the default: the least CPU per round trip and per MiB, measured against\n"
    "  the two others; docs/examples.md): recv into a 64 KiB buffer of its own, send_all.\n"
    "  --copy stream: a multishot recv (recv_stream) into a ring of 1,024 x 16 KiB buffers\n"
    "  shared by the thread's connections (at most 3 per direction), send_all from those.\n"
    "  --copy splice: wait for data (a 1-byte MSG_PEEK recv), splice it socket -> pipe ->\n"
    "  socket through a 64 KiB pipe per direction (never through user space; each splice runs\n"
    "  in an io-wq worker thread of the kernel: 2x the MB/s, as those threads also run on\n"
    "  other CPUs than the proxy's, but 1.3x the CPU per MiB and 3.4x per small message).\n"
    "  --threads N (default 1): N threads, each with its own ring and SO_REUSEPORT listener.\n"
    "  On SIGINT or SIGTERM it stops accepting, shuts down the reading side of every client\n"
    "  (their EOF goes on to the targets), lets the connections end (at most --grace seconds,\n"
    "  default 2), resets those left and exits 0.\n";

/// How the bytes of one direction are copied.
enum class copy_mode { recv, stream, splice };

struct options {
  std::string target;                          // --to, as given
  std::optional<coring::address> target_addr;  // parsed if numeric (else looked up per connect)
  std::chrono::nanoseconds connect_timeout{}, grace{};
  copy_mode copy = copy_mode::recv;
};

constexpr std::size_t buffer_size = 64 * 1024;                // per direction (recv mode)
constexpr unsigned ring_count = 1024, ring_size = 16 * 1024;  // per thread (stream mode)

// What one thread's connections share. LIFETIME: every connection holds a shared_ptr to it (in
// its copy of the handler), so the buffer ring outlives any connection, even one destroyed by
// io_context::shutdown after the drain.
struct server {
  server(const options& opts, coring::connection_scope& sc) : o(opts), scope(sc) {}
  const options& o;
  coring::connection_scope& scope;
  std::optional<coring::buffer_ring> ring;  // --copy stream
};

// What the two directions of one connection share. Lives in the connection's frame.
struct joined {
  coring::socket& client;
  coring::socket& target;
  // --copy splice: splices are not socket operations (socket::cancel does not reach them), so
  // abort() ends them through this stop source's token. Empty in the other modes.
  std::stop_source stop{std::nostopstate};
  bool aborted = false;

  // A reset, an error or the drain's cancel on either side: both sides are reset (SO_LINGER 0:
  // the close sends an RST) and every operation on them ends (socket::cancel is sticky).
  void abort() noexcept {
    if (aborted) return;
    aborted = true;
    for (coring::socket* s : {&client, &target}) {
      try {
        s->set_option(coring::sockopt::linger{true, 0});
      } catch (const std::system_error&) {  // already gone: nothing to reset
      }
      s->cancel();
    }
    if (stop.stop_possible()) stop.request_stop();
  }
};

// One direction with recv/send_all through a private buffer: nothing more is read from `from`
// until `to` took what was read (backpressure). EOF from `from` → shutdown(SHUT_WR) on `to`.
coring::task<> copy_recv(coring::socket& from, coring::socket& to, joined& j) {
  std::unique_ptr<std::byte[]> buf(new std::byte[buffer_size]);  // untouched until used
  const std::span<std::byte> all(buf.get(), buffer_size);
  try {
    for (;;) {
      std::size_t n = co_await from.recv(all);
      if (n == 0) break;
      co_await to.send_all(all.first(n));
    }
    to.shutdown(SHUT_WR);
  } catch (const std::system_error&) {
    j.abort();
  }
}

// One direction with a multishot recv into the shared ring (recv_stream: at most 2 buffers
// received ahead, then its receive is cancelled until the consumer catches up).
coring::task<> copy_stream(coring::socket& from, coring::socket& to, coring::buffer_ring& ring,
                           joined& j) {
  try {
    coring::recv_stream rx(from, ring, {.multishot = true});
    while (coring::buffer b = co_await rx.next())
      co_await to.send_all(b.data());
    to.shutdown(SHUT_WR);
  } catch (const std::system_error&) {
    j.abort();
  }
}

// One direction through a pipe: wait until `from` has data (MSG_PEEK: no io-wq thread waits
// on an idle connection), splice what it holds into the pipe (non-blocking), then splice all of
// that out to `to` (blocks an io-wq worker while `to` does not read: the backpressure).
coring::task<> copy_splice(coring::socket& from, coring::socket& to, joined& j) {
  coring::io_context& ctx = from.context();
  const std::stop_token tok = j.stop.get_token();
  try {
    coring::pipe p = coring::pipe::open(buffer_size);
    std::array<std::byte, 1> peek;
    for (;;) {
      std::size_t ready = co_await from.recv(peek, MSG_PEEK);
      if (ready == 0) break;  // EOF
      auto in = coring::splice(ctx, from.fileno(), -1, p.write_fd(), -1, p.capacity(),
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                    .with_stop(tok);
      auto got = co_await coring::as_result(std::move(in));
      if (!got) {
        if (got.error() == std::errc::resource_unavailable_try_again) continue;
        throw std::system_error(got.error(), "splice");
      }
      if (*got == 0) break;  // EOF
      for (std::size_t left = *got; left > 0;) {
        auto out = coring::splice(ctx, p.read_fd(), -1, to.fileno(), -1, left, SPLICE_F_MOVE)
                       .with_stop(tok);
        const std::size_t sent = co_await std::move(out);
        if (sent == 0) throw std::system_error(std::make_error_code(std::errc::io_error), "splice");
        left -= sent;
      }
    }
    to.shutdown(SHUT_WR);
  } catch (const std::system_error&) {
    j.abort();
  }
}

// One client: connect to the target, then copy both ways until both directions ended.
coring::task<> proxy_client(server& srv, coring::socket& client) {
  const options& o = srv.o;
  coring::connection_scope& scope = srv.scope;
  coring::connect_options co{.timeout = o.connect_timeout, .stop = scope.token()};
  auto connecting = o.target_addr
                        ? coring::tcp_connect(scope.context(), *o.target_addr, std::move(co))
                        : coring::tcp_connect(scope.context(), o.target, std::move(co));
  auto attempt = coring::as_result(std::move(connecting));  // named: see docs/design.md, "g++ 12"
  auto r = co_await std::move(attempt);
  if (!r) {
    if (r.error() != std::errc::operation_canceled)  // the drain's cancel: not news
      example::log::err().line("tcp_proxy: client " + example::peer_name(client) +
                               ": cannot connect to " + o.target + ": " + r.error().message());
    co_return;  // the client's socket closes with the frame
  }
  coring::socket target = std::move(*r);
  try {
    client.set_option(coring::sockopt::no_delay{true});
  } catch (const std::system_error&) {  // the client already left: the copy will see it
  }
  joined j{client, target};
  // At the drain's grace limit the scope cancels the client's socket and requests its token:
  // the target's side must end too.
  std::stop_callback on_cancel(scope.token(), [&j]() noexcept { j.abort(); });
  if (o.copy == copy_mode::splice) {
    j.stop = std::stop_source();
    auto both = coring::when_all(copy_splice(client, target, j), copy_splice(target, client, j));
    co_await std::move(both);
  } else if (srv.ring) {
    auto both = coring::when_all(copy_stream(client, target, *srv.ring, j),
                                 copy_stream(target, client, *srv.ring, j));
    co_await std::move(both);
  } else {
    auto both = coring::when_all(copy_recv(client, target, j), copy_recv(target, client, j));
    co_await std::move(both);
  }
}

// Accepts on listener and proxies each client until stopped() returns; then drains.
template <class Wait>
coring::task<> serve(coring::io_context& ctx, coring::socket listener, const options& o,
                     Wait stopped) {
  coring::connection_scope scope(ctx);
  auto srv = std::make_shared<server>(o, scope);
  if (o.copy == copy_mode::stream) srv->ring.emplace(ctx, ring_count, ring_size);
  scope.serve(std::move(listener), [srv](coring::socket& s) { return proxy_client(*srv, s); });
  auto why = stopped(scope);  // named: no temporary around the co_await (g++ 12)
  co_await std::move(why);
  const bool ended = co_await scope.drain(o.grace);  // named: see docs/design.md, "g++ 12"
  if (!ended)
    example::log::err().line("tcp_proxy: " + std::to_string(scope.size()) +
                             " connections did not end after the cancel; destroying them");
}

// --threads: one SO_REUSEPORT listener per thread on the same address. Bound, not listening.
coring::socket reuse_port_socket(coring::io_context& ctx, const coring::address& at) {
  coring::socket s(ctx, at.family(), SOCK_STREAM);
  s.set_option(coring::sockopt::reuse_address{true});
  s.set_option(coring::sockopt::reuse_port{true});
  s.bind(at);
  return s;
}

// The address every worker binds: a plain bind first (fails if anything listens there; with
// port 0 it picks the port), as echo_server does.
coring::address claim_address(coring::io_context& ctx, const coring::address& at) {
  coring::socket probe(ctx, at.family(), SOCK_STREAM);
  probe.set_option(coring::sockopt::reuse_address{true});
  probe.bind(at);
  return probe.sock_name();
}

// What the --threads workers share with main.
struct pool {
  const options& o;
  coring::address at;
  std::latch listening;  // every worker listens, or failed to
};

// One worker of --threads on its own io_context: serves until the runner's stop.
coring::task<> worker(coring::io_context& ctx, unsigned index, std::stop_token stop, pool& p) {
  std::optional<coring::socket> listener;
  try {
    listener.emplace(reuse_port_socket(ctx, p.at));
    listener->listen();
  } catch (const std::exception& e) {
    p.listening.count_down();
    throw std::runtime_error("thread " + std::to_string(index + 1) +
                             " could not start: " + e.what());
  }
  p.listening.count_down();
  auto until_stop = [&ctx, stop](coring::connection_scope&) -> coring::task<> {
    while (!stop.stop_requested())  // request_stop() ends the sleep (it wakes every ring)
      (void)co_await coring::as_result(
          coring::sleep_for(ctx, std::chrono::hours(1)).with_stop(stop));
  };
  co_await serve(ctx, std::move(*listener), p.o, until_stop);
}

void run_threads(const coring::address& listen, const options& o, unsigned threads) {
  coring::address at = [&] {
    coring::io_context ctx;
    return claim_address(ctx, listen);
  }();
  pool p{o, at, std::latch(threads)};
  coring::runner r(threads);
  r.stop_on_signals({SIGINT, SIGTERM});
  r.start([&p](coring::io_context& ctx, unsigned i, std::stop_token stop) {
    return worker(ctx, i, std::move(stop), p);
  });
  p.listening.wait();
  if (!r.stop_requested()) {  // else a worker failed (join says why) or a signal came
    std::printf("tcp_proxy listening on %s\n", at.to_string().c_str());
    std::fflush(stdout);
  }
  r.join();  // rethrows the first worker failure
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  const std::string listen = args.get("--listen", "");
  options o{};
  o.target = args.get("--to", "");
  auto threads = static_cast<unsigned>(args.get_int("--threads", 1, 1, 256));
  o.connect_timeout = example::seconds(args.get_double("--connect-timeout", 10, 0, 86400));
  o.grace = example::seconds(args.get_double("--grace", 2, 0, 3600));
  const std::string copy = args.get("--copy", "recv");
  args.done();
  if (listen.empty() || o.target.empty()) {
    std::fprintf(stderr, "tcp_proxy: --listen and --to are required\n%s", usage);
    return 2;
  }
  if (copy == "stream") {
    o.copy = copy_mode::stream;
  } else if (copy == "splice") {
    o.copy = copy_mode::splice;
  } else if (copy != "recv") {
    std::fprintf(stderr, "tcp_proxy: --copy must be recv, stream or splice\n%s", usage);
    return 2;
  }
  int status = 0;
  try {
    const coring::address listen_at = coring::address::parse(listen);
    try {
      o.target_addr = coring::address::parse(o.target);
    } catch (const std::system_error&) {  // a name: tcp_connect looks it up per connection
    }
    example::raise_fd_limit();
    if (threads == 1) {
      coring::io_context ctx;
      coring::signal_set signals(ctx, {SIGINT, SIGTERM});
      coring::socket listener = coring::tcp_listen(ctx, listen_at);
      std::printf("tcp_proxy listening on %s\n", listener.sock_name().to_string().c_str());
      std::fflush(stdout);
      auto until_signal = [&signals](coring::connection_scope& scope) -> coring::task<> {
        int sig = co_await signals.wait();
        example::log::err().line(std::string("tcp_proxy: ") +
                                 (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", shutting down (" +
                                 std::to_string(scope.size()) + " connections)");
      };
      coring::sync_wait(ctx, serve(ctx, std::move(listener), o, until_signal));
    } else {
      run_threads(listen_at, o, threads);
    }
  } catch (const std::exception& e) {
    example::log::err().line(std::string("tcp_proxy: ") + e.what());
    status = 1;
  }
  example::log::flush_all();
  return status;
}
