// SPDX-License-Identifier: MIT
// Description: serial server: serves one client at a time (upper-case echo), for contrast only.
//
// Why the concurrent servers (upper_server, chat_server) are better: this one awaits each
// client to the end before it accepts the next, so one slow or idle client blocks everyone
// else. Their connections complete in the kernel's backlog, their bytes wait unread, and they
// get no answer until every client before them has left. The fix costs one line: spawn a
// coroutine per client (scope.serve(listener, handler), as upper_server does) instead of
// awaiting each client in the accept loop.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

namespace {

const char* usage =
    "usage: serial_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "  Serves ONE client at a time: sends its bytes back with ASCII a-z upper-cased until it\n"
    "  disconnects, then accepts the next (a contrast to upper_server, which serves all at once).\n"
    "  Logs each connect and disconnect. Default 127.0.0.1:9000; --port 0 picks a free port.\n"
    "  Prints the address it listens on. On SIGINT or SIGTERM it stops accepting, lets the\n"
    "  current client's replies in flight finish (at most --grace seconds, default 2), closes\n"
    "  it and exits 0. --idle-timeout disconnects a client silent for that long (\"<peer>\n"
    "  disconnected: idle for too long\"), so that the next one gets its turn (default: off).\n";

// A log line on stdout, written off the serving thread (a dead or slow stdout cannot block it).
void say(const std::string& text) { example::log::out().line(text); }

// Serves one client until EOF, then lets the accept loop take the next one (turn.done()).
// Errors (and the idle timeout) end this client only.
coring::task<> serve_one(coring::socket& s, std::chrono::nanoseconds idle,
                         coring::wait_group& turn) {
  const std::string peer = example::peer_name(s);  // "?" if the client is already gone
  std::string why;
  try {
    say(peer + " connected");
    std::array<std::byte, 4096> buf;
    for (;;) {
      std::size_t n = 0;
      if (idle.count() == 0)
        n = co_await s.recv(buf);
      else
        n = co_await s.recv(buf).with_timeout(idle);
      if (n == 0) break;
      auto chunk = std::span(buf).first(n);
      for (std::byte& b : chunk)
        if (b >= std::byte{'a'} && b <= std::byte{'z'}) b &= std::byte{0xdf};
      if (idle.count() == 0)
        co_await s.send_all(chunk);
      else  // a client that does not read its replies is idle too
        co_await s.send_all(chunk).with_timeout(idle);
    }
  } catch (const std::system_error& e) {
    why = e.code() == std::errc::timed_out ? "idle for too long" : e.code().message();
  }
  say(peer + " disconnected" + (why.empty() ? "" : ": " + why));
  turn.done();
}

// The accept loop: one of the scope's tasks (it owns the listener, so the drain reaches it). It
// accepts one client (one accept at a time, none ahead: the others wait in the kernel's
// backlog; it backs off when out of descriptors), hands it to the scope and waits until it
// ended before it accepts the next.
coring::task<> accept_loop(coring::connection_scope& scope, coring::socket& listener,
                           std::chrono::nanoseconds idle) {
  coring::acceptor acc(listener, {.max_queued = 1, .multishot = false});
  coring::wait_group turn(scope.context());
  while (!scope.draining()) {
    auto client = co_await coring::as_result(acc.accept());
    if (scope.draining()) break;  // the drain shut the listener down (a client is reset)
    if (!client) {
      example::log::err().line("serial_server: accept: " + client.error().message());
      if (client.error() == std::errc::connection_aborted) continue;
      break;
    }
    turn.add(1);
    scope.spawn(std::move(*client),
                [idle, &turn](coring::socket& s) { return serve_one(s, idle, turn); });
    co_await turn.wait();  // the whole difference: the next accept waits for this client
  }
}

// Serves until SIGINT or SIGTERM, then shuts down gracefully (see the usage text). The accept
// loop is usually busy with a client then, not accepting: the drain ends that client's reading
// side and the listener's, and the loop accepts no one else.
coring::task<> run(coring::io_context& ctx, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds idle, std::chrono::nanoseconds grace) {
  coring::connection_scope scope(ctx);
  scope.spawn(std::move(listener),
              [&scope, idle](coring::socket& l) { return accept_loop(scope, l, idle); });
  int sig = co_await signals.wait();
  example::log::err().line(std::string("serial_server: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ", shutting down");
  const bool ended = co_await scope.drain(grace);  // named: see docs/design.md, "g++ 12"
  if (!ended) example::log::err().line("serial_server: the client did not end; destroying it");
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();  // a dead stdout must not kill the server
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  double idle_s = args.get_double("--idle-timeout", 0, 0, 86400);
  double grace_s = args.get_double("--grace", 2, 0, 3600);
  args.done();
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("serial_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    coring::sync_wait(ctx, run(ctx, std::move(listener), signals, example::seconds(idle_s),
                               example::seconds(grace_s)));
  } catch (const std::exception& e) {
    example::log::err().line(std::string("serial_server: ") + e.what());
    example::log::flush_all();
    return 1;
  }
  example::log::flush_all();
  return 0;
}
