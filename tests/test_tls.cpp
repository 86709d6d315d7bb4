// SPDX-License-Identifier: MIT
// Description: coring::tls in-process over loopback: handshakes, echo (full duplex), versions,
// ALPN, close_notify and truncation, bad input, certificate checks, deadlines, stops, teardown.
#include <coring/coring.hpp>

#include "test_support.hpp"
#include "tls_certs.hpp"

#include <doctest/doctest.h>

#include <openssl/ssl.h>

#include <malloc.h>

#include <array>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// The certificates, made once per process.
const test::tls_certs& certs() {
  static test::temp_dir dir("tls");
  static const test::tls_certs c = test::make_tls_certs(dir);
  return c;
}

tls::context server_ctx(const tls::context_options& o = {}) {
  return tls::context::server(certs().server_cert, certs().server_key, o);
}

tls::context client_ctx(tls::context_options o = {}) {
  if (o.ca_file.empty()) o.ca_file = certs().ca;
  return tls::context::client(o);
}

struct tls_pair {
  tls::stream client, server;
};

// A TCP pair over loopback with a TLS stream on each end, both handshakes done.
task<tls_pair> connect_pair(io_context& ctx, const tls::context& sc, const tls::context& cc,
                            std::string host = "localhost") {
  test::tcp_pair p = co_await test::make_tcp_pair(ctx);
  tls_pair t{tls::stream(cc, std::move(p.client), host), tls::stream(sc, std::move(p.server))};
  auto hs =
      when_all(t.client.handshake().with_timeout(10s), t.server.handshake().with_timeout(10s));
  co_await hs;
  co_return std::move(t);
}

// Runs body(ctx, t) on a new io_context, t a pair made by connect_pair from the default
// contexts; fails the test if it takes longer than limit.
template <class Body>
void on_pair(Body body, std::chrono::seconds limit = 20s) {
  io_context ctx;
  const auto sc = server_ctx();
  const auto cc = client_ctx();
  test::run_on(
      ctx,
      [&](io_context& ctx) -> task<> {
        tls_pair t = co_await connect_pair(ctx, sc, cc);
        co_await body(ctx, t);
      },
      limit);
}

// Both handshakes, as results (one side's failure does not hide the other's).
struct handshake_results {
  std::string client_what, server_what;  // empty: it succeeded
};

task<std::string> handshake_what(tls::stream& s) {
  try {
    auto hs = s.handshake().with_timeout(10s);
    co_await hs;
  } catch (const std::system_error& e) {
    co_return std::string(e.what()) + "|" + std::to_string(e.code().value()) + "|" +
        e.code().category().name();
  }
  co_return std::string();
}

task<handshake_results> try_handshake(io_context& ctx, const tls::context& sc,
                                      const tls::context& cc, std::string host = "localhost") {
  test::tcp_pair p = co_await test::make_tcp_pair(ctx);
  tls::stream client(cc, std::move(p.client), host);
  tls::stream server(sc, std::move(p.server));
  auto both = when_all(handshake_what(client), handshake_what(server));
  auto whats = co_await both;
  handshake_results r;
  r.client_what = std::get<0>(whats);
  r.server_what = std::get<1>(whats);
  co_return r;
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  unsigned x = seed * 2654435761u + 1;
  for (auto& ch : s) {
    x = x * 1103515245u + 12345u;
    ch = static_cast<char>(x >> 24);
  }
  return s;
}

task<std::string> recv_exactly(tls::stream& s, std::size_t n) {
  std::string got;
  std::vector<std::byte> buf(64 * 1024);
  while (got.size() < n) {
    std::size_t k = co_await s.recv(buf);
    if (k == 0) break;
    got.append(reinterpret_cast<const char*>(buf.data()), k);
  }
  co_return got;
}

task<> send_text(tls::stream& s, const std::string& text) { co_await s.send_all(text); }

// Sends up from the client and down from the server at the same time, and receives both.
// Returns: true if each side received exactly what the other sent.
task<bool> both_ways(tls_pair& t, const std::string& up, const std::string& down) {
  auto all = when_all(send_text(t.client, up), send_text(t.server, down),
                      recv_exactly(t.server, up.size()), recv_exactly(t.client, down.size()));
  auto results = co_await all;
  co_return std::get<2>(results) == up&& std::get<3>(results) == down;
}

}  // namespace

TEST_CASE("the test certificates are made by the openssl command" *
          test::skip_unless(test::has_openssl())) {
  const test::tls_certs& c = certs();
  for (const auto& p :
       {c.ca, c.server_cert, c.server_key, c.expired_cert, c.expired_key, c.wrong_host_cert,
        c.wrong_host_key, c.self_signed_cert, c.self_signed_key}) {
    std::ifstream f(p);
    std::string first;
    std::getline(f, first);
    CHECK_MESSAGE(first.rfind("-----BEGIN", 0) == 0, p);
  }
  CHECK_NOTHROW(server_ctx());
  CHECK_NOTHROW(client_ctx());
}

TEST_CASE("a context made from a missing file says which file and why" *
          test::skip_unless(test::has_openssl())) {
  test::temp_dir dir("tls-missing");
  const std::string missing = dir / "missing.pem";
  try {
    (void)tls::context::server(missing, certs().server_key);
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::tls_failed);
    MESSAGE(std::string(e.what()));
    CHECK(std::string(e.what()).find("tls context: " + missing + ": ") != std::string::npos);
  }
  // The key does not match the certificate.
  CHECK_THROWS_AS(tls::context::server(certs().server_cert, certs().expired_key),
                  std::system_error);
}

TEST_CASE("a TLS 1.3 handshake and an echo carry the bytes exactly" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context&, tls_pair& t) -> task<> {
    CHECK(t.client.version_name() == "TLSv1.3");
    CHECK(t.server.version_name() == "TLSv1.3");
    CHECK(!t.client.cipher_name().empty());
    CHECK(t.client.cipher_name() == t.server.cipher_name());
    CHECK(t.client.alpn().empty());
    const std::string hello = "hello over TLS";
    co_await t.client.send_all(hello);
    std::string got = co_await recv_exactly(t.server, hello.size());
    CHECK(got == hello);
    co_await t.server.send_all(got);
    std::string back = co_await recv_exactly(t.client, hello.size());
    CHECK(back == hello);
    // send: one record at most, flushed.
    std::string big = pattern(40000, 7);
    std::size_t n = co_await t.client.send(test::bytes(big));
    CHECK(n == 16384);
    std::string part = co_await recv_exactly(t.server, n);
    CHECK(part == big.substr(0, n));
  });
}

TEST_CASE("4 MiB each way at the same time arrive intact (full duplex)" *
          test::skip_unless(test::has_openssl())) {
  on_pair(
      [&](io_context&, tls_pair& t) -> task<> {
        const std::size_t size = 4u << 20;
        const std::string up = pattern(size, 1), down = pattern(size, 2);
        bool intact = co_await both_ways(t, up, down);
        CHECK(intact);
      },
      60s);
}

TEST_CASE("key updates asked for by each side, in the middle of traffic both ways, keep the bytes" *
          test::skip_unless(test::has_openssl())) {
  // A TLS 1.3 KeyUpdate with update_requested makes the peer's SSL_read write an answer: output
  // made while reading, queued behind the peer's own sends.
  on_pair(
      [&](io_context&, tls_pair& t) -> task<> {
        for (int round = 0; round < 4; ++round) {
          CHECK(SSL_key_update(t.server.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
          CHECK(SSL_key_update(t.client.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
          const std::size_t size = 300000;
          const std::string up = pattern(size, 10 + round), down = pattern(size, 20 + round);
          bool intact = co_await both_ways(t, up, down);
          CHECK(intact);
        }
        co_await t.client.shutdown();
        std::array<std::byte, 8> buf;
        std::size_t n = co_await t.server.recv(buf);
        CHECK(n == 0);
      },
      60s);
}

TEST_CASE("TLS 1.2 can be forced, and ALPN picks the server's choice among the client's" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  tls::context_options so;
  so.max_version = tls::version::tls1_2;
  so.alpn = {"http/1.1", "h2"};
  tls::context_options co;
  co.alpn = {"h2", "http/1.1"};
  const auto sc = server_ctx(so);
  const auto cc = client_ctx(co);
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    tls_pair t = co_await connect_pair(ctx, sc, cc);
    CHECK(t.client.version_name() == "TLSv1.2");
    CHECK(t.client.alpn() == "http/1.1");
    CHECK(t.server.alpn() == "http/1.1");
    const std::string msg = pattern(100000, 3);
    auto both = when_all(send_text(t.client, msg), recv_exactly(t.server, msg.size()));
    auto r = co_await both;
    CHECK(std::get<1>(r) == msg);
  });
  // No protocol in common: the handshake goes on without ALPN.
  tls::context_options co2;
  co2.alpn = {"spdy/1"};
  const auto cc2 = client_ctx(co2);
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    tls_pair t = co_await connect_pair(ctx, sc, cc2);
    CHECK(t.client.alpn().empty());
    CHECK(t.server.alpn().empty());
  });
}

TEST_CASE("shutdown sends close_notify: the peer's recv returns 0, as often as asked" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context&, tls_pair& t) -> task<> {
    co_await t.client.send_all("last words");
    co_await t.client.shutdown();
    std::string got = co_await recv_exactly(t.server, 1000);
    CHECK(got == "last words");
    std::array<std::byte, 16> buf;
    std::size_t n = co_await t.server.recv(buf);
    CHECK(n == 0);
    auto again = co_await as_result(t.server.recv(buf));
    REQUIRE(again);
    CHECK(*again == 0);
    // The other direction still works until the server shuts down too.
    co_await t.server.send_all("bye");
    std::string bye = co_await recv_exactly(t.client, 3);
    CHECK(bye == "bye");
    auto late = co_await as_result(t.client.send_all("more"));
    CHECK(late.error() == errc::tls_failed);
  });
}

TEST_CASE("a TCP close without close_notify is reported as truncation, not as EOF" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context&, tls_pair& t) -> task<> {
    co_await t.client.send_all("partial");
    t.client.next_layer().shutdown(SHUT_RDWR);
    std::string got = co_await recv_exactly(t.server, 7);
    CHECK(got == "partial");
    std::array<std::byte, 16> buf;
    try {
      (void)co_await t.server.recv(buf);
      FAIL("recv did not throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::tls_truncated);
      CHECK(std::string(e.what()).find("without close_notify") != std::string::npos);
    }
    auto r = co_await as_result(t.server.recv(buf));  // the stream stays failed
    CHECK(r.error() == errc::tls_truncated);
  });
}

TEST_CASE("garbage instead of a ClientHello fails the handshake with OpenSSL's words" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto sc = server_ctx();
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    test::tcp_pair p = co_await test::make_tcp_pair(ctx);
    tls::stream server(sc, std::move(p.server));
    co_await p.client.send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    try {
      auto hs = server.handshake().with_timeout(10s);
      co_await hs;
      FAIL("handshake did not throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::tls_failed);
      const std::string what = e.what();
      MESSAGE("garbage: " << what);
      CHECK(what.rfind("tls handshake: ", 0) == 0);
      CHECK(what.size() > std::string("tls handshake: ").size() + 5);
    }
    // A truncated ClientHello: the first bytes of a record, then FIN.
    test::tcp_pair q = co_await test::make_tcp_pair(ctx);
    tls::stream server2(sc, std::move(q.server));
    const unsigned char head[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
    co_await q.client.send_all(std::as_bytes(std::span(head)));
    q.client.shutdown(SHUT_WR);
    auto r = co_await as_result(server2.handshake().with_timeout(10s));
    CHECK(r.error() == errc::tls_truncated);
  });
}

TEST_CASE("the client refuses an expired, a wrong-host and a self-signed certificate" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto cc = client_ctx();
  struct bad {
    std::string cert, key, words;
  };
  const std::vector<bad> cases = {
      {certs().expired_cert, certs().expired_key, "certificate has expired"},
      {certs().wrong_host_cert, certs().wrong_host_key, "hostname mismatch"},
      {certs().self_signed_cert, certs().self_signed_key, "self"},
  };
  for (const auto& b : cases) {
    CAPTURE(b.words);
    const auto sc = tls::context::server(b.cert, b.key);
    handshake_results r = test::run(ctx, try_handshake(ctx, sc, cc));
    MESSAGE("client: " << r.client_what << " / server: " << r.server_what);
    CHECK(r.client_what.rfind("tls handshake: certificate verify failed: ", 0) == 0);
    CHECK(r.client_what.find(b.words) != std::string::npos);
    CHECK(r.client_what.find("|" + std::to_string(static_cast<int>(errc::tls_verify_failed)) +
                             "|coring") != std::string::npos);
    CHECK(!r.server_what.empty());  // the client's alert ends the server's handshake too
  }
  // An IP literal is checked against the certificate's IP addresses.
  const auto good = server_ctx();
  handshake_results ip = test::run(ctx, try_handshake(ctx, good, cc, "127.0.0.1"));
  CHECK(ip.client_what.empty());
  CHECK(ip.server_what.empty());
  handshake_results other_ip = test::run(ctx, try_handshake(ctx, good, cc, "127.0.0.2"));
  CHECK(other_ip.client_what.find("certificate verify failed") != std::string::npos);
}

TEST_CASE("verify_peer = false accepts a self-signed certificate; the default store does not" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto sc = tls::context::server(certs().self_signed_cert, certs().self_signed_key);
  tls::context_options o;
  o.verify_peer = false;
  const auto lax = tls::context::client(o);
  handshake_results r = test::run(ctx, try_handshake(ctx, sc, lax));
  CHECK(r.client_what.empty());
  CHECK(r.server_what.empty());
  const auto system_store = tls::context::client();
  handshake_results s = test::run(ctx, try_handshake(ctx, server_ctx(), system_store));
  CHECK(s.client_what.find("certificate verify failed") != std::string::npos);
}

TEST_CASE("a client offering only TLS 1.1 is refused" * test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto sc = server_ctx();
  // context_options cannot go below TLS 1.2: set the old client up through OpenSSL itself.
  auto old = client_ctx();
  SSL_CTX_set_min_proto_version(old.native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(old.native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_cipher_list(old.native_handle(), "DEFAULT:@SECLEVEL=0");
  handshake_results r = test::run(ctx, try_handshake(ctx, sc, old));
  MESSAGE("client: " << r.client_what << " / server: " << r.server_what);
  CHECK(r.server_what.rfind("tls handshake: ", 0) == 0);
  CHECK(r.server_what.find("|" + std::to_string(static_cast<int>(errc::tls_failed)) + "|coring") !=
        std::string::npos);
  CHECK(!r.client_what.empty());
}

TEST_CASE("a handshake with a peer that never speaks ends at its deadline" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto sc = server_ctx();
  const auto cc = client_ctx();
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    test::tcp_pair p = co_await test::make_tcp_pair(ctx);
    tls::stream server(sc, std::move(p.server));
    auto t0 = std::chrono::steady_clock::now();
    auto r = co_await as_result(server.handshake().with_timeout(150ms));
    CHECK(r.error() == std::errc::timed_out);
    CHECK(std::chrono::steady_clock::now() - t0 >= 140ms);
    // The client side: its ClientHello goes out, no answer comes.
    test::tcp_pair q = co_await test::make_tcp_pair(ctx);
    tls::stream client(cc, std::move(q.client), "localhost");
    auto c = co_await as_result(client.handshake().with_timeout(150ms));
    CHECK(c.error() == std::errc::timed_out);
    auto later = co_await as_result(client.handshake());  // the stream is over
    CHECK(later.error() == std::errc::timed_out);
  });
}

TEST_CASE("a recv ends on a stop request, and the stream goes on" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context&, tls_pair& t) -> task<> {
    std::stop_source stop;
    std::array<std::byte, 64> buf;
    auto stopper = [&]() -> task<> {
      stop.request_stop();
      co_return;
    };
    auto both = when_all(as_result(t.client.recv(buf).with_stop(stop.get_token())), stopper());
    auto r = co_await both;
    CHECK(std::get<0>(r).error() == std::errc::operation_canceled);
    // A recv with a deadline and nothing coming.
    auto timed = co_await as_result(t.client.recv(buf).with_timeout(50ms));
    CHECK(timed.error() == std::errc::timed_out);
    co_await t.server.send_all("still here");
    std::string got = co_await recv_exactly(t.client, 10);
    CHECK(got == "still here");
  });
}

TEST_CASE("a task group's stop ends a recv and a send in flight on one stream" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context& ctx, tls_pair& t) -> task<> {
    const std::string big = pattern(16u << 20, 5);  // more than the socket buffers hold
    std::array<std::byte, 64> buf;
    std::error_code recv_error, send_error;
    task_group g(ctx);
    g.spawn([&](std::stop_token tok) -> task<> {
      auto recv = as_result(t.client.recv(buf).with_stop(tok));
      auto r = co_await recv;
      recv_error = r.error();
    });
    g.spawn([&](std::stop_token tok) -> task<> {
      auto send = as_result(t.client.send_all(big).with_stop(tok));
      auto r = co_await send;
      send_error = r.error();
    });
    g.spawn([&](std::stop_token) -> task<> {
      // Starts after both: the recv waits, the send is on its first records.
      g.request_stop();
      co_return;
    });
    co_await g.join();
    CHECK(recv_error == std::errc::operation_canceled);
    CHECK(send_error == std::errc::operation_canceled);
    // Stopped between two records, the stream goes on; stopped mid-record, sends are over.
    auto after = co_await as_result(t.client.send_all("x"));
    if (!after) CHECK(after.error() == errc::tls_failed);
    std::array<std::byte, 64> small;
    co_await t.server.send_all("both ways");
    auto got = co_await as_result(t.client.recv(small));  // recv is not affected
    CHECK(got.has_value());
  });
}

TEST_CASE("a send that times out mid-record leaves the stream unusable for sends, with a reason" *
          test::skip_unless(test::has_openssl())) {
  on_pair([&](io_context&, tls_pair& t) -> task<> {
    const std::string big = pattern(32u << 20, 6);  // far more than the socket buffers hold
    auto r = co_await as_result(t.client.send_all(big).with_timeout(200ms));
    CHECK(r.error() == std::errc::timed_out);
    try {
      co_await t.client.send_all("x");
      FAIL("send after a timed-out send did not throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::tls_failed);
      CHECK(std::string(e.what()).find("cancelled mid-record") != std::string::npos);
    }
    auto s = co_await as_result(t.client.shutdown());
    CHECK(s.error() == errc::tls_failed);
  });
}

TEST_CASE("destroying the io_context with a handshake, a recv and a send in flight frees all" *
          test::skip_unless(test::has_openssl())) {
  test::watchdog w(20s);
  const auto sc = server_ctx();
  const auto cc = client_ctx();
  bool busy = false, silent = false;
  const std::string big = pattern(16u << 20, 9);
  {
    io_context ctx;
    ctx.spawn([](io_context& ctx, const tls::context& sc, const tls::context& cc,
                 const std::string& big, bool& busy) -> task<> {
      tls_pair t = co_await connect_pair(ctx, sc, cc);
      std::array<std::byte, 64> buf;
      busy = true;
      auto both = when_all(t.client.recv(buf), t.client.send_all(big));
      co_await both;
    }(ctx, sc, cc, big, busy));
    ctx.spawn([](io_context& ctx, const tls::context& sc, bool& silent) -> task<> {
      test::tcp_pair p = co_await test::make_tcp_pair(ctx);
      tls::stream server(sc, std::move(p.server));
      silent = true;
      co_await server.handshake();
    }(ctx, sc, silent));
    for (int i = 0; i < 10000 && !(busy && silent); ++i)
      ctx.run_once();
    for (int i = 0; i < 20; ++i)
      ctx.run_once(false);
    CHECK(busy);
    CHECK(silent);
    CHECK(ctx.in_flight() >= 3);
  }  // ~io_context: cancels, reaps, destroys the frames (and the streams in them)
}

namespace {

// Makes the server stream of t owe the client output that cannot leave: its socket is filled
// with raw bytes (the client never reads), then a forged record from the client makes the
// server's recv fail and queue a fatal alert, which its tx loop sends into the full socket: a
// ring send in flight that no operation owns. Returns: true if the recv failed as it should.
// co_await next_turn{ctx} (named first: g++ 12): resumes in the context's next loop turn.
struct next_turn {
  io_context& ctx;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const { ctx.schedule(h); }
  void await_resume() const noexcept {}
};

task<bool> owe_an_alert(tls_pair& t) {
  const int fd = t.server.next_layer().fileno();
  const int small = 4096;  // fixed sizes: the kernel does not grow them later (autotuning off)
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(t.client.next_layer().fileno(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  const std::string junk(64 * 1024, 'j');
  for (int i = 0; i < 10000; ++i) {
    if (::send(fd, junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) break;
  }
  // Application data, 21 bytes, that no key decrypts: bad_record_mac.
  const std::string forged = std::string("\x17\x03\x03\x00\x15", 5) + std::string(21, 'f');
  co_await t.client.next_layer().send_all(forged);
  std::array<std::byte, 8> buf;
  auto recv = as_result(t.server.recv(buf).with_timeout(10s));
  auto r = co_await recv;
  co_return !r && r.error() == errc::tls_failed;
}

}  // namespace

TEST_CASE("a stream destroyed with output in flight is freed once that send ends" *
          test::skip_unless(test::has_openssl())) {
  // LSan (ASan builds) is the judge: the orphaned state, its loops and the SSL object must be
  // freed (by the reaper ~stream spawned on the context).
  test::watchdog w(20s);
  const auto sc = server_ctx();
  const auto cc = client_ctx();
  {
    io_context ctx;
    test::run_on(ctx, [&](io_context& ctx) -> task<> {
      tls_pair t = co_await connect_pair(ctx, sc, cc);
      bool got = co_await owe_an_alert(t);
      CHECK(got);
      CHECK(ctx.in_flight() >= 1);
      { tls::stream gone = std::move(t.server); }  // orphaned: its send is still in flight
      for (int i = 0; i < 1000 && ctx.in_flight() > 0; ++i) {
        next_turn turn{ctx};
        co_await turn;
      }
      CHECK(ctx.in_flight() == 0);
    });
  }
}

TEST_CASE("twenty connections at once each carry a message and shut down" *
          test::skip_unless(test::has_openssl())) {
  io_context ctx;
  const auto sc = server_ctx();
  const auto cc = client_ctx();
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    std::vector<tls_pair> pairs;
    pairs.reserve(20);
    const std::size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 20; ++i) {
      tls_pair t = co_await connect_pair(ctx, sc, cc);
      co_await t.client.send_all("ping");
      std::string got = co_await recv_exactly(t.server, 4);
      CHECK(got == "ping");
      pairs.push_back(std::move(t));
    }
    // Heap in use per idle connection, both ends (two streams, two sockets; OpenSSL's share):
    // informational (sanitizer builds have their own allocator, which mallinfo2 does not see).
    const std::size_t after = mallinfo2().uordblks;
    MESSAGE("heap per idle TLS connection (client + server end): "
            << (after > before ? (after - before) / 20 : 0) << " bytes");
    for (auto& t : pairs)
      co_await t.server.shutdown();
  });
}

TEST_CASE("features().describe() says whether the kernel's TLS ULP exists") {
  io_context ctx;
  std::ifstream f("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string word;
  bool listed = false;
  while (f >> word)
    listed = listed || word == "tls";
  CHECK(ctx.features().tls_ulp == listed);
  const std::string d = ctx.features().describe();
  CHECK(d.find(listed ? "tls_ulp=1" : "tls_ulp=0") != std::string::npos);
  MESSAGE("kernel TLS ULP: " << std::string(listed ? "yes" : "no (kTLS cannot be used here)"));
}
