// SPDX-License-Identifier: MIT
// Description: TLS round trips in steady state: no allocation by coring (operator new counted),
// and how many OpenSSL itself makes (CRYPTO_malloc counted), with and without release_buffers.
#include <coring/coring.hpp>

#include "count_allocations.hpp"  // this program counts operator new calls
#include "test_support.hpp"
#include "tls_certs.hpp"

#include <doctest/doctest.h>

#include <openssl/crypto.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <utility>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// OpenSSL's own allocations, counted apart from coring's: installed before OpenSSL allocates
// anything (a static initializer of this program).
std::atomic<long> openssl_allocations{0};
void* counting_malloc(std::size_t n, const char*, int) {
  openssl_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n);
}
void* counting_realloc(void* p, std::size_t n, const char*, int) {
  openssl_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::realloc(p, n);
}
void counting_free(void* p, const char*, int) { std::free(p); }
const bool openssl_counted =
    CRYPTO_set_mem_functions(&counting_malloc, &counting_realloc, &counting_free) == 1;

struct tls_pair {
  tls::stream client, server;
};

task<tls_pair> connect_pair(io_context& ctx, const tls::context& sc, const tls::context& cc) {
  test::tcp_pair p = co_await test::make_tcp_pair(ctx);
  tls_pair t{tls::stream(cc, std::move(p.client), "localhost"),
             tls::stream(sc, std::move(p.server))};
  auto hs =
      when_all(t.client.handshake().with_timeout(10s), t.server.handshake().with_timeout(10s));
  co_await hs;
  co_return std::move(t);
}

// Round trips of 64 bytes over TLS; returns {operator new calls, OpenSSL allocations} during the
// measured ones.
task<std::pair<long, long>> round_trips(tls_pair& t, int warmup, int measured) {
  std::array<std::byte, 64> msg{}, buf{};
  long before = 0, ssl_before = 0;
  for (int i = 0; i < warmup + measured; ++i) {
    if (i == warmup) {
      before = test::allocations();
      ssl_before = openssl_allocations.load();
    }
    msg[0] = static_cast<std::byte>(i);
    co_await t.client.send_all(msg);
    std::size_t got = 0;
    while (got < msg.size()) {
      std::size_t n = co_await t.server.recv(std::span(buf).subspan(got));
      REQUIRE(n > 0);
      got += n;
    }
    co_await t.server.send_all(buf);
    got = 0;
    while (got < buf.size()) {
      std::size_t n = co_await t.client.recv(std::span(buf).subspan(got));
      REQUIRE(n > 0);
      got += n;
    }
    REQUIRE(buf[0] == static_cast<std::byte>(i));
  }
  co_return std::pair<long, long>(test::allocations() - before,
                                  openssl_allocations.load() - ssl_before);
}

}  // namespace

TEST_CASE("TLS round trips in steady state make no coring allocation (OpenSSL's are counted)" *
          test::skip_unless(test::has_openssl())) {
  REQUIRE(openssl_counted);
  test::temp_dir dir("tls-alloc");
  const test::tls_certs certs = test::make_tls_certs(dir);
  io_context ctx;
  tls::context_options co;
  co.ca_file = certs.ca;
  const auto cc = tls::context::client(co);
  for (bool release : {true, false}) {
    tls::context_options so;
    so.release_buffers = release;
    const auto sc = tls::context::server(certs.server_cert, certs.server_key, so);
    test::run_on(ctx, [&](io_context& ctx) -> task<> {
      tls_pair t = co_await connect_pair(ctx, sc, cc);
      const int measured = 1000;
      std::pair<long, long> n = co_await round_trips(t, 100, measured);
      MESSAGE("release_buffers=" << release << ": " << measured << " round trips: " << n.first
                                 << " operator new calls, " << n.second
                                 << " OpenSSL allocations (both ends)");
      CHECK(n.first == 0);
    });
  }
}
