// SPDX-License-Identifier: MIT
// Description: end to end: examples/http/http_server over TLS (--tls-cert/--tls-key) met by curl
// and Python's http.client over ssl (keep-alive, pipelining, files, a Range, ALPN), a client that
// stalls after or inside the handshake, plain HTTP sent to the HTTPS port, and the drain.
#include "process.hpp"
#include "test_support.hpp"
#include "tls_certs.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

// The test certificates, made once for the whole program (one run of the openssl command), in
// a directory removed at exit.
const test::tls_certs& certs() {
  static const test::temp_dir dir{"https-certs"};
  static const test::tls_certs made = test::make_tls_certs(dir);
  return made;
}

// Starts http_server over TLS with extra arguments; reads its listening line. Returns: the port.
int start_server(test::child& server) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  CHECK(line->find("http_server listening on 127.0.0.1:") == 0);
  int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return port;
}

std::vector<std::string> server_argv(std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{test::example_path("HTTP_SERVER"),
                                "--port",
                                "0",
                                "--tls-cert",
                                certs().server_cert,
                                "--tls-key",
                                certs().server_key};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// SIGTERM, then the server must exit 0 within limit.
void stop_server(test::child& server, std::chrono::milliseconds limit = 5s) {
  server.signal(SIGTERM);
  auto st = server.wait(limit);
  REQUIRE(st);
  CHECK(*st == 0);
}

// Every case needs the openssl command (the certificates); then curl or python3.
test::requirement has_curl() {
  if (!test::openssl_program()) return test::has_openssl();
  const char* p = std::getenv("CURL");
  return {test::requirement::kind::environment, "curl",
          p && *p ? "" : "CURL is empty: meson found no curl at configure time"};
}

test::requirement has_python3() {
  if (!test::openssl_program()) return test::has_openssl();
  return test::has_python3();
}

// curl trusting the test CA, "localhost" pinned to 127.0.0.1 (the server listens there only).
std::vector<std::string> curl(int port, std::vector<std::string> args) {
  std::vector<std::string> argv{
      std::getenv("CURL"), "-sS",
      "--max-time",        "30",
      "--cacert",          certs().ca,
      "--resolve",         "localhost:" + std::to_string(port) + ":127.0.0.1"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string url(int port, const std::string& path = "/") {
  return "https://localhost:" + std::to_string(port) + path;
}

// A finished curl: its exit status, stdout and stderr.
struct ran {
  int status = -1;
  std::string out, err;
};

ran run_curl(int port, std::vector<std::string> args) {
  test::child c(curl(port, std::move(args)), {.capture_stderr = true});
  auto st = c.wait(40s);
  ran r;
  r.out = c.read_rest(2s);
  r.err = c.read_stderr(2s);
  REQUIRE(st);
  r.status = *st;
  return r;
}

constexpr std::string_view hello = "Hello, world!\n";

// Runs a Python script with args; checks that it exits 0. Returns: its stdout.
std::string run_python(const char* script, std::vector<std::string> args) {
  std::vector<std::string> argv{test::python3(), "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  test::child py(argv);
  auto st = py.wait(60s);
  std::string out = py.read_rest(2s);
  REQUIRE(st);
  CHECK_MESSAGE(*st == 0, out);
  return out;
}

// The contents of a file.
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The SHA-256 of a file in hex, by the openssl command (the one that made the certificates).
std::string sha256_of(const std::string& path) {
  test::child c({test::openssl_program(), "dgst", "-sha256", "-r", path});
  auto st = c.wait(30s);
  std::string out = c.read_rest(2s);
  REQUIRE(st);
  REQUIRE(*st == 0);
  return out.substr(0, out.find(' '));
}

// Keep-alive with http.client.HTTPSConnection (verifying the CA and the host name): five
// requests on one TLS connection, then a POST whose body is discarded, then one more.
const char* python_keep_alive = R"(import http.client, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("localhost", port, context=ctx)
c.connect()
first = c.sock
assert c.sock.selected_alpn_protocol() in (None, "http/1.1")
for i in range(5):
    c.request("GET", "/k%d" % i)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, world!\n" and not r.will_close, r.status
c.request("POST", "/form", body=b"x" * 100000)
r = c.getresponse()
assert r.status == 405 and r.read() == b"Method Not Allowed\n"
c.request("GET", "/after-post")
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, world!\n"
assert c.sock is first, "a second connection"
print(c.sock.version())
print("done")
)";

// Pipelining over ssl: every request in one sendall (their answers, some 14 KiB, fill the
// server's 8 KiB answer buffer more than once), the answers read in order from one buffered
// reader; ALPN offered as http/1.1 and accepted.
const char* python_pipelining = R"(import http.client, socket, ssl, sys
class Shared:
    """One buffered reader for all the responses; HTTPResponse's close must not close it."""
    def __init__(self, f): self.f = f
    def makefile(self, mode): return self
    def __getattr__(self, name): return getattr(self.f, name)
    def close(self): pass
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
raw = socket.create_connection(("127.0.0.1", port))
s = ctx.wrap_socket(raw, server_hostname="localhost")
assert s.selected_alpn_protocol() == "http/1.1", s.selected_alpn_protocol()
methods = ["GET"] * 100 + ["HEAD", "POST", "GET"]
wire = b""
for i, m in enumerate(methods):
    wire += b"%s /%d HTTP/1.1\r\nHost: localhost\r\n" % (m.encode(), i)
    if m == "POST":
        wire += b"Content-Length: 11\r\n\r\nhello=world"
    elif i == len(methods) - 1:
        wire += b"Connection: close\r\n\r\n"
    else:
        wire += b"\r\n"
s.sendall(wire)
shared = Shared(s.makefile("rb"))
for i, m in enumerate(methods):
    r = http.client.HTTPResponse(shared, method=m)
    r.begin()
    body = r.read()
    want = 405 if m == "POST" else 200
    assert r.status == want, (i, r.status)
    if m == "GET":
        assert body == b"Hello, world!\n", (i, body)
    elif m == "HEAD":
        assert body == b"" and r.getheader("Content-Length") == "14", (i, body)
print(i, r.status)
assert r.getheader("Connection") == "close"
try:
    rest = shared.read()
except ssl.SSLEOFError:
    rest = b""
assert rest == b"", "data after the last response"
print("done")
)";

// Completes the handshake, sends nothing, and waits for the server to close. Prints the seconds
// from the handshake to the close.
const char* python_stall = R"(import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port))
raw.settimeout(20)
s = ctx.wrap_socket(raw, server_hostname="localhost")
start = time.monotonic()
try:
    data = s.recv(100)
    assert data == b"", data
except (ssl.SSLEOFError, ConnectionResetError):
    pass
print("%.3f" % (time.monotonic() - start))
)";

// A keep-alive client that waits (on stdin) between two requests: prints "ready" after the first,
// then, once stdin closes, "closed" if the server had closed the connection.
const char* python_idle = R"(import http.client, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
c.request("GET", "/")
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, world!\n"
print("ready", flush=True)
sys.stdin.read()
try:
    data = c.sock.recv(100)
    print("closed" if data == b"" else "data")
except (ssl.SSLError, OSError):
    print("closed")
)";

// Asks for /big.bin with a 4 KiB receive buffer, reads 100 bytes, prints "ready", then reads
// nothing more until stdin closes (the server's send of the body stalls).
const char* python_slow_reader = R"(import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
print("ready", flush=True)
sys.stdin.read()
)";

task<coring::socket> connect_to(io_context& ctx, int port) {
  address where = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
  coring::socket s = co_await tcp_connect(ctx, where);
  co_return s;
}

// Sends text. Returns: whether it all went.
task<bool> send_text(coring::socket& s, std::string_view text) {
  auto r = co_await as_result(s.send_all(text));
  co_return static_cast<bool>(r);
}

// Everything the peer sends until it closes (EOF or a reset), at most 5 s and 64 KiB.
// Returns: what came, and whether it closed.
struct until_close {
  std::string got;
  bool closed = false;
};
task<until_close> read_until_close(coring::socket& s) {
  until_close r;
  std::array<std::byte, 4096> buf;
  const auto limit = steady::now() + 5s;
  while (steady::now() < limit && r.got.size() < 65536) {
    auto got = co_await as_result(s.recv(buf).with_timeout(5s));
    if (!got) {
      r.closed = got.error() == std::errc::connection_reset;
      break;
    }
    if (*got == 0) {
      r.closed = true;
      break;
    }
    r.got += test::text(std::span(buf).first(*got));
  }
  co_return r;
}

}  // namespace

// ---- curl ---------------------------------------------------------------------------------

TEST_CASE("curl over HTTPS: hello, HEAD, a POST, ALPN http/1.1 and one connection for two URLs" *
          test::skip_unless(has_curl())) {
  test::child server(server_argv());
  const int port = start_server(server);
  {
    ran c = run_curl(port, {"-i", url(port)});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(c.out.find("\r\nContent-Length: 14\r\n") != std::string::npos);
    CHECK(c.out.find("\r\nServer: coring\r\n") != std::string::npos);
    CHECK(c.out.size() >= hello.size());
    CHECK(c.out.substr(c.out.size() - std::min(c.out.size(), hello.size())) == hello);
  }
  {
    ran c = run_curl(port, {"-I", url(port)});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(c.out.find("Content-Length: 14") != std::string::npos);
    CHECK(c.out.find("Hello") == std::string::npos);
  }
  {
    ran c = run_curl(port, {"-i", "--data-binary", "some=form", url(port)});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out.find("HTTP/1.1 405 Method Not Allowed\r\n") == 0);
  }
  {  // curl offers h2 and http/1.1: the server picks http/1.1
    ran c = run_curl(port, {"-v", url(port, "/one"), url(port, "/two")});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out == std::string(hello) + std::string(hello));
    CHECK_MESSAGE(c.err.find("Re-using existing connection") != std::string::npos, c.err);
    CHECK_MESSAGE(c.err.find("ALPN: server accepted http/1.1") != std::string::npos, c.err);
    CHECK_MESSAGE(c.err.find("SSL certificate verify ok") != std::string::npos, c.err);
  }
  {
    ran c = run_curl(port, {"-v", "--http1.1", "--tlsv1.2", "--tls-max", "1.2", url(port)});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out == hello);
    CHECK_MESSAGE(c.err.find("ALPN: server accepted http/1.1") != std::string::npos, c.err);
    CHECK_MESSAGE(c.err.find("TLSv1.2") != std::string::npos, c.err);
  }
  {
    ran c = run_curl(port, {"-v", "--http1.1", url(port)});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out == hello);
    CHECK_MESSAGE(c.err.find("TLSv1.3") != std::string::npos, c.err);
  }
  stop_server(server);
}

TEST_CASE("curl over HTTPS with --root: a 20 MiB file by SHA-256, a Range and a 404" *
          test::skip_unless(has_curl())) {
  test::temp_dir root_dir{"https-root"};
  test::temp_dir copy_dir{"https-copy"};
  const std::string root = root_dir.path();
  std::string big(20u << 20, '\0');
  std::mt19937_64 rng(13);
  for (std::size_t i = 0; i < big.size(); i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(big.data() + i, &v, 8);
  }
  test::write_file(root + "/big.bin", big);
  test::write_file(root + "/index.html", "<p>hi</p>\n");
  test::child server(server_argv({"--root", root}));
  const int port = start_server(server);
  const std::string copy = copy_dir / "big.bin";
  {
    ran c =
        run_curl(port, {"-o", copy, "-w", "%{http_code} %{size_download}", url(port, "/big.bin")});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out == "200 " + std::to_string(big.size()));
    CHECK(sha256_of(copy) == sha256_of(root + "/big.bin"));
  }
  {
    ran c = run_curl(port, {"-i", "-r", "1000-1999", url(port, "/big.bin")});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out.find("HTTP/1.1 206 Partial Content\r\n") == 0);
    CHECK(c.out.find("\r\nContent-Range: bytes 1000-1999/20971520\r\n") != std::string::npos);
    const auto body = c.out.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    CHECK(c.out.substr(body + 4) == big.substr(1000, 1000));
  }
  {
    ran c = run_curl(port, {"-w", "%{http_code}", "-o", "/dev/null", url(port, "/missing")});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK(c.out == "404");
  }
  {  // a small file, and the big one again on the same connection
    ran c = run_curl(port,
                     {"-v", "-o", "/dev/null", url(port, "/"), "-o", copy, url(port, "/big.bin")});
    CHECK_MESSAGE(c.status == 0, c.err);
    CHECK_MESSAGE(c.err.find("Re-using existing connection") != std::string::npos, c.err);
    CHECK(slurp(copy) == big);
  }
  stop_server(server);
}

// ---- Python's ssl -------------------------------------------------------------------------

TEST_CASE("Python http.client over ssl: keep-alive on one TLS connection, and pipelining" *
          test::skip_unless(has_python3())) {
  test::child server(server_argv());
  const int port = start_server(server);
  std::string out = run_python(python_keep_alive, {std::to_string(port), certs().ca});
  CHECK(out == "TLSv1.3\ndone\n");
  out = run_python(python_pipelining, {std::to_string(port), certs().ca});
  CHECK(out == "102 200\ndone\n");
  stop_server(server);
}

// ---- deadlines and strangers ----------------------------------------------------------------

TEST_CASE("a client that stalls after or inside the handshake is closed at --header-timeout" *
          test::skip_unless(has_python3())) {
  test::child server(server_argv({"--header-timeout", "1"}));
  const int port = start_server(server);
  {
    std::string out = run_python(python_stall, {std::to_string(port), certs().ca});
    const double secs = std::atof(out.c_str());
    MESSAGE("closed " << secs << " s after the handshake");
    CHECK(secs > 0.5);
    CHECK(secs < 2.5);
  }
  {  // connected, never a ClientHello
    io_context ctx;
    coring::socket s = test::run(ctx, connect_to(ctx, port));
    const auto start = steady::now();
    until_close r = test::run(ctx, read_until_close(s), 10s);
    const double secs = std::chrono::duration<double>(steady::now() - start).count();
    MESSAGE("closed " << secs << " s into the handshake");
    CHECK(r.closed);
    CHECK(secs > 0.5);
    CHECK(secs < 2.5);
  }
  std::string out = run_python(python_keep_alive, {std::to_string(port), certs().ca});
  CHECK(out == "TLSv1.3\ndone\n");
  stop_server(server);
}

TEST_CASE("plain HTTP sent to the HTTPS port is closed, and the server goes on serving" *
          test::skip_unless(has_python3())) {
  test::child server(server_argv());
  const int port = start_server(server);
  io_context ctx;
  for (int i = 0; i < 3; ++i) {
    coring::socket s = test::run(ctx, connect_to(ctx, port));
    CHECK(test::run(ctx, send_text(s, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")));
    until_close r = test::run(ctx, read_until_close(s), 10s);
    CHECK(r.closed);
    CHECK(r.got.find("HTTP/") == std::string::npos);  // at most a TLS alert
  }
  std::string out = run_python(python_keep_alive, {std::to_string(port), certs().ca});
  CHECK(out == "TLSv1.3\ndone\n");
  stop_server(server);
}

// ---- drain --------------------------------------------------------------------------------

TEST_CASE("SIGTERM with idle TLS connections and a half-done handshake: exit 0 promptly" *
          test::skip_unless(has_python3())) {
  test::child server(server_argv());
  const int port = start_server(server);
  std::vector<std::unique_ptr<test::child>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(std::make_unique<test::child>(std::vector<std::string>{
        test::python3(), "-c", python_idle, std::to_string(port), certs().ca}));
    auto line = idle.back()->read_line(30s);
    REQUIRE(line);
    CHECK(*line == "ready");
  }
  io_context ctx;
  coring::socket half = test::run(ctx, connect_to(ctx, port));
  CHECK(test::run(ctx, send_text(half, std::string_view("\x16\x03\x01\x00\xff\x01", 6))));
  const auto start = steady::now();
  stop_server(server, 5s);
  const double secs = std::chrono::duration<double>(steady::now() - start).count();
  MESSAGE("exited " << secs << " s after SIGTERM");
  CHECK(secs < 2.5);
  for (auto& c : idle) {
    c->close_stdin();
    auto st = c->wait(30s);
    std::string out = c->read_rest(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(out == "closed\n");
  }
  until_close r = test::run(ctx, read_until_close(half), 10s);
  CHECK(r.closed);
}

TEST_CASE("SIGTERM while a client does not read a file over TLS: exit 0 at the grace limit" *
          test::skip_unless(has_python3())) {
  test::temp_dir root{"https-slow"};
  test::write_file(root / "big.bin", std::string(32u << 20, 'x'));
  test::child server(server_argv({"--root", root.path(), "--grace", "1"}));
  const int port = start_server(server);
  test::child reader({test::python3(), "-c", python_slow_reader, std::to_string(port), certs().ca});
  auto line = reader.read_line(30s);
  REQUIRE(line);
  CHECK(*line == "ready");
  const auto start = steady::now();
  stop_server(server, 5s);
  const double secs = std::chrono::duration<double>(steady::now() - start).count();
  MESSAGE("exited " << secs << " s after SIGTERM (--grace 1)");
  CHECK(secs > 0.9);
  CHECK(secs < 2.5);
  reader.close_stdin();
  CHECK(reader.wait(30s));
}

TEST_CASE("http_server --tls-cert: a missing key or certificate is refused with a clear error" *
          test::skip_unless(test::has_openssl())) {
  const std::string bin = test::example_path("HTTP_SERVER");
  CHECK(test::exit_status_of({bin, "--port", "0", "--tls-cert", certs().server_cert}) == 2);
  test::child bad(
      {bin, "--port", "0", "--tls-cert", certs().server_cert, "--tls-key", certs().expired_key},
      {.capture_stderr = true});
  auto st = bad.wait(10s);
  std::string err = bad.read_stderr(2s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK_MESSAGE(err.find("tls context") != std::string::npos, err);
}
