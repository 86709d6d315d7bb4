// SPDX-License-Identifier: MIT
// Description: echo server: straight-line coroutine per client, thousands of clients at once.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>

namespace {

const char* usage =
    "usage: echo_server [--host ADDR] [--port N]\n"
    "  Echoes every byte back to every client. Default 127.0.0.1:9000; --port 0 picks a free\n"
    "  port. Prints the address it listens on; exits 0 on SIGINT or SIGTERM.\n";

coring::task<> echo(coring::socket s) {
  std::array<std::byte, 4096> buf;
  while (std::size_t n = co_await s.recv(buf))
    co_await s.send_all(std::span(buf).first(n));
}

// One client's errors (a reset, a broken pipe) end that client only.
coring::task<> serve_client(coring::socket s) {
  try {
    co_await echo(std::move(s));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "client: %s\n", e.what());
  }
}

coring::task<> accept_loop(coring::io_context& ctx, coring::socket listener) {
  for (;;) {
    auto client = co_await coring::as_result(listener.accept());
    if (client) {
      ctx.spawn(serve_client(std::move(*client)));
    } else if (client.error() == std::errc::too_many_files_open ||
               client.error() == std::errc::too_many_files_open_in_system ||
               client.error() == std::errc::not_enough_memory ||
               client.error() == std::errc::no_buffer_space) {
      // Out of descriptors or memory: the connection stays in the backlog. Back off instead of
      // spinning on the same error (nginx does the same), then try again.
      std::fprintf(stderr, "accept: %s; pausing 100 ms\n", client.error().message().c_str());
      co_await coring::sleep_for(ctx, std::chrono::milliseconds(100));
    } else if (client.error() == std::errc::operation_canceled) {
      co_return;
    } else {
      std::fprintf(stderr, "accept: %s\n", client.error().message().c_str());
    }
  }
}

coring::task<> stop_on_signal(coring::io_context& ctx, coring::signal_set& signals) {
  int sig = co_await signals.wait();
  std::fprintf(stderr, "echo_server: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  ctx.stop();
}

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  args.done();
  example::raise_fd_limit();
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("echo_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    ctx.spawn(stop_on_signal(ctx, signals));
    ctx.spawn(accept_loop(ctx, std::move(listener)));
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
