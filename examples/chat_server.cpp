// SPDX-License-Identifier: MIT
// Description: chat server: acknowledges each line, logs it with the sender's address, many at
// once.
//
// Message rule: a message is one line (up to '\n'; a '\r' before it is dropped, for telnet and
// netcat). The last unterminated piece is also a message when the client shuts down (EOF), or
// when it goes quiet for idle_flush while a partial line is pending: that is what lets clients
// that send without a newline and wait for the answer (Python's tutorial client: sendall(b"hello"),
// recv(1024)) get their ack. The cost: a line whose halves arrive more than idle_flush apart
// counts as two messages, which is harmless for a chat.
// A pending line longer than max_line is an error for that client only: it gets
// "error: line too long\n" and is disconnected, so no client can make the server buffer without
// bound.
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

// Serves one client until EOF. idle > 0: a client silent for longer than idle (counted from
// the last bytes it sent) is dropped. Returns: why it ended ("" for an orderly EOF).
coring::task<std::string> chat(coring::socket& s, std::string_view peer,
                               std::chrono::nanoseconds idle) {
  using clock = std::chrono::steady_clock;
  std::string pending;  // received bytes after the last '\n'
  std::array<std::byte, 4096> buf;
  auto last_heard = clock::now();
  bool idle_too_long = false;
  for (;;) {
    // How long this recv may wait, and what its timeout means: the partial-line flush (see the
    // rule above) or the client's idle limit, whichever comes first. No limit: wait for ever.
    std::optional<std::chrono::nanoseconds> limit;
    bool flush = false;
    if (idle.count() > 0) {
      limit = last_heard + idle - clock::now();
      idle_too_long = limit->count() <= 0;
      if (idle_too_long) break;
    }
    if (!pending.empty() && (!limit || idle_flush < *limit)) {
      limit = idle_flush;
      flush = true;
    }
    std::size_t n = 0;
    if (!limit) {
      n = co_await s.recv(buf);
    } else {
      auto r = co_await coring::as_result(s.recv(buf).with_timeout(*limit));
      if (!r && r.error() == std::errc::timed_out) {
        idle_too_long = !flush;
        if (idle_too_long) break;
        co_await acknowledge(s, peer, pending, idle);
        pending.clear();
        continue;
      }
      if (!r) throw std::system_error(r.error(), "recv");
      n = *r;
    }
    if (n == 0) break;
    last_heard = clock::now();
    pending.append(reinterpret_cast<const char*>(buf.data()), n);
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (line.size() > max_line) break;  // caught below: pending keeps it
      co_await acknowledge(s, peer, line, idle);
    }
    pending.erase(0, start);
    if (pending.size() > max_line) {
      co_await s.send_all(std::string_view("error: line too long\n"));
      co_return "line too long";
    }
  }
  // The unterminated last line (before EOF, or before dropping an idle client) is a message too.
  if (!pending.empty()) co_await acknowledge(s, peer, pending, idle);
  co_return idle_too_long ? "idle for too long" : "";
}

struct server {
  coring::io_context& ctx;
  std::chrono::nanoseconds idle;  // 0: no idle timeout
  example::client_list clients;   // the live clients (and the accept loop), for shutdown
};

// Errors (a reset, a broken pipe, garbage) end this client only; the others go on.
coring::task<> serve_client(server& srv, coring::socket s) {
  example::client_list::node me(srv.clients, &s);  // on the list while this client is served
  const std::string peer = example::peer_name(s);  // "?" if the client is already gone
  std::string why;
  try {
    say(peer + " connected");
    why = co_await chat(s, peer, srv.idle);
  } catch (const std::system_error& e) {
    // timed_out from a send: the client did not read its acks for --idle-timeout.
    why = e.code() == std::errc::timed_out ? "idle for too long" : e.code().message();
  }
  say(peer + " disconnected" + (why.empty() ? "" : ": " + why));
}

coring::task<> accept_loop(server& srv, coring::socket& listener) {
  example::client_list::node me(srv.clients, nullptr);  // shutdown waits for this loop too
  while (!srv.clients.closing) {
    auto client = co_await coring::as_result(listener.accept());
    if (client) {
      srv.ctx.spawn(serve_client(srv, std::move(*client)));  // a coroutine per client
    } else {
      // Out of descriptors or memory: back off instead of spinning; cancelled: shutting down.
      auto next = example::after_accept_error(client.error());
      if (next == example::accept_action::stop) break;
      if (next == example::accept_action::back_off)
        co_await coring::sleep_for(srv.ctx, example::accept_back_off);
    }
  }
}

// Serves until SIGINT or SIGTERM, then shuts down gracefully (see the usage text): each client
// sees EOF on its reading side, so its pending partial line is acked before it is closed.
coring::task<> run(server& srv, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds grace) {
  srv.ctx.spawn(accept_loop(srv, listener));
  int sig = co_await signals.wait();
  example::log::err().line(std::string("chat_server: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ", shutting down");
  listener.cancel();  // a pending accept fails with operation_canceled (and later ones too)
  // Clients that keep sending never see EOF after SHUT_RD: the drain cancels them at the
  // grace limit, and the cancel holds.
  // Named: g++ 12 miscompiles a co_await of a task inside an if condition (see drain()).
  const bool ended = co_await example::drain(srv.ctx, srv.clients, grace);
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
    server srv{ctx, example::seconds(idle_s), {}};
    example::shutdown_guard guard{ctx};  // LIFETIME: tasks end before srv goes
    coring::sync_wait(ctx, run(srv, std::move(listener), signals, example::seconds(grace_s)));
  } catch (const std::exception& e) {
    example::log::err().line(std::string("chat_server: ") + e.what());
    example::log::flush_all();
    return 1;
  }
  // Bounded: a stdout nobody reads must not keep the server from exiting.
  example::log::flush_all();
  return 0;
}
