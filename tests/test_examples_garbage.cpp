// SPDX-License-Identifier: MIT
// Description: garbage and oversized input to every example that parses text: random bytes,
// NULs, a 10 MiB line without a newline and half-open connections to echo_server, upper_server
// and chat_server (each must stay up and keep serving a normal client), and garbage
// command-line arguments to every example program (exit status 2, never a crash).
#include "process.hpp"
#include "test_support.hpp"

#include <atomic>
#include <csignal>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;

namespace {

struct server_kind {
  const char* env;
  const char* name;
  std::string (*reply)(const std::string&);  // what a normal client gets for its line
};

std::string same(const std::string& s) { return s; }
std::string upper(const std::string& s) {
  std::string r = s;
  for (char& c : r)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return r;
}
std::string ack(const std::string& s) { return "ack: " + s; }

const server_kind servers[] = {
    {"ECHO_SERVER", "echo_server", same},
    {"UPPER_SERVER", "upper_server", upper},
    {"CHAT_SERVER", "chat_server", ack},
};

// Reads the server's stdout on a thread so that a chatty log (chat_server prints every line)
// never fills the pipe and blocks the server. Stops on destruction.
class stdout_drain {
 public:
  explicit stdout_drain(test::child& c)
      : thread_([this, &c] {
          while (!stop_)
            c.read_line(50ms);
        }) {}
  ~stdout_drain() {
    stop_ = true;
    thread_.join();
  }
  stdout_drain(const stdout_drain&) = delete;
  stdout_drain& operator=(const stdout_drain&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Reads and discards until EOF, an error or 10 s of silence.
task<> drain(coring::socket& s, std::size_t& got, bool& done) {
  std::vector<std::byte> buf(65536);
  for (;;) {
    auto r = co_await as_result(s.recv(buf).with_timeout(10s));
    if (!r || *r == 0) break;
    got += *r;
  }
  done = true;
}

// Sends data, then shuts down the sending side; if the server hung up, stops reading too.
task<> send_then_end(coring::socket& s, std::span<const std::byte> data) {
  auto sent = co_await as_result(s.send_all(data).with_timeout(30s));
  if (sent)
    s.shutdown(SHUT_WR);
  else
    s.cancel();  // the server hung up on us; stop reading too
}

// Sends data (reading whatever comes back meanwhile), then ends the connection. The server may
// drop us half-way (chat_server's line limit): that is an acceptable outcome, not a failure.
task<std::size_t> garbage_client(io_context& ctx, address to, std::span<const std::byte> data) {
  coring::socket s = co_await tcp_connect(ctx, to);
  std::size_t got = 0;
  bool done = false;
  task<> reading = drain(s, got, done);
  task<> sending = send_then_end(s, data);
  auto both = coring::when_all(std::move(reading), std::move(sending));  // named (g++ 12)
  co_await std::move(both);
  CHECK(done);
  co_return got;
}

task<std::string> normal_exchange(io_context& ctx, address to, std::string line, std::size_t want) {
  coring::socket s = co_await tcp_connect(ctx, to);
  co_await s.send_all(line);
  std::string got;
  std::array<std::byte, 4096> buf;
  while (got.size() < want) {
    std::size_t n = co_await s.recv(buf).with_timeout(10s);
    if (n == 0) break;
    got.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  co_return got;
}

task<> abuse(io_context& ctx, address to, const server_kind& kind) {
  // Half-open: shut our writing side at once and never read. Silent: connect, say nothing.
  coring::socket half_open = co_await tcp_connect(ctx, to);
  half_open.shutdown(SHUT_WR);
  coring::socket silent = co_await tcp_connect(ctx, to);

  std::mt19937 rng(12345);
  std::vector<std::byte> random(256 * 1024);
  for (auto& b : random)
    b = static_cast<std::byte>(rng());
  std::vector<std::byte> nuls(64 * 1024, std::byte{0});
  std::vector<std::byte> long_line(10 << 20, std::byte{'A'});  // 10 MiB, no newline

  std::size_t back = co_await garbage_client(ctx, to, random);
  MESSAGE(std::string(kind.name) << ": 256 KiB random bytes, " << back << " bytes came back");
  back = co_await garbage_client(ctx, to, nuls);
  MESSAGE(std::string(kind.name) << ": 64 KiB NULs, " << back << " bytes came back");
  back = co_await garbage_client(ctx, to, long_line);
  MESSAGE(std::string(kind.name) << ": 10 MiB line without newline, " << back
                                 << " bytes came back");

  // With the half-open and the silent connection still there, a normal client is served.
  const std::string line = "hello, world\n";
  const std::string want = kind.reply(line);
  std::string got = co_await normal_exchange(ctx, to, line, want.size());
  CHECK(got == want);
}

}  // namespace

TEST_CASE(
    "garbage, NULs, a 10 MiB line and half-open connections leave every text server up "
    "and serving") {
  for (const auto& kind : servers) {
    const std::string name = kind.name;
    CAPTURE(name);
    test::child server({test::example_path(kind.env), "--port", "0"});
    auto line = server.read_line(10s);
    REQUIRE(line);
    int port = test::port_from_line(*line);
    REQUIRE(port > 0);
    {
      stdout_drain keep_reading(server);
      io_context ctx;
      test::run(ctx, abuse(ctx, address::ip("127.0.0.1", static_cast<std::uint16_t>(port)), kind),
                120s);
      CHECK_FALSE(server.wait(0ms));  // still running
    }
    server.signal(SIGTERM);
    auto st = server.wait(10s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
}

TEST_CASE("garbage command-line arguments: every example exits with status 2, never a crash") {
  std::vector<std::vector<std::string>> cases = {
      {""},
      {"-"},
      {"--"},
      {"--port", "-1"},
      {"--port", ""},
      {"--port", "0x50"},
      {"--port", "1e3"},
      {"--port", "99999999999999999999999"},
      {"--port", "1", "--port"},
      {"--port", "1", "extra"},
      {"--host"},
      {"--grace", "nan"},
      {"--idle-timeout", "-1"},
      {"--connections", "-5"},
      {"--size", "1", "--count", "0"},
      {"\xff\xfe\x01"},
      {std::string(100000, 'x')},
  };
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {  // random argument vectors (no NUL: argv cannot hold one)
    std::vector<std::string> args(1 + rng() % 4);
    for (auto& a : args) {
      a.resize(1 + rng() % 24);
      for (char& c : a)
        c = static_cast<char>(1 + rng() % 255);
    }
    cases.push_back(args);
  }
  int runs = 0, rejected = 0;
  for (const char* env : {"ECHO_SERVER", "ECHO_CLIENT", "UPPER_SERVER", "UPPER_CLIENT",
                          "CHAT_SERVER", "CHAT_CLIENT", "SERIAL_SERVER"}) {
    const std::string program = env;
    CAPTURE(program);
    for (const auto& args : cases) {
      std::vector<std::string> argv{test::example_path(env)};
      argv.insert(argv.end(), args.begin(), args.end());
      const int st = test::exit_status_of(argv, 5s);  // also: no sanitizer report
      CHECK_MESSAGE(st >= 0, "still running with argument " << args[0].substr(0, 40));
      rejected += st == 2;
      CHECK_MESSAGE(st == 2, "status " << st << " with argument " << args[0].substr(0, 40));
      ++runs;
    }
  }
  MESSAGE(runs << " garbage argument vectors, " << rejected << " rejected with status 2");
  CHECK(rejected == runs);
}
