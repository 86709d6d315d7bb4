// SPDX-License-Identifier: MIT
// Description: a user's program: builds against coring through pkg-config or as a subproject.
#include <coring/coring.hpp>

#include <cstdio>

coring::task<int> roundtrip(coring::io_context& ctx) {
  coring::socket listener = coring::tcp_listen(ctx, "127.0.0.1:0");
  coring::socket client = co_await coring::tcp_connect(ctx, listener.sock_name());
  coring::socket server = co_await listener.accept();
  co_await client.send_all("ping");
  std::array<std::byte, 4> buf;
  co_return static_cast<int>(co_await server.recv(buf));
}

int main() {
  coring::io_context ctx;
  int n = coring::sync_wait(ctx, roundtrip(ctx));
  std::printf("consumer received %d bytes\n", n);
  return n == 4 ? 0 : 1;
}
