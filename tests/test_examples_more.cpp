// SPDX-License-Identifier: MIT
// Description: end to end: udp_echo_server, unix_echo_server, fd_pass and ping, each started as
// a real process and driven by coring clients, Python's socket module, or each other.
#include "process.hpp"
#include "test_support.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

// The "<name> listening on <address>" line. Returns: the address text.
std::string start_server(test::child& server, const std::string& name) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  const std::string prefix = name + " listening on ";
  REQUIRE(line->rfind(prefix, 0) == 0);
  return line->substr(prefix.size());
}

// SIGTERM, then the server must exit 0 promptly.
void stop_server(test::child& server) {
  server.signal(SIGTERM);
  auto st = server.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

std::string next_line(test::child& p) {
  auto line = p.read_line(10s);
  REQUIRE(line);
  return *line;
}

// A unique temporary path (pid + counter); nothing is created.
std::string temp_path(std::string_view tag) {
  static std::atomic<int> seq{0};
  return "/tmp/coring-more-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(seq++);
}

// Removes a temporary file when the test ends, even after a failed REQUIRE.
struct remove_at_end {
  std::string path;
  ~remove_at_end() { ::unlink(path.c_str()); }
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Runs an example with arguments that must be rejected. Returns: its exit status (checked to
// come with no sanitizer report on its stderr).
int exit_status(std::vector<std::string> argv) {
  const int st = test::exit_status_of(std::move(argv), 10s);
  REQUIRE(st >= 0);
  return st;
}

// ---- UDP helpers ---------------------------------------------------------------------------

// Sends one datagram and receives one (bounded). Returns: the reply; from gets its sender.
task<std::string> udp_round_trip(coring::socket& s, address to, std::string text, address& from) {
  co_await s.send_to(test::bytes(text), to);
  std::vector<std::byte> buf(70000);
  datagram d = co_await s.recv_from(buf).with_timeout(10s);
  from = d.from;
  co_return test::text(std::span(buf).first(d.size));
}

// ---- Unix helpers --------------------------------------------------------------------------

task<coring::socket> unix_connect(io_context& ctx, address where, int type) {
  coring::socket s(ctx, AF_UNIX, type);
  co_await s.connect(where);
  co_return s;
}

task<> send_text(coring::socket& s, std::string text) { co_await s.send_all(text); }

// One bounded recv. Returns: what it got ("" at EOF).
task<std::string> recv_once(coring::socket& s) {
  std::vector<std::byte> buf(70000);
  std::size_t n = co_await s.recv(buf).with_timeout(10s);
  co_return test::text(std::span(buf).first(n));
}

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

// "client pid=P uid=U gid=G <what>" for this process.
std::string our_credentials_line(const char* what) {
  return "client pid=" + std::to_string(::getpid()) + " uid=" + std::to_string(::getuid()) +
         " gid=" + std::to_string(::getgid()) + " " + what;
}

// Checks ping's output for `count` replies from 127.0.0.1 and the all-received summary.
void check_ping_output(const std::string& out, int count) {
  for (int seq = 1; seq <= count; ++seq) {
    CAPTURE(seq);
    auto at = out.find(" bytes from 127.0.0.1: icmp_seq=" + std::to_string(seq) + " ttl=");
    CHECK(at != std::string::npos);
    if (at != std::string::npos) CHECK(out.find(" ms\n", at) != std::string::npos);
  }
  const std::string n = std::to_string(count);
  CHECK(out.find("\n" + n + " packets transmitted, " + n + " received, 0% packet loss\n") !=
        std::string::npos);
}

}  // namespace

// ---- udp_echo_server -----------------------------------------------------------------------

TEST_CASE("udp_echo_server echoes datagrams to a coring client over IPv4 and IPv6") {
  for (std::string host : {"127.0.0.1", "::1"}) {
    CAPTURE(host);
    test::child server({test::example_path("UDP_ECHO_SERVER"), "--host", host, "--port", "0"});
    address where = address::parse(start_server(server, "udp_echo_server"));
    CHECK(where.host() == host);
    REQUIRE(where.port() > 0);
    io_context ctx;
    coring::socket s(ctx, where.family(), SOCK_DGRAM);
    address from;
    CHECK(test::run(ctx, udp_round_trip(s, where, "hello", from)) == "hello");
    CHECK(from == where);
    // Binary bytes, an empty datagram, and one near the IPv4 maximum come back whole.
    const std::string binary = "\x00\x01\xff bin\0z"s;
    CHECK(test::run(ctx, udp_round_trip(s, where, binary, from)) == binary);
    CHECK(test::run(ctx, udp_round_trip(s, where, "", from)) == "");
    const std::string big(65000, 'u');
    CHECK(test::run(ctx, udp_round_trip(s, where, big, from)) == big);
    stop_server(server);
  }
}

TEST_CASE("udp_echo_server answers Python's socket.sendto/recvfrom client" *
          test::skip_unless(test::has_python3())) {
  test::child server({test::example_path("UDP_ECHO_SERVER"), "--port", "0"});
  address where = address::parse(start_server(server, "udp_echo_server"));
  const char* client = R"(import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(10)
    s.sendto(b"hello udp", ("127.0.0.1", int(sys.argv[1])))
    data, addr = s.recvfrom(65536)
print(f"Received {data!r} from port {addr[1]}")
)";
  test::child py({test::python3(), "-c", client, std::to_string(where.port())});
  auto st = py.wait(20s);
  std::string out = py.read_rest(2s);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(out == "Received b'hello udp' from port " + std::to_string(where.port()) + "\n");
  stop_server(server);
}

TEST_CASE("udp_echo_server echoes the first --buffer-size bytes of a longer datagram") {
  test::child server(
      {test::example_path("UDP_ECHO_SERVER"), "--port", "0", "--buffer-size", "1024"});
  address where = address::parse(start_server(server, "udp_echo_server"));
  io_context ctx;
  coring::socket s(ctx, AF_INET, SOCK_DGRAM);
  std::string big;
  for (int i = 0; i < 2000; ++i)
    big += static_cast<char>('a' + i % 26);
  address from;
  CHECK(test::run(ctx, udp_round_trip(s, where, big, from)) == big.substr(0, 1024));
  // The server goes on normally afterwards.
  CHECK(test::run(ctx, udp_round_trip(s, where, "after", from)) == "after");
  stop_server(server);
}

TEST_CASE("udp_echo_server rejects bad arguments with exit status 2 and --help exits 0") {
  const std::string exe = test::example_path("UDP_ECHO_SERVER");
  CHECK(exit_status({exe, "--port", "70000"}) == 2);
  CHECK(exit_status({exe, "--host", "not-an-ip"}) == 2);
  CHECK(exit_status({exe, "--buffer-size", "0"}) == 2);
  CHECK(exit_status({exe, "--bogus"}) == 2);
  CHECK(exit_status({exe, "--help"}) == 0);
}

// ---- unix_echo_server ----------------------------------------------------------------------

TEST_CASE("unix_echo_server: stream and seqpacket, path and abstract name, credentials logged") {
  for (std::string type : {"stream", "seqpacket"}) {
    for (bool abstract : {false, true}) {
      CAPTURE(type);
      CAPTURE(abstract);
      const int sock_type = type == "stream" ? SOCK_STREAM : SOCK_SEQPACKET;
      const std::string path = temp_path("unix");
      const std::string name = test::unique_abstract_name("unix-echo");
      test::child server({test::example_path("UNIX_ECHO_SERVER"),
                          abstract ? "--abstract" : "--path", abstract ? name : path, "--type",
                          type});
      std::string listening = start_server(server, "unix_echo_server");
      CHECK(listening == (abstract ? "unix:@" + name : "unix:" + path));
      if (!abstract) CHECK(exists(path));
      address where = address::parse(listening);

      io_context ctx;
      {
        coring::socket c = test::run(ctx, unix_connect(ctx, where, sock_type));
        CHECK(next_line(server) == our_credentials_line("connected"));
        if (sock_type == SOCK_SEQPACKET) {
          // Three messages sent back to back come back as three messages: boundaries kept.
          test::run(ctx, send_text(c, "one"));
          test::run(ctx, send_text(c, "two, longer"));
          test::run(ctx, send_text(c, std::string(40000, 'x')));
          CHECK(test::run(ctx, recv_once(c)) == "one");
          CHECK(test::run(ctx, recv_once(c)) == "two, longer");
          CHECK(test::run(ctx, recv_once(c)) == std::string(40000, 'x'));
        } else {
          std::string all;
          for (int i = 0; i < 256; ++i)
            all += static_cast<char>(i);
          for (int i = 0; i < 8; ++i)
            all += all;  // 64 KiB
          test::run(ctx, send_text(c, all));
          CHECK(test::run(ctx, recv_exactly(c, all.size())) == all);
        }
      }  // the client closes
      CHECK(next_line(server) == our_credentials_line("disconnected"));

      // Graceful shutdown with a client still connected: the client sees EOF, the server exits
      // 0 and removes its socket file.
      coring::socket idle = test::run(ctx, unix_connect(ctx, where, sock_type));
      CHECK(next_line(server) == our_credentials_line("connected"));
      stop_server(server);
      CHECK(test::run(ctx, recv_once(idle)) == "");
      if (!abstract) CHECK_FALSE(exists(path));
    }
  }
}

TEST_CASE("unix_echo_server replaces a stale socket file but refuses a live one") {
  const std::string path = temp_path("stale");
  {
    // A socket file nobody serves any more: bound, then closed without unlinking.
    io_context ctx;
    coring::socket dead(ctx, AF_UNIX, SOCK_STREAM);
    dead.bind(address::unix_path(path));
  }
  REQUIRE(exists(path));
  test::child server({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
  CHECK(start_server(server, "unix_echo_server") == "unix:" + path);
  // A second server on the same path must not steal it.
  test::child second({test::example_path("UNIX_ECHO_SERVER"), "--path", path},
                     {.capture_stderr = true});
  const std::string err = second.read_stderr(10s);  // until it exits
  auto st = second.wait(10s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK_MESSAGE(!test::sanitizer_report(err), err);
  CHECK(exists(path));
  // Its liveness probe was a connection: the first server logged it.
  const std::string probe = "client pid=" + std::to_string(second.pid()) +
                            " uid=" + std::to_string(::getuid()) +
                            " gid=" + std::to_string(::getgid());
  CHECK(next_line(server) == probe + " connected");
  CHECK(next_line(server) == probe + " disconnected");
  io_context ctx;
  coring::socket c = test::run(ctx, unix_connect(ctx, address::unix_path(path), SOCK_STREAM));
  CHECK(next_line(server) == our_credentials_line("connected"));
  test::run(ctx, send_text(c, "still mine"));
  CHECK(test::run(ctx, recv_exactly(c, 10)) == "still mine");
  stop_server(server);
  CHECK_FALSE(exists(path));
}

TEST_CASE("unix_echo_server rejects bad arguments with exit status 2") {
  const std::string exe = test::example_path("UNIX_ECHO_SERVER");
  CHECK(exit_status({exe}) == 2);
  CHECK(exit_status({exe, "--path", "/tmp/x", "--abstract", "y"}) == 2);
  CHECK(exit_status({exe, "--abstract", "y", "--type", "dgram"}) == 2);
  CHECK(exit_status({exe, "--path", std::string(200, 'p')}) == 2);
  CHECK(exit_status({exe, "--help"}) == 0);
}

// ---- fd_pass -------------------------------------------------------------------------------

TEST_CASE("fd_pass: the receiver reads a file through the descriptor the sender passed") {
  for (bool abstract : {false, true}) {
    CAPTURE(abstract);
    const std::string file = temp_path("fdpass-file");
    remove_at_end cleanup{file};
    std::string content = "first line\nsecond line\n";
    for (int i = 0; i < 256; ++i)
      content += static_cast<char>(i);    // binary, NULs included
    content += std::string(100000, 'z');  // more than one read
    {
      std::ofstream out(file, std::ios::binary);
      out << content;
    }
    const std::string sock = temp_path("fdpass-sock");
    const std::string name = test::unique_abstract_name("fd-pass");
    const std::string where_flag = abstract ? "--abstract" : "--path";
    const std::string where = abstract ? name : sock;
    test::child sender({test::example_path("FD_PASS"), "send", where_flag, where, file});
    CHECK(start_server(sender, "fd_pass") == (abstract ? "unix:@" + name : "unix:" + sock));
    test::child receiver({test::example_path("FD_PASS"), "recv", where_flag, where});
    std::string out = receiver.read_rest(20s);  // first: the output is larger than a pipe
    auto rst = receiver.wait(10s);
    REQUIRE(rst);
    CHECK(*rst == 0);
    auto sst = sender.wait(10s);
    REQUIRE(sst);
    CHECK(*sst == 0);
    const std::string header =
        "fd_pass received " + file + " (" + std::to_string(content.size()) + " bytes)\n";
    CHECK(out.size() == header.size() + content.size());
    CHECK(out.substr(0, header.size()) == header);
    CHECK((out.substr(header.size()) == content));  // not printed: binary
    if (!abstract) CHECK_FALSE(exists(sock));
  }
}

TEST_CASE("fd_pass send exits 1 on SIGTERM before a peer came and removes its socket file") {
  const std::string file = temp_path("fdpass-file");
  remove_at_end cleanup{file};
  {
    std::ofstream out(file);
    out << "x";
  }
  const std::string sock = temp_path("fdpass-sock");
  test::child sender({test::example_path("FD_PASS"), "send", "--path", sock, file},
                     {.capture_stderr = true});
  start_server(sender, "fd_pass");
  sender.signal(SIGTERM);
  const std::string err = sender.read_stderr(10s);  // until it exits
  auto st = sender.wait(10s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK_MESSAGE(!test::sanitizer_report(err), err);
  CHECK_FALSE(exists(sock));
}

TEST_CASE("fd_pass rejects bad arguments with exit status 2") {
  const std::string exe = test::example_path("FD_PASS");
  CHECK(exit_status({exe}) == 2);
  CHECK(exit_status({exe, "bogus"}) == 2);
  CHECK(exit_status({exe, "send", "--path", "/tmp/x"}) == 2);           // no FILE
  CHECK(exit_status({exe, "recv", "--path", "/tmp/x", "extra"}) == 2);  // recv takes no FILE
  CHECK(exit_status({exe, "recv"}) == 2);                               // no address
  CHECK(exit_status({exe, "send", "--abstract", "a", "--path", "b", "f"}) == 2);
  CHECK(exit_status({exe, "--help"}) == 0);
}

// ---- ping ----------------------------------------------------------------------------------

TEST_CASE("ping 127.0.0.1 prints 3 replies and the summary" *
          test::skip_unless(test::can_open(test::icmp_socket::raw_or_datagram))) {
  test::child p({test::example_path("PING"), "--count", "3", "--interval", "0.05", "127.0.0.1"});
  auto st = p.wait(20s);
  std::string out = p.read_rest(5s);
  INFO(out);
  REQUIRE(st);
  CHECK(*st == 0);
  check_ping_output(out, 3);
}

TEST_CASE("ping --dgram uses an ICMP datagram socket" *
          test::skip_unless(test::can_open(test::icmp_socket::datagram))) {
  test::child p(
      {test::example_path("PING"), "--dgram", "--count", "2", "--interval", "0.05", "127.0.0.1"});
  auto st = p.wait(20s);
  std::string out = p.read_rest(5s);
  INFO(out);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK(out.find("(datagram socket)") != std::string::npos);
  check_ping_output(out, 2);
}

TEST_CASE("ping rejects bad arguments with exit status 2") {
  const std::string exe = test::example_path("PING");
  CHECK(exit_status({exe}) == 2);
  CHECK(exit_status({exe, "::1"}) == 2);
  CHECK(exit_status({exe, "example.org"}) == 2);
  CHECK(exit_status({exe, "--count", "0", "127.0.0.1"}) == 2);
  CHECK(exit_status({exe, "--interval", "-1", "127.0.0.1"}) == 2);
  CHECK(exit_status({exe, "127.0.0.1", "127.0.0.2"}) == 2);
  CHECK(exit_status({exe, "--help"}) == 0);
}
