// SPDX-License-Identifier: MIT
// Description: upper server: replies to every client with its bytes upper-cased, many at once.
//
// The rule: every chunk is upper-cased and sent back as soon as it arrives. Upper-casing is per
// byte (ASCII a-z only; every other byte, UTF-8 included, passes through unchanged), so no line
// buffering is needed: a line split across several recv calls, several lines in one recv, a
// client that never sends '\n' (Python's tutorial client: sendall(b"hello"), recv(1024)) and a
// trailing unterminated line before EOF are all answered correctly, and memory per client is one
// fixed 4 KiB buffer whatever the client sends. (A UTF-8 sequence split across two chunks is
// fine too: its bytes are >= 0x80 and are never changed.)
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>

namespace {

const char* usage =
    "usage: upper_server [--host ADDR] [--port N] [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "  Sends every byte back to its client with ASCII a-z upper-cased (other bytes, UTF-8\n"
    "  included, unchanged), as soon as it arrives. Serves many clients at once.\n"
    "  Default 127.0.0.1:9000; --port 0 picks a free port. Prints the address it listens on.\n"
    "  On SIGINT or SIGTERM it stops accepting, lets replies in flight finish (at most --grace\n"
    "  seconds, default 2), closes its clients and exits 0. --idle-timeout disconnects clients\n"
    "  silent for that long, or not reading its replies for that long (default: off).\n";

// ASCII only: std::toupper depends on the locale and is undefined for negative chars.
void upper_case(std::span<std::byte> bytes) {
  for (std::byte& b : bytes)
    if (b >= std::byte{'a'} && b <= std::byte{'z'}) b &= std::byte{0xdf};
}

// idle > 0: a recv that waits longer, or a reply the client does not read for that long,
// throws std::system_error(std::errc::timed_out).
coring::task<> upper(coring::socket& s, std::chrono::nanoseconds idle) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    std::size_t n = 0;
    if (idle.count() == 0)
      n = co_await s.recv(buf);
    else
      n = co_await s.recv(buf).with_timeout(idle);
    if (n == 0) break;  // EOF: the client is done (or shutdown ended our reading side)
    auto chunk = std::span(buf).first(n);
    upper_case(chunk);
    if (idle.count() == 0)
      co_await s.send_all(chunk);
    else
      co_await s.send_all(chunk).with_timeout(idle);
  }
}

// One client's errors (a reset, a broken pipe, the idle timeout) end that client only.
coring::task<> serve_client(coring::socket& s, std::chrono::nanoseconds idle) {
  try {
    co_await upper(s, idle);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::timed_out)
      example::log::err().line("client " + example::peer_name(s) +
                               ": idle for too long, disconnected");
    else if (e.code() != std::errc::operation_canceled)  // the drain's cancel: not news
      example::log::err().line(std::string("client: ") + e.what());
  }
}

// Serves until SIGINT or SIGTERM, then shuts down gracefully (see the usage text): the scope
// accepts (backing off when out of descriptors), runs a coroutine per client, and drains.
coring::task<> run(coring::io_context& ctx, coring::socket listener, coring::signal_set& signals,
                   std::chrono::nanoseconds idle, std::chrono::nanoseconds grace) {
  coring::connection_scope scope(ctx);
  scope.serve(std::move(listener), [idle](coring::socket& s) { return serve_client(s, idle); });
  int sig = co_await signals.wait();
  example::log::err().line(std::string("upper_server: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ", shutting down");
  const bool ended = co_await scope.drain(grace);  // named: see docs/design.md, "g++ 12"
  if (!ended) example::log::err().line("upper_server: some clients did not end; destroying them");
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
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
    std::printf("upper_server listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    coring::sync_wait(ctx, run(ctx, std::move(listener), signals, example::seconds(idle_s),
                               example::seconds(grace_s)));
  } catch (const std::exception& e) {
    example::log::err().line(std::string("upper_server: ") + e.what());
    example::log::flush_all();
    return 1;
  }
  example::log::flush_all();
  return 0;
}
