// SPDX-License-Identifier: MIT
// Description: Boost.Asio C++20 coroutine echo server, the mainstream baseline for bench/.
//
// Usage: asio_echo [--port N]   Prints "listening on 127.0.0.1:PORT"; exits 0 on SIGINT/SIGTERM.
// Built twice by bench/meson.build: asio_echo_epoll (Asio's default reactor) and asio_echo_uring
// (BOOST_ASIO_HAS_IO_URING + BOOST_ASIO_DISABLE_EPOLL: sockets go through io_uring).
#include <sys/resource.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

asio::awaitable<void> echo(tcp::socket s) {
  std::array<char, 4096> buf;  // lives in the coroutine frame: one allocation per connection
  try {
    for (;;) {
      std::size_t n = co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
      co_await asio::async_write(s, asio::buffer(buf.data(), n), asio::use_awaitable);
    }
  } catch (const std::exception&) {
    // EOF or a reset peer ends the connection; the socket closes with the frame.
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    tcp::socket s(acceptor.get_executor());
    bool accepted = true;
    try {
      co_await acceptor.async_accept(s, asio::use_awaitable);
    } catch (const boost::system::system_error&) {
      accepted = false;  // co_await is not allowed in a handler: back off below
    }
    if (!accepted) {
      // EMFILE and friends: pause instead of spinning, then accept again.
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::use_awaitable);
      continue;
    }
    boost::system::error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(acceptor.get_executor(), echo(std::move(s)), asio::detached);
  }
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: asio_echo [--port N]\n");
      return 2;
    }
  }
  raise_nofile();
  try {
    asio::io_context ctx(1);  // concurrency hint 1: single-threaded, no locking
    tcp::acceptor acceptor(ctx);
    tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&ctx](const boost::system::error_code&, int) { ctx.stop(); });
    asio::co_spawn(ctx, listen(acceptor), asio::detached);
    std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
    std::fflush(stdout);
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
