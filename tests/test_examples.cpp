// SPDX-License-Identifier: MIT
// Description: end to end: the example programs, driven by real clients over loopback.
#include "process.hpp"
#include "test_support.hpp"

#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

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

// ---- echo_client's load mode, run as a real process ----

struct load_run {
  int status = -1;
  std::string out;  // stdout and stderr: the summary and the lines naming each failure
  std::optional<test::load_summary> summary;
  double seconds = 0;
};

/// Runs echo_client's verified load against 127.0.0.1:port with args (--connections etc.) and
/// waits (at most limit) for it to exit. Its stderr is merged into its stdout through /bin/sh so
/// that the lines naming failures can be checked too.
load_run run_load(int port, const std::vector<std::string>& args, std::chrono::seconds limit) {
  std::vector<std::string> argv{"/bin/sh",
                                "-c",
                                "exec \"$0\" \"$@\" 2>&1",
                                test::example_path("ECHO_CLIENT"),
                                "--port",
                                std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto t0 = std::chrono::steady_clock::now();
  test::child client(argv);
  load_run r;
  r.out = client.read_rest(limit);  // until it exits (EOF), bounded
  auto st = client.wait(5s);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE_MESSAGE(st.has_value(), "echo_client still running after " << limit.count() << " s");
  r.status = *st;
  r.summary = test::parse_summary(r.out);
  // Its stderr is in out: a status of 1 must be echo_client's verdict, not a sanitizer's death.
  CHECK_MESSAGE(!test::sanitizer_report(r.out), r.out);
  return r;
}

// ---- a deliberately broken echo server: the checker self-test ----
//
// It echoes like echo_server, except that once, in the first connection to reach stream offset
// fault_at, it commits one fault. The offset lies inside message 2 of the 4096-byte messages the
// self-test sends (so the fault is neither at the start nor at the end of the run) and is a
// multiple of 256 (a pattern with a period of 256 bytes would not see the reorder).

enum class fault { none, drop, flip, duplicate, reorder, early_close };
constexpr std::size_t fault_at = 2 * 4096 + 1024;
constexpr std::size_t reorder_block = 256;  // reorder: [fault_at, +256) goes after [+256, +512)

/// What the server saw; read only after the server's thread was joined.
struct fault_stats {
  std::size_t connections = 0;
  std::size_t faults = 0;       // faults committed (1, or 0 for fault::none)
  std::size_t conn_errors = 0;  // connections that ended with an error (e.g. the client's reset)
  std::string error;            // what went wrong in the server itself (empty: nothing)
};

// One connection: echoes what it receives, committing the fault if this connection is the one.
// Ends at EOF, on an error, or when stop is requested on tok.
task<> faulty_echo(coring::socket s, fault f, fault_stats& st, std::stop_token tok) {
  std::array<std::byte, 4096> buf;
  std::vector<std::byte> out, held;
  std::size_t offset = 0;  // stream offset of buf[0]
  bool mine = false;       // this connection commits the fault
  try {
    for (;;) {
      auto rop = s.recv(buf).with_stop(tok);
      std::size_t n = co_await rop;
      if (n == 0) break;
      out.clear();
      bool close_now = false;
      for (std::size_t k = 0; k < n && !close_now; ++k, ++offset) {
        std::byte b = buf[k];
        if (offset == fault_at && f != fault::none && st.faults == 0) {
          mine = true;
          ++st.faults;
        }
        const bool here = mine && offset == fault_at;
        if (here && f == fault::drop) continue;                 // never sent
        if (here && f == fault::flip) b ^= std::byte{0x10};     // one bit flipped
        if (here && f == fault::duplicate) out.push_back(b);    // sent twice
        if (here && f == fault::early_close) close_now = true;  // this byte and the rest: never
        if (close_now) break;
        const bool first_block = offset >= fault_at && offset < fault_at + reorder_block;
        if (mine && f == fault::reorder && first_block) {
          held.push_back(b);  // goes out after the next block
          continue;
        }
        out.push_back(b);
        if (mine && f == fault::reorder && offset + 1 == fault_at + 2 * reorder_block)
          out.insert(out.end(), held.begin(), held.end());
      }
      if (!out.empty()) {
        auto sop = s.send_all(out).with_stop(tok);
        co_await sop;
      }
      if (close_now) break;  // the socket closes as the frame ends, with the client's data unread
    }
  } catch (const std::system_error&) {
    ++st.conn_errors;  // the client went away (after its timeout) or the server is stopping
  }
}

// Accepts (at most max_accepts connections) until the listener is cancelled.
task<> faulty_accept(coring::socket& listener, task_group& conns, fault f, fault_stats& st) {
  constexpr std::size_t max_accepts = 1000;
  acceptor acc(listener);
  while (st.connections < max_accepts && !conns.token().stop_requested()) {
    auto c = co_await as_result(acc.accept());
    if (!c) {
      if (c.error() != std::errc::operation_canceled) st.error = "accept: " + c.error().message();
      break;
    }
    ++st.connections;
    conns.spawn(faulty_echo(std::move(*c), f, st, conns.token()));
  }
}

// Serves until the test closes its end of `stop`, then cancels the listener and every
// connection and waits for them all.
task<> faulty_serve(io_context& ctx, coring::socket& listener, coring::socket& stop, fault f,
                    fault_stats& st) {
  task_group conns(ctx);
  conns.spawn(faulty_accept(listener, conns, f, st));
  std::array<std::byte, 1> b;
  auto r = co_await as_result(stop.recv(b));  // 0 (EOF) when the test closes its end
  if (!r) st.error = "stop recv: " + r.error().message();
  listener.cancel();
  conns.request_stop();
  co_await conns.join();
}

/// The broken server on its own io_context, run by its own thread (io_context is not
/// thread-safe: the test thread only ever closes its end of a socketpair to stop it).
class faulty_server {
 public:
  explicit faulty_server(fault f) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    stop_fd_ = fds[1];
    std::future<int> port = port_.get_future();
    thread_ = std::jthread([this, f, fd = fds[0]] { body(f, fd); });
    // On failure, stop (and join) first: the thread must not outlive this half-built object.
    if (port.wait_for(10s) != std::future_status::ready) {
      stop();
      FAIL("the faulty server did not start within 10 s");
    }
    try {
      port_number_ = port.get();  // rethrows the server's failure to start
    } catch (...) {
      stop();
      throw;
    }
  }
  ~faulty_server() { stop(); }
  faulty_server(const faulty_server&) = delete;
  faulty_server& operator=(const faulty_server&) = delete;

  int port() const { return port_number_; }

  /// Stops the server and joins its thread. Returns: what it saw.
  const fault_stats& stop() {
    if (stop_fd_ >= 0) ::close(std::exchange(stop_fd_, -1));
    if (thread_.joinable()) thread_.join();
    return stats_;
  }

 private:
  void body(fault f, int stop_fd) {
    bool started = false;
    try {
      io_context ctx;
      coring::socket stop = coring::socket::from_fd(ctx, stop_fd);
      coring::socket listener = tcp_listen(ctx, address::loopback_v4(0));
      port_.set_value(listener.sock_name().port());
      started = true;
      sync_wait(ctx, faulty_serve(ctx, listener, stop, f, stats_));
    } catch (const std::exception& e) {
      stats_.error = e.what();
      if (!started) port_.set_exception(std::current_exception());
    }
  }

  int stop_fd_ = -1;
  int port_number_ = 0;
  std::promise<int> port_;
  fault_stats stats_;
  std::jthread thread_;  // last: joined (by stop()) before the members it uses are destroyed
};

// The self-test load: 4 connections x 8 messages x 4096 bytes, each wait for an echo bounded
// by 3 s (the drop fault leaves the client waiting for a byte that never comes).
constexpr std::size_t self_conns = 4, self_count = 8, self_size = 4096;
const std::vector<std::string> self_load = {
    "--connections", std::to_string(self_conns), "--count",   std::to_string(self_count),
    "--size",        std::to_string(self_size),  "--timeout", "3"};
constexpr std::size_t self_total = self_conns * self_count * self_size;
// Bytes verified by a client whose connection failed in message 2: the other three connections
// in full, and messages 0 and 1 of the failed one.
constexpr std::size_t self_total_but_failed_one = self_total - (self_count - 2) * self_size;

/// Runs the self-test load against a server committing fault f. Returns: the client's run and
/// what the server saw.
std::pair<load_run, fault_stats> load_against(fault f) {
  faulty_server server(f);
  load_run run = run_load(server.port(), self_load, 30s);
  fault_stats st = server.stop();
  MESSAGE(run.out);
  CHECK(st.error == "");
  CHECK(st.connections == self_conns);
  CHECK(st.faults == (f == fault::none ? 0u : 1u));
  REQUIRE_MESSAGE(run.summary.has_value(), "no summary line in: " << run.out);
  CHECK(run.summary->connections == self_conns);
  return {std::move(run), std::move(st)};
}

bool contains(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
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

TEST_CASE(
    "echo_server --threads 2: one ring and SO_REUSEPORT listener per thread, both serve; "
    "1,000 verified clients; SIGTERM stops every thread") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0", "--threads", "2"});
  int port = start_server(server);
  // The main thread (in runner::join), the runner's signal helper thread and two workers.
  std::size_t threads = 0;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(server.pid()) + "/task")) {
    (void)e;
    ++threads;
  }
  CHECK(threads == 4);
  load_run run = run_load(port, {"--connections", "1000", "--count", "10", "--size", "100"}, 60s);
  CHECK(run.status == 0);
  CHECK(contains(run.out, "1000 ok, 0 failed, 1000000 bytes echoed and verified, 0 mismatches"));
  server.signal(SIGTERM);
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
  // The kernel spread the connections over both listeners: each thread served some.
  std::size_t a = 0, b = 0;
  std::string rest = server.read_rest(1s);
  auto at = rest.find("accepted per thread:");
  REQUIRE(at != std::string::npos);
  REQUIRE(std::sscanf(rest.c_str() + at, "accepted per thread: %zu %zu", &a, &b) == 2);
  MESSAGE("connections per thread: " << a << " and " << b);
  CHECK(a + b == 1000);
  CHECK(a > 0);
  CHECK(b > 0);
}

TEST_CASE("echo_server exits 0 on SIGTERM with clients connected") {
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  io_context ctx;
  auto clients = test::run_on(ctx, [port](io_context& ctx) -> task<std::vector<coring::socket>> {
    std::vector<coring::socket> clients;
    for (int i = 0; i < 100; ++i)
      clients.push_back(
          co_await tcp_connect(ctx, address::ip("127.0.0.1", static_cast<std::uint16_t>(port))));
    co_await clients.back().send_all(test::bytes("ping"));
    std::array<std::byte, 4> buf;
    std::size_t n = co_await clients.back().recv(buf);
    CHECK(n == 4);
    co_return clients;
  });
  CHECK(clients.size() == 100);
  server.signal(SIGTERM);
  auto st = server.wait(2s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("example programs reject bad arguments with usage and exit status 2") {
  for (auto args :
       {std::vector<std::string>{"--port", "70000"}, std::vector<std::string>{"--port", " 80"},
        std::vector<std::string>{"--port", "+80"}, std::vector<std::string>{"--idle-timeout", "-1"},
        std::vector<std::string>{"--idle-timeout", " 1"}, std::vector<std::string>{"--bogus"},
        std::vector<std::string>{"--port"}}) {
    std::vector<std::string> argv{test::example_path("ECHO_SERVER")};
    argv.insert(argv.end(), args.begin(), args.end());
    CHECK(test::exit_status_of(argv, 5s) == 2);  // also: no sanitizer report on its stderr
  }
  test::child help({test::example_path("ECHO_SERVER"), "--help"});
  CHECK(help.read_rest(5s).find("usage: echo_server") != std::string::npos);
  CHECK(test::exit_status_of(
            {test::example_path("ECHO_SERVER"), "--host", "not-an-ip", "--port", "0"}, 5s) == 1);
}

TEST_CASE("echo_server --idle-timeout disconnects a silent client and keeps an active one") {
  // Margins for ASan -O0 and valgrind: the active client's pauses (250 ms) are a quarter of
  // the idle timeout (1 s); together (2 s) they are well past it.
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0", "--idle-timeout", "1"});
  int port = start_server(server);
  io_context ctx;
  test::run_on(ctx, [port](io_context& ctx) -> task<> {
    auto to = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
    coring::socket silent = co_await tcp_connect(ctx, to);
    coring::socket active = co_await tcp_connect(ctx, to);
    std::array<std::byte, 16> buf;
    for (int i = 0; i < 8; ++i) {  // 8 x 250 ms: twice the idle timeout in total
      co_await sleep_for(ctx, 250ms);
      co_await active.send_all(test::bytes("tick"));
      CHECK(co_await active.recv(buf).with_timeout(5s) == 4);
    }
    // The silent one was closed by the server: EOF.
    CHECK(co_await silent.recv(buf).with_timeout(5s) == 0);
  });
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
  std::size_t n = test::run_on(
      ctx,
      [port, &server](io_context& ctx) -> task<std::size_t> {
        auto to = address::ip("127.0.0.1", static_cast<std::uint16_t>(port));
        coring::socket c = co_await tcp_connect(ctx, to);
        std::vector<std::byte> data(1 << 20);
        for (std::size_t i = 0; i < data.size(); ++i)
          data[i] = static_cast<std::byte>(i * 13);
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
      },
      60s);
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

TEST_CASE("checker self-test: echo_client passes a correct echo server (the control)") {
  test::watchdog w(60s, "checker control");
  auto [run, st] = load_against(fault::none);
  CHECK(run.status == 0);
  CHECK(run.summary->ok == self_conns);
  CHECK(run.summary->failed == 0);
  CHECK(run.summary->bytes == self_total);
  CHECK(run.summary->mismatches == 0);
  CHECK(st.conn_errors == 0);
}

TEST_CASE("checker self-test: echo_client catches a server that drops one byte") {
  // The lost byte leaves the client waiting for the end of message 2: --timeout names it.
  test::watchdog w(60s, "checker drop");
  auto [run, st] = load_against(fault::drop);
  CHECK(run.status == 1);
  CHECK(run.summary->ok == self_conns - 1);
  CHECK(run.summary->failed == 1);
  CHECK(run.summary->bytes == self_total_but_failed_one);
  CHECK(contains(run.out, "timed out"));
}

TEST_CASE("checker self-test: echo_client catches a server that flips one bit") {
  test::watchdog w(60s, "checker flip");
  auto [run, st] = load_against(fault::flip);
  CHECK(run.status == 1);
  CHECK(run.summary->failed == 0);
  CHECK(run.summary->mismatches == 1);
  CHECK(run.summary->bytes == self_total - self_size);
  CHECK(contains(run.out,
                 "mismatch at byte " + std::to_string(fault_at) + " of the stream (message 2)"));
}

TEST_CASE("checker self-test: echo_client catches a server that sends one byte twice") {
  // Every message from 2 on is shifted by one byte, and one byte is left over at the end: the
  // client counts 6 bad messages plus the extra byte it reads after its shutdown.
  test::watchdog w(60s, "checker duplicate");
  auto [run, st] = load_against(fault::duplicate);
  CHECK(run.status == 1);
  CHECK(run.summary->failed == 0);
  CHECK(run.summary->mismatches == self_count - 2 + 1);
  CHECK(run.summary->bytes == self_total - (self_count - 2) * self_size);
  CHECK(contains(run.out, "(message 2)"));
}

TEST_CASE("checker self-test: echo_client catches a server that swaps two 256-byte blocks") {
  // A pattern repeating every 256 bytes (echo_client's before this test) passes this server.
  test::watchdog w(60s, "checker reorder");
  auto [run, st] = load_against(fault::reorder);
  CHECK(run.status == 1);
  CHECK(run.summary->failed == 0);
  CHECK(run.summary->mismatches == 1);
  CHECK(run.summary->bytes == self_total - self_size);
  CHECK(contains(run.out, "(message 2)"));
}

TEST_CASE("checker self-test: echo_client catches a server that closes before echoing all") {
  test::watchdog w(60s, "checker early close");
  auto [run, st] = load_against(fault::early_close);
  CHECK(run.status == 1);
  CHECK(run.summary->ok == self_conns - 1);
  CHECK(run.summary->failed == 1);
  CHECK(run.summary->bytes == self_total_but_failed_one);
  // A FIN reads as "server closed early"; with client data still unread the close is a reset.
  CHECK((contains(run.out, "server closed early") || contains(run.out, "reset by peer")));
}

TEST_CASE("echo_server echoes messages of 1, 4095, 4096, 4097, 65536 and 1048576 bytes intact") {
  struct load {
    std::size_t size, connections, count;
  };
  // Sizes around the server's 4 KiB buffers and well past them; totals of tens of MB each.
  // Few messages per connection past 4096 bytes: echo_server echoes a longer message in several
  // sends on a socket without TCP_NODELAY, so its last piece waits for the client's delayed ACK
  // (Nagle): about 40 ms per message, whatever the machine.
  const load loads[] = {{1, 100, 300},   {4095, 100, 100}, {4096, 100, 100},
                        {4097, 200, 20}, {65536, 100, 10}, {1048576, 10, 8}};
  test::watchdog w(170s, "integrity sizes");
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  std::size_t total = 0;
  for (const load& l : loads) {
    CAPTURE(l.size);
    load_run run =
        run_load(port,
                 {"--connections", std::to_string(l.connections), "--count",
                  std::to_string(l.count), "--size", std::to_string(l.size), "--timeout", "30"},
                 60s);
    CHECK(run.status == 0);
    REQUIRE_MESSAGE(run.summary.has_value(), "no summary line in: " << run.out);
    const std::size_t want = l.connections * l.count * l.size;
    CHECK(run.summary->ok == l.connections);
    CHECK(run.summary->failed == 0);
    CHECK(run.summary->mismatches == 0);
    CHECK(run.summary->bytes == want);
    if (run.status != 0) MESSAGE(run.out);
    total += run.summary->bytes;
    MESSAGE(l.connections << " connections x " << l.count << " messages x " << l.size << " bytes: "
                          << run.summary->bytes << " bytes verified in " << run.seconds << " s");
  }
  MESSAGE("integrity: " << total << " bytes echoed and verified in all");
  server.signal(SIGTERM);
  auto st = server.wait(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}
