// SPDX-License-Identifier: MIT
// Description: Unix-domain echo server (filesystem path or abstract name; stream or seqpacket):
// logs each client's credentials, graceful shutdown on SIGINT/SIGTERM.
//
// The same coroutine-per-client shape as echo_server, over AF_UNIX. What differs:
// - The address is a file (removed when stale at start, and at exit) or an abstract name
//   (no file; it disappears with the socket). The file goes on every way out that lets us run
//   code: a normal exit, SIGINT, SIGTERM, SIGHUP, an error; a closed stdout cannot kill us
//   (SIGPIPE is ignored). Only SIGKILL and the like leave it, and the next start removes it
//   as stale.
// - The kernel tells us who the client is: peer_credentials() (SO_PEERCRED) gives the pid, uid
//   and gid the client had when it connected. Nothing the client sends can forge them.
// - SOCK_SEQPACKET keeps message boundaries: one recv returns exactly one message, so echoing
//   each recv as one send returns every message whole. A message longer than the 64 KiB buffer
//   is cut by the kernel; it is reported on stderr and its first 64 KiB echoed (as in
//   udp_echo_server). An empty message reads the same as EOF (recv returns 0) and ends that
//   client, which is how SOCK_SEQPACKET works on Linux.
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

const char* usage =
    "usage: unix_echo_server (--path PATH | --abstract NAME) [--type stream|seqpacket]\n"
    "                        [--idle-timeout SECONDS] [--grace SECONDS]\n"
    "  Echoes every byte (stream, the default) or every message (seqpacket) back to each client\n"
    "  over a Unix socket: a file at PATH (a stale socket file there is removed at start, and\n"
    "  the file is removed at exit) or the abstract name NAME (no file). Prints the address it\n"
    "  listens on (unix:PATH or unix:@NAME) and, for each client, its credentials:\n"
    "  \"client pid=P uid=U gid=G connected\" and \"... disconnected\". On SIGINT, SIGTERM or\n"
    "  SIGHUP it stops accepting, lets replies in flight finish (at most --grace seconds,\n"
    "  default 2), closes its clients and exits 0. --idle-timeout disconnects clients silent\n"
    "  for that long (0, the default: never; else at least 0.001).\n"
    "  While it starts, it holds an flock on PATH.lock (created, and removed once it listens):\n"
    "  a second unix_echo_server starting at the same moment on PATH exits 1 instead of\n"
    "  replacing the first's socket. A PATH it may not probe (e.g. another user's socket) is\n"
    "  reported with the system's reason (\"Permission denied\"), exit 1.\n";

constexpr std::size_t message_buffer = 64 * 1024;

// Stream: the echo loop. idle > 0 bounds every wait for data, and every reply the client does
// not read.
coring::task<> echo_stream(coring::socket& s, std::chrono::nanoseconds idle) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    std::size_t n = 0;
    if (idle.count() == 0)
      n = co_await s.recv(buf);
    else
      n = co_await s.recv(buf).with_timeout(idle);
    if (n == 0) break;
    if (idle.count() == 0)
      co_await s.send_all(std::span(buf).first(n));
    else
      co_await s.send_all(std::span(buf).first(n)).with_timeout(idle);
  }
}

// Seqpacket: one recv is one message; it goes back as one send (atomic on SOCK_SEQPACKET: all
// of it or an error, never a short send).
coring::task<> echo_messages(coring::socket& s, std::chrono::nanoseconds idle) {
  std::vector<std::byte> buf(message_buffer);
  for (;;) {
    coring::datagram d;
    if (idle.count() == 0)
      d = co_await s.recv_from(buf, MSG_TRUNC);
    else
      d = co_await s.recv_from(buf, MSG_TRUNC).with_timeout(idle);
    if (d.size == 0) break;  // EOF (or an empty message, which Linux reports the same way)
    std::size_t kept = d.size < buf.size() ? d.size : buf.size();
    if (d.truncated || d.size > buf.size())
      std::fprintf(stderr,
                   "unix_echo_server: message of %zu bytes truncated to %zu; echoing those\n",
                   d.size, kept);
    if (idle.count() == 0)
      co_await s.send(std::span(buf).first(kept));
    else
      co_await s.send(std::span(buf).first(kept)).with_timeout(idle);
  }
}

coring::task<> serve_client(coring::socket& s, bool seqpacket, std::chrono::nanoseconds idle) {
  coring::credentials who;
  try {
    who = s.peer_credentials();
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "unix_echo_server: peer credentials: %s\n", e.what());
  }
  std::printf("client pid=%d uid=%u gid=%u connected\n", static_cast<int>(who.pid),
              static_cast<unsigned>(who.uid), static_cast<unsigned>(who.gid));
  std::fflush(stdout);
  try {
    if (seqpacket)
      co_await echo_messages(s, idle);
    else
      co_await echo_stream(s, idle);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::timed_out)
      std::fprintf(stderr, "client pid=%d: idle for too long, disconnected\n",
                   static_cast<int>(who.pid));
    else
      std::fprintf(stderr, "client pid=%d: %s\n", static_cast<int>(who.pid), e.what());
  }
  std::printf("client pid=%d uid=%u gid=%u disconnected\n", static_cast<int>(who.pid),
              static_cast<unsigned>(who.uid), static_cast<unsigned>(who.gid));
  std::fflush(stdout);
}

// Serves until SIGINT, SIGTERM or SIGHUP, then drains: the scope stops accepting, shuts every
// client's reading side, and cancels what is left after grace.
coring::task<> run(coring::io_context& ctx, coring::socket listener, coring::signal_set& signals,
                   bool seqpacket, std::chrono::nanoseconds idle, std::chrono::nanoseconds grace) {
  coring::connection_scope scope(ctx);
  scope.serve(std::move(listener),
              [seqpacket, idle](coring::socket& s) { return serve_client(s, seqpacket, idle); });
  int sig = co_await signals.wait();
  std::fprintf(stderr, "unix_echo_server: %s, shutting down (%zu clients)\n",
               sig == SIGINT   ? "SIGINT"
               : sig == SIGHUP ? "SIGHUP"
                               : "SIGTERM",
               scope.size());
  const bool ended = co_await scope.drain(grace);  // named: see docs/design.md, "g++ 12"
  if (!ended) std::fprintf(stderr, "unix_echo_server: some clients did not end; destroying them\n");
}

// RACE: "probe the old socket, unlink it if stale, bind" is check-then-act. Two servers
// starting at once on one stale path could both find it stale; the second one's unlink would
// then remove the first one's fresh socket file and both would "listen", one of them on a
// socket nobody can reach. So a starter holds an exclusive flock on "<path>.lock" from the
// probe until its socket listens, and a second starter that finds the lock taken exits at once
// with a clear message (it would only find a live server after the wait anyway).
// Why flock on a side file: the kernel drops the lock when its holder dies, so a killed starter
// never leaves a stale lock, and the lock file can be removed once we listen (a starter that
// had opened the removed file sees, after locking, that the path now names another file or
// none, and starts over). Rejected: binding a temporary name and rename()ing it over PATH is
// atomic per rename, but two starters could still both decide "stale" and the second rename
// would silently replace the first's live socket. Programs that do not take the lock (fd_pass,
// another server) are not kept out; this guards unix_echo_server against itself.
class path_lock {
 public:
  explicit path_lock(std::string path) : lock_path_(std::move(path) + ".lock") {
    for (int attempt = 0; attempt < 10; ++attempt) {
      // O_NOFOLLOW: a symlink planted at PATH.lock (in /tmp, by another user) is not followed.
      int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) throw std::system_error(errno, std::system_category(), "open " + lock_path_);
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(fd);
        if (err == EWOULDBLOCK)
          throw std::runtime_error("another unix_echo_server is starting on this path (" +
                                   lock_path_ + " is locked); not touching it");
        throw std::system_error(err, std::system_category(), "flock " + lock_path_);
      }
      struct stat held {
      }, now{};
      if (::fstat(fd, &held) == 0 && ::lstat(lock_path_.c_str(), &now) == 0 &&
          held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
        fd_ = fd;
        return;
      }
      ::close(fd);  // its holder removed (or replaced) the file meanwhile: lock the new one
    }
    throw std::runtime_error("cannot lock " + lock_path_ + ": it keeps being replaced");
  }
  ~path_lock() { release(); }
  path_lock(const path_lock&) = delete;
  path_lock& operator=(const path_lock&) = delete;
  /// Removes the lock file (while still holding the lock, see above) and unlocks.
  void release() noexcept {
    if (fd_ < 0) return;
    ::unlink(lock_path_.c_str());
    ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string lock_path_;
  int fd_ = -1;
};

// Removes path if it is a Unix socket that nobody serves (left behind by a server that was
// killed). Refuses (throws) if something else is there, a server still answers on it, or it
// cannot be probed (the error says why: e.g. Permission denied for another user's socket).
// Call with the path_lock held.
void remove_stale_socket(const std::string& path, int type) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
  coring::address a = coring::address::unix_path(path);
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "socket");
  int rc = ::connect(fd, a.data(), a.size());
  int err = errno;
  ::close(fd);
  // ECONNREFUSED: the file is bound to no socket. Connected, EAGAIN (a full backlog) or
  // EPROTOTYPE (a server of the other type): someone is there. ENOENT: gone meanwhile.
  // Anything else (EACCES: no write permission on another user's socket) is no answer to
  // "is a server there?", so it is reported as it is.
  if (rc == 0 || err == EAGAIN || err == EPROTOTYPE)
    throw std::runtime_error(path + " is in use by a running server");
  if (err == ENOENT) return;
  if (err != ECONNREFUSED)
    throw std::system_error(err, std::system_category(),
                            "cannot check whether a server runs on " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw std::system_error(errno, std::system_category(), "unlink stale socket " + path);
  std::fprintf(stderr, "unix_echo_server: removed stale socket %s\n", path.c_str());
}

// Removes the socket file when main's scope ends (normal exit or an exception).
struct unlink_at_exit {
  std::string path;  // empty: nothing to remove (abstract name)
  ~unlink_at_exit() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

int main(int argc, char** argv) {
  // First: a closed stdout (`unix_echo_server ... | head -1`) must make writes fail, not kill
  // us with SIGPIPE at the next client's log line and leave the socket file behind.
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string path = args.get("--path", "");
  std::string abstract = args.get("--abstract", "");
  std::string type_name = args.get("--type", "stream");
  double idle_s = args.get_double("--idle-timeout", 0, 0, 86400);
  double grace_s = args.get_double("--grace", 2, 0, 3600);
  args.done();
  if (path.empty() == abstract.empty()) {
    std::fprintf(stderr, "give exactly one of --path and --abstract\n%s", usage);
    return 2;
  }
  if (type_name != "stream" && type_name != "seqpacket") {
    std::fprintf(stderr, "--type must be stream or seqpacket\n%s", usage);
    return 2;
  }
  const int type = type_name == "stream" ? SOCK_STREAM : SOCK_SEQPACKET;
  coring::address where;
  try {
    where =
        path.empty() ? coring::address::unix_abstract(abstract) : coring::address::unix_path(path);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "%s: %s\n%s", path.empty() ? "--abstract" : "--path", e.what(), usage);
    return 2;
  }
  example::raise_fd_limit();
  unlink_at_exit cleanup;
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM, SIGHUP});
    coring::socket listener(ctx, AF_UNIX, type);
    {
      std::optional<path_lock> lock;  // probe, unlink, bind and listen: one starter at a time
      if (!path.empty()) {
        lock.emplace(path);
        remove_stale_socket(path, type);
      }
      listener.bind(where);
      cleanup.path = path;  // ours from now on
      listener.listen();
    }  // the lock goes: a later starter's probe now finds us listening
    const std::string listening = listener.sock_name().to_string();
    std::printf("unix_echo_server listening on %s\n", listening.c_str());
    if (std::fflush(stdout) != 0)  // stdout is gone: say where we listen on stderr instead
      std::fprintf(stderr, "unix_echo_server: stdout: %s; listening on %s\n", std::strerror(errno),
                   listening.c_str());
    coring::sync_wait(ctx, run(ctx, std::move(listener), signals, type == SOCK_SEQPACKET,
                               example::seconds(idle_s), example::seconds(grace_s)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unix_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
