// SPDX-License-Identifier: MIT
// Description: end to end: examples/http/http_server met by curl, Python's http.client and raw
// sockets (keep-alive, pipelining, bodies, every malformed request, deadlines, drain, load).
#include "process.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

// Starts http_server with args and reads its "http_server listening on 127.0.0.1:PORT" line.
// Returns: the port.
int start_server(test::child& server) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  CHECK(line->find("http_server listening on 127.0.0.1:") == 0);
  int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return port;
}

std::vector<std::string> server_argv(std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{test::example_path("HTTP_SERVER"), "--port", "0"};
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

test::requirement has_curl() {
  const char* p = std::getenv("CURL");
  return {test::requirement::kind::environment, "curl",
          p && *p ? "" : "CURL is empty: meson found no curl at configure time"};
}

std::string curl() { return std::getenv("CURL"); }

task<coring::socket> connect_to(io_context& ctx, int port) {
  address where = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
  coring::socket s = co_await tcp_connect(ctx, where);
  co_return s;
}

// One response as the client read it.
struct response {
  int status = 0;
  std::string head;  // status line and header fields, up to the blank line
  std::string body;
  bool complete = false;  // false: EOF or an error came first
};

// The value of header name in head (exact case, as the server writes it), or "".
std::string header_value(const std::string& head, const std::string& name) {
  const std::string key = "\r\n" + name + ": ";
  auto at = head.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return head.substr(at, head.find("\r\n", at) - at);
}

// Reads one response (framed by Content-Length; a HEAD's has no body) from s. carry holds what
// was read past the previous response and keeps what is read past this one. Each recv is
// bounded (10 s); EOF or an error leaves complete false.
task<response> read_response(coring::socket& s, std::string& carry, bool head_request = false) {
  response r;
  std::array<std::byte, 16384> buf;
  auto fill = [&]() -> task<bool> {
    auto got = co_await as_result(s.recv(buf).with_timeout(10s));
    if (!got || *got == 0) co_return false;
    carry += test::text(std::span(buf).first(*got));
    co_return true;
  };
  std::size_t end = 0;
  while ((end = carry.find("\r\n\r\n")) == std::string::npos) {
    auto more = fill();  // named: no temporary around the co_await (g++ 12)
    const bool ok = co_await std::move(more);
    if (!ok) co_return r;
  }
  r.head = carry.substr(0, end + 2);
  carry.erase(0, end + 4);
  if (r.head.size() >= 12) r.status = std::atoi(r.head.c_str() + 9);
  std::size_t length = 0;
  if (!head_request && r.status >= 200 && r.status != 204 && r.status != 304)
    length = static_cast<std::size_t>(std::atol(header_value(r.head, "Content-Length").c_str()));
  while (carry.size() < length) {
    auto more = fill();
    const bool ok = co_await std::move(more);
    if (!ok) co_return r;
  }
  r.body = carry.substr(0, length);
  carry.erase(0, length);
  r.complete = true;
  co_return r;
}

// True if the peer closed: recv gives EOF (or a reset) within 5 s, with no more data first.
task<bool> closed_by_peer(coring::socket& s) {
  std::array<std::byte, 4096> buf;
  auto got = co_await as_result(s.recv(buf).with_timeout(5s));
  if (got) co_return *got == 0;
  co_return got.error() == std::errc::connection_reset;
}

task<> send_text(coring::socket& s, std::string_view text) { co_await s.send_all(text); }

// Sends text, tolerating a peer that closed or reset the connection before it was all sent.
task<> send_ignoring_errors(coring::socket& s, std::string_view text) {
  auto r = co_await as_result(s.send_all(text));
  (void)r;
}

constexpr std::string_view hello = "Hello, world!\n";

// A GET of path on a keep-alive connection.
std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

// What a malformed request must get: its status, Connection: close, then the close.
struct rejection {
  const char* what;
  std::string request;
  int status;
};

std::vector<rejection> rejections() {
  const std::string big_field = "X-Big: " + std::string(9000, 'a') + "\r\n";
  return {
      {"both Content-Length and Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       400},
      {"differing Content-Lengths",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"a bad chunk size",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
       400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400},
      {"a bare CR", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
      {"a header block over 8 KiB", "GET / HTTP/1.1\r\nHost: a\r\n" + big_field + "\r\n", 431},
      {"a request target over 8 KiB",
       "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
      {"an unknown method", "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501},
      {"HTTP/2.0 in a request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"garbage", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), 400},
  };
}

// A client of the 1,000: connects, then 4 requests one at a time and a GET + HEAD pipelined,
// each answer checked. Returns: true if all were right.
task<bool> keep_alive_client(io_context& ctx, int port, int id) {
  auto conn =
      as_result(tcp_connect(ctx, address::ip("127.0.0.1", static_cast<std::uint16_t>(port))));
  auto s = co_await std::move(conn);
  if (!s) co_return false;
  std::string carry;
  for (int i = 0; i < 4; ++i) {
    const std::string req = get("/client/" + std::to_string(id) + "/" + std::to_string(i));
    auto sent = co_await as_result(s->send_all(req));
    if (!sent) co_return false;
    response r = co_await read_response(*s, carry);
    if (!r.complete || r.status != 200 || r.body != hello) co_return false;
  }
  const std::string two = get("/a") + "HEAD /b HTTP/1.1\r\nHost: test\r\n\r\n";
  auto sent = co_await as_result(s->send_all(two));
  if (!sent) co_return false;
  response a = co_await read_response(*s, carry);
  response b = co_await read_response(*s, carry, true);
  co_return a.complete&& a.status == 200 && a.body == hello&& b.complete&& b.status == 200 &&
      b.body.empty() && header_value(b.head, "Content-Length") == "14" && carry.empty();
}

// Sends head one byte per 100 ms (at most head.size() bytes) until the server closes.
// Returns: seconds from the first byte to the close, or -1 if it never closed.
task<double> slowloris(io_context& ctx, coring::socket& s, std::string head) {
  const auto start = steady::now();
  std::array<std::byte, 256> buf;
  for (char c : head) {
    auto sent = co_await as_result(s.send_all(std::string_view(&c, 1)));
    if (!sent) break;
    auto slept = co_await as_result(sleep_for(ctx, 100ms));
    (void)slept;
    auto got = co_await as_result(s.recv(buf, MSG_DONTWAIT));
    if (got && *got == 0) co_return std::chrono::duration<double>(steady::now() - start).count();
    if (!got && got.error() != std::errc::resource_unavailable_try_again)
      co_return std::chrono::duration<double>(steady::now() - start).count();
  }
  co_return -1.0;
}

// Runs a Python script with args; checks that it exits 0. Returns: its stdout.
std::string run_python(const char* script, std::vector<std::string> args) {
  std::vector<std::string> argv{test::python3(), "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  test::child py(argv);
  auto st = py.wait(30s);
  std::string out = py.read_rest(2s);
  REQUIRE(st);
  CHECK_MESSAGE(*st == 0, out);
  return out;
}

// Pipelining: every request in one sendall, the answers read one after another with
// http.client.HTTPResponse from one buffered reader (an HTTPResponse reads from a file, and
// one file per response would lose what it buffered past its own response).
const char* python_pipelining = R"(import http.client, socket, sys
class Shared:
    """One buffered reader for all the responses; HTTPResponse's close must not close it."""
    def __init__(self, f): self.f = f
    def makefile(self, mode): return self
    def __getattr__(self, name): return getattr(self.f, name)
    def close(self): pass
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
methods = ["GET"] * 10 + ["HEAD", "POST", "GET"]
wire = b""
for i, m in enumerate(methods):
    wire += b"%s /%d HTTP/1.1\r\nHost: test\r\n" % (m.encode(), i)
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
    assert r.getheader("Server") == "coring", r.getheaders()
    assert r.getheader("Date", "").endswith(" GMT"), r.getheaders()
    if m == "GET":
        assert body == b"Hello, world!\n", (i, body)
    elif m == "HEAD":
        assert body == b"" and r.getheader("Content-Length") == "14", (i, body)
    else:
        assert r.getheader("Allow") == "GET, HEAD", r.getheaders()
    print(i, r.status)
assert r.getheader("Connection") == "close"
assert shared.read() == b"", "data after the last response"
print("done")
)";

// HTTP/1.0 (closed after the response unless it asked for keep-alive) and Connection: close.
const char* python_versions = R"(import http.client, socket, sys
port = int(sys.argv[1])
# HTTP/1.0 without keep-alive: the answer, then EOF.
c = http.client.HTTPConnection("127.0.0.1", port)
c._http_vsn, c._http_vsn_str = 10, "HTTP/1.0"
c.request("GET", "/old")
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, world!\n"
assert r.getheader("Connection") == "close", r.getheaders()
assert r.will_close
# HTTP/1.0 with Connection: keep-alive: kept open, two requests on one connection.
class Shared:
    """One buffered reader for all the responses; HTTPResponse's close must not close it."""
    def __init__(self, f): self.f = f
    def makefile(self, mode): return self
    def __getattr__(self, name): return getattr(self.f, name)
    def close(self): pass
s = socket.create_connection(("127.0.0.1", port))
shared = Shared(s.makefile("rb"))
for i in range(2):
    s.sendall(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = http.client.HTTPResponse(shared, method="GET")
    r.begin()
    assert r.status == 200 and r.getheader("Connection") == "keep-alive", r.getheaders()
    assert r.fp.read(14) == b"Hello, world!\n"
s.close()
# HTTP/1.1 Connection: close: the answer says so, then EOF.
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
head, body = data.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 200 OK"), head
assert b"\r\nConnection: close" in head and body == b"Hello, world!\n", data
# http.client's own keep-alive: two requests on one HTTPConnection.
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(3):
    c.request("GET", "/again")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, world!\n" and not r.will_close
c.request("POST", "/form", body=b"x" * 100000)
r = c.getresponse()
assert r.status == 405 and r.read() == b"Method Not Allowed\n"
c.request("GET", "/after-post")
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, world!\n"
print("done")
)";

}  // namespace

// ---- curl ---------------------------------------------------------------------------------

TEST_CASE("curl GETs and HEADs hello, and reuses one connection for two URLs" *
          test::skip_unless(has_curl())) {
  test::child server(server_argv());
  const int port = start_server(server);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  {
    test::child c({curl(), "-sS", "-i", url + "index.html"});
    auto st = c.wait(20s);
    std::string out = c.read_rest(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(out.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(out.find("\r\nContent-Type: text/plain\r\n") != std::string::npos);
    CHECK(out.find("\r\nContent-Length: 14\r\n") != std::string::npos);
    CHECK(out.find("\r\nServer: coring\r\n") != std::string::npos);
    CHECK(out.find("\r\nDate: ") != std::string::npos);
    CHECK(out.substr(out.size() - hello.size()) == hello);
  }
  {
    test::child c({curl(), "-sS", "-I", url});
    auto st = c.wait(20s);
    std::string out = c.read_rest(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(out.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(out.find("Content-Length: 14") != std::string::npos);
    CHECK(out.find("Hello") == std::string::npos);
  }
  {
    test::child c({curl(), "-sS", "-v", url + "one", url + "two"}, {.capture_stderr = true});
    auto st = c.wait(20s);
    std::string out = c.read_rest(2s);
    std::string err = c.read_stderr(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(out == std::string(hello) + std::string(hello));
    CHECK_MESSAGE(err.find("Re-using existing connection") != std::string::npos, err);
  }
  {
    test::child c({curl(), "-sS", "-i", "--data-binary", "some=form", url});
    auto st = c.wait(20s);
    std::string out = c.read_rest(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK(out.find("HTTP/1.1 405 Method Not Allowed\r\n") == 0);
    CHECK(out.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  }
  stop_server(server);
}

// ---- Python http.client -------------------------------------------------------------------

TEST_CASE("Python http.client reads pipelined answers in order, bodies right" *
          test::skip_unless(test::has_python3())) {
  test::child server(server_argv());
  const int port = start_server(server);
  std::string out = run_python(python_pipelining, {std::to_string(port)});
  CHECK(out.find("12 200\ndone\n") != std::string::npos);
  stop_server(server);
}

TEST_CASE("Python http.client: HTTP/1.0, keep-alive, Connection: close and a discarded body" *
          test::skip_unless(test::has_python3())) {
  test::child server(server_argv());
  const int port = start_server(server);
  std::string out = run_python(python_versions, {std::to_string(port)});
  CHECK(out == "done\n");
  stop_server(server);
}

// ---- raw sockets --------------------------------------------------------------------------

TEST_CASE("every malformed request gets its status and Connection: close, then the close") {
  test::child server(server_argv());
  const int port = start_server(server);
  io_context ctx;
  for (const rejection& r : rejections()) {
    CAPTURE(r.what);
    coring::socket s = test::run(ctx, connect_to(ctx, port));
    test::run(ctx, send_ignoring_errors(s, r.request));
    std::string carry;
    response got = test::run(ctx, read_response(s, carry));
    CHECK(got.complete);
    CHECK(got.status == r.status);
    CHECK(header_value(got.head, "Connection") == "close");
    CHECK(carry.empty());
    CHECK(test::run(ctx, closed_by_peer(s)));
  }
  // After a good request on the same connection: the good one's answer first.
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  test::run(ctx, send_text(s, get("/fine") + "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"));
  std::string carry;
  response ok = test::run(ctx, read_response(s, carry));
  response bad = test::run(ctx, read_response(s, carry));
  CHECK(ok.status == 200);
  CHECK(ok.body == hello);
  CHECK(bad.status == 400);
  CHECK(test::run(ctx, closed_by_peer(s)));
  stop_server(server);
}

namespace {

// Bodies framed and discarded, on the receive path args choose.
void check_bodies(std::vector<std::string> args) {
  test::child server(server_argv(std::move(args)));
  const int port = start_server(server);
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  std::string carry;
  // A body that looks like a request must not be taken for one.
  const std::string sneaky = get("/smuggled");
  test::run(ctx,
            send_text(s, "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: " +
                             std::to_string(sneaky.size()) + "\r\n\r\n" + sneaky + get("/next")));
  response r1 = test::run(ctx, read_response(s, carry));
  response r2 = test::run(ctx, read_response(s, carry));
  CHECK(r1.status == 405);
  CHECK(header_value(r1.head, "Allow") == "GET, HEAD");
  CHECK(r2.status == 200);
  CHECK(r2.body == hello);
  // Chunked, with an extension and a trailer, then a GET in the same send.
  test::run(ctx, send_text(s,
                           "PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
                               get("/after-chunks")));
  response r3 = test::run(ctx, read_response(s, carry));
  response r4 = test::run(ctx, read_response(s, carry));
  CHECK(r3.status == 405);
  CHECK(r4.status == 200);
  // A GET with a body: answered 200, the body skipped.
  test::run(ctx, send_text(s,
                           "GET /with-body HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n"
                           "GET " +
                               get("/then")));
  response r5 = test::run(ctx, read_response(s, carry));
  response r6 = test::run(ctx, read_response(s, carry));
  CHECK(r5.status == 200);
  CHECK(r6.status == 200);
  // Expect: 100-continue: the interim answer comes before the body is sent.
  test::run(ctx, send_text(s,
                           "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n"
                           "Expect: 100-continue\r\n\r\n"));
  response cont = test::run(ctx, read_response(s, carry));
  CHECK(cont.status == 100);
  // A large body in pieces, then the final answer.
  const std::string piece(10000, 'b');
  for (int i = 0; i < 10; ++i)
    test::run(ctx, send_text(s, piece));
  response r7 = test::run(ctx, read_response(s, carry));
  CHECK(r7.status == 405);
  // A chunked body split at every byte boundary over several sends.
  const std::string chunked =
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "a\r\n0123456789\r\n0\r\n\r\n";
  for (char c : chunked)
    test::run(ctx, send_text(s, std::string(1, c)));
  response r8 = test::run(ctx, read_response(s, carry));
  CHECK(r8.status == 405);
  // A head in single bytes.
  for (char c : get("/slowly"))
    test::run(ctx, send_text(s, std::string(1, c)));
  response r9 = test::run(ctx, read_response(s, carry));
  CHECK(r9.status == 200);
  CHECK(r9.body == hello);
  CHECK(carry.empty());
  stop_server(server);
}

}  // namespace

TEST_CASE("bodies are framed and discarded: Content-Length, chunked, 100-continue, pieces") {
  check_bodies({});  // a recv per reception into the connection's buffer
}

TEST_CASE("bodies are framed and discarded with --multishot (receptions from a buffer ring)") {
  check_bodies({"--multishot"});
}

TEST_CASE("1,000 concurrent keep-alive clients each get every answer right") {
  test::child server(server_argv());
  const int port = start_server(server);
  io_context ctx;
  std::vector<task<bool>> clients;
  for (int i = 0; i < 1000; ++i)
    clients.push_back(keep_alive_client(ctx, port, i));
  std::vector<bool> ok = test::run(ctx, when_all(std::move(clients)), 60s);
  CHECK(std::count(ok.begin(), ok.end(), true) == 1000);
  stop_server(server);
}

// ---- deadlines ----------------------------------------------------------------------------

TEST_CASE("a slowloris is closed at --header-timeout while another client is served") {
  test::child server(server_argv({"--header-timeout", "1"}));
  const int port = start_server(server);
  io_context ctx;
  coring::socket slow = test::run(ctx, connect_to(ctx, port));
  double fast_done = -1;
  auto fast = [&](io_context& ctx) -> task<> {
    co_await sleep_for(ctx, 300ms);  // pacing: the slowloris is under way
    const auto start = steady::now();
    for (int i = 0; i < 3; ++i) {
      coring::socket s = co_await connect_to(ctx, port);
      co_await s.send_all(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      std::string carry;
      response r = co_await read_response(s, carry);
      CHECK(r.status == 200);
      CHECK(r.body == hello);
    }
    fast_done = 0.3 + std::chrono::duration<double>(steady::now() - start).count();
  };
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(100, 's');
  auto both = [&](io_context& ctx) -> task<double> {
    auto f = fast(ctx);
    auto l = slowloris(ctx, slow, head);
    auto both_done = co_await when_all(std::move(f), std::move(l));
    co_return std::get<1>(both_done);
  };
  const double closed_at = test::run_on(ctx, both);
  MESSAGE("slowloris closed after " << closed_at << " s");
  CHECK(closed_at >= 0.75);  // not earlier (the client may be scheduled late)
  CHECK(closed_at < 2.5);
  CHECK(fast_done > 0);
  CHECK(fast_done < closed_at);
  stop_server(server);
}

TEST_CASE("an idle keep-alive connection is closed at --idle-timeout") {
  test::child server(server_argv({"--idle-timeout", "1"}));
  const int port = start_server(server);
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  test::run(ctx, send_text(s, get("/")));
  std::string carry;
  response r = test::run(ctx, read_response(s, carry));
  CHECK(r.status == 200);
  const auto start = steady::now();
  CHECK(test::run(ctx, closed_by_peer(s)));
  const double secs = std::chrono::duration<double>(steady::now() - start).count();
  MESSAGE("idle connection closed after " << secs << " s");
  CHECK(secs >= 0.75);
  CHECK(secs < 2.5);
  stop_server(server);
}

TEST_CASE("a client that does not read its answers is closed at --send-timeout") {
  test::child server(server_argv({"--send-timeout", "1"}));
  const int port = start_server(server);
  io_context ctx;
  std::error_code why;
  auto body = [port, &why](io_context& ctx) -> task<double> {
    coring::socket s(ctx, AF_INET, SOCK_STREAM);
    s.set_option(sockopt::recv_buffer_size{4096});
    co_await s.connect(address::ip("127.0.0.1", static_cast<std::uint16_t>(port)));
    // Pipelined requests, never reading: the server's sends stall, then it closes.
    std::string batch;
    for (int i = 0; i < 100; ++i)
      batch += get("/unread");
    auto start = steady::now();
    for (int i = 0; i < 20000; ++i) {
      auto r = co_await as_result(s.send_all(batch).with_timeout(5s));
      if (!r) {
        why = r.error();
        break;
      }
    }
    co_return std::chrono::duration<double>(steady::now() - start).count();
  };
  const double secs = test::run_on(ctx, body, 60s);
  MESSAGE("non-reading client's sends ended after " << secs << " s: " << why.message());
  CHECK(why);
  CHECK(why != std::errc::timed_out);  // a stuck send: the server never closed
  CHECK(secs < 10);
  stop_server(server);
}

// ---- drain --------------------------------------------------------------------------------

TEST_CASE("SIGTERM with keep-alive connections and a slowloris open: exit 0 promptly") {
  test::child server(server_argv());
  const int port = start_server(server);
  io_context ctx;
  std::vector<coring::socket> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(test::run(ctx, connect_to(ctx, port)));
    test::run(ctx, send_text(idle.back(), get("/")));
    std::string carry;
    response r = test::run(ctx, read_response(idle.back(), carry));
    CHECK(r.status == 200);
  }
  coring::socket slow = test::run(ctx, connect_to(ctx, port));
  test::run(ctx, send_text(slow, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaa"));
  const auto start = steady::now();
  stop_server(server, 5s);
  const double secs = std::chrono::duration<double>(steady::now() - start).count();
  MESSAGE("exited " << secs << " s after SIGTERM");
  CHECK(secs < 2.5);
  for (auto& s : idle)
    CHECK(test::run(ctx, closed_by_peer(s)));
  CHECK(test::run(ctx, closed_by_peer(slow)));
}

TEST_CASE("http_server --help prints the usage and bad arguments exit 2") {
  CHECK(test::exit_status_of({test::example_path("HTTP_SERVER"), "--help"}) == 0);
  CHECK(test::exit_status_of({test::example_path("HTTP_SERVER"), "--threads", "0"}) == 2);
  CHECK(test::exit_status_of({test::example_path("HTTP_SERVER"), "--bogus"}) == 2);
}

TEST_CASE("http_server --threads 2 --multishot serves on one port and drains on SIGTERM") {
  test::child server(server_argv({"--threads", "2", "--multishot"}));
  auto line = server.read_line(10s);
  REQUIRE(line);
  CHECK(line->find("http_server listening on 127.0.0.1:") == 0);
  const int port = test::port_from_line(line->substr(0, line->find(" (")));
  REQUIRE(port > 0);
  io_context ctx;
  std::vector<task<bool>> clients;
  for (int i = 0; i < 50; ++i)
    clients.push_back(keep_alive_client(ctx, port, i));
  std::vector<bool> ok = test::run(ctx, when_all(std::move(clients)), 30s);
  CHECK(std::count(ok.begin(), ok.end(), true) == 50);
  stop_server(server);
}

// ---- --root: static files -----------------------------------------------------------------

namespace {

// A directory of files for --root, removed at the end: index.html, hello.txt, digits.txt
// ("0123456789" x 10), big.bin (size bytes of pseudo-random data), a symlink that leaves it.
struct web_root {
  explicit web_root(std::uintmax_t big_size) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "http_root_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    write("index.html", "<h1>index</h1>\n");
    write("hello.txt", "hello from a file\n");
    std::string digits;
    for (int i = 0; i < 10; ++i)
      digits += "0123456789";
    write("digits.txt", digits);
    std::filesystem::create_directory(dir / "sub");
    write("sub/index.html", "<p>sub</p>\n");
    std::filesystem::create_symlink("/etc/passwd", dir / "escape");
    std::ofstream big(dir / "big.bin", std::ios::binary);
    std::mt19937_64 gen(12);
    std::vector<std::uint64_t> block(8192);
    for (std::uintmax_t done = 0; done < big_size; done += block.size() * 8) {
      for (auto& w : block)
        w = gen();
      big.write(reinterpret_cast<const char*>(block.data()),
                static_cast<std::streamsize>(
                    std::min<std::uintmax_t>(block.size() * 8, big_size - done)));
    }
  }
  ~web_root() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
  }
  std::filesystem::path dir;
};

// What a curl run gave.
struct curl_run {
  int status = -1;
  std::string out;  // its stdout
};

// Runs curl with args. Returns: its exit status and stdout.
curl_run run_curl(std::vector<std::string> args) {
  args.insert(args.begin(), curl());
  test::child c(args);
  auto st = c.wait(60s);
  std::string out = c.read_rest(5s);
  REQUIRE(st);
  return {*st, out};
}

// The SHA-256 of a file, by Python's hashlib.
std::string sha256_of(const std::filesystem::path& file) {
  test::child py({test::python3(), "-c",
                  "import hashlib, sys\n"
                  "h = hashlib.sha256()\n"
                  "with open(sys.argv[1], 'rb') as f:\n"
                  "    for block in iter(lambda: f.read(1 << 20), b''):\n"
                  "        h.update(block)\n"
                  "print(h.hexdigest())\n",
                  file.string()});
  auto st = py.wait(60s);
  std::string out = py.read_rest(5s);
  REQUIRE(st);
  CHECK(*st == 0);
  return out;
}

}  // namespace

TEST_CASE("--root: curl gets files, index.html, 404, a range, 416, and no traversal" *
          test::skip_unless(has_curl())) {
  web_root root(1 << 20);
  test::child server(server_argv({"--root", root.dir.string()}));
  const int port = start_server(server);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  {
    const curl_run r = run_curl({"-sS", "-i", url + "/hello.txt"});
    CHECK(r.status == 0);
    CHECK(r.out.find("HTTP/1.1 200 OK\r\n") == 0);
    CHECK(r.out.find("\r\nContent-Type: text/plain") != std::string::npos);
    CHECK(r.out.find("\r\nLast-Modified: ") != std::string::npos);
    CHECK(r.out.find("\r\nServer: coring\r\n") != std::string::npos);
    CHECK(r.out.substr(r.out.find("\r\n\r\n") + 4) == "hello from a file\n");
  }
  {
    const curl_run r = run_curl({"-sS", url + "/"});
    CHECK(r.status == 0);
    CHECK(r.out == "<h1>index</h1>\n");
    const curl_run r2 = run_curl({"-sS", "-L", url + "/sub"});
    CHECK(r2.status == 0);
    CHECK(r2.out == "<p>sub</p>\n");
  }
  {
    const curl_run r =
        run_curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", url + "/nope.txt"});
    CHECK(r.status == 0);
    CHECK(r.out == "404");
  }
  {
    const curl_run r = run_curl({"-sS", "-i", "-r", "10-19", url + "/digits.txt"});
    CHECK(r.status == 0);
    CHECK(r.out.find("HTTP/1.1 206 ") == 0);
    CHECK(r.out.find("\r\nContent-Range: bytes 10-19/100\r\n") != std::string::npos);
    CHECK(r.out.substr(r.out.find("\r\n\r\n") + 4) == "0123456789");
    const curl_run r2 = run_curl(
        {"-sS", "-o", "/dev/null", "-w", "%{http_code}", "-r", "200-300", url + "/digits.txt"});
    CHECK(r2.status == 0);
    CHECK(r2.out == "416");
  }
  // Traversal: .., percent-encoded dots, a symlink out of the root, a NUL byte.
  for (const char* path : {"/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                           "/sub/..%2f..%2f..%2fetc/passwd", "/escape", "/hello.txt%00.html"}) {
    CAPTURE(path);
    const curl_run r = run_curl({"-sS", "--path-as-is", "-i", url + path});
    CHECK(r.status == 0);
    CHECK((r.out.find("HTTP/1.1 404 ") == 0 || r.out.find("HTTP/1.1 400 ") == 0));
    CHECK(r.out.find("root:") == std::string::npos);
  }
  // Keep-alive across files, one connection.
  {
    test::child c({curl(), "-sS", "-v", url + "/hello.txt", url + "/digits.txt", url + "/nope"},
                  {.capture_stderr = true});
    auto st = c.wait(20s);
    std::string err = c.read_stderr(2s);
    REQUIRE(st);
    CHECK(*st == 0);
    CHECK_MESSAGE(err.find("Re-using existing connection") != std::string::npos, err);
  }
  stop_server(server);
}

TEST_CASE(
    "--root: a 100 MiB file arrives whole (SHA-256), and file answers keep their pipelined order" *
    test::skip_unless(has_curl()) * test::skip_unless(test::has_python3())) {
  web_root root(100 << 20);
  test::child server(server_argv({"--root", root.dir.string()}));
  const int port = start_server(server);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  const auto got = root.dir / "downloaded.bin";
  const curl_run r = run_curl({"-sS", "-o", got.string(), url + "/big.bin"});
  CHECK(r.status == 0);
  CHECK(std::filesystem::file_size(got) == std::uintmax_t{100} << 20);
  CHECK(sha256_of(got) == sha256_of(root.dir / "big.bin"));
  // A file answer in the middle of pipelined requests keeps the order.
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  test::run(
      ctx, send_text(s, get("/hello.txt") + get("/digits.txt") + get("/nope") + get("/hello.txt")));
  std::string carry;
  response a = test::run(ctx, read_response(s, carry));
  response b = test::run(ctx, read_response(s, carry));
  response c = test::run(ctx, read_response(s, carry));
  response d = test::run(ctx, read_response(s, carry));
  CHECK(a.body == "hello from a file\n");
  CHECK(b.body.size() == 100);
  CHECK(c.status == 404);
  CHECK(d.body == "hello from a file\n");
  stop_server(server);
}
