// SPDX-License-Identifier: MIT
// Description: serial server: serves one client at a time (upper-case echo), for contrast only.
//
// Why the concurrent servers (upper_server, chat_server) are better: this one awaits each
// client to the end before it accepts the next, so one slow or idle client blocks everyone
// else. Their connections complete in the kernel's backlog, their bytes wait unread, and they
// get no answer until every client before them has left. The fix costs one line: spawn a
// coroutine per client (ctx.spawn(serve_client(...)), as upper_server does) instead of awaiting
// it in the accept loop.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

namespace {

const char* usage =
    "usage: serial_server [--host ADDR] [--port N]\n"
    "  Serves ONE client at a time: sends its bytes back with ASCII a-z upper-cased until it\n"
    "  disconnects, then accepts the next (a contrast to upper_server, which serves all at once).\n"
    "  Logs each connect and disconnect. Default 127.0.0.1:9000; --port 0 picks a free port.\n"
    "  Prints the address it listens on; exits 0 on SIGINT or SIGTERM.\n";

void say(const std::string& text) {
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

// Serves one client until EOF. Errors end this client only.
coring::task<> serve_one(coring::socket& s) {
  std::string peer = "?";
  std::string why;
  try {
    peer = s.peer_name().to_string();
    say(peer + " connected");
    std::array<std::byte, 4096> buf;
    while (std::size_t n = co_await s.recv(buf)) {
      auto chunk = std::span(buf).first(n);
      for (std::byte& b : chunk)
        if (b >= std::byte{'a'} && b <= std::byte{'z'}) b &= std::byte{0xdf};
      co_await s.send_all(chunk);
    }
  } catch (const std::system_error& e) {
    why = e.code().message();
  }
  say(peer + " disconnected" + (why.empty() ? "" : ": " + why));
}

coring::task<> accept_loop(coring::io_context& ctx, coring::socket listener) {
  for (;;) {
    auto client = co_await coring::as_result(listener.accept());
    if (client) {
      coring::socket conn = std::move(*client);
      co_await serve_one(conn);  // the whole difference: awaited here, not spawned
    } else if (client.error() == std::errc::operation_canceled) {
      co_return;
    } else {
      // EMFILE and friends: back off instead of spinning on the same error.
      std::fprintf(stderr, "accept: %s; pausing 100 ms\n", client.error().message().c_str());
      co_await coring::sleep_for(ctx, std::chrono::milliseconds(100));
    }
  }
}

coring::task<> stop_on_signal(coring::io_context& ctx, coring::signal_set& signals) {
  int sig = co_await signals.wait();
  std::fprintf(stderr, "serial_server: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  ctx.stop();
}

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  args.done();
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("serial_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    ctx.spawn(stop_on_signal(ctx, signals));
    ctx.spawn(accept_loop(ctx, std::move(listener)));
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serial_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
