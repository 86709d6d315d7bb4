// SPDX-License-Identifier: MIT
// Description: upper client: sends lines to upper_server and prints the upper-cased replies.
#include <coring/coring.hpp>

#include "client_io.hpp"
#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

namespace {

const char* usage =
    "usage: upper_client [--host ADDR] [--port N] [--message TEXT] [--timeout SECONDS]\n"
    "  Sends each stdin line to upper_server and prints the reply (the line upper-cased);\n"
    "  stops at EOF. With --message TEXT: sends that one line, prints the reply and exits.\n"
    "  Default server 127.0.0.1:9000. Exit status 1 if the server closes early, if stdout is\n"
    "  closed, or if connecting, sending or a reply takes longer than --timeout SECONDS\n"
    "  (default 30, 0 for no limit).\n";

// Sends one line and prints the reply. upper_server answers byte for byte, so the reply is
// complete once as many bytes came back as went out (it may arrive in several pieces).
// Returns: false if the server closed the connection first.
// LIFETIME: text is a view; fine because every caller awaits this in the same full-expression
// (docs/design.md, "g++ 12"), and a view keeps non-trivial temporaries out of that co_await (GCC
// 12). Every wait for the server is bounded by timeout (0: none); on expiry the co_await throws
// std::system_error(std::errc::timed_out).
coring::task<bool> round_trip(coring::socket& s, std::string_view text,
                              std::chrono::nanoseconds timeout) {
  std::string line(text);
  line += '\n';
  co_await example::bounded(s.send_all(line), timeout);
  std::string reply;
  std::array<std::byte, 4096> buf;
  while (reply.size() < line.size()) {
    std::size_t n = co_await example::bounded(s.recv(buf), timeout);
    if (n == 0) co_return false;
    reply.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  example::write_stdout(reply);  // bytes, not a C string: the line may hold NUL bytes
  co_return true;
}

coring::task<int> run(coring::io_context& ctx, coring::address server,
                      std::optional<std::string> message, std::chrono::nanoseconds timeout) {
  coring::socket s = co_await example::tcp_connect(ctx, server, timeout);
  bool open = true;
  if (message) {
    open = co_await round_trip(s, *message, timeout);
  } else {
    // Reading stdin blocks the ring's thread; fine for a one-connection interactive client.
    std::string line;
    while (open && std::getline(std::cin, line))
      open = co_await round_trip(s, line, timeout);
  }
  if (!open) {
    std::fputs("upper_client: the server closed the connection\n", stderr);
    co_return 1;
  }
  co_await s.close();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  // A NUL byte can never occur in argv, so it marks "--message not given".
  const std::string absent(1, '\0');
  std::optional<std::string> message;
  if (std::string m = args.get("--message", absent); m != absent) message = m;
  const double timeout_s = args.get_double("--timeout", 30, 0, 86400);
  args.done();
  try {
    coring::io_context ctx;
    const coring::address server = coring::address::ip(host, port);
    try {
      return coring::sync_wait(ctx, run(ctx, server, message, example::seconds(timeout_s)));
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::timed_out) throw;
      std::fprintf(stderr, "upper_client: no answer from %s within %g s (--timeout)\n",
                   server.to_string().c_str(), timeout_s);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "upper_client: %s\n", e.what());
    return 1;
  }
}
