// SPDX-License-Identifier: MIT
// Description: chat server: acknowledges each line, logs it with the sender's address, many at
// once.
//
// Message rule: a message is one line (up to '\n'; a '\r' before it is dropped, for telnet and
// netcat), read with coring::reader::read_line. The last unterminated piece is also a message
// when the client shuts down (EOF), or when the rest of its line has not come idle_flush after
// the read began: that is what lets clients that send without a newline and wait for the
// answer (Python's tutorial client: sendall(b"hello"), recv(1024)) get their ack. The cost: a
// line that takes longer than idle_flush to arrive counts as two messages, which is harmless
// for a chat. A line longer than max_line is an error for that client only (the reader's
// errc::line_too_long): it gets "error: line too long\n" and is disconnected, so no client can
// make the server buffer without bound.
#include <coring/coring.hpp>

#include "example_util.hpp"
#include "log_escape.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace {

const char* usage =
    "usage: chat_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "  Replies \"ack: <message>\\n\" to every line a client sends and prints \"<peer>: "
    "<message>\";\n"
    "  logs connects and disconnects. Serves many clients at once. Lines over 64 KiB get\n"
    "  \"error: line too long\" and that client is disconnected. Default 127.0.0.1:9000;\n"
    "  --port 0 picks a free port. Prints the address it listens on. On SIGINT or SIGTERM it\n"
    "  stops accepting, acks the messages it already received (at most --grace seconds,\n"
    "  default 2), closes its clients and exits 0. --idle-timeout disconnects clients silent\n"
    "  for that long (\"<peer> disconnected: idle for too long\"; default: off), and clients\n"
    "  that do not read their acks for that long. The log shows at most 512 bytes of each\n"
    "  message, escaped; it never blocks the server (a full log drops lines and says so).\n";

constexpr std::size_t max_line = 64 * 1024;
constexpr auto idle_flush = std::chrono::milliseconds(200);

// One log line on stdout. Written by the log's own thread from a bounded queue: a slow or
// dead stdout never blocks the clients (lines beyond the bound are dropped and counted).
void say(std::string_view text) { example::log::out().line(text); }

// How much of one message the log shows: the escaped text is cut there (the ack carries the
// whole message), so the log grows by a bounded amount per message whatever clients send.
constexpr std::size_t max_logged = 512;

// Logs one message and acknowledges it. idle > 0 bounds the send too: a client that does not
// read its acks for that long is dropped (timed_out).
// LIFETIME: peer and msg are views; every caller awaits this in the same full-expression.
coring::task<> acknowledge(coring::socket& s, std::string_view peer, std::string_view msg,
                           std::chrono::nanoseconds idle) {
  if (!msg.empty() && msg.back() == '\r') msg.remove_suffix(1);
  // Escaped: control bytes, C1 controls, invalid UTF-8 and bidi overrides from a client cannot
  // garble the log or the terminal showing it.
  std::string line(peer);
  line += ": ";
  line += example::escape_for_log(msg, max_logged);
  say(line);
  std::string reply = "ack: ";
  reply += msg;
  reply += '\n';
  if (idle.count() > 0)
    co_await s.send_all(reply).with_timeout(idle);
  else
    co_await s.send_all(reply);
}

// Serves one client until EOF, reading lines with a coring::reader (one max_line buffer per
// client, allocated once). idle > 0: a client silent for longer than idle (counted from the
// last bytes it sent) is dropped. Returns: why it ended ("" for an orderly EOF).
coring::task<std::string> chat(coring::socket& s, std::string_view peer,
                               std::chrono::nanoseconds idle) {
  using clock = std::chrono::steady_clock;
  coring::reader in(s, max_line);
  // How long a partial line may wait for the rest (see the rule above).
  const std::chrono::nanoseconds flush_after =
      idle.count() > 0 && idle < idle_flush ? idle : std::chrono::nanoseconds(idle_flush);
  auto last_heard = clock::now();
  for (;;) {
    if (in.buffered().empty()) {
      // Nothing pending: wait for the client's next bytes without taking them (MSG_PEEK), at
      // most what is left of its idle limit. No limit: wait for ever.
      std::array<std::byte, 1> probe;
      std::size_t n = 0;
      if (idle.count() > 0) {
        const auto left = last_heard + idle - clock::now();
        if (left.count() <= 0) co_return "idle for too long";
        auto r = co_await coring::as_result(s.recv(probe, MSG_PEEK).with_timeout(left));
        if (!r && r.error() == std::errc::timed_out) co_return "idle for too long";
        if (!r) throw std::system_error(r.error(), "recv");
        n = *r;
      } else {
        n = co_await s.recv(probe, MSG_PEEK);
      }
      if (n == 0) co_return "";  // EOF (or the drain's SHUT_RD) with nothing pending
      last_heard = clock::now();
    }
    // A line ("\n" or "\r\n"), or what is pending once the client went quiet for flush_after.
    auto line = co_await coring::as_result(in.read_line().with_timeout(flush_after));
    if (line) {
      if (!*line) co_return "";  // EOF
      co_await acknowledge(s, peer, **line, idle);
      last_heard = clock::now();
      continue;
    }
    if (line.error() == coring::errc::line_too_long) {
      co_await s.send_all(std::string_view("error: line too long\n"));
      co_return "line too long";
    }
    if (line.error() != std::errc::timed_out) throw std::system_error(line.error(), "recv");
    // The partial line is a message: take what is buffered (no receive) and acknowledge it.
    if (in.buffered().empty()) continue;
    auto part = co_await in.read_exact(in.buffered().size());
    co_await acknowledge(
        s, peer, std::string_view(reinterpret_cast<const char*>(part.data()), part.size()), idle);
  }
}

// Errors (a reset, a broken pipe, garbage) end this client only; the others go on.
coring::task<> serve_client(coring::socket& s, std::chrono::nanoseconds idle) {
  const std::string peer = example::peer_name(s);  // "?" if the client is already gone
  std::string why;
  try {
    say(peer + " connected");
    why = co_await chat(s, peer, idle);
  } catch (const std::system_error& e) {
    // timed_out from a send: the client did not read its acks for --idle-timeout.
    why = e.code() == std::errc::timed_out ? "idle for too long" : e.code().message();
  }
  say(peer + " disconnected" + (why.empty() ? "" : ": " + why));
}

// Serves until SIGINT or SIGTERM, then shuts down gracefully (see the usage text): the drain
// shuts each client's reading side, so its pending partial line is acked before it is closed.
// Clients that keep sending never see EOF after SHUT_RD: the drain cancels them at the grace
// limit, and the cancel holds.
coring::task<> run(coring::io_context& ctx, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds idle, std::chrono::nanoseconds grace) {
  coring::connection_scope scope(ctx);
  scope.serve(std::move(listener), [idle](coring::socket& s) { return serve_client(s, idle); });
  int sig = co_await signals.wait();
  example::log::err().line(std::string("chat_server: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ", shutting down");
  const bool ended = co_await scope.drain(grace);  // named: see docs/design.md, "g++ 12"
  if (!ended) example::log::err().line("chat_server: some clients did not end; destroying them");
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();  // a dead stdout must not kill the server (the log sees EPIPE)
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  double idle_s = args.get_double("--idle-timeout", 0, 0, 86400);
  double grace_s = args.get_double("--grace", 2, 0, 3600);
  args.done();
  example::raise_fd_limit();
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("chat_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    coring::sync_wait(ctx, run(ctx, std::move(listener), signals, example::seconds(idle_s),
                               example::seconds(grace_s)));
  } catch (const std::exception& e) {
    example::log::err().line(std::string("chat_server: ") + e.what());
    example::log::flush_all();
    return 1;
  }
  // Bounded: a stdout nobody reads must not keep the server from exiting.
  example::log::flush_all();
  return 0;
}
