// SPDX-License-Identifier: MIT
// Description: end to end: the tutorial's upper, chat and serial servers and their clients.
#include "process.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

// Reads the "<name> listening on 127.0.0.1:PORT" line. Returns: the port.
int start_server(test::child& server, const std::string& name) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  CHECK(line->find(name + " listening on 127.0.0.1:") == 0);
  int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return port;
}

// SIGTERM, then the server must exit 0 promptly.
void stop_server(test::child& server) {
  server.signal(SIGTERM);
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// The next line the server prints, failing the test (not hanging) if none comes.
std::string next_line(test::child& server) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  return *line;
}

task<coring::socket> connect_to(io_context& ctx, int port) {
  address where = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
  coring::socket s = co_await tcp_connect(ctx, where);
  co_return s;
}

task<> send_text(coring::socket& s, std::string_view text) { co_await s.send_all(text); }

// Reads until want bytes arrived or EOF; each recv is bounded.
task<std::string> recv_exactly(coring::socket& s, std::size_t want) {
  std::string got;
  std::array<std::byte, 4096> buf;
  while (got.size() < want) {
    std::size_t n = co_await s.recv(buf).with_timeout(10s);
    if (n == 0) break;
    got += test::text(std::span(buf).first(n));
  }
  co_return got;
}

// Reads through the first '\n' (or to EOF or a reset: what arrived before it is returned).
task<std::string> recv_line(coring::socket& s) {
  std::string got;
  std::array<std::byte, 4096> buf;
  while (got.find('\n') == std::string::npos) {
    auto r = co_await as_result(s.recv(buf).with_timeout(10s));
    if (!r || *r == 0) break;
    got += test::text(std::span(buf).first(*r));
  }
  co_return got;
}

// Sends text and reads a reply of the same length (what the upper-casing servers send back).
task<std::string> round_trip(coring::socket& s, std::string_view text) {
  co_await s.send_all(text);
  std::string reply = co_await recv_exactly(s, text.size());
  co_return reply;
}

// What upper_server and serial_server send back: ASCII a-z upper-cased, other bytes unchanged.
std::string upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

// A client of a concurrent server: sends its message in two pieces, records the reply.
task<> upper_client_task(coring::socket& s, std::string message, std::string& reply) {
  std::string_view m = message;
  co_await s.send_all(m.substr(0, m.size() / 2));
  co_await s.send_all(m.substr(m.size() / 2));
  reply = co_await recv_exactly(s, m.size());
}

// Closes on the ring (a reset if SO_LINGER {on, 0} was set).
task<> close_socket(coring::socket& s) { co_await s.close(); }

// Sends text, tolerating a peer that resets the connection before it was all sent.
task<> send_ignoring_errors(coring::socket& s, std::string_view text) {
  auto r = co_await as_result(s.send_all(text));
  (void)r;
}

// A recv that must not block (MSG_DONTWAIT). Returns: its result (EAGAIN if nothing is there).
task<result<std::size_t>> recv_now(coring::socket& s) {
  std::array<std::byte, 16> buf;
  auto r = co_await as_result(s.recv(buf, MSG_DONTWAIT));
  co_return r;
}

// The client from Python's socket tutorial, unchanged except that the port is an argument.
const char* tutorial_client = R"(import socket, sys
HOST = "127.0.0.1"  # The server's hostname or IP address
PORT = int(sys.argv[1])  # The port used by the server
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.connect((HOST, PORT))
    s.sendall(b"hello")
    data = s.recv(1024)
print(f"Received {data!r}")
)";

std::string run_tutorial_client(int port) {
  test::child py({test::python3(), "-c", tutorial_client, std::to_string(port)});
  auto st = py.wait(20s);
  std::string out = py.read_rest(2s);
  REQUIRE(st);
  CHECK(*st == 0);
  return out;
}

// "127.0.0.1:NNN connected" -> "127.0.0.1:NNN".
std::string peer_of(const std::string& connected_line) {
  auto at = connected_line.rfind(" connected");
  REQUIRE(at != std::string::npos);
  CHECK(connected_line.find("127.0.0.1:") == 0);
  return connected_line.substr(0, at);
}

std::string local_name(const coring::socket& s) { return s.sock_name().to_string(); }

}  // namespace

// ---- upper_server / upper_client ----------------------------------------------------------

TEST_CASE("upper_client --message prints the line upper-cased, UTF-8 unchanged") {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  test::child client({test::example_path("UPPER_CLIENT"), "--port", std::to_string(port),
                      "--message", "hello ünïcode ✓"});
  auto st = client.wait(10s);
  std::string out = client.read_rest(2s);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(out == "HELLO üNïCODE ✓\n");
  stop_server(server);
}

TEST_CASE("upper_client upper-cases stdin lines: ASCII, UTF-8, empty and binary lines") {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  test::child client({test::example_path("UPPER_CLIENT"), "--port", std::to_string(port)});
  const std::string binary = "\x01\x02\x7f\x80\xfe\xff bin\0z"s;
  const std::vector<std::pair<std::string, std::string>> cases{
      {"Hello, World! abc-xyz 123", "HELLO, WORLD! ABC-XYZ 123"},
      {"ünïcode ✓", "üNïCODE ✓"},
      {"", ""},
      {binary, upper(binary)},
  };
  for (const auto& c : cases) {  // not a structured binding: clang 14 can't CAPTURE one
    CAPTURE(c.first);
    client.write(c.first + "\n");
    auto got = client.read_line(10s);
    REQUIRE(got);
    CHECK(*got == c.second);
  }
  client.close_stdin();
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  stop_server(server);
}

TEST_CASE("upper_server answers split lines, many lines per send, and every byte value") {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  // A line split across sends, then several lines in one send.
  CHECK(test::run(ctx, round_trip(s, "spl")) == "SPL");
  CHECK(test::run(ctx, round_trip(s, "it line\n")) == "IT LINE\n");
  CHECK(test::run(ctx, round_trip(s, "one\ntwo\nthree\n")) == "ONE\nTWO\nTHREE\n");
  // Binary garbage, NULs included: every byte comes back, only a-z changed.
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  for (int i = 0; i < 8; ++i)
    all += all;  // 64 KiB
  CHECK(test::run(ctx, round_trip(s, all)) == upper(all));
  // An unterminated last line is answered before EOF too.
  test::run(ctx, send_text(s, "tail"));
  s.shutdown(SHUT_WR);
  CHECK(test::run(ctx, recv_exactly(s, 100)) == "TAIL");
  stop_server(server);
}

TEST_CASE("upper_server serves 50 clients connected at the same time") {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  // Declared before the io_context, so that it also bounds the context's teardown.
  test::watchdog w(60s, "50 concurrent upper_server clients");
  io_context ctx;
  constexpr int clients = 50;
  std::vector<coring::socket> socks;
  for (int i = 0; i < clients; ++i)
    socks.push_back(test::run(ctx, connect_to(ctx, port)));
  // Every connection is open before any is served: a one-at-a-time server would fail here.
  std::vector<std::string> replies(clients);
  for (int i = 0; i < clients; ++i) {
    std::string message = "client " + std::to_string(i) + " says hello ✓\n";
    ctx.spawn(upper_client_task(socks[static_cast<std::size_t>(i)], message,
                                replies[static_cast<std::size_t>(i)]));
  }
  ctx.run();
  for (int i = 0; i < clients; ++i)
    CHECK(replies[static_cast<std::size_t>(i)] ==
          "CLIENT " + std::to_string(i) + " SAYS HELLO ✓\n");
  stop_server(server);
}

TEST_CASE("the Python tutorial client gets HELLO from upper_server" *
          test::skip_unless(test::has_python3())) {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  CHECK(run_tutorial_client(port) == "Received b'HELLO'\n");
  stop_server(server);
}

// ---- chat_server / chat_client ------------------------------------------------------------

TEST_CASE("chat_client sends typed lines, prints acks, and q ends it; the server logs it all") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  test::child client({test::example_path("CHAT_CLIENT"), "--port", std::to_string(port)});
  client.write("hello\n");
  auto a1 = client.read_line(10s);
  REQUIRE(a1);
  CHECK(*a1 == "ack: hello");
  client.write("ünïcode ✓ and more\n");
  auto a2 = client.read_line(10s);
  REQUIRE(a2);
  CHECK(*a2 == "ack: ünïcode ✓ and more");
  // One write: once the client has read "q" it may exit, and a later write to its stdin would
  // raise SIGPIPE here (the test keeps SIGPIPE's default action on purpose).
  client.write("q\nnever sent\n");
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(client.read_rest(2s).empty());

  std::string peer = peer_of(next_line(server));
  CHECK(next_line(server) == peer + ": hello");
  CHECK(next_line(server) == peer + ": ünïcode ✓ and more");
  CHECK(next_line(server) == peer + " disconnected");  // orderly close: no error reason
  stop_server(server);
}

TEST_CASE("chat_client ends at EOF on stdin and Q quits too") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  {
    test::child client({test::example_path("CHAT_CLIENT"), "--port", std::to_string(port)});
    client.write("one\n");
    auto a = client.read_line(10s);
    REQUIRE(a);
    CHECK(*a == "ack: one");
    client.close_stdin();
    auto st = client.wait(10s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
  {
    test::child client({test::example_path("CHAT_CLIENT"), "--port", std::to_string(port)});
    client.write("Q\n");
    auto st = client.wait(10s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
  std::string p1 = peer_of(next_line(server));
  CHECK(next_line(server) == p1 + ": one");
  CHECK(next_line(server) == p1 + " disconnected");
  std::string p2 = peer_of(next_line(server));
  CHECK(next_line(server) == p2 + " disconnected");
  stop_server(server);
}

TEST_CASE("chat_server acks each of several lines in one send, CRLF and an unterminated tail") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  std::string me = local_name(s);
  test::run(ctx, send_text(s, "first\nsecond\r\nthird\n"));
  std::string want = "ack: first\nack: second\nack: third\n";
  CHECK(test::run(ctx, recv_exactly(s, want.size())) == want);
  test::run(ctx, send_text(s, "last words"));
  s.shutdown(SHUT_WR);
  CHECK(test::run(ctx, recv_exactly(s, 1000)) == "ack: last words\n");
  CHECK(next_line(server) == me + " connected");
  CHECK(next_line(server) == me + ": first");
  CHECK(next_line(server) == me + ": second");
  CHECK(next_line(server) == me + ": third");
  CHECK(next_line(server) == me + ": last words");
  CHECK(next_line(server) == me + " disconnected");
  stop_server(server);
}

TEST_CASE("chat_server echoes binary bytes in the ack and escapes control bytes in its log") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  std::string me = local_name(s);
  const std::string garbage = "\x00\x01\x1b[2J\xff\xfe bin"s;
  test::run(ctx, send_text(s, garbage + "\n"));
  CHECK(test::run(ctx, recv_line(s)) == "ack: " + garbage + "\n");
  CHECK(next_line(server) == me + " connected");
  // Control bytes and invalid UTF-8 are escaped (log_escape.hpp), never written raw.
  CHECK(next_line(server) == me + ": \\x00\\x01\\x1B[2J\\xFF\\xFE bin");
  stop_server(server);
}

TEST_CASE("the Python tutorial client gets an ack from chat_server without sending a newline" *
          test::skip_unless(test::has_python3())) {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  CHECK(run_tutorial_client(port) == "Received b'ack: hello\\n'\n");
  std::string peer = peer_of(next_line(server));
  CHECK(next_line(server) == peer + ": hello");
  CHECK(next_line(server) == peer + " disconnected");
  stop_server(server);
}

TEST_CASE("chat_server keeps serving client B after client A resets its connection") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket a = test::run(ctx, connect_to(ctx, port));
  std::string peer_a = local_name(a);
  test::run(ctx, send_text(a, "from a\n"));
  CHECK(test::run(ctx, recv_line(a)) == "ack: from a\n");
  CHECK(next_line(server) == peer_a + " connected");
  CHECK(next_line(server) == peer_a + ": from a");
  a.set_option(sockopt::linger{true, 0});  // close() now sends RST, not FIN
  test::run(ctx, close_socket(a));
  std::string gone = next_line(server);
  CHECK(gone.find(peer_a + " disconnected: ") == 0);  // with the reason, e.g. a reset
  MESSAGE(gone);

  coring::socket b = test::run(ctx, connect_to(ctx, port));
  std::string peer_b = local_name(b);
  test::run(ctx, send_text(b, "from b\n"));
  CHECK(test::run(ctx, recv_line(b)) == "ack: from b\n");
  CHECK(next_line(server) == peer_b + " connected");
  CHECK(next_line(server) == peer_b + ": from b");
  stop_server(server);
}

TEST_CASE("an oversized line to chat_server disconnects only that client") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket a = test::run(ctx, connect_to(ctx, port));
  std::string peer_a = local_name(a);
  test::run(ctx, send_text(a, "before\n"));
  CHECK(test::run(ctx, recv_line(a)) == "ack: before\n");
  CHECK(next_line(server) == peer_a + " connected");
  CHECK(next_line(server) == peer_a + ": before");

  coring::socket b = test::run(ctx, connect_to(ctx, port));
  std::string peer_b = local_name(b);
  CHECK(next_line(server) == peer_b + " connected");
  std::string huge(100 * 1024, 'x');  // no newline at all
  // The server may reset B while the tail is still going out: a failed send is expected.
  test::run(ctx, send_ignoring_errors(b, huge));
  CHECK(test::run(ctx, recv_line(b)) == "error: line too long\n");
  CHECK(next_line(server) == peer_b + " disconnected: line too long");

  test::run(ctx, send_text(a, "still here\n"));
  CHECK(test::run(ctx, recv_line(a)) == "ack: still here\n");
  CHECK(next_line(server) == peer_a + ": still here");
  stop_server(server);
}

// ---- serial_server ------------------------------------------------------------------------

TEST_CASE("serial_server serves client 1 to the end before it even accepts client 2") {
  test::child server({test::example_path("SERIAL_SERVER"), "--port", "0"});
  int port = start_server(server, "serial_server");
  io_context ctx;
  coring::socket c1 = test::run(ctx, connect_to(ctx, port));
  std::string p1 = local_name(c1);
  CHECK(test::run(ctx, round_trip(c1, "one\n")) == "ONE\n");
  CHECK(next_line(server) == p1 + " connected");

  // Client 2's connection completes in the kernel's backlog; its bytes wait unread.
  coring::socket c2 = test::run(ctx, connect_to(ctx, port));
  std::string p2 = local_name(c2);
  test::run(ctx, send_text(c2, "two\n"));
  // The server is still busy with client 1, and client 2 has had no answer.
  CHECK(test::run(ctx, round_trip(c1, "again\n")) == "AGAIN\n");
  result<std::size_t> early = test::run(ctx, recv_now(c2));
  CHECK_FALSE(static_cast<bool>(early));
  CHECK(early.error() == std::errc::resource_unavailable_try_again);

  // Client 1 leaves; only now is client 2 accepted and answered.
  test::run(ctx, close_socket(c1));
  CHECK(test::run(ctx, recv_exactly(c2, 4)) == "TWO\n");
  CHECK(next_line(server) == p1 + " disconnected");
  CHECK(next_line(server) == p2 + " connected");
  c2.shutdown(SHUT_WR);
  CHECK(test::run(ctx, recv_exactly(c2, 1)).empty());  // EOF back once the server finished
  CHECK(next_line(server) == p2 + " disconnected");

  // And a third client after that.
  coring::socket c3 = test::run(ctx, connect_to(ctx, port));
  CHECK(test::run(ctx, round_trip(c3, "three ✓")) == "THREE ✓");
  CHECK(next_line(server) == local_name(c3) + " connected");
  stop_server(server);
}

TEST_CASE("the Python tutorial client gets HELLO from serial_server" *
          test::skip_unless(test::has_python3())) {
  test::child server({test::example_path("SERIAL_SERVER"), "--port", "0"});
  int port = start_server(server, "serial_server");
  CHECK(run_tutorial_client(port) == "Received b'HELLO'\n");
  stop_server(server);
}

// ---- all of them --------------------------------------------------------------------------

TEST_CASE("every tutorial server exits 0 on SIGTERM and SIGINT with a client connected") {
  for (const char* env : {"UPPER_SERVER", "CHAT_SERVER", "SERIAL_SERVER"}) {
    for (int sig : {SIGTERM, SIGINT}) {
      CAPTURE(env);
      CAPTURE(sig);
      std::string path = test::example_path(env);
      test::child server({path, "--port", "0"});
      auto first = server.read_line(10s);
      REQUIRE(first);
      int port = test::port_from_line(*first);
      REQUIRE(port > 0);
      io_context ctx;
      coring::socket s = test::run(ctx, connect_to(ctx, port));
      test::run(ctx, send_text(s, "ping\n"));
      CHECK(!test::run(ctx, recv_line(s)).empty());  // being served right now
      server.signal(sig);
      auto st = server.wait(5s);
      REQUIRE(st);
      CHECK(*st == 0);
    }
  }
}

TEST_CASE("tutorial programs print usage for --help and reject bad arguments with status 2") {
  for (const char* env :
       {"UPPER_SERVER", "UPPER_CLIENT", "CHAT_SERVER", "CHAT_CLIENT", "SERIAL_SERVER"}) {
    CAPTURE(env);
    std::string path = test::example_path(env);
    std::string name = path.substr(path.rfind('/') + 1);
    test::child help({path, "--help"});
    CHECK(help.read_rest(5s).find("usage: " + name) == 0);
    auto hst = help.wait(5s);
    REQUIRE(hst);
    CHECK(*hst == 0);
    for (auto args : {std::vector<std::string>{"--port", "70000"},
                      std::vector<std::string>{"--bogus"}, std::vector<std::string>{"--port"}}) {
      std::vector<std::string> argv{path};
      argv.insert(argv.end(), args.begin(), args.end());
      CHECK(test::exit_status_of(argv, 5s) == 2);
    }
  }
}

// ---- graceful shutdown and --idle-timeout (issue 4) ---------------------------------------

namespace {

constexpr const char* idle_timeout_arg = "1";  // seconds

// One recv, bounded: a server that never answers fails the test instead of hanging it.
// Returns: the byte count (0: EOF). Throws: a reset, or timed_out after 5 s.
task<std::size_t> recv_with_timeout(coring::socket& s, std::span<std::byte> buf) {
  std::size_t n = co_await s.recv(buf).with_timeout(5s);
  co_return n;
}

// Connects n clients and has each answered once, so that the server is serving all of them.
task<std::vector<coring::socket>> connect_served(io_context& ctx, int port, int n,
                                                 std::string_view ping, std::string_view want) {
  std::vector<coring::socket> socks;
  for (int i = 0; i < n; ++i) {
    coring::socket s = co_await connect_to(ctx, port);
    co_await s.send_all(ping);
    std::string got = co_await recv_exactly(s, want.size());
    CHECK(got == want);
    socks.push_back(std::move(s));
  }
  co_return socks;
}

// 100 clients being served, SIGTERM: the server ends them all and exits 0 well within the
// default grace period (a server that had to wait out the grace period would take 2 s).
void check_shutdown_with_100_clients(test::child& server, int port, std::string_view ping,
                                     std::string_view want) {
  io_context ctx;
  std::vector<coring::socket> socks = test::run(ctx, connect_served(ctx, port, 100, ping, want));
  REQUIRE(socks.size() == 100);
  server.signal(SIGTERM);
  auto st = server.wait(2s);
  REQUIRE(st);
  CHECK(*st == 0);
  // Every client was closed in order: EOF, not a reset or silence.
  std::array<std::byte, 16> buf;
  for (auto& s : socks)
    CHECK(test::run(ctx, recv_with_timeout(s, buf)) == 0);
}

// What a silent and an active client see with --idle-timeout 1 (idle_timeout_arg). Returns: the
// silent one's recv result (0: EOF, the server disconnected it).
// Margins for ASan -O0 and valgrind: the active client's pauses (250 ms) are a quarter of the
// idle timeout; together (2 s) they are twice the timeout.
task<std::size_t> silent_and_active(io_context& ctx, coring::socket& silent, coring::socket& active,
                                    std::string_view tick, std::string_view reply) {
  for (int i = 0; i < 8; ++i) {  // 8 x 250 ms: twice the idle timeout in total
    co_await sleep_for(ctx, 250ms);
    co_await active.send_all(tick);
    std::string got = co_await recv_exactly(active, reply.size());
    CHECK(got == reply);
  }
  std::array<std::byte, 16> buf;
  std::size_t n = co_await silent.recv(buf).with_timeout(5s);  // EOF, or timed_out
  co_return n;
}

}  // namespace

TEST_CASE("upper_server exits 0 within 2 s of SIGTERM with 100 clients connected") {
  test::child server({test::example_path("UPPER_SERVER"), "--port", "0"});
  int port = start_server(server, "upper_server");
  check_shutdown_with_100_clients(server, port, "ping", "PING");
}

TEST_CASE("chat_server exits 0 within 2 s of SIGTERM with 100 clients, logging each goodbye") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  check_shutdown_with_100_clients(server, port, "ping\n", "ack: ping\n");
  int connected = 0, disconnected = 0;
  std::string out = server.read_rest(2s);
  for (std::size_t at = 0, nl; (nl = out.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::string_view line(out.data() + at, nl - at);
    if (line.ends_with(" connected")) ++connected;
    if (line.ends_with(" disconnected")) ++disconnected;  // orderly: no error reason
  }
  CHECK(connected == 100);
  CHECK(disconnected == 100);
}

TEST_CASE("chat_server's shutdown acks a partial line it already received") {
  test::child server({test::example_path("CHAT_SERVER"), "--port", "0"});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket s = test::run(ctx, connect_to(ctx, port));
  std::string me = local_name(s);
  CHECK(next_line(server) == me + " connected");
  test::run(ctx, send_text(s, "full\npart"));
  CHECK(test::run(ctx, recv_line(s)) == "ack: full\n");
  CHECK(next_line(server) == me + ": full");
  server.signal(SIGTERM);  // "part" may or may not have been flushed by the 200 ms rule yet
  CHECK(test::run(ctx, recv_exactly(s, 100)) == "ack: part\n");  // then EOF
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(next_line(server) == me + ": part");
  CHECK(next_line(server) == me + " disconnected");
}

TEST_CASE("upper_server --idle-timeout drops a silent client and keeps an active one") {
  test::child server(
      {test::example_path("UPPER_SERVER"), "--port", "0", "--idle-timeout", idle_timeout_arg});
  int port = start_server(server, "upper_server");
  io_context ctx;
  coring::socket silent = test::run(ctx, connect_to(ctx, port));
  coring::socket active = test::run(ctx, connect_to(ctx, port));
  CHECK(test::run(ctx, silent_and_active(ctx, silent, active, "tick", "TICK")) == 0);
  CHECK(test::run(ctx, round_trip(active, "still here")) == "STILL HERE");
  stop_server(server);
}

TEST_CASE("chat_server --idle-timeout drops a silent client and keeps an active one") {
  test::child server(
      {test::example_path("CHAT_SERVER"), "--port", "0", "--idle-timeout", idle_timeout_arg});
  int port = start_server(server, "chat_server");
  io_context ctx;
  coring::socket silent = test::run(ctx, connect_to(ctx, port));
  coring::socket active = test::run(ctx, connect_to(ctx, port));
  std::string p_silent = local_name(silent), p_active = local_name(active);
  CHECK(test::run(ctx, silent_and_active(ctx, silent, active, "tick\n", "ack: tick\n")) == 0);
  test::run(ctx, send_text(active, "still here\n"));
  CHECK(test::run(ctx, recv_line(active)) == "ack: still here\n");
  // The log: both connect, the silent one leaves for being idle, the active one never leaves.
  std::vector<std::string> log;
  for (;;) {
    std::string line = next_line(server);
    log.push_back(line);
    if (line == p_active + ": still here") break;
  }
  auto has = [&log](const std::string& line) {
    return std::find(log.begin(), log.end(), line) != log.end();
  };
  CHECK(has(p_silent + " connected"));
  CHECK(has(p_active + " connected"));
  CHECK(has(p_silent + " disconnected: idle for too long"));
  CHECK(std::count(log.begin(), log.end(), p_active + ": tick") == 8);
  for (const auto& line : log)
    CHECK(line.find(p_active + " disconnected") != 0);
  stop_server(server);
}

TEST_CASE("serial_server --idle-timeout drops a silent client so that the next one is served") {
  test::child server(
      {test::example_path("SERIAL_SERVER"), "--port", "0", "--idle-timeout", idle_timeout_arg});
  int port = start_server(server, "serial_server");
  io_context ctx;
  coring::socket c1 = test::run(ctx, connect_to(ctx, port));
  std::string p1 = local_name(c1);
  CHECK(next_line(server) == p1 + " connected");
  coring::socket c2 = test::run(ctx, connect_to(ctx, port));  // waits in the backlog
  std::string p2 = local_name(c2);
  test::run(ctx, send_text(c2, "two\n"));
  // Client 1 never sends: the server drops it (EOF) and serves client 2.
  std::array<std::byte, 16> buf;
  CHECK(test::run(ctx, recv_with_timeout(c1, buf)) == 0);
  CHECK(test::run(ctx, recv_exactly(c2, 4)) == "TWO\n");
  CHECK(next_line(server) == p1 + " disconnected: idle for too long");
  CHECK(next_line(server) == p2 + " connected");
  stop_server(server);
}

TEST_CASE("tutorial servers document --idle-timeout and --grace and reject bad values") {
  for (const char* env : {"UPPER_SERVER", "CHAT_SERVER", "SERIAL_SERVER"}) {
    CAPTURE(env);
    std::string path = test::example_path(env);
    test::child help({path, "--help"});
    std::string text = help.read_rest(5s);
    CHECK(text.find("--idle-timeout SECONDS") != std::string::npos);
    CHECK(text.find("--grace SECONDS") != std::string::npos);
    for (auto args : {std::vector<std::string>{"--idle-timeout", "-1"},
                      std::vector<std::string>{"--idle-timeout", "soon"},
                      std::vector<std::string>{"--grace"}}) {
      std::vector<std::string> argv{path, "--port", "0"};
      argv.insert(argv.end(), args.begin(), args.end());
      CHECK(test::exit_status_of(argv, 5s) == 2);
    }
  }
}
