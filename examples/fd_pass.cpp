// SPDX-License-Identifier: MIT
// Description: fd_pass: one process hands an open file's descriptor to another over a Unix
// socket (SCM_RIGHTS via send_fds / recv_fds); the receiver reads the file through it.
//
// The receiver never opens the file by name: it reads through the descriptor it was given, so
// it can read files it could not open itself (this is how privilege-separated daemons hand out
// access). The descriptor travels with the file name as the message's data, because on a
// stream socket control messages ride on data bytes.
#include <coring/coring.hpp>

#include "client_io.hpp"
#include "example_util.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

const char* usage =
    "usage: fd_pass send (--path SOCK | --abstract NAME) FILE\n"
    "       fd_pass recv (--path SOCK | --abstract NAME) [--max-bytes N]\n"
    "  send: opens FILE, listens on the Unix socket SOCK (a file; a stale socket file there is\n"
    "        removed, and the file is removed at exit) or on the abstract name NAME, prints\n"
    "        \"fd_pass listening on <address>\", accepts one peer, sends it FILE's descriptor\n"
    "        with FILE's name as data, and exits 0 (1 if interrupted by SIGINT/SIGTERM first).\n"
    "  recv: connects to SOCK or NAME, receives the descriptor and the name, reads the file\n"
    "        through the descriptor and prints \"fd_pass received <name> (<N> bytes)\" and then\n"
    "        the content, unchanged, on stdout. Exits 0. The content is held in memory: a file\n"
    "        longer than --max-bytes N (default 16777216, 16 MiB; 0 to 1073741824) is refused\n"
    "        with a message and exit 1, nothing printed (/dev/zero never ends). A closed\n"
    "        stdout is an error (exit 1).\n";

// Splits the arguments after the subcommand into flags (for example::args) and positionals.
// Every flag this program knows takes a value.
struct split_args {
  std::vector<char*> flags;  // flags[0] is the program name, as example::args expects
  std::vector<std::string> positional;
};
split_args split(int argc, char** argv) {
  split_args out;
  out.flags.push_back(argv[0]);
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      out.flags.push_back(argv[i]);
      if ((a == "--path" || a == "--abstract" || a == "--max-bytes") && i + 1 < argc)
        out.flags.push_back(argv[++i]);
    } else {
      out.positional.emplace_back(a);
    }
  }
  return out;
}

// As in unix_echo_server: removes a socket file nobody serves; refuses anything else.
void remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
  coring::address a = coring::address::unix_path(path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "socket");
  int rc = ::connect(fd, a.data(), a.size());
  int err = errno;
  ::close(fd);
  // ECONNREFUSED: stale; connected, EAGAIN (a full backlog) or EPROTOTYPE (another socket
  // type): a server is there; anything else (EACCES: not ours to probe) is reported as is.
  if (rc == 0 || err == EAGAIN || err == EPROTOTYPE) throw std::runtime_error(path + " is in use");
  if (err != ECONNREFUSED)
    throw std::system_error(err, std::system_category(),
                            "cannot check whether " + path + " is in use");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw std::system_error(errno, std::system_category(), "unlink " + path);
}

struct unlink_at_exit {
  std::string path;
  ~unlink_at_exit() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// ---- send ----------------------------------------------------------------------------------

// Accepts one peer and hands it file_fd, with name as the data the descriptor rides on.
coring::task<> hand_over(coring::socket& listener, int file_fd, std::string name,
                         std::stop_token tok) {
  auto op = listener.accept().with_stop(std::move(tok));
  coring::socket peer = co_await op;
  coring::credentials who = peer.peer_credentials();
  const int fds[1] = {file_fd};
  std::size_t sent = co_await coring::send_fds(peer, fds, std::as_bytes(std::span(name)));
  if (sent != name.size())  // a short send: the rest of the name is not worth a loop here
    throw std::runtime_error("short send of the file name");
  std::fprintf(stderr, "fd_pass: sent %s (descriptor %d) to pid %d\n", name.c_str(), file_fd,
               static_cast<int>(who.pid));
}

// Returns: 0 once the descriptor was sent, 1 if a signal came first.
coring::task<int> run_send(coring::socket& listener, coring::signal_set& signals, int file_fd,
                           const std::string& name) {
  auto sender = [&](std::stop_token tok) { return hand_over(listener, file_fd, name, tok); };
  // An operation races as it is: when_any binds it to its stop token.
  auto race = coring::when_any(sender, signals.wait());
  auto first = co_await std::move(race);
  if (first.index() == 1) {
    std::fprintf(stderr, "fd_pass: interrupted before a peer connected\n");
    co_return 1;
  }
  co_return 0;
}

int do_send(const coring::address& where, const std::string& path, const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "fd_pass: open %s: %s\n", file.c_str(), std::strerror(errno));
    return 1;
  }
  coring::unique_fd file_fd(fd);
  unlink_at_exit cleanup;
  coring::io_context ctx;
  coring::signal_set signals(ctx, {SIGINT, SIGTERM});
  if (!path.empty()) remove_stale_socket(path);
  coring::socket listener(ctx, AF_UNIX, SOCK_STREAM);
  listener.bind(where);
  cleanup.path = path;
  listener.listen(1);
  std::printf("fd_pass listening on %s\n", listener.sock_name().to_string().c_str());
  std::fflush(stdout);
  return coring::sync_wait(ctx, run_send(listener, signals, file_fd.get(), file));
}

// ---- recv ----------------------------------------------------------------------------------

struct received {
  std::string name;
  coring::unique_fd fd;
};

coring::task<received> fetch(coring::io_context& ctx, coring::address where) {
  coring::socket s(ctx, AF_UNIX, SOCK_STREAM);
  co_await s.connect(where);
  std::vector<std::byte> buf(PATH_MAX + 1);
  coring::received_fds got = co_await coring::recv_fds(s, buf, 1);
  if (got.size == 0) throw std::runtime_error("the sender closed without sending anything");
  if (got.fds.empty()) throw std::runtime_error("the message carried no descriptor");
  received r;
  r.name.assign(reinterpret_cast<const char*>(buf.data()), got.size);
  r.fd = std::move(got.fds.front());
  co_return r;
}

// Reads the whole file through fd from offset 0 (pread: the sender's file offset is shared with
// ours, since both descriptors refer to the same open file; pread leaves it alone).
// Throws: std::runtime_error once it holds more than max_bytes (it reads one byte past the
// limit to tell "exactly max_bytes" from "more"), so memory stays bounded.
std::string read_all(int fd, const std::string& name, std::size_t max_bytes) {
  std::string content;
  char chunk[65536];
  for (off_t off = 0;;) {
    if (content.size() > max_bytes)
      throw std::runtime_error(name + " holds more than --max-bytes " + std::to_string(max_bytes) +
                               " bytes; nothing printed (raise --max-bytes to read it)");
    const std::size_t want = std::min(sizeof chunk, max_bytes + 1 - content.size());
    ssize_t n = ::pread(fd, chunk, want, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::system_category(), "pread");
    }
    if (n == 0) break;
    content.append(chunk, static_cast<std::size_t>(n));
    off += n;
  }
  return content;
}

int do_recv(const coring::address& where, std::size_t max_bytes) {
  coring::io_context ctx;
  received r = coring::sync_wait(ctx, fetch(ctx, where));
  std::string content = read_all(r.fd.get(), r.name, max_bytes);
  std::printf("fd_pass received %s (%zu bytes)\n", r.name.c_str(), content.size());
  example::write_stdout(content);  // throws if stdout is gone (exit 1)
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(usage, stdout);
    return 0;
  }
  if (argc < 2 || (std::strcmp(argv[1], "send") != 0 && std::strcmp(argv[1], "recv") != 0)) {
    std::fprintf(stderr, "fd_pass: the first argument must be send or recv\n%s", usage);
    return 2;
  }
  const bool sending = std::strcmp(argv[1], "send") == 0;
  split_args parts = split(argc, argv);
  example::args args(static_cast<int>(parts.flags.size()), parts.flags.data(), usage);
  std::string path = args.get("--path", "");
  std::string abstract = args.get("--abstract", "");
  // recv only: given to send, --max-bytes is left unconsumed and rejected by done().
  const auto max_bytes =
      sending ? 0 : static_cast<std::size_t>(args.get_int("--max-bytes", 16 << 20, 0, 1 << 30));
  args.done();
  if (path.empty() == abstract.empty()) {
    std::fprintf(stderr, "give exactly one of --path and --abstract\n%s", usage);
    return 2;
  }
  if (parts.positional.size() != (sending ? 1u : 0u)) {
    std::fprintf(
        stderr,
        sending ? "fd_pass send needs exactly one FILE\n%s" : "fd_pass recv takes no FILE\n%s",
        usage);
    return 2;
  }
  coring::address where;
  try {
    where =
        path.empty() ? coring::address::unix_abstract(abstract) : coring::address::unix_path(path);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "%s: %s\n%s", path.empty() ? "--abstract" : "--path", e.what(), usage);
    return 2;
  }
  try {
    return sending ? do_send(where, path, parts.positional.front()) : do_recv(where, max_bytes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fd_pass %s: %s\n", argv[1], e.what());
    return 1;
  }
}
