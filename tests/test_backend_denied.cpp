// SPDX-License-Identifier: MIT
// Description: Issue 15: the example programs, unchanged, under a seccomp filter that denies
// io_uring's three system calls (tests/deny_io_uring, as Docker's and Podman's default profiles
// do): each picks the epoll backend by itself, serves verified loads and drains on SIGTERM; the
// tutorial programs' own test program passes with every process under the filter.
#include "deny.hpp"
#include "process.hpp"
#include "test_support.hpp"

#include <array>
#include <csignal>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// Reads the "<name> listening on 127.0.0.1:PORT" line. Returns: the port.
int start_server(test::child& server, const std::string& name) {
  auto line = server.read_line(10s);
  REQUIRE_MESSAGE(line, name << " printed no listening line under the filter");
  CHECK(line->find(name + " listening on 127.0.0.1:") == 0);
  // A server that names its backend on this line must name epoll.
  if (line->find("backend=") != std::string::npos)
    CHECK(line->find("backend=epoll") != std::string::npos);
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

// A program's exit status and its output (stdout and stderr).
struct ran {
  int status = -1;
  std::string out;
};

// Runs argv (under the filter) to its end with stderr merged into stdout. Returns: what it did.
ran run_to_end(const std::vector<std::string>& argv, std::chrono::seconds limit) {
  std::vector<std::string> sh{"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  test::child c(sh);
  std::string out = c.read_rest(limit);
  auto st = c.wait(5s);
  REQUIRE_MESSAGE(st, argv.back() << " still running after " << limit.count() << " s:\n" << out);
  CHECK_MESSAGE(!test::sanitizer_report(out), out);
  return ran{*st, out};
}

task<coring::socket> connect_to(io_context& ctx, int port) {
  address where = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
  coring::socket s = co_await tcp_connect(ctx, where);
  co_return s;
}

// Sends request and reads until EOF (each recv bounded). Returns: everything received.
task<std::string> exchange(coring::socket& s, std::string_view request) {
  co_await s.send_all(request);
  std::string got;
  std::array<std::byte, 4096> buf;
  for (int i = 0; i < 10000; ++i) {
    std::size_t n = co_await s.recv(buf).with_timeout(10s);
    if (n == 0) break;
    got += test::text(std::span(buf).first(n));
  }
  co_return got;
}

}  // namespace

TEST_CASE("echo_server under the filter serves a verified echo_client load in every mode" *
          test::skip_unless(test::seccomp_filter())) {
  struct mode {
    const char* err;
    std::vector<std::string> args;
  };
  const std::vector<mode> modes = {{"EPERM", {}},
                                   {"ENOSYS", {}},
                                   {"EPERM", {"--plain"}},
                                   {"EPERM", {"--oneshot"}},
                                   {"EPERM", {"--threads", "2"}}};
  for (const mode& m : modes) {
    std::string what = std::string(m.err);
    for (const std::string& a : m.args)
      what += " " + a;
    CAPTURE(what);
    std::vector<std::string> argv{test::example_path("ECHO_SERVER"), "--port", "0"};
    argv.insert(argv.end(), m.args.begin(), m.args.end());
    test::child server(test::denied(argv, m.err));
    const int port = start_server(server, "echo_server");
    // The client runs under the filter too: both ends on epoll.
    const ran r = run_to_end(
        test::denied({test::example_path("ECHO_CLIENT"), "--port", std::to_string(port),
                      "--connections", "100", "--count", "50", "--size", "1000", "--timeout", "20"},
                     m.err),
        60s);
    MESSAGE(r.out);
    CHECK(r.status == 0);
    auto summary = test::parse_summary(r.out);
    REQUIRE_MESSAGE(summary, "no summary line in: " << r.out);
    CHECK(summary->ok == 100);
    CHECK(summary->failed == 0);
    CHECK(summary->bytes == 100u * 50u * 1000u);
    CHECK(summary->mismatches == 0);
    stop_server(server);
  }
}

TEST_CASE("upper_server, serial_server and chat_server under the filter serve their clients" *
          test::skip_unless(test::seccomp_filter())) {
  for (const char* name : {"upper_server", "serial_server"}) {
    CAPTURE(name);
    const std::string env =
        name == std::string_view("upper_server") ? "UPPER_SERVER" : "SERIAL_SERVER";
    test::child server(test::denied({test::example_path(env.c_str()), "--port", "0"}));
    const int port = start_server(server, name);
    const ran r = run_to_end(test::denied({test::example_path("UPPER_CLIENT"), "--port",
                                           std::to_string(port), "--message", "hello ✓"}),
                             20s);
    CHECK(r.status == 0);
    CHECK(r.out == "HELLO ✓\n");
    stop_server(server);
  }
  test::child server(test::denied({test::example_path("CHAT_SERVER"), "--port", "0"}));
  const int port = start_server(server, "chat_server");
  test::child client(
      test::denied({test::example_path("CHAT_CLIENT"), "--port", std::to_string(port)}));
  client.write("hello\n");
  auto ack = client.read_line(10s);
  REQUIRE(ack);
  CHECK(*ack == "ack: hello");
  client.close_stdin();
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  stop_server(server);
}

TEST_CASE("http_server under the filter answers requests, with --multishot and --threads 2" *
          test::skip_unless(test::seccomp_filter())) {
  const std::vector<std::vector<std::string>> variants = {
      {}, {"--multishot"}, {"--threads", "2", "--multishot"}};
  for (const auto& extra : variants) {
    CAPTURE(extra.size());
    std::vector<std::string> argv{test::example_path("HTTP_SERVER"), "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    test::child server(test::denied(argv));
    const int port = start_server(server, "http_server");
    io_context ctx;  // the test's own client, on whatever backend this process has
    for (int i = 0; i < 3; ++i) {
      coring::socket s = test::run(ctx, connect_to(ctx, port));
      const std::string got =
          test::run(ctx, exchange(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
      CHECK(got.starts_with("HTTP/1.1 200 "));
      CHECK(got.ends_with("Hello, world!\n"));
    }
    stop_server(server);
  }
}

TEST_CASE("the tutorial programs' tests pass with the test and every program under the filter" *
          test::skip_unless(test::seccomp_filter())) {
  // tests/test_examples_tutorial.cpp, run whole under the filter: its own io_context, the servers
  // and the clients it starts all run on the backend they fall back to.
  const ran r = run_to_end(test::denied({test::example_path("TEST_EXAMPLES_TUTORIAL")}), 170s);
  if (r.status != 0) MESSAGE(r.out);
  CHECK(r.status == 0);
  CHECK(r.out.find("Status: SUCCESS!") != std::string::npos);
}
