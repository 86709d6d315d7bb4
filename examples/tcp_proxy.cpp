// SPDX-License-Identifier: MIT
// Description: TCP proxy: each accepted connection is joined to a new connection to the target
// and bytes are copied both ways (half-close and resets propagate, backpressure, bounded memory).
#include <coring/coring.hpp>

#include "example_util.hpp"

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

#include <sys/socket.h>

namespace {

const char* usage =
    "usage: tcp_proxy --listen HOST:PORT --to HOST:PORT [--threads N] [--connect-timeout S]\n"
    "                 [--grace S] [--copy recv]\n"
    "  Accepts TCP connections on --listen (port 0 picks a free port; it prints\n"
    "  \"tcp_proxy listening on HOST:PORT\") and joins each one to a new connection to --to,\n"
    "  copying bytes both ways until both directions ended. An EOF in one direction becomes a\n"
    "  shutdown(SHUT_WR) toward the other side, whose direction goes on (half-close); a reset\n"
    "  or an error on either side resets the other. A target that refuses, or does not answer\n"
    "  within --connect-timeout seconds (default 10, 0: no limit), closes the client at once\n"
    "  and logs one line on stderr.\n"
    "  Memory is bounded per connection: one 64 KiB buffer per direction, filled again only\n"
    "  once the other side took its bytes (a slow side stops the reading of the other, the\n"
    "  kernel's socket buffers hold the rest).\n"
    "  --copy recv (the default): recv into the buffer, send_all from it.\n"
    "  --threads N (default 1): N threads, each with its own ring and SO_REUSEPORT listener.\n"
    "  On SIGINT or SIGTERM it stops accepting, shuts down the reading side of every client\n"
    "  (their EOF goes on to the targets), lets the connections end (at most --grace seconds,\n"
    "  default 2), resets those left and exits 0.\n";

/// How the bytes of one direction are copied.
enum class copy_mode { recv };

struct options {
  std::string target;                          // --to, as given
  std::optional<coring::address> target_addr;  // parsed if numeric (else looked up per connect)
  std::chrono::nanoseconds connect_timeout{}, grace{};
  copy_mode copy = copy_mode::recv;
};

constexpr std::size_t buffer_size = 64 * 1024;  // per direction (recv mode)

// What the two directions of one connection share. Lives in the connection's frame.
struct joined {
  coring::socket& client;
  coring::socket& target;
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

// One client: connect to the target, then copy both ways until both directions ended.
coring::task<> proxy_client(const options& o, coring::connection_scope& scope,
                            coring::socket& client) {
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
  auto both = coring::when_all(copy_recv(client, target, j), copy_recv(target, client, j));
  co_await std::move(both);
}

// Accepts on listener and proxies each client until stopped() returns; then drains.
template <class Wait>
coring::task<> serve(coring::io_context& ctx, coring::socket listener, const options& o,
                     Wait stopped) {
  coring::connection_scope scope(ctx);
  coring::connection_scope* sc = &scope;
  const options* op = &o;
  scope.serve(std::move(listener),
              [sc, op](coring::socket& s) { return proxy_client(*op, *sc, s); });
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
  if (copy != "recv") {
    std::fprintf(stderr, "tcp_proxy: --copy must be recv\n%s", usage);
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
