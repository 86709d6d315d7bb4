// SPDX-License-Identifier: MIT
// Description: chat client: the tutorial loop: send each typed line, print the reply, q quits.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

namespace {

const char* usage =
    "usage: chat_client [--host ADDR] [--port N]\n"
    "  Sends each line typed on stdin to chat_server and prints its reply. A line that is just\n"
    "  q or Q (or EOF on stdin) closes the connection and exits 0. Default server\n"
    "  127.0.0.1:9000. Exit status 1 if the server closes the connection first.\n";

// Reads one reply line (without '\n'). inbox keeps bytes received after it for the next call.
// Returns: nullopt if the server closed the connection first.
coring::task<std::optional<std::string>> read_line(coring::socket& s, std::string& inbox) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    if (auto nl = inbox.find('\n'); nl != std::string::npos) {
      std::string line = inbox.substr(0, nl);
      inbox.erase(0, nl + 1);
      co_return line;
    }
    std::size_t n = co_await s.recv(buf);
    if (n == 0) co_return std::nullopt;
    inbox.append(reinterpret_cast<const char*>(buf.data()), n);
  }
}

coring::task<int> chat(coring::io_context& ctx, coring::address server) {
  coring::socket s = co_await coring::tcp_connect(ctx, server);
  std::fprintf(stderr, "connected to %s; type a message, or q to quit\n",
               server.to_string().c_str());
  std::string inbox;
  std::string line;
  // TRICKY: std::getline blocks the ring's thread while the user types. That is fine here: this
  // client has one connection and nothing else to do meanwhile. (A client that must also show
  // messages pushed by the server would read stdin on the ring instead; coring does not expose
  // IORING_OP_READ on fd 0 yet.)
  while (std::getline(std::cin, line)) {
    if (line == "q" || line == "Q") break;
    line += '\n';
    co_await s.send_all(line);
    std::optional<std::string> reply = co_await read_line(s, inbox);
    if (!reply) {
      std::fputs("chat_client: the server closed the connection\n", stderr);
      co_return 1;
    }
    *reply += '\n';
    std::fwrite(reply->data(), 1, reply->size(), stdout);  // fwrite: it may hold NUL bytes
    std::fflush(stdout);
  }
  co_await s.close();  // an orderly FIN: the server logs a clean disconnect
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  args.done();
  try {
    coring::io_context ctx;
    return coring::sync_wait(ctx, chat(ctx, coring::address::ip(host, port)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_client: %s\n", e.what());
    return 1;
  }
}
