// SPDX-License-Identifier: MIT
// Description: end to end, issue 9: the example clients (echo, upper, chat, fd_pass, ping)
// against scripted misbehaving servers, dead stdouts, and the forged-source, stale-socket and
// argument checks of udp_echo_server, unix_echo_server and the shared flag parser.
//
// The programs run as real processes with stdin, stdout and stderr on pipes (test::child leaves
// stderr alone; these tests read the error messages, so `proc` below has all three and can
// start a program with a stdout nobody reads, or as the user nobody). The misbehaving servers
// are plain POSIX sockets on a thread (`fake_server`): silent, closing early, streaming without
// a newline. Every wait is bounded by a deadline; nothing sleeps to let something happen.
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
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using namespace std::string_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

constexpr uid_t nobody = 65534;

int ms_left(steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits until fd is ready for events or the deadline passes. Returns: true if ready.
bool ready(int fd, short events, steady_clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// ---- proc: a program with stdin, stdout and stderr on pipes -------------------------------

// One output pipe of a child and what was read from it but not returned yet.
struct stream {
  int fd = -1;
  std::string buffered;
  bool eof = false;

  // Reads once (bounded). Returns: false at EOF or when the deadline passed.
  bool fill(steady_clock::time_point deadline) {
    if (fd < 0 || eof || !ready(fd, POLLIN, deadline)) return false;
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      eof = true;
      return false;
    }
    buffered.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  // One line without its '\n', or nullopt at EOF or after timeout.
  std::optional<std::string> line(milliseconds timeout) {
    const auto deadline = steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffered.find('\n'); nl != std::string::npos) {
        std::string l = buffered.substr(0, nl);
        buffered.erase(0, nl + 1);
        return l;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }
  // Everything until EOF (or the timeout).
  std::string rest(milliseconds timeout) {
    const auto deadline = steady_clock::now() + timeout;
    while (fill(deadline)) {}
    return std::exchange(buffered, {});
  }
};

struct proc_options {
  bool dead_stdout = false;  // stdout: a pipe whose reader is closed before the program starts
  bool as_nobody = false;    // setgid/setuid to nobody (65534) before exec (needs root)
};

// A child process (fork + exec: as_nobody needs the step between them). The destructor kills
// it (SIGKILL) if it still runs. Exit status 127: exec failed (e.g. nobody cannot reach the
// program's directory).
class proc {
 public:
  explicit proc(std::vector<std::string> argv, proc_options opt = {}) {
    int in[2], o[2], e[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(o, O_CLOEXEC) < 0 || ::pipe2(e, O_CLOEXEC) < 0)
      throw std::system_error(errno, std::system_category(), "pipe2");
    if (opt.dead_stdout) {  // before the fork: no reader exists when the program first writes
      ::close(o[0]);
      o[0] = -1;
    }
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid_ == 0) {  // only async-signal-safe calls from here to exec
      ::dup2(in[0], 0);
      ::dup2(o[1], 1);
      ::dup2(e[1], 2);
      // The program starts as from a shell: nothing blocked, SIGPIPE at its default.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      if (opt.as_nobody &&
          (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0))
        ::_exit(126);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(o[1]);
    ::close(e[1]);
    in_ = in[1];
    out.fd = o[0];
    err.fd = e[0];
  }
  ~proc() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    for (int fd : {in_, out.fd, err.fd})
      if (fd >= 0) ::close(fd);
  }
  proc(const proc&) = delete;
  proc& operator=(const proc&) = delete;

  // Writes to its stdin. Returns: false if it closed its stdin (it may have exited): EPIPE,
  // and the SIGPIPE that comes with it is consumed here (the test keeps SIGPIPE's default).
  bool write(std::string_view s) {
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    bool ok = true;
    for (std::size_t off = 0; off < s.size() && ok;) {
      ssize_t n = ::write(in_, s.data() + off, s.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = false;
        timespec zero{0, 0};
        ::sigtimedwait(&pipe_only, nullptr, &zero);  // the pending SIGPIPE, if any
      } else {
        off += static_cast<std::size_t>(n);
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ok;
  }
  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }
  // Closes our end of its stdout: from now on its writes there fail (EPIPE) or kill it.
  void close_stdout() {
    if (out.fd >= 0) ::close(out.fd);
    out.fd = -1;
  }
  void signal(int sig) { ::kill(pid_, sig); }
  // Waits for exit. Returns: its exit status (128 + signal if killed), or nullopt on timeout.
  std::optional<int> wait(milliseconds timeout) {
    if (status_) return status_;
    const auto deadline = steady_clock::now() + timeout;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    for (;;) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (steady_clock::now() >= deadline) break;
      if (pidfd >= 0) {
        ready(pidfd, POLLIN, deadline);  // readable once the process has exited
      } else {
        pollfd none{-1, 0, 0};
        ::poll(&none, 0, 1);  // no pidfd (kernel < 5.3): look again in 1 ms
      }
    }
    if (pidfd >= 0) ::close(pidfd);
    return status_;
  }
  pid_t pid() const { return pid_; }

  stream out, err;

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  std::optional<int> status_;
};

// Runs a program to its end with nothing on stdin. Returns: its exit status and stderr.
struct outcome {
  int status = -1;
  std::string out, err;
};
outcome run_to_end(std::vector<std::string> argv, milliseconds timeout = 20s) {
  proc p(std::move(argv));
  p.close_stdin();
  outcome o;
  o.out = p.out.rest(timeout);
  o.err = p.err.rest(2s);
  auto st = p.wait(timeout);
  REQUIRE(st);
  o.status = *st;
  return o;
}

bool contains(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

// ---- fake_server: a scripted TCP peer on 127.0.0.1 ------------------------------------------

// Accepts one connection on 127.0.0.1 (a free port) and runs script(fd) on a thread. Every wait
// in the scripts is bounded, and the destructor shuts the sockets down (which ends those waits)
// before it joins the thread.
class fake_server {
 public:
  explicit fake_server(std::function<void(int)> script) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd_, 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, script = std::move(script)] {
      if (!ready(lfd_, POLLIN, steady_clock::now() + 20s)) return;
      int c = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      conn_ = c;
      script(c);
      ::close(conn_.exchange(-1));
    });
  }
  ~fake_server() {
    ::shutdown(lfd_, SHUT_RDWR);
    if (int c = conn_.load(); c >= 0) ::shutdown(c, SHUT_RDWR);
    thread_.join();
    ::close(lfd_);
  }
  fake_server(const fake_server&) = delete;
  fake_server& operator=(const fake_server&) = delete;
  std::string port() const { return std::to_string(port_); }

 private:
  int lfd_ = -1;
  int port_ = 0;
  std::atomic<int> conn_{-1};
  std::thread thread_;
};

// Script steps (all bounded by 20 s).
// Reads until '\n' (returned with it) or EOF. Bytes after the '\n' in the same read are kept
// in `extra` for the next call.
std::string read_line_from(int fd, std::string& extra) {
  const auto deadline = steady_clock::now() + 20s;
  for (;;) {
    if (auto nl = extra.find('\n'); nl != std::string::npos) {
      std::string line = extra.substr(0, nl + 1);
      extra.erase(0, nl + 1);
      return line;
    }
    if (!ready(fd, POLLIN, deadline)) return std::exchange(extra, {});
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::exchange(extra, {});
    extra.append(buf, static_cast<std::size_t>(n));
  }
}
// Sends all of s. Returns: false once the peer is gone (or after the deadline).
bool send_text(int fd, std::string_view s) {
  const auto deadline = steady_clock::now() + 20s;
  for (std::size_t off = 0; off < s.size();) {
    if (!ready(fd, POLLOUT, deadline)) return false;
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}
// Reads and drops everything until the peer closes (or 20 s pass).
void drain_until_close(int fd) {
  const auto deadline = steady_clock::now() + 20s;
  char buf[4096];
  while (ready(fd, POLLIN, deadline) && ::recv(fd, buf, sizeof buf, 0) > 0) {}
}

// Echoes every byte until the peer closes.
void echo_script(int fd) {
  const auto deadline = steady_clock::now() + 20s;
  char buf[4096];
  while (ready(fd, POLLIN, deadline)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0 || !send_text(fd, std::string_view(buf, static_cast<std::size_t>(n)))) return;
  }
}

// Reads whatever comes and never answers.
void silent_script(int fd) { drain_until_close(fd); }

// ---- small socket helpers for the servers under test ---------------------------------------

// Sends text to 127.0.0.1:port over UDP and waits (bounded) for one datagram back.
std::optional<std::string> udp_round_trip(int port, std::string_view text) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  std::optional<std::string> got;
  if (::sendto(fd, text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
          static_cast<ssize_t>(text.size()) &&
      ready(fd, POLLIN, steady_clock::now() + 10s)) {
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n >= 0) got.emplace(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
}

// Connects to a Unix stream socket, sends text and reads as many bytes back (bounded).
std::optional<std::string> unix_round_trip(const std::string& path, std::string_view text) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  address a = address::unix_path(path);
  std::optional<std::string> got;
  if (::connect(fd, a.data(), a.size()) == 0 && send_text(fd, text)) {
    std::string back;
    const auto deadline = steady_clock::now() + 10s;
    char buf[4096];
    while (back.size() < text.size() && ready(fd, POLLIN, deadline)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      back.append(buf, static_cast<std::size_t>(n));
    }
    got = back;
  }
  ::close(fd);
  return got;
}

// A unique temporary path (pid + counter); nothing is created.
std::string temp_path(std::string_view tag) {
  static std::atomic<int> seq{0};
  return "/tmp/coring-clients-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(seq++);
}

// Removes temporary files when the test ends, even after a failed REQUIRE.
struct remove_at_end {
  std::vector<std::string> paths;
  ~remove_at_end() {
    for (auto& p : paths)
      ::unlink(p.c_str());
  }
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}
ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// A socket file nobody serves any more (bound, then closed without unlinking).
void make_stale_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  address a = address::unix_path(path);
  REQUIRE(::bind(fd, a.data(), a.size()) == 0);
  ::close(fd);
  REQUIRE(exists(path));
}

// "<name> listening on <address>" from a stream. Returns: the address text.
std::string listening_address(stream& s, const std::string& name) {
  auto line = s.line(10s);
  REQUIRE(line);
  const std::string prefix = name + " listening on ";
  REQUIRE(line->rfind(prefix, 0) == 0);
  return line->substr(prefix.size());
}

// SIGTERM, then the server must exit 0 promptly.
void stop(proc& server) {
  server.signal(SIGTERM);
  auto st = server.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// ---- requirements probed at registration (a skip prints its reason) -------------------------

test::requirement can_open_raw_udp() {
  int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
  std::string why =
      fd < 0 ? std::string("socket(AF_INET, SOCK_RAW, IPPROTO_UDP): ") + std::strerror(errno) : "";
  if (fd >= 0) ::close(fd);
  return {test::requirement::kind::environment, "a raw UDP socket (CAP_NET_RAW)", why};
}
// Root, and the user nobody can run unix_echo_server (its build directory may be closed to
// other users).
test::requirement nobody_can_run_unix_echo_server() {
  const char* what = "root, and the user nobody (65534) able to run unix_echo_server";
  if (::geteuid() != 0)
    return {
        test::requirement::kind::environment, what,
        "starting a program as nobody needs root; uid " + std::to_string(::geteuid()) + " here"};
  const char* exe = std::getenv("UNIX_ECHO_SERVER");
  if (!exe) return {test::requirement::kind::environment, what, "UNIX_ECHO_SERVER is not set"};
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0) ::_exit(2);
    ::_exit(::access(exe, X_OK) == 0 && ::access("/tmp", W_OK | X_OK) == 0 ? 0 : 1);
  }
  int st = 0;
  if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return {test::requirement::kind::environment, what,
            "nobody cannot run " + std::string(exe) + " or write to /tmp"};
  return {test::requirement::kind::environment, what, ""};
}

}  // namespace

// ---- the flag parser (finding 14) -------------------------------------------------------------

TEST_CASE("a flag given twice is reported as given twice, not as an unknown argument") {
  struct flag_case {
    std::string flag;
    std::vector<std::string> argv;
  };
  for (const flag_case& c : {
           flag_case{"--port",
                     {test::example_path("UDP_ECHO_SERVER"), "--port", "9000", "--port", "9001"}},
           flag_case{"--port",
                     {test::example_path("ECHO_CLIENT"), "--port", "9000", "--host", "127.0.0.1",
                      "--port", "1"}},
           flag_case{"--message",
                     {test::example_path("UPPER_CLIENT"), "--message", "a", "--message", "b"}},
           flag_case{"--dgram", {test::example_path("PING"), "--dgram", "--dgram", "127.0.0.1"}},
           flag_case{
               "--path",
               {test::example_path("FD_PASS"), "recv", "--path", "/tmp/a", "--path", "/tmp/b"}},
       }) {
    CAPTURE(c.argv[0]);
    outcome o = run_to_end(c.argv);
    CHECK(o.status == 2);
    CHECK(contains(o.err, c.flag + " is given twice"));
    CHECK_FALSE(contains(o.err, "unknown argument"));
  }
  // A value that happens to equal a flag's name is a value, not a repeat: here a socket path
  // named "--path", which does not exist (exit 1 from the connect, not 2 from the parser).
  outcome o = run_to_end({test::example_path("FD_PASS"), "recv", "--path", "--path"});
  CHECK(o.status == 1);
  CHECK_FALSE(contains(o.err, "given twice"));
}

TEST_CASE("a duration below 1 ms is rejected with a clear message; 0 still means off") {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{test::example_path("UNIX_ECHO_SERVER"), "--abstract", "x",
                                 "--idle-timeout", "1e-10"},
        std::vector<std::string>{test::example_path("UNIX_ECHO_SERVER"), "--abstract", "x",
                                 "--grace", "0.0009"},
        std::vector<std::string>{test::example_path("ECHO_CLIENT"), "--timeout", "1e-10"},
        std::vector<std::string>{test::example_path("CHAT_CLIENT"), "--timeout", "0.0000001"}}) {
    CAPTURE(argv[argv.size() - 2]);
    outcome o = run_to_end(argv);
    CHECK(o.status == 2);
    CHECK(contains(o.err, argv[argv.size() - 2] + " is " + argv.back() +
                              " seconds: give 0 (off) or at least 0.001 (1 ms)"));
  }
  // 0 (off) and exactly 1 ms are accepted: the server starts and stops normally.
  for (std::string idle : {"0", "0.001"}) {
    CAPTURE(idle);
    proc server({test::example_path("UNIX_ECHO_SERVER"), "--abstract",
                 test::unique_abstract_name("idle-ok"), "--idle-timeout", idle});
    listening_address(server.out, "unix_echo_server");
    stop(server);
  }
}

// ---- udp_echo_server (finding 7, finding 4) ---------------------------------------------------

// Sends a UDP datagram with a forged source, 127.0.0.1:from_port, to 127.0.0.1:to_port, through
// a raw socket (the kernel adds the IP header; checksum 0: none, allowed over IPv4).
void send_forged_udp(int from_port, int to_port, std::string_view payload) {
  int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
  REQUIRE(fd >= 0);
  std::string pkt(sizeof(udphdr), '\0');
  udphdr h{};
  h.source = htons(static_cast<std::uint16_t>(from_port));
  h.dest = htons(static_cast<std::uint16_t>(to_port));
  h.len = htons(static_cast<std::uint16_t>(sizeof h + payload.size()));
  h.check = 0;
  std::memcpy(pkt.data(), &h, sizeof h);
  pkt += payload;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
        static_cast<ssize_t>(pkt.size()));
  ::close(fd);
}

// Counts the UDP datagrams from port to port seen on loopback by a raw sniffer during window.
int count_self_datagrams(int sniffer, int port, milliseconds window) {
  const auto deadline = steady_clock::now() + window;
  int seen = 0;
  char buf[70000];
  while (ready(sniffer, POLLIN, deadline)) {
    ssize_t n = ::recv(sniffer, buf, sizeof buf, 0);
    if (n < static_cast<ssize_t>(sizeof(iphdr) + sizeof(udphdr))) continue;
    const std::size_t ihl = static_cast<std::size_t>(buf[0] & 0x0f) * 4;
    udphdr h{};
    std::memcpy(&h, buf + ihl, sizeof h);
    if (ntohs(h.source) == port && ntohs(h.dest) == port) ++seen;
  }
  return seen;
}

TEST_CASE("udp_echo_server does not echo a datagram forged with its own address (no endless loop)" *
          test::skip_unless(can_open_raw_udp())) {
  proc server({test::example_path("UDP_ECHO_SERVER"), "--port", "0"});
  address where = address::parse(listening_address(server.out, "udp_echo_server"));
  const int port = where.port();
  REQUIRE(port > 0);
  // A raw UDP socket gets a copy of every UDP datagram loopback delivers: it sees the forged
  // one and, without the fix, each echo the server sends itself (thousands a second).
  int sniffer = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
  REQUIRE(sniffer >= 0);
  send_forged_udp(port, port, "loop?");
  auto line = server.err.line(10s);
  REQUIRE(line);
  CHECK(*line == "udp_echo_server: not answering 127.0.0.1:" + std::to_string(port) +
                     ": our own address: the echo would come back to us for ever");
  // Measuring the absence of a loop takes a window: 300 ms, thousands of echoes without the fix.
  const int seen = count_self_datagrams(sniffer, port, 300ms);
  ::close(sniffer);
  CHECK(seen >= 1);  // the forged datagram itself
  CHECK(seen <= 2);
  // Source port 0 (no one can be answered there) is dropped too; real clients still are served.
  send_forged_udp(0, port, "port zero");
  CHECK(udp_round_trip(port, "still serving") == "still serving");
  server.signal(SIGTERM);
  auto st = server.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  const std::string err = server.err.rest(2s);
  CHECK(contains(err, "udp_echo_server: 2 datagrams from bogus sources were not answered"));
}

TEST_CASE("udp_echo_server with a dead stdout is not killed: it says where it listens on stderr") {
  proc server({test::example_path("UDP_ECHO_SERVER"), "--port", "0"}, {.dead_stdout = true});
  auto line = server.err.line(10s);
  REQUIRE(line);  // without SIGPIPE ignored: EOF here, the server was killed by its printf
  const std::string prefix = "udp_echo_server: stdout: Broken pipe; listening on ";
  REQUIRE(line->rfind(prefix, 0) == 0);
  address where = address::parse(line->substr(prefix.size()));
  CHECK(udp_round_trip(where.port(), "hello") == "hello");
  stop(server);
}

// ---- unix_echo_server (finding 14, finding 4) -------------------------------------------------

TEST_CASE("unix_echo_server survives a dead stdout and still removes its socket file") {
  const std::string path = temp_path("dead-stdout");
  remove_at_end cleanup{{path}};
  proc server({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
  CHECK(listening_address(server.out, "unix_echo_server") == "unix:" + path);
  CHECK_FALSE(exists(path + ".lock"));  // the start-up lock is gone once it listens
  server.close_stdout();                // like `unix_echo_server ... | head -1`
  // Its next log line ("client ... connected") goes to a pipe with no reader.
  CHECK(unix_round_trip(path, "still alive") == "still alive");
  CHECK(unix_round_trip(path, "and again") == "and again");
  stop(server);  // without the fix: killed by SIGPIPE (141) and the file left behind
  CHECK_FALSE(exists(path));
}

TEST_CASE("unix_echo_server exits 0 on SIGHUP and removes its socket file") {
  const std::string path = temp_path("hup");
  remove_at_end cleanup{{path}};
  proc server({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
  listening_address(server.out, "unix_echo_server");
  REQUIRE(exists(path));
  server.signal(SIGHUP);
  auto st = server.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
  CHECK_FALSE(exists(path));
  CHECK(contains(server.err.rest(2s), "unix_echo_server: SIGHUP, shutting down"));
}

TEST_CASE("unix_echo_server does not touch a stale path while another starter holds its lock") {
  const std::string path = temp_path("locked");
  remove_at_end cleanup{{path, path + ".lock"}};
  make_stale_socket(path);
  const ino_t stale = inode_of(path);
  // We play the other unix_echo_server, caught between its probe and its bind.
  int lock = ::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(lock >= 0);
  REQUIRE(::flock(lock, LOCK_EX | LOCK_NB) == 0);
  outcome o = run_to_end({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
  CHECK(o.status == 1);
  CHECK(contains(
      o.err, "another unix_echo_server is starting on this path (" + path + ".lock is locked)"));
  CHECK(o.out.empty());  // it never listened
  CHECK_FALSE(contains(o.err, "removed stale socket"));
  CHECK(inode_of(path) == stale);  // the stale file is still there
  // Once the lock is free, the stale file is replaced as before and the lock file removed.
  ::close(lock);
  proc server({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
  auto removed = server.err.line(10s);
  REQUIRE(removed);
  CHECK(*removed == "unix_echo_server: removed stale socket " + path);
  CHECK(listening_address(server.out, "unix_echo_server") == "unix:" + path);
  CHECK_FALSE(exists(path + ".lock"));
  CHECK(unix_round_trip(path, "mine now") == "mine now");
  stop(server);
}

TEST_CASE("two unix_echo_servers starting at once on one stale path: exactly one serves it") {
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    const std::string path = temp_path("race");
    remove_at_end cleanup{{path, path + ".lock"}};
    make_stale_socket(path);
    proc a({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
    proc b({test::example_path("UNIX_ECHO_SERVER"), "--path", path});
    // The loser exits 1 (lock taken, or the winner already listening): its stdout ends with
    // no line. The winner prints its line and serves.
    auto la = a.out.line(10s), lb = b.out.line(10s);
    REQUIRE(la.has_value() != lb.has_value());
    proc& winner = la ? a : b;
    proc& loser = la ? b : a;
    auto lst = loser.wait(10s);
    REQUIRE(lst);
    CHECK(*lst == 1);
    const std::string why = loser.err.rest(2s);
    CHECK((contains(why, "is in use by a running server") ||
           contains(why, "another unix_echo_server is starting on this path")));
    CHECK(unix_round_trip(path, "winner") == "winner");  // the file is the winner's socket
    stop(winner);
    CHECK_FALSE(exists(path));
  }
}

TEST_CASE("unix_echo_server as another user on root's stale socket reports permission denied" *
          test::skip_unless(nobody_can_run_unix_echo_server())) {
  const std::string path = temp_path("root-owned");
  remove_at_end cleanup{{path, path + ".lock"}};
  make_stale_socket(path);
  REQUIRE(::chmod(path.c_str(), 0755) == 0);  // others may not write: no connect for nobody
  proc server({test::example_path("UNIX_ECHO_SERVER"), "--path", path}, {.as_nobody = true});
  server.close_stdin();
  const std::string err = server.err.rest(10s);
  auto st = server.wait(10s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK(contains(err, "cannot check whether a server runs on " + path + ": Permission denied"));
  CHECK_FALSE(contains(err, "in use by a running server"));
  CHECK(exists(path));  // root's file is left alone
}

// ---- echo_client (finding 12) -------------------------------------------------------------------

TEST_CASE("echo_client prints the echo's bytes as they came, NUL included") {
  fake_server server(echo_script);
  proc client({test::example_path("ECHO_CLIENT"), "--port", server.port()});
  const std::string with_nul = "a\0b\x01z"s;
  client.write(with_nul + "\n");
  auto got = client.out.line(10s);
  REQUIRE(got);  // fputs stopped at the NUL: no newline ever came
  CHECK(*got == with_nul);
  client.close_stdin();
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("echo_client exits 1 and prints the partial echo when the server closes early") {
  fake_server server([](int fd) {
    std::string extra;
    read_line_from(fd, extra);
    send_text(fd, "hello");  // 5 of the 12 bytes of "hello world\n", then close
  });
  proc client({test::example_path("ECHO_CLIENT"), "--port", server.port()});
  client.write("hello world\n");
  const std::string out = client.out.rest(10s);
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK(out == "hello");
  CHECK(contains(
      client.err.rest(2s),
      "echo_client: the server closed the connection after 5 of the 12 bytes of the echo"));
}

// ---- --timeout of every interactive client (finding 12) ---------------------------------------

TEST_CASE("every interactive client gives up on a silent server after --timeout") {
  struct client_case {
    std::string env, name;
    std::vector<std::string> extra;
  };
  for (const client_case& c : {client_case{"ECHO_CLIENT", "echo_client", {}},
                               client_case{"UPPER_CLIENT", "upper_client", {}},
                               client_case{"UPPER_CLIENT", "upper_client", {"--message", "hi"}},
                               client_case{"CHAT_CLIENT", "chat_client", {}}}) {
    CAPTURE(c.name);
    CAPTURE(c.extra.size());
    fake_server server(silent_script);
    std::vector<std::string> argv{test::example_path(c.env.c_str()), "--port", server.port(),
                                  "--timeout", "0.3"};
    argv.insert(argv.end(), c.extra.begin(), c.extra.end());
    proc client(argv);
    client.write("anyone there?\n");
    auto st = client.wait(10s);  // without --timeout: never
    REQUIRE(st);
    CHECK(*st == 1);
    const std::string err = client.err.rest(2s);
    CHECK(contains(
        err, c.name + ": no answer from 127.0.0.1:" + server.port() + " within 0.3 s (--timeout)"));
    CHECK(client.out.rest(1s).empty());
  }
  // --help documents it, with its default.
  for (const char* env : {"ECHO_CLIENT", "UPPER_CLIENT", "CHAT_CLIENT"}) {
    CAPTURE(env);
    outcome o = run_to_end({test::example_path(env), "--help"});
    CHECK(o.status == 0);
    CHECK(contains(o.out, "--timeout SECONDS"));
    CHECK(contains(o.out, "default 30, 0 for no limit"));
  }
}

// ---- chat_client (finding 12) -------------------------------------------------------------------

TEST_CASE("chat_client gives up on a reply line longer than 128 KiB instead of buffering it all") {
  std::atomic<std::size_t> streamed{0};
  fake_server server([&streamed](int fd) {
    std::string extra;
    read_line_from(fd, extra);
    const std::string chunk(16384, 'x');
    // No newline, ever: at most 64 MiB (the client without a bound would take all of it).
    while (streamed < (64u << 20) && send_text(fd, chunk))
      streamed += chunk.size();
  });
  proc client({test::example_path("CHAT_CLIENT"), "--port", server.port()});
  client.write("hello\n");
  auto st = client.wait(20s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK(contains(client.err.rest(2s), "chat_client: a reply line is longer than 131072 bytes"));
  CHECK(client.out.rest(1s).empty());
  // It stopped reading soon after 128 KiB (what it read, plus what the socket buffers hold).
  CHECK(streamed < (32u << 20));
}

TEST_CASE("chat_client: a 100 KB reply line in many pieces, and two replies in one segment") {
  fake_server server([](int fd) {
    std::string extra;
    read_line_from(fd, extra);
    // 100,000 bytes in 100 sends, then its newline: found although it arrives in pieces.
    const std::string piece(1000, 'L');
    for (int i = 0; i < 100; ++i)
      if (!send_text(fd, piece)) return;
    send_text(fd, "\n");
    read_line_from(fd, extra);
    send_text(fd, "one\ntwo\n");  // two reply lines at once: the second waits in the inbox
    read_line_from(fd, extra);
    drain_until_close(fd);
  });
  proc client({test::example_path("CHAT_CLIENT"), "--port", server.port()});
  client.write("long?\n");
  auto l1 = client.out.line(10s);
  REQUIRE(l1);
  CHECK(*l1 == std::string(100000, 'L'));
  client.write("two?\n");
  auto l2 = client.out.line(10s);
  REQUIRE(l2);
  CHECK(*l2 == "one");
  client.write("next\n");
  auto l3 = client.out.line(10s);
  REQUIRE(l3);
  CHECK(*l3 == "two");
  client.close_stdin();
  auto st = client.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// ---- dead stdout: an error exit, never a kill (finding 4) --------------------------------------

TEST_CASE("the clients exit 1 with a message, not by SIGPIPE, when stdout is a dead pipe") {
  struct client_case {
    std::string env, name;
    std::vector<std::string> extra;
    std::string input;
  };
  for (const client_case& c :
       {client_case{"ECHO_CLIENT", "echo_client", {}, "hello\n"},
        client_case{"UPPER_CLIENT", "upper_client", {"--message", "hello"}, ""},
        client_case{"UPPER_CLIENT", "upper_client", {}, "hello\n"},
        client_case{"CHAT_CLIENT", "chat_client", {}, "hello\n"}}) {
    CAPTURE(c.name);
    CAPTURE(c.extra.size());
    fake_server server(echo_script);
    std::vector<std::string> argv{test::example_path(c.env.c_str()), "--port", server.port()};
    argv.insert(argv.end(), c.extra.begin(), c.extra.end());
    proc client(argv, {.dead_stdout = true});
    client.write(c.input);
    auto st = client.wait(10s);
    REQUIRE(st);
    CHECK(*st == 1);  // 141 (128 + SIGPIPE) without the fix
    CHECK(contains(client.err.rest(2s), c.name + ": stdout: Broken pipe"));
  }
}

TEST_CASE("ping exits 1 with a message, not by SIGPIPE, when stdout is a dead pipe" *
          test::skip_unless(test::can_open(test::icmp_socket::raw_or_datagram))) {
  proc p({test::example_path("PING"), "--count", "1", "127.0.0.1"}, {.dead_stdout = true});
  auto st = p.wait(10s);
  REQUIRE(st);
  CHECK(*st == 1);
  CHECK(contains(p.err.rest(2s), "ping: stdout: Broken pipe"));
}

// ---- fd_pass recv (finding 12) --------------------------------------------------------------

// Runs fd_pass send FILE and fd_pass recv with extra flags. Returns: recv's outcome.
outcome pass_file(const std::string& file, std::vector<std::string> recv_flags,
                  proc_options recv_options = {}) {
  const std::string name = test::unique_abstract_name("fd-pass-clients");
  proc sender({test::example_path("FD_PASS"), "send", "--abstract", name, file});
  CHECK(listening_address(sender.out, "fd_pass") == "unix:@" + name);
  std::vector<std::string> argv{test::example_path("FD_PASS"), "recv", "--abstract", name};
  argv.insert(argv.end(), recv_flags.begin(), recv_flags.end());
  proc receiver(argv, recv_options);
  receiver.close_stdin();
  outcome o;
  o.out = receiver.out.rest(20s);
  o.err = receiver.err.rest(2s);
  auto st = receiver.wait(20s);
  REQUIRE(st);
  o.status = *st;
  auto sst = sender.wait(10s);
  REQUIRE(sst);
  CHECK(*sst == 0);
  return o;
}

TEST_CASE("fd_pass recv refuses a file longer than --max-bytes instead of reading it all") {
  SUBCASE("/dev/zero never ends") {
    outcome o = pass_file("/dev/zero", {"--max-bytes", "1048576"});
    CHECK(o.status == 1);
    CHECK(o.out.empty());
    CHECK(contains(o.err, "fd_pass recv: /dev/zero holds more than --max-bytes 1048576 bytes"));
  }
  SUBCASE("the default is 16 MiB") {
    const std::string file = temp_path("sparse");
    remove_at_end cleanup{{file}};
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, (16 << 20) + 1) == 0);  // sparse: no disk used
    ::close(fd);
    outcome o = pass_file(file, {});
    CHECK(o.status == 1);
    CHECK(o.out.empty());
    CHECK(contains(o.err, "holds more than --max-bytes 16777216 bytes"));
  }
  SUBCASE("exactly --max-bytes passes, one more does not") {
    const std::string file = temp_path("exact");
    remove_at_end cleanup{{file}};
    {
      std::ofstream f(file, std::ios::binary);
      f << std::string(1000, 'e');
    }
    outcome ok = pass_file(file, {"--max-bytes", "1000"});
    CHECK(ok.status == 0);
    CHECK(ok.out == "fd_pass received " + file + " (1000 bytes)\n" + std::string(1000, 'e'));
    outcome over = pass_file(file, {"--max-bytes", "999"});
    CHECK(over.status == 1);
    CHECK(over.out.empty());
  }
  SUBCASE("a dead stdout is an error exit, not SIGPIPE") {
    const std::string file = temp_path("small");
    remove_at_end cleanup{{file}};
    {
      std::ofstream f(file, std::ios::binary);
      f << "content\n";
    }
    outcome o = pass_file(file, {}, {.dead_stdout = true});
    CHECK(o.status == 1);
    CHECK(contains(o.err, "fd_pass recv: stdout: Broken pipe"));
  }
  SUBCASE("--max-bytes is documented and belongs to recv only") {
    outcome help = run_to_end({test::example_path("FD_PASS"), "--help"});
    CHECK(contains(help.out, "--max-bytes N (default 16777216"));
    outcome o = run_to_end({test::example_path("FD_PASS"), "send", "--abstract", "x", "--max-bytes",
                            "5", "/dev/null"});
    CHECK(o.status == 2);
  }
}

// ---- ping 0.0.0.0 (finding 14) ----------------------------------------------------------------

TEST_CASE("ping 0.0.0.0 takes the reply from 127.0.0.1 (0.0.0.0 means this host)" *
          test::skip_unless(test::can_open(test::icmp_socket::raw_or_datagram))) {
  outcome o = run_to_end({test::example_path("PING"), "--count", "1", "0.0.0.0"});
  INFO(o.out);
  CHECK(o.status == 0);
  CHECK(contains(o.out, " bytes from 127.0.0.1: icmp_seq=1 "));
  CHECK(contains(o.out, "1 packets transmitted, 1 received, 0% packet loss"));
}
