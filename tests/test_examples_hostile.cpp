// SPDX-License-Identifier: MIT
// Description: regress #9: the example servers against hostile clients: SIGTERM with clients that
// never read or flood, idle writers, a dead or stuck stdout, descriptor starvation, a second
// instance on the port, reset storms, and the memory of --threads.
#include <coring/coring.hpp>

#include "process.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
namespace test = coring::test;

namespace {

// A raw client socket (blocking connect to 127.0.0.1:port, then non-blocking). rcvbuf > 0 sets
// SO_RCVBUF before connecting, so that a server sending to it fills up soon.
int connect_to(int port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

struct fds {
  std::vector<int> v;
  ~fds() {
    for (int fd : v)
      ::close(fd);
  }
};

// Sends chunks of `chunk` on every socket until none takes more (the server is stuck sending
// to them, since we never read): no progress on any for 300 ms, or 64 MiB per socket, or 20 s.
// Returns: bytes sent on each.
std::vector<std::size_t> send_until_stuck(const std::vector<int>& socks, const std::string& chunk) {
  std::vector<std::size_t> total(socks.size(), 0);
  std::vector<bool> open(socks.size(), true);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> p;
    for (std::size_t i = 0; i < socks.size(); ++i) {
      while (open[i] && total[i] < (std::size_t(64) << 20)) {
        ssize_t n = ::send(socks[i], chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n > 0) {
          total[i] += static_cast<std::size_t>(n);
          continue;
        }
        if (n < 0 && errno != EAGAIN) open[i] = false;  // the server closed on us
        break;
      }
      if (open[i] && total[i] < (std::size_t(64) << 20)) p.push_back({socks[i], POLLOUT, 0});
    }
    if (p.empty() || ::poll(p.data(), p.size(), 300) == 0) break;  // stuck (or done)
  }
  return total;
}
std::size_t send_until_stuck(int fd, const std::string& chunk) {
  return send_until_stuck(std::vector<int>{fd}, chunk)[0];
}

struct server {
  test::child proc;
  int port = -1;
  server(const char* env, std::vector<std::string> args, bool capture_stderr = true)
      : proc(make_argv(env, std::move(args)),
             test::child_options{.capture_stderr = capture_stderr}) {
    auto line = proc.read_line(10s);
    REQUIRE(line);
    REQUIRE(line->find("listening on") != std::string::npos);
    port = test::port_from_line(line->substr(0, line->find(" (")));
    REQUIRE(port > 0);
  }
  static std::vector<std::string> make_argv(const char* env, std::vector<std::string> args) {
    args.insert(args.begin(), test::example_path(env));
    return args;
  }
  // SIGTERM, then the exit status within limit (nullopt: still running).
  std::optional<int> terminate(std::chrono::milliseconds limit) {
    proc.signal(SIGTERM);
    return proc.wait(limit);
  }
};

// Clients that keep sending lines and reading whatever comes back, from a thread, until stop.
class flood {
 public:
  flood(int port, int clients, std::string line) {
    for (int i = 0; i < clients; ++i)
      socks_.v.push_back(connect_to(port));
    thread_ = std::thread([this, line] { run(line); });
  }
  ~flood() {
    stop_ = true;
    thread_.join();
  }
  std::size_t received() const { return received_; }
  /// Waits until at least n bytes came back, at most limit. Returns: true if they did.
  bool wait_received(std::size_t n, std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return received_ >= n; });
  }

 private:
  void run(const std::string& line) {
    std::string chunk;
    while (chunk.size() < 8192)
      chunk += line;
    std::vector<pollfd> p;
    for (int fd : socks_.v)
      p.push_back({fd, POLLIN | POLLOUT, 0});
    char buf[65536];
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      if (::poll(p.data(), p.size(), 50) <= 0) continue;
      for (auto& e : p) {
        if (e.revents & POLLIN) {
          ssize_t n = ::recv(e.fd, buf, sizeof buf, 0);
          if (n > 0) {
            std::lock_guard lock(mu_);
            received_ += static_cast<std::size_t>(n);
            cv_.notify_all();
          }
          if (n == 0) e.events = 0;  // the server closed: leave it
        }
        if ((e.revents & POLLOUT) && (e.events & POLLOUT))
          (void)::send(e.fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (e.revents & (POLLERR | POLLHUP)) e.events = 0;
      }
    }
  }
  fds socks_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> received_{0};
  std::thread thread_;
};

// A shell command that runs `command` with at most `limit` descriptors.
std::string with_fd_limit(int limit, const std::string& command) {
  return "ulimit -n " + std::to_string(limit) + " && exec " + command;
}

// Out of descriptors, the sanitizer runtime itself misreports: UBSan's vptr check probes memory
// through a pipe, which fails with EMFILE, and it then calls a valid std::error_category an
// "invalid vptr" (seen in the clang and g++ ASan+UBSan builds, at throw_errno; a suppression
// does not help, the dynamic type is unknown). So the descriptor-starvation cases run in the
// builds without sanitizers (the release build in scripts/test).
test::requirement no_sanitizers() {
#ifdef CORING_CHECK_BUFFERS
  return {test::requirement::kind::build, "a build without sanitizers",
          "out of descriptors, UBSan's vptr check cannot probe memory and misreports"};
#else
  return {test::requirement::kind::build, "a build without sanitizers", ""};
#endif
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

// The crash of finding 1 (SIGSEGV 3 s after SIGTERM; ASan: a send_all's buffer freed while the
// kernel owned it) and its slow exit: clients that never read keep send_alls in flight.
TEST_CASE(
    "regress #9: echo_server exits 0 within grace + 1 s on SIGTERM with clients that never read") {
  const std::string chunk(65536, 'x');
  for (const char* mode : {"", "--plain", "--oneshot"}) {
    for (int clients : {1, 200}) {
      const std::string mode_s = mode;
      CAPTURE(mode_s);
      CAPTURE(clients);
      std::vector<std::string> args{"--port", "0", "--grace", "0.5"};
      if (*mode) args.emplace_back(mode);
      server srv("ECHO_SERVER", args);
      fds socks;
      for (int i = 0; i < clients; ++i)
        socks.v.push_back(connect_to(srv.port, 4096));
      for (std::size_t sent : send_until_stuck(socks.v, chunk))
        CHECK(sent > 0);
      auto st = srv.terminate(1500ms);
      REQUIRE_MESSAGE(st, "still running 1.5 s after SIGTERM (--grace 0.5)");
      CHECK(*st == 0);
      CHECK_FALSE(test::sanitizer_report(srv.proc.read_stderr(2s)));
    }
  }
}

// Finding 2 and the "20 clients that send and read continuously" crash: a drain must end at
// the grace limit even when the peers never stop sending (SHUT_RD gives no EOF then).
TEST_CASE(
    "regress #9: chat_server and echo_server exit within grace + 1 s during a 300-client flood") {
  for (const char* env : {"CHAT_SERVER", "ECHO_SERVER"}) {
    const std::string env_s = env;
    CAPTURE(env_s);
    server srv(env, {"--port", "0", "--grace", "0.5"}, false);
    flood f(srv.port, 300, "hello there, server\n");
    // Traffic flows before the signal.
    CHECK(f.wait_received(100000, 10s));
    auto st = srv.terminate(1500ms);
    REQUIRE_MESSAGE(st, env << " still running 1.5 s after SIGTERM during a flood (--grace 0.5)");
    CHECK(*st == 0);
  }
}

// The same with 8 KiB lines and servers whose operations carry linked timeouts (chat_server's
// partial-line flush, --idle-timeout with --plain): on a DEFER_TASKRUN ring the kernel ran at
// most 20 task-work completions per enter, and the signalfd read starved behind the flood
// (SIGTERM seen 11-36 s late, when the flood stopped). Busy loop turns now ask for more.
TEST_CASE(
    "regress #9: SIGTERM is seen at once during a flood of 8 KiB lines with linked timeouts") {
  struct variant {
    const char* env;
    std::vector<std::string> extra;
  };
  const std::vector<variant> variants{{"CHAT_SERVER", {}},
                                      {"ECHO_SERVER", {"--plain", "--idle-timeout", "30"}}};
  for (const auto& v : variants) {
    const std::string env_s = v.env;
    CAPTURE(env_s);
    std::vector<std::string> args{"--port", "0", "--grace", "0.5"};
    args.insert(args.end(), v.extra.begin(), v.extra.end());
    server srv(v.env, args, false);
    flood f(srv.port, 300, std::string(8191, 'y') + "\n");
    CHECK(f.wait_received(std::size_t(4) << 20, 20s));
    auto st = srv.terminate(1500ms);
    REQUIRE_MESSAGE(st,
                    env_s << " still running 1.5 s after SIGTERM during a flood of 8 KiB lines");
    CHECK(*st == 0);
  }
}

// Finding 6: --idle-timeout used to bound receives only; a client that sends, then neither
// sends nor reads, pinned its connection for ever.
TEST_CASE("regress #9: --idle-timeout drops a client that stops reading") {
  struct variant {
    const char* env;
    std::vector<std::string> extra;
    const char* says;  // what the server logs when it drops the client
  };
  const std::vector<variant> variants{
      {"ECHO_SERVER", {}, "idle for too long"},
      {"ECHO_SERVER", {"--plain"}, "idle for too long"},
      {"UPPER_SERVER", {}, "idle for too long"},
      {"CHAT_SERVER", {}, "disconnected"},
  };
  for (const auto& v : variants) {
    const std::string env_s = v.env;
    CAPTURE(env_s);
    CAPTURE(v.extra.size());
    std::vector<std::string> args{"--port", "0", "--idle-timeout", "0.5"};
    args.insert(args.end(), v.extra.begin(), v.extra.end());
    server srv(v.env, args);
    fds socks;
    socks.v.push_back(connect_to(srv.port, 4096));
    std::string lines;
    while (lines.size() < 65536)
      lines += "a line the server must answer\n";
    CHECK(send_until_stuck(socks.v[0], lines) > 0);
    // Now the client neither sends nor reads: dropped after about 0.5 s.
    if (std::string(v.env) == "CHAT_SERVER") {
      std::optional<std::string> line;
      for (int i = 0; i < 100000 && (line = srv.proc.read_line(10s)); ++i)
        if (line->find("disconnected") != std::string::npos) break;
      REQUIRE(line);
      CHECK(line->find("idle for too long") != std::string::npos);
    } else {
      CHECK_MESSAGE(srv.proc.wait_stderr_for(v.says, 10s), srv.proc.stderr_seen());
    }
    auto st = srv.terminate(5s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
}

// Findings 4 and 5: a dead stdout killed chat_server and serial_server (SIGPIPE), and a stdout
// nobody reads blocked every client behind chat_server's synchronous log.
TEST_CASE("regress #9: a dead stdout neither kills nor stops a server") {
  for (const char* env : {"CHAT_SERVER", "SERIAL_SERVER"}) {
    const std::string env_s = env;
    CAPTURE(env_s);
    server srv(env, {"--port", "0"});
    srv.proc.close_stdout();
    fds socks;
    socks.v.push_back(connect_to(srv.port));
    int fd = socks.v[0];
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(::send(fd, "hi\n", 3, MSG_NOSIGNAL) == 3);
      char buf[64];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      REQUIRE(n > 0);  // answered although every log line fails with EPIPE
    }
    auto st = srv.terminate(5s);
    REQUIRE(st);
    CHECK(*st == 0);  // not 141 (SIGPIPE)
  }
}

TEST_CASE("regress #9: a stdout nobody reads does not stall chat_server's other clients") {
  server srv("CHAT_SERVER", {"--port", "0"});  // its stdout pipe: we never read it again
  fds socks;
  socks.v.push_back(connect_to(srv.port));
  socks.v.push_back(connect_to(srv.port));
  // 20 lines of 60,000 bytes: ~4.8 MB of log, far beyond the 64 KiB pipe.
  std::string big(60000, '\x1b');
  big += '\n';
  for (int i = 0; i < 20; ++i)
    send_until_stuck(socks.v[0], big);
  int b = socks.v[1];
  ::fcntl(b, F_SETFL, ::fcntl(b, F_GETFL) & ~O_NONBLOCK);
  timeval tv{5, 0};
  ::setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  REQUIRE(::send(b, "still there?\n", 13, MSG_NOSIGNAL) == 13);
  char buf[64];
  ssize_t n = ::recv(b, buf, sizeof buf, 0);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<std::size_t>(n)).rfind("ack: still there?", 0) == 0);
  auto st = srv.terminate(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// Finding 3: a worker other than the first failing to start gave "terminate called without an
// active exception" (a running std::thread destroyed) or a hang.
TEST_CASE("regress #9: echo_server --threads fails cleanly when a worker cannot start" *
          test::skip_unless(no_sanitizers())) {
  // Each worker needs 3 descriptors (ring, wake-up eventfd, listener): these limits run out
  // after the first worker started, whatever the test runner left open.
  for (int limit : {16, 40}) {
    CAPTURE(limit);
    const std::string cmd =
        with_fd_limit(limit, "'" + test::example_path("ECHO_SERVER") + "' --port 0 --threads 19");
    test::child c({"/bin/sh", "-c", cmd}, {.capture_stderr = true});
    auto st = c.wait(10s);
    if (!st) {
      c.signal(SIGTERM);
      (void)c.wait(5s);
    }
    REQUIRE_MESSAGE(st, "hung (or started every worker): " << c.read_rest(1s) << c.read_stderr(1s));
    const std::string err = c.read_stderr(2s);
    CHECK_MESSAGE(*st == 1, err);
    CHECK_MESSAGE(err.find("could not start") != std::string::npos, err);
    CHECK(err.find("terminate") == std::string::npos);
    CHECK_FALSE(test::sanitizer_report(err));
  }
}

// Finding 9: a second --threads server on a port in use joined the first one's SO_REUSEPORT
// group silently and the two split the connections.
TEST_CASE("regress #9: a second echo_server --threads on a port in use fails like one thread") {
  server first("ECHO_SERVER", {"--port", "0", "--threads", "2"});
  for (const char* threads : {"2", "1"}) {
    const std::string threads_s = threads;
    CAPTURE(threads_s);
    test::child second({test::example_path("ECHO_SERVER"), "--port", std::to_string(first.port),
                        "--threads", threads},
                       {.capture_stderr = true});
    auto st = second.wait(10s);
    REQUIRE(st);
    const std::string err = second.read_stderr(2s);
    CHECK_MESSAGE(*st == 1, err);
    CHECK_MESSAGE(err.find("Address already in use") != std::string::npos, err);
  }
  auto st = first.terminate(5s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// Finding 10: --threads 256 took 4.2 GB resident (every worker's 16 MiB buffer ring was
// zeroed at start) and 9.8 s to start.
TEST_CASE("regress #9: echo_server --threads 64 costs what it uses") {
  server srv("ECHO_SERVER", {"--port", "0", "--threads", "64"});
  const long kib = rss_kib(srv.proc.pid());
  MESSAGE("echo_server --threads 64: VmRSS " << kib << " KiB at start");
  CHECK(kib > 0);
  CHECK(kib < 64 * 1024);  // was > 1 GiB (64 x 16 MiB)
  auto st = srv.terminate(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// Finding 8: out of descriptors with clients waiting, SIGTERM took 3 s (6 s with --threads 2):
// the listener's cancel was lost while the accept loop backed off.
TEST_CASE("regress #9: echo_server exits promptly on SIGTERM while out of descriptors" *
          test::skip_unless(no_sanitizers())) {
  for (const char* threads : {"1", "2"}) {
    const std::string threads_s = threads;
    CAPTURE(threads_s);
    const std::string cmd = with_fd_limit(64, "'" + test::example_path("ECHO_SERVER") +
                                                  "' --port 0 --grace 0.5 --threads " + threads);
    test::child c({"/bin/sh", "-c", cmd}, {.capture_stderr = true});
    auto line = c.read_line(10s);
    REQUIRE(line);
    int port = test::port_from_line(line->substr(0, line->find(" (")));
    REQUIRE(port > 0);
    fds socks;
    for (int i = 0; i < 200; ++i)
      socks.v.push_back(connect_to(port));
    REQUIRE(c.wait_stderr_for("Too many open files", 10s));
    c.signal(SIGTERM);
    auto st = c.wait(1500ms);
    REQUIRE_MESSAGE(st, "still running 1.5 s after SIGTERM (--grace 0.5)");
    CHECK(*st == 0);
  }
}

// Finding 11: RST-closed connects logged "exception escaped a spawned task: getpeername".
TEST_CASE("regress #9: a reset storm logs no escaped exceptions") {
  server srv("ECHO_SERVER", {"--port", "0"});
  for (int i = 0; i < 200; ++i) {
    int fd = connect_to(srv.port);
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);  // RST
  }
  // One more client that gets its echo: every reset before it was handled.
  fds socks;
  socks.v.push_back(connect_to(srv.port));
  int fd = socks.v[0];
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  REQUIRE(::send(fd, "ping", 4, MSG_NOSIGNAL) == 4);
  char buf[8];
  REQUIRE(::recv(fd, buf, sizeof buf, MSG_WAITALL) == 4);
  auto st = srv.terminate(5s);
  REQUIRE(st);
  CHECK(*st == 0);
  const std::string err = srv.proc.read_stderr(2s);
  CHECK(err.find("escaped") == std::string::npos);
  CHECK(err.find("getpeername") == std::string::npos);
}
