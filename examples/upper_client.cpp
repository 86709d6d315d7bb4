// SPDX-License-Identifier: MIT
// Description: upper client: sends lines to upper_server and prints the upper-cased replies.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

namespace {

const char* usage =
    "usage: upper_client [--host ADDR] [--port N] [--message TEXT]\n"
    "  Sends each stdin line to upper_server and prints the reply (the line upper-cased);\n"
    "  stops at EOF. With --message TEXT: sends that one line, prints the reply and exits.\n"
    "  Default server 127.0.0.1:9000. Exit status 1 if the server closes early.\n";

// Sends one line and prints the reply. upper_server answers byte for byte, so the reply is
// complete once as many bytes came back as went out (it may arrive in several pieces).
// Returns: false if the server closed the connection first.
// LIFETIME: text is a view; fine because every caller awaits this in the same full-expression
// (STYLE L10), and a view keeps non-trivial temporaries out of that co_await (GCC 12).
coring::task<bool> round_trip(coring::socket& s, std::string_view text) {
  std::string line(text);
  line += '\n';
  co_await s.send_all(line);
  std::string reply;
  std::array<std::byte, 4096> buf;
  while (reply.size() < line.size()) {
    std::size_t n = co_await s.recv(buf);
    if (n == 0) co_return false;
    reply.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  std::fwrite(reply.data(), 1, reply.size(), stdout);  // fwrite: the line may hold NUL bytes
  std::fflush(stdout);
  co_return true;
}

coring::task<int> run(coring::io_context& ctx, coring::address server,
                      std::optional<std::string> message) {
  coring::socket s = co_await coring::tcp_connect(ctx, server);
  bool open = true;
  if (message) {
    open = co_await round_trip(s, *message);
  } else {
    // Reading stdin blocks the ring's thread; fine for a one-connection interactive client.
    std::string line;
    while (open && std::getline(std::cin, line)) open = co_await round_trip(s, line);
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
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  // A NUL byte can never occur in argv, so it marks "--message not given".
  const std::string absent(1, '\0');
  std::optional<std::string> message;
  if (std::string m = args.get("--message", absent); m != absent) message = m;
  args.done();
  try {
    coring::io_context ctx;
    return coring::sync_wait(ctx, run(ctx, coring::address::ip(host, port), message));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "upper_client: %s\n", e.what());
    return 1;
  }
}
