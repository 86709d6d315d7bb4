// SPDX-License-Identifier: MIT
// Description: Boost.Asio ssl::stream echo server (one thread), the TLS baseline for bench/.
//
// Usage: asio_tls_echo --tls-cert FILE --tls-key FILE [--port N] [--ciphersuites LIST]
//                      [--cipher-list LIST]
// Prints "listening on 127.0.0.1:PORT"; exits 0 on SIGINT/SIGTERM. Like asio_echo: C++20
// coroutines (co_spawn, use_awaitable), io_context(1), a 4096-byte buffer in each frame,
// async_read_some + async_write, TCP_NODELAY. TLS 1.2 at least; TLS 1.3 suites from
// --ciphersuites (default TLS_AES_128_GCM_SHA256, the suite tls_bench.py forces on every
// server), SSL_MODE_RELEASE_BUFFERS as coring's default. A client's close_notify is answered
// with ours (async_shutdown) before the socket closes.
#include <openssl/ssl.h>
#include <sys/resource.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;

namespace {

asio::awaitable<void> echo(ssl::stream<tcp::socket> s) {
  std::array<char, 4096> buf;  // lives in the coroutine frame: one allocation per connection
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  co_await s.async_handshake(ssl::stream_base::server, token);
  while (!ec) {
    std::size_t n = co_await s.async_read_some(asio::buffer(buf), token);
    if (ec) break;
    co_await asio::async_write(s, asio::buffer(buf.data(), n), token);
  }
  if (ec == asio::error::eof) {  // the client's close_notify: answer with ours
    boost::system::error_code ignored;
    co_await s.async_shutdown(asio::redirect_error(asio::use_awaitable, ignored));
  }
  // Anything else (reset, truncation, bad record) just ends the connection with the frame.
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, ssl::context& ctx) {
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    tcp::socket s(acceptor.get_executor());
    boost::system::error_code ec;
    co_await acceptor.async_accept(s, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      // EMFILE and friends: pause instead of spinning, then accept again.
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::use_awaitable);
      continue;
    }
    boost::system::error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(acceptor.get_executor(), echo(ssl::stream<tcp::socket>(std::move(s), ctx)),
                   asio::detached);
  }
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: asio_tls_echo --tls-cert FILE --tls-key FILE [--port N]\n"
               "                     [--ciphersuites LIST] [--cipher-list LIST]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::string cert, key, ciphersuites = "TLS_AES_128_GCM_SHA256", cipher_list;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    if (a == "--port")
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    else if (a == "--tls-cert")
      cert = argv[++i];
    else if (a == "--tls-key")
      key = argv[++i];
    else if (a == "--ciphersuites")
      ciphersuites = argv[++i];
    else if (a == "--cipher-list")
      cipher_list = argv[++i];
    else
      usage();
  }
  if (cert.empty() || key.empty()) usage();
  raise_nofile();
  try {
    ssl::context tls(ssl::context::tls_server);
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls.use_certificate_chain_file(cert);
    tls.use_private_key_file(key, ssl::context::pem);
    SSL_CTX* native = tls.native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_ciphersuites(native, ciphersuites.c_str()) != 1 ||
        (!cipher_list.empty() && SSL_CTX_set_cipher_list(native, cipher_list.c_str()) != 1)) {
      std::fprintf(stderr, "asio_tls_echo: bad --ciphersuites or --cipher-list\n");
      return 2;
    }

    asio::io_context ctx(1);  // concurrency hint 1: single-threaded, no locking
    tcp::acceptor acceptor(ctx);
    tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&ctx](const boost::system::error_code&, int) { ctx.stop(); });
    asio::co_spawn(ctx, listen(acceptor, tls), asio::detached);
    std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
    std::fflush(stdout);
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_tls_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
