// SPDX-License-Identifier: MIT
// Description: chat client: the tutorial loop: send each typed line, print the reply, q quits.
#include <coring/coring.hpp>

#include "client_io.hpp"
#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

const char* usage =
    "usage: chat_client [--host ADDR] [--port N] [--timeout SECONDS]\n"
    "  Sends each line typed on stdin to chat_server and prints its reply. A line that is just\n"
    "  q or Q (or EOF on stdin) closes the connection and exits 0. Default server\n"
    "  127.0.0.1:9000. Exit status 1 if the server closes the connection first, if a reply\n"
    "  line is longer than 131072 bytes (128 KiB; chat_server's longest is 64 KiB + 5), if\n"
    "  stdout is closed, or if connecting, sending or a reply takes longer than --timeout\n"
    "  SECONDS (default 30, 0 for no limit).\n";

// The longest reply line taken (without its '\n'); a server sending more without a newline is
// broken or hostile, and the client stops instead of buffering without bound.
constexpr std::size_t max_line = 128 * 1024;

// Bytes received and not yet returned as a line. Only bytes not scanned yet are searched for
// '\n', so a long line arriving in many pieces costs linear time, not quadratic.
struct inbox {
  std::string bytes;
  std::size_t scanned = 0;  // bytes[0, scanned) holds no '\n'
};

// Reads one reply line (without '\n'); each recv is bounded by timeout (0: none).
// Returns: nullopt if the server closed the connection first.
// Throws: std::length_error past max_line; std::system_error (timed_out, ...).
coring::task<std::optional<std::string>> read_line(coring::socket& s, inbox& in,
                                                   std::chrono::nanoseconds timeout) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    if (auto nl = in.bytes.find('\n', in.scanned); nl != std::string::npos) {
      std::string line = in.bytes.substr(0, nl);
      in.bytes.erase(0, nl + 1);
      in.scanned = 0;
      co_return line;
    }
    in.scanned = in.bytes.size();
    if (in.bytes.size() > max_line)
      throw std::length_error("a reply line is longer than " + std::to_string(max_line) +
                              " bytes; giving up on this server");
    std::size_t n = co_await example::bounded(s.recv(buf), timeout);
    if (n == 0) co_return std::nullopt;
    in.bytes.append(reinterpret_cast<const char*>(buf.data()), n);
  }
}

coring::task<int> chat(coring::io_context& ctx, coring::address server,
                       std::chrono::nanoseconds timeout) {
  coring::socket s = co_await example::tcp_connect(ctx, server, timeout);
  std::fprintf(stderr, "connected to %s; type a message, or q to quit\n",
               server.to_string().c_str());
  inbox in;
  std::string line;
  // TRICKY: std::getline blocks the ring's thread while the user types. That is fine here: this
  // client has one connection and nothing else to do meanwhile. (A client that must also show
  // messages pushed by the server would read stdin on the ring instead; coring does not expose
  // IORING_OP_READ on fd 0 yet.)
  while (std::getline(std::cin, line)) {
    if (line == "q" || line == "Q") break;
    line += '\n';
    co_await example::bounded(s.send_all(line), timeout);
    std::optional<std::string> reply = co_await read_line(s, in, timeout);
    if (!reply) {
      std::fputs("chat_client: the server closed the connection\n", stderr);
      co_return 1;
    }
    *reply += '\n';
    example::write_stdout(*reply);  // bytes, not a C string: it may hold NUL bytes
  }
  co_await s.close();  // an orderly FIN: the server logs a clean disconnect
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  const double timeout_s = args.get_double("--timeout", 30, 0, 86400);
  args.done();
  try {
    coring::io_context ctx;
    const coring::address server = coring::address::ip(host, port);
    try {
      return coring::sync_wait(ctx, chat(ctx, server, example::seconds(timeout_s)));
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::timed_out) throw;
      std::fprintf(stderr, "chat_client: no answer from %s within %g s (--timeout)\n",
                   server.to_string().c_str(), timeout_s);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_client: %s\n", e.what());
    return 1;
  }
}
