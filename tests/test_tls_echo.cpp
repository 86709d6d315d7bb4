// SPDX-License-Identifier: MIT
// Description: echo_server --tls-cert/--tls-key and echo_client --tls met by clients and servers
// nobody here wrote (openssl s_client, Python's ssl): interop, 1,000 verified TLS clients, faults
// (each followed by a client that is still served), refused certificates, SIGTERM.
#include "process.hpp"
#include "test_support.hpp"
#include "tls_certs.hpp"

#include <coring/coring.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
namespace test = coring::test;

namespace {

// The certificates, made once per process (openssl runs about ten times).
const test::tls_certs& certs() {
  static test::temp_dir dir("tls-echo");
  static const test::tls_certs c = test::make_tls_certs(dir);
  return c;
}

// tests/tls_peer.py (TLS_PEER, set by meson).
std::string tls_peer() { return test::example_path("TLS_PEER"); }

// echo_server serving TLS on an ephemeral port, its stderr captured (the log lines).
struct tls_server {
  test::child proc;
  int port = -1;
  explicit tls_server(std::vector<std::string> extra = {}, const std::string& cert = "",
                      const std::string& key = "")
      : proc(argv(std::move(extra), cert, key), test::child_options{.capture_stderr = true}) {
    auto line = proc.read_line(10s);
    REQUIRE_MESSAGE(line, "echo_server did not start: " << proc.read_stderr(1s));
    REQUIRE(line->find("echo_server listening on 127.0.0.1:") != std::string::npos);
    port = test::port_from_line(*line);
    REQUIRE(port > 0);
  }
  static std::vector<std::string> argv(std::vector<std::string> extra, const std::string& cert,
                                       const std::string& key) {
    std::vector<std::string> a{test::example_path("ECHO_SERVER"),
                               "--port",
                               "0",
                               "--tls-cert",
                               cert.empty() ? certs().server_cert : cert,
                               "--tls-key",
                               key.empty() ? certs().server_key : key};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string port_text() const { return std::to_string(port); }
  // SIGTERM; the exit status within limit (nullopt: still running). Its stderr must hold no
  // sanitizer report.
  std::optional<int> terminate(std::chrono::milliseconds limit) {
    proc.signal(SIGTERM);
    auto st = proc.wait(limit);
    if (st) {
      std::string err = proc.stderr_seen() + proc.read_stderr(2s);
      CHECK_MESSAGE(!test::sanitizer_report(err), err);
    }
    return st;
  }
};

struct run_result {
  int status = -1;
  std::string out;  // stdout, then stderr
};

// Runs argv to its end (at most limit), stdin closed at once. Returns: its status and output.
run_result run(std::vector<std::string> argv, std::chrono::seconds limit = 60s,
               const std::string& input = "") {
  test::child c(std::move(argv), test::child_options{.capture_stderr = true});
  if (!input.empty()) c.write(input);
  c.close_stdin();
  run_result r;
  r.out = c.read_rest(limit);  // to EOF: the child's exit
  const std::string err = c.read_stderr(5s);
  auto st = c.wait(5s);
  REQUIRE_MESSAGE(st, "still running after " << limit.count() << " s: " << r.out << err);
  r.status = *st;
  r.out += err;
  CHECK_MESSAGE(!test::sanitizer_report(r.out), r.out);
  return r;
}

// tls_peer.py MODE --port PORT --ca CA args...
run_result run_peer(const std::string& mode, int port, std::vector<std::string> args = {}) {
  std::vector<std::string> argv{test::python3(),      tls_peer(), mode,      "--port",
                                std::to_string(port), "--ca",     certs().ca};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

// echo_client --tls --ca CA --port PORT args...
run_result run_client(int port, std::vector<std::string> args, const std::string& input = "",
                      std::chrono::seconds limit = 60s) {
  std::vector<std::string> argv{test::example_path("ECHO_CLIENT"), "--port", std::to_string(port),
                                "--ca", certs().ca};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, limit, input);
}

// echo_client's summary: "N connections x M messages x S bytes: A ok, F failed, B bytes echoed
// and verified, X mismatches, ...".
struct summary {
  std::size_t connections = 0, count = 0, size = 0, ok = 0, failed = 0, bytes = 0, mismatches = 0;
};
std::optional<summary> parse_summary(const std::string& out) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    summary s;
    if (std::sscanf(line.c_str(),
                    "%zu connections x %zu messages x %zu bytes: %zu ok, %zu failed, %zu bytes "
                    "echoed and verified, %zu mismatches",
                    &s.connections, &s.count, &s.size, &s.ok, &s.failed, &s.bytes,
                    &s.mismatches) == 7)
      return s;
  }
  return std::nullopt;
}

// The proof that a server still serves after a fault: echo_client's verified load over TLS.
void check_served(int port) {
  auto r = run_client(port, {"--connections", "3", "--count", "5", "--size", "3000"});
  INFO(r.out);
  CHECK(r.status == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->ok == 3);
  CHECK(s->bytes == 3u * 5 * 3000);
}

// A plain TCP connection to 127.0.0.1:port (blocking).
int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

const auto needs_openssl = test::skip_unless(test::has_openssl());
const auto needs_python = test::skip_unless(test::has_python3());

// README, "TLS" (kept as written there): the server side of one connection, and a client.
coring::task<> tls_echo(const coring::tls::context& tls, coring::socket s) {
  coring::tls::stream t(tls, std::move(s));  // tls: coring::tls::context::server(cert, key)
  co_await t.handshake().with_timeout(10s);
  std::array<std::byte, 4096> buf;
  while (std::size_t n = co_await t.recv(buf))  // 0: the client's close_notify
    co_await t.send_all(std::span(buf).first(n));
  co_await t.shutdown();  // our close_notify
}

coring::task<std::string> tls_hello(coring::io_context& ctx, coring::address server,
                                    const std::string& ca_file) {
  coring::tls::context_options opts;
  opts.ca_file = ca_file;  // empty: the system's trust store
  coring::tls::context tls = coring::tls::context::client(opts);
  coring::socket s = co_await coring::tcp_connect(ctx, server);
  coring::tls::stream t(tls, std::move(s), "localhost");  // SNI, and the name to verify
  co_await t.handshake();  // throws "tls handshake: certificate verify failed: ..."
  co_await t.send_all("hello");
  std::string reply(5, '\0');
  for (std::size_t got = 0; got < reply.size();)
    got += co_await t.recv(std::as_writable_bytes(std::span(reply)).subspan(got));
  co_await t.shutdown();
  co_return reply;
}

}  // namespace

TEST_CASE("the README's TLS server and client lines echo over a verified connection" *
          needs_openssl) {
  coring::io_context ctx;
  auto body = [](coring::io_context& ctx) -> coring::task<> {
    coring::tls::context server_ctx =
        coring::tls::context::server(certs().server_cert, certs().server_key);
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip("127.0.0.1", 0));
    const coring::address at = listener.sock_name();
    auto serve_one = [&]() -> coring::task<> {
      coring::socket s = co_await listener.accept();
      co_await tls_echo(server_ctx, std::move(s));
    };
    auto both = coring::when_all(serve_one(), tls_hello(ctx, at, certs().ca));
    auto results = co_await std::move(both);
    CHECK(std::get<1>(results) == "hello");
    // The same client refuses a server its trust store does not vouch for (here the CA file is
    // the self-signed certificate, which did not sign the server's).
    auto refused_server = [&]() -> coring::task<> {
      coring::socket s = co_await listener.accept();
      try {
        co_await tls_echo(server_ctx, std::move(s));
      } catch (const std::system_error&) {  // the client's alert ends the handshake
      }
    };
    auto refused_client = [&]() -> coring::task<std::error_code> {
      std::error_code ec;
      try {
        co_await tls_hello(ctx, at, certs().self_signed_cert);
      } catch (const std::system_error& e) {
        ec = e.code();
        CHECK(std::string(e.what()).find("certificate verify failed") != std::string::npos);
      }
      co_return ec;
    };
    auto refused = coring::when_all(refused_server(), refused_client());
    auto outcome = co_await std::move(refused);
    CHECK(std::get<1>(outcome) == coring::errc::tls_verify_failed);
  };
  coring::test::run_on(ctx, body);
}

// ---- interop: clients and servers nobody here wrote ----

TEST_CASE("openssl s_client over TLS 1.2 and over TLS 1.3 gets every byte back" * needs_openssl) {
  tls_server srv;
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    CAPTURE(version);
    test::child c({test::openssl_program(), "s_client", "-connect", "127.0.0.1:" + srv.port_text(),
                   version, "-CAfile", certs().ca, "-verify_return_error", "-servername",
                   "localhost", "-verify_hostname", "localhost", "-brief", "-nocommands"},
                  test::child_options{.capture_stderr = true});
    std::string sent;
    for (int i = 0; i < 300; ++i)
      sent += "line " + std::to_string(i) + " of what s_client sends " + version + "\n";
    c.write(sent);  // ~12 KB: fits the pipes while we do not read yet
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (got.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
      auto line = c.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (!line) break;
      got += *line + "\n";
    }
    CHECK(got == sent);
    c.close_stdin();  // EOF: s_client sends close_notify, the server answers with its own
    auto st = c.wait(10s);
    const std::string err = c.read_stderr(2s);
    INFO(err);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(err.find(std::string("Protocol version: ") +
                   (version == std::string_view("-tls1_2") ? "TLSv1.2" : "TLSv1.3")) !=
          std::string::npos);
    CHECK(err.find("Verification: OK") != std::string::npos);
  }
  // Both closed with close_notify: the server logged nothing about them.
  CHECK_FALSE(srv.proc.wait_stderr_for("client ", 300ms));
  INFO(srv.proc.stderr_seen());
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("Python's ssl client verifying the test CA gets every byte back over TLS 1.2 and 1.3" *
          needs_openssl * needs_python) {
  tls_server srv;
  for (const char* version : {"1.2", "1.3"}) {
    CAPTURE(version);
    auto r = run_peer("client", srv.port, {"--tls-version", version, "--size", "200000"});
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find(std::string("ok TLSv") + version + " ") == 0);
    CHECK(r.out.find(" 200000") != std::string::npos);
  }
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("echo_client --tls --ca verifies every byte against Python's ssl echo server" *
          needs_openssl * needs_python) {
  test::child py({test::python3(), tls_peer(), "server", "--cert", certs().server_cert, "--key",
                  certs().server_key, "--timeout", "60"},
                 test::child_options{.capture_stderr = true});
  auto line = py.read_line(20s);
  REQUIRE_MESSAGE(line, py.read_stderr(1s));
  REQUIRE(line->find("tls_peer listening on 127.0.0.1:") == 0);
  const int port = test::port_from_line(*line);
  // The certificate names 127.0.0.1 (checked as an IP address) and localhost (--tls-host).
  for (const char* host : {"127.0.0.1", "localhost"}) {
    CAPTURE(host);
    auto r = run_client(
        port, {"--tls-host", host, "--connections", "8", "--count", "20", "--size", "5000"});
    INFO(r.out);
    CHECK(r.status == 0);
    auto s = parse_summary(r.out);
    REQUIRE(s);
    CHECK(s->ok == 8);
    CHECK(s->mismatches == 0);
    CHECK(s->bytes == 8u * 20 * 5000);
  }
  py.close_stdin();
  auto done = py.read_line(20s);
  INFO(py.read_stderr(1s));
  REQUIRE(done);
  // Python answered every close_notify of echo_client and saw it answer its own.
  CHECK(*done == "served 16 connections");
  CHECK(py.wait(10s) == std::optional<int>(0));
}

TEST_CASE("1,000 concurrent TLS clients through echo_client --tls, every byte verified" *
          needs_openssl) {
  tls_server srv({"--handshake-timeout", "120"});
  auto r = run_client(
      srv.port, {"--connections", "1000", "--count", "10", "--size", "1000", "--timeout", "120"},
      "", 240s);
  INFO(r.out);
  CHECK(r.status == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->ok == 1000);
  CHECK(s->failed == 0);
  CHECK(s->mismatches == 0);
  CHECK(s->bytes == 1000u * 10 * 1000);
  CHECK(srv.terminate(10s) == std::optional<int>(0));
}

TEST_CASE("echo_client --tls in interactive mode prints the echo of each line" * needs_openssl) {
  tls_server srv;
  auto r = run_client(srv.port, {"--tls-host", "localhost"}, "hello over TLS\nsecond line\n");
  CHECK(r.status == 0);
  CHECK(r.out == "hello over TLS\nsecond line\n");
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

// ---- faults: each ends that one connection, and the next client is served ----

TEST_CASE("garbage instead of a ClientHello ends that connection, the server goes on" *
          needs_openssl * needs_python) {
  tls_server srv;
  auto r = run_peer("garbage", srv.port);
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(srv.proc.wait_stderr_for("tls handshake", 10s));
  INFO(srv.proc.stderr_seen());
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("a truncated handshake (half a ClientHello, then close) ends that connection only" *
          needs_openssl * needs_python) {
  tls_server srv;
  auto r = run_peer("truncated", srv.port);
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(srv.proc.wait_stderr_for("client 127.0.0.1:", 10s));
  INFO(srv.proc.stderr_seen());
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("a client that stops mid-handshake is closed at the handshake deadline" * needs_openssl *
          needs_python) {
  tls_server srv({"--handshake-timeout", "0.5"});
  auto r = run_peer("stall", srv.port, {"--timeout", "20"});
  INFO(r.out);
  REQUIRE(r.status == 0);
  double after = -1;
  REQUIRE(std::sscanf(r.out.c_str(), "closed by the server after %lf s", &after) == 1);
  CHECK(after >= 0.4);
  CHECK(after < 10);
  CHECK(srv.proc.wait_stderr_for("no TLS handshake within --handshake-timeout", 10s));
  INFO(srv.proc.stderr_seen());
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("a reset in the middle of a record ends that connection only" * needs_openssl *
          needs_python) {
  tls_server srv;
  auto r = run_peer("reset", srv.port);
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(srv.proc.wait_stderr_for("Connection reset by peer", 10s));
  INFO(srv.proc.stderr_seen());
  CHECK(srv.proc.stderr_seen().find("tls handshake") == std::string::npos);  // in the echo
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("a peer that closes without close_notify is logged as truncated, not as a clean end" *
          needs_openssl * needs_python) {
  tls_server srv;
  auto r = run_peer("no-close-notify", srv.port, {"--size", "5000"});
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(srv.proc.wait_stderr_for("closed the connection without close_notify (truncated)", 10s));
  INFO(srv.proc.stderr_seen());
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

TEST_CASE("TLS 1.0 and 1.1 offered are refused, the server goes on" * needs_openssl) {
  tls_server srv;
  if (test::python3()) {
    auto r = run_peer("old", srv.port);
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("refused: ") == 0);
    CHECK(srv.proc.wait_stderr_for("tls handshake", 10s));
  } else {
    MESSAGE("no python3: only openssl s_client offers the old versions");
  }
  for (const char* version : {"-tls1", "-tls1_1"}) {
    CAPTURE(version);
    auto r = run({test::openssl_program(), "s_client", "-connect", "127.0.0.1:" + srv.port_text(),
                  version, "-cipher", "DEFAULT@SECLEVEL=0", "-brief", "-nocommands"});
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK(r.out.find("CONNECTION ESTABLISHED") == std::string::npos);
  }
  INFO(srv.proc.stderr_seen());
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}

// ---- certificates the client refuses ----

TEST_CASE("echo_client refuses an expired, a wrong-host and an untrusted certificate" *
          needs_openssl) {
  SUBCASE("expired") {
    tls_server srv({}, certs().expired_cert, certs().expired_key);
    auto r = run_client(srv.port, {}, "hello\n");
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(r.out.find("certificate verify failed") != std::string::npos);
    CHECK(r.out.find("certificate has expired") != std::string::npos);
    CHECK(r.out.find("hello") == std::string::npos);  // nothing was sent
    // The load mode says the same for each connection, and fails.
    auto load = run_client(srv.port, {"--connections", "2", "--count", "1"});
    INFO(load.out);
    CHECK(load.status == 1);
    CHECK(load.out.find("certificate has expired") != std::string::npos);
    CHECK(srv.terminate(5s) == std::optional<int>(0));
  }
  SUBCASE("wrong host") {
    tls_server srv({}, certs().wrong_host_cert, certs().wrong_host_key);
    auto by_name = run_client(srv.port, {"--tls-host", "localhost"}, "hello\n");
    INFO(by_name.out);
    CHECK(by_name.status == 1);
    CHECK(by_name.out.find("certificate verify failed") != std::string::npos);
    CHECK(by_name.out.find("hostname mismatch") != std::string::npos);
    auto by_ip = run_client(srv.port, {}, "hello\n");  // --tls-host defaults to --host
    INFO(by_ip.out);
    CHECK(by_ip.status == 1);
    CHECK(by_ip.out.find("IP address mismatch") != std::string::npos);
    CHECK(srv.terminate(5s) == std::optional<int>(0));
  }
  SUBCASE("self-signed, and --insecure as the explicit opt-out") {
    tls_server srv({}, certs().self_signed_cert, certs().self_signed_key);
    auto r = run_client(srv.port, {}, "hello\n");
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(r.out.find("certificate verify failed") != std::string::npos);
    CHECK(r.out.find("self-signed certificate") != std::string::npos);
    auto insecure =
        run({test::example_path("ECHO_CLIENT"), "--port", srv.port_text(), "--insecure"}, 30s,
            "hello\n");
    CHECK(insecure.status == 0);
    CHECK(insecure.out == "hello\n");
    CHECK(srv.terminate(5s) == std::optional<int>(0));
  }
}

// ---- SIGTERM ----

TEST_CASE("SIGTERM while a TLS handshake is stalled: echo_server exits 0 at once" * needs_openssl) {
  // A long handshake deadline and grace: an exit within seconds proves the drain ended the
  // handshake instead of waiting for either.
  tls_server srv({"--handshake-timeout", "60", "--grace", "30"});
  const int fd = connect_to(srv.port);
  const unsigned char header[] = {0x16, 0x03, 0x01, 0x02, 0x00};  // a record header, no body
  REQUIRE(::send(fd, header, sizeof header, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof header));
  // A client served after it proves the stalled one was accepted (one accept loop, in order).
  check_served(srv.port);
  const auto t0 = std::chrono::steady_clock::now();
  auto st = srv.terminate(10s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(took < 5);
}

TEST_CASE("SIGTERM while a TLS client floods: echo_server ends it with close_notify, exits 0" *
          needs_openssl * needs_python) {
  tls_server srv({"--grace", "30"});
  test::child flood({test::python3(), tls_peer(), "flood", "--port", srv.port_text(), "--ca",
                     certs().ca, "--timeout", "60"},
                    test::child_options{.capture_stderr = true});
  auto started = flood.read_line(20s);
  REQUIRE_MESSAGE(started, flood.read_stderr(1s));
  REQUIRE(*started == "flooding");
  const auto t0 = std::chrono::steady_clock::now();
  auto st = srv.terminate(10s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(took < 5);
  auto ended = flood.read_line(20s);
  REQUIRE(ended);
  CHECK(ended->find("ended: close_notify after ") == 0);
  CHECK(flood.wait(10s) == std::optional<int>(0));
}

TEST_CASE("SIGTERM while a TLS client sends and never reads: echo_server exits 0 after --grace" *
          needs_openssl * needs_python) {
  tls_server srv({"--grace", "1"});
  test::child flood({test::python3(), tls_peer(), "flood-noread", "--port", srv.port_text(), "--ca",
                     certs().ca, "--timeout", "60"},
                    test::child_options{.capture_stderr = true});
  auto started = flood.read_line(20s);
  REQUIRE_MESSAGE(started, flood.read_stderr(1s));
  REQUIRE(*started == "flooding");
  auto stuck = flood.read_line(30s);  // the server's echo waits for us to read
  REQUIRE(stuck);
  REQUIRE(*stuck == "stuck");
  const auto t0 = std::chrono::steady_clock::now();
  auto st = srv.terminate(10s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(took >= 0.8);  // the send in flight had its grace (1 s)...
  CHECK(took < 5);     // ...then the scope's token stopped it
  auto ended = flood.read_line(20s);
  REQUIRE(ended);
  CHECK(ended->find("ended: closed by the server after ") == 0);
  CHECK(flood.wait(10s) == std::optional<int>(0));
}

// ---- the other options, over TLS ----

TEST_CASE("echo_server --threads 2 serves TLS on every thread" * needs_openssl) {
  tls_server srv({"--threads", "2"});
  auto r = run_client(srv.port, {"--connections", "200", "--count", "5", "--size", "2000"});
  INFO(r.out);
  CHECK(r.status == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->ok == 200);
  CHECK(s->bytes == 200u * 5 * 2000);
  CHECK(srv.terminate(10s) == std::optional<int>(0));
}

TEST_CASE("a TLS client idle past --idle-timeout is disconnected with one log line" *
          needs_openssl) {
  tls_server srv({"--idle-timeout", "0.3"});
  // echo_client handshakes, echoes a line, then waits on its stdin (kept open): idle.
  test::child c({test::example_path("ECHO_CLIENT"), "--port", srv.port_text(), "--ca", certs().ca},
                test::child_options{.capture_stderr = true});
  c.write("one line\n");
  auto echoed = c.read_line(10s);
  REQUIRE(echoed);
  CHECK(*echoed == "one line");
  CHECK(srv.proc.wait_stderr_for("idle for too long, disconnected", 10s));
  INFO(srv.proc.stderr_seen());
  c.close_stdin();
  CHECK(c.wait(10s).has_value());  // whatever it says of the closed connection, it ends
  check_served(srv.port);
  CHECK(srv.terminate(5s) == std::optional<int>(0));
}
