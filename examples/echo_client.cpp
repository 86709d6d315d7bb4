// SPDX-License-Identifier: MIT
// Description: echo client: interactive (stdin lines) or a scripted, verified load run.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char* usage =
    "usage: echo_client [--host ADDR] [--port N] [--connections N --count M --size S]\n"
    "  Without --connections: sends each stdin line and prints the reply.\n"
    "  With --connections N: N concurrent connections each send M messages of S bytes,\n"
    "  verify every echoed byte and print a summary; exit status 1 on any error.\n";

struct totals {
  std::size_t done = 0, failed = 0, bytes = 0, mismatches = 0;
};

// The byte at offset i of connection c: distinct per connection, so that a server mixing up
// streams, dropping, duplicating or reordering bytes is caught.
inline std::byte pattern(std::size_t c, std::size_t i) {
  return static_cast<std::byte>((c * 131 + i) & 0xff);
}

coring::task<> load_one(coring::io_context& ctx, coring::address server, std::size_t id,
                        std::size_t count, std::size_t size, totals& t) {
  try {
    coring::socket s = co_await coring::tcp_connect(ctx, server);
    std::vector<std::byte> out(size), in(size);
    std::size_t offset = 0;
    for (std::size_t m = 0; m < count; ++m) {
      for (std::size_t i = 0; i < size; ++i) out[i] = pattern(id, offset + i);
      co_await s.send_all(out);
      std::size_t got = 0;
      while (got < size) {
        std::size_t n = co_await s.recv(std::span(in).subspan(got));
        if (n == 0) throw std::system_error(make_error_code(std::errc::connection_aborted),
                                            "server closed early");
        got += n;
      }
      for (std::size_t i = 0; i < size; ++i)
        if (in[i] != out[i]) {
          ++t.mismatches;
          break;
        }
      offset += size;
      t.bytes += size;
    }
    s.shutdown(SHUT_WR);
    std::byte extra[1];
    if (co_await s.recv(extra) != 0) ++t.mismatches;  // the server must not send more
    ++t.done;
  } catch (const std::system_error& e) {
    if (t.failed++ < 5) std::fprintf(stderr, "connection %zu: %s\n", id, e.what());
  }
}

coring::task<> interactive(coring::io_context& ctx, coring::address server) {
  coring::socket s = co_await coring::tcp_connect(ctx, server);
  std::string line;
  std::string reply;
  std::array<std::byte, 4096> buf;
  // Reading stdin blocks the ring's thread; fine for a one-connection interactive client.
  while (std::getline(std::cin, line)) {
    line += '\n';
    co_await s.send_all(line);
    reply.clear();
    while (reply.size() < line.size()) {
      std::size_t n = co_await s.recv(buf);
      if (n == 0) {
        std::puts("(server closed the connection)");
        co_return;
      }
      reply.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    std::fputs(reply.c_str(), stdout);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  auto conns = static_cast<std::size_t>(args.get_int("--connections", 0, 0, 100000));
  auto count = static_cast<std::size_t>(args.get_int("--count", 10, 1, 1000000000));
  auto size = static_cast<std::size_t>(args.get_int("--size", 64, 1, 64 << 20));
  args.done();
  example::raise_fd_limit();
  try {
    coring::io_context ctx;
    coring::address server = coring::address::ip(host, port);
    if (conns == 0) {
      coring::sync_wait(ctx, interactive(ctx, server));
      return 0;
    }
    totals t;
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < conns; ++i) ctx.spawn(load_one(ctx, server, i, count, size, t));
    ctx.run();  // returns when every connection finished
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%zu connections x %zu messages x %zu bytes: %zu ok, %zu failed, %zu bytes "
                "echoed and verified, %zu mismatches, %.3f s, %.0f round trips/s\n",
                conns, count, size, t.done, t.failed, t.bytes, t.mismatches, secs,
                static_cast<double>(t.done * count) / secs);
    return (t.failed == 0 && t.mismatches == 0 && t.done == conns) ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
