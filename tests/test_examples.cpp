// SPDX-License-Identifier: MIT
// Description: end to end: the example programs, driven by real clients over loopback.
#include "process.hpp"
#include "test_support.hpp"

#include <csignal>
#include <cstring>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {
// Starts echo_server on an ephemeral port; returns its port.
int start_server(test::child& server) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  CHECK(line->find("listening on 127.0.0.1:") != std::string::npos);
  int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return port;
}
}  // namespace

TEST_CASE("echo_server serves 1,000 concurrent clients with every byte verified") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  test::child client({test::example_path("ECHO_CLIENT"), "--port", std::to_string(port),
                      "--connections", "1000", "--count", "20", "--size", "1000"});
  auto status = client.wait(60s);
  std::string out = client.read_rest(1s);
  MESSAGE(out);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(out.find("1000 ok, 0 failed, 20000000 bytes echoed and verified, 0 mismatches") !=
        std::string::npos);
  server.signal(SIGTERM);
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("echo_client echoes stdin lines interactively") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  test::child client({test::example_path("ECHO_CLIENT"), "--port", std::to_string(port)});
  client.write("hello\n");
  auto l1 = client.read_line(10s);
  REQUIRE(l1);
  CHECK(*l1 == "hello");
  client.write("ünïcode ✓\n");
  auto l2 = client.read_line(10s);
  REQUIRE(l2);
  CHECK(*l2 == "ünïcode ✓");
  client.close_stdin();
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  server.signal(SIGINT);
  auto sst = server.wait(5s);
  REQUIRE(sst);
  CHECK(*sst == 0);
}

TEST_CASE("echo_server exits 0 on SIGTERM with clients connected") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  io_context ctx;
  auto body = [](io_context& ctx, int port) -> task<std::vector<coring::socket>> {
    std::vector<coring::socket> clients;
    for (int i = 0; i < 100; ++i)
      clients.push_back(co_await tcp_connect(ctx, address::ip("127.0.0.1", static_cast<std::uint16_t>(port))));
    co_await clients.back().send_all(test::bytes("ping"));
    std::array<std::byte, 4> buf;
    std::size_t n = co_await clients.back().recv(buf);
    CHECK(n == 4);
    co_return clients;
  };
  auto clients = test::run(ctx, body(ctx, port));
  CHECK(clients.size() == 100);
  server.signal(SIGTERM);
  auto st = server.wait(2s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("example programs reject bad arguments with usage and exit status 2") {
  for (auto args : {std::vector<std::string>{"--port", "70000"},
                    std::vector<std::string>{"--port", " 80"}, std::vector<std::string>{"--port", "+80"},
                    std::vector<std::string>{"--idle-timeout", "-1"},
                    std::vector<std::string>{"--idle-timeout", " 1"},
                    std::vector<std::string>{"--bogus"}, std::vector<std::string>{"--port"}}) {
    std::vector<std::string> argv{test::example_path("ECHO_SERVER")};
    argv.insert(argv.end(), args.begin(), args.end());
    test::child p(argv);
    auto st = p.wait(5s);
    REQUIRE(st);
    CHECK(*st == 2);
  }
  test::child help({test::example_path("ECHO_SERVER"), "--help"});
  CHECK(help.read_rest(5s).find("usage: echo_server") != std::string::npos);
  test::child bad_host({test::example_path("ECHO_SERVER"), "--host", "not-an-ip", "--port", "0"});
  auto st = bad_host.wait(5s);
  REQUIRE(st);
  CHECK(*st == 1);
}

TEST_CASE("echo_server --idle-timeout disconnects a silent client and keeps an active one") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0", "--idle-timeout", "0.2"});
  int port = start_server(server);
  io_context ctx;
  auto body = [](io_context& ctx, int port) -> task<> {
    auto to = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
    coring::socket silent = co_await tcp_connect(ctx, to);
    coring::socket active = co_await tcp_connect(ctx, to);
    std::array<std::byte, 16> buf;
    for (int i = 0; i < 8; ++i) {  // 8 x 50 ms: well past the idle timeout in total
      co_await sleep_for(ctx, 50ms);
      co_await active.send_all(test::bytes("tick"));
      CHECK(co_await active.recv(buf).with_timeout(5s) == 4);
    }
    // The silent one was closed by the server: EOF.
    CHECK(co_await silent.recv(buf).with_timeout(5s) == 0);
  };
  test::run(ctx, body(ctx, port));
  server.signal(SIGTERM);
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("echo_server shutdown sends what it already echoes intact, then ends the connection") {
  // On SIGTERM the server shuts down each client's reading side: data it already received is
  // still echoed, then the connection ends. The client sees an intact prefix of its data and
  // then EOF (or a reset if some of its data was never read), and the server exits 0.
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  io_context ctx;
  auto body = [](io_context& ctx, int port, test::child& server) -> task<std::size_t> {
    auto to = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
    coring::socket c = co_await tcp_connect(ctx, to);
    std::vector<std::byte> data(1 << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 13);
    co_await c.send_all(data);
    std::array<std::byte, 1> first;
    CHECK(co_await c.recv(first) == 1);  // the echo is flowing
    server.signal(SIGTERM);
    std::string got(1, static_cast<char>(first[0]));
    std::array<std::byte, 65536> buf;
    for (;;) {
      auto r = co_await as_result(c.recv(buf).with_timeout(10s));
      if (!r || *r == 0) {
        if (!r) CHECK(r.error() == std::errc::connection_reset);
        break;
      }
      got.append(reinterpret_cast<const char*>(buf.data()), *r);
    }
    REQUIRE(got.size() <= data.size());
    CHECK(std::memcmp(got.data(), data.data(), got.size()) == 0);
    co_return got.size();
  };
  std::size_t n = test::run(ctx, body(ctx, port, server), 60s);
  MESSAGE("echoed " << n << " bytes before the connection ended");
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("echo_server --oneshot and --plain serve 200 verified clients too") {
  for (const char* mode : {"--oneshot", "--plain"}) {
    CAPTURE(mode);
    test::child server({test::example_path("ECHO_SERVER"), "--port", "0", mode});
    int port = start_server(server);
    test::child client({test::example_path("ECHO_CLIENT"), "--port", std::to_string(port),
                        "--connections", "200", "--count", "20", "--size", "3000"});
    auto status = client.wait(60s);
    std::string out = client.read_rest(1s);
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(out.find("200 ok, 0 failed, 12000000 bytes echoed and verified, 0 mismatches") !=
          std::string::npos);
    server.signal(SIGTERM);
    auto st = server.wait(5s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
}
