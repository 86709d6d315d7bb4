// SPDX-License-Identifier: MIT
// Description: tiny helpers shared by the examples: flag parsing, the open-file limit, and the
// live-client list and drain step of a server's graceful shutdown.
#pragma once

#include <coring/coring.hpp>

#include <chrono>
#include <cstddef>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/resource.h>
#include <sys/socket.h>

namespace example {

/// Minimal `--name value` / `--flag` parser. Unknown flags are an error (exit 2).
class args {
 public:
  args(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "--help" || a == "-h") {
        std::fputs(usage, stdout);
        std::exit(0);
      }
    }
  }
  /// Value of --name, or fallback if absent.
  std::string get(std::string_view name, std::string fallback) {
    for (int i = 1; i < argc_; ++i)
      if (argv_[i] == name) {
        if (i + 1 >= argc_) fail(name, "needs a value");
        used(i, 2);
        return argv_[i + 1];
      }
    return fallback;
  }
  long get_int(std::string_view name, long fallback, long lo, long hi) {
    std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    // strtol skips blanks and takes a sign: accept plain digits only ("-1" only if lo < 0).
    const bool plain = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) ||
                                      (lo < 0 && v[0] == '-' && v.size() > 1));
    if (!plain || *end != '\0' || n < lo || n > hi)
      fail(name, ("must be a number from " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
    return n;
  }
  double get_double(std::string_view name, double fallback, double lo, double hi) {
    std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    double n = std::strtod(v.c_str(), &end);
    const bool plain = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '.');
    if (!plain || *end != '\0' || !(n >= lo && n <= hi))
      fail(name, "is out of range or not a number");
    return n;
  }
  bool flag(std::string_view name) {
    for (int i = 1; i < argc_; ++i)
      if (argv_[i] == name) {
        used(i, 1);
        return true;
      }
    return false;
  }
  /// Call after every get/flag: rejects anything not consumed.
  void done() {
    for (int i = 1; i < argc_; ++i)
      if (!consumed_[static_cast<std::size_t>(i)]) {
        std::fprintf(stderr, "unknown argument: %s\n%s", argv_[i], usage_);
        std::exit(2);
      }
  }

 private:
  [[noreturn]] void fail(std::string_view name, const char* why) {
    std::fprintf(stderr, "%.*s %s\n%s", static_cast<int>(name.size()), name.data(), why, usage_);
    std::exit(2);
  }
  void used(int i, int n) {
    for (int k = i; k < i + n && k < argc_; ++k) consumed_[static_cast<std::size_t>(k)] = true;
  }
  int argc_;
  char** argv_;
  const char* usage_;
  std::vector<bool> consumed_ = std::vector<bool>(static_cast<std::size_t>(argc_ > 0 ? argc_ : 1));
};

/// What an accept loop does after a failed accept.
enum class accept_action { back_off, stop, go_on };
/// How long an accept loop pauses when out of descriptors or memory (nginx uses 500 ms).
inline constexpr std::chrono::milliseconds accept_back_off{100};

/// Classifies (and logs) a failed accept. EMFILE, ENFILE, ENOMEM, ENOBUFS: the connection waits
/// in the backlog, so back off instead of spinning on the same error (a multishot accept ends
/// with it and is re-armed by the next accept); operation_canceled: the listener was cancelled
/// (shutdown), stop; anything else (e.g. ECONNABORTED): log it and go on.
inline accept_action after_accept_error(std::error_code ec) {
  if (ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
      ec == std::errc::not_enough_memory || ec == std::errc::no_buffer_space) {
    std::fprintf(stderr, "accept: %s; pausing %lld ms\n", ec.message().c_str(),
                 static_cast<long long>(accept_back_off.count()));
    return accept_action::back_off;
  }
  if (ec == std::errc::operation_canceled) return accept_action::stop;
  std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
  return accept_action::go_on;
}

/// Raises the soft open-file limit to the hard limit (a server holding thousands of clients
/// needs one descriptor each). Returns: the new soft limit.
inline rlim_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

/// A duration in seconds from the command line (e.g. --idle-timeout 0.2) as nanoseconds.
inline std::chrono::nanoseconds seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

/// The peer's address as text, or "?" if the client is already gone (getpeername failed).
inline std::string peer_name(const coring::socket& s) {
  try {
    return s.peer_name().to_string();
  } catch (const std::system_error&) {
    return "?";
  }
}

/// The live clients of a server, so that shutdown can reach them. Each client's coroutine
/// holds a node in its own frame: it is on the list exactly while that coroutine runs (no
/// allocation, nothing to clean up). Single-threaded, like the io_context.
struct client_list {
  struct node {
    /// Joins the list. A client that starts after shut_reads() (accepted while shutdown began)
    /// has its reading side shut at once, so it ends like the others.
    node(client_list& l, coring::socket& sock) : list(l), s(&sock) {
      next = l.head;
      if (next) next->prev = this;
      l.head = this;
      ++l.count;
      if (l.closing) ::shutdown(sock.fileno(), SHUT_RD);
    }
    ~node() {
      if (prev) prev->next = next; else list.head = next;
      if (next) next->prev = prev;
      --list.count;
    }
    node(const node&) = delete;
    node& operator=(const node&) = delete;
    client_list& list;
    coring::socket* s;
    node* prev = nullptr;
    node* next = nullptr;
  };

  /// Ends every client's reading side (SHUT_RD): its pending recv sees EOF, a reply being sent
  /// still goes out, then its loop ends and it closes the connection. From now on closing is
  /// true (an accept loop should stop).
  void shut_reads() noexcept {
    closing = true;
    for (node* n = head; n; n = n->next) ::shutdown(n->s->fileno(), SHUT_RD);
  }
  /// Cancels every operation of every client (each throws operation_canceled).
  void cancel_all() noexcept {
    for (node* n = head; n; n = n->next) n->s->cancel();
  }

  node* head = nullptr;
  std::size_t count = 0;
  bool closing = false;
};

/// The end of a graceful shutdown, once the server stopped accepting (listener.cancel()):
/// shuts every client's reading side, waits up to grace for the clients to finish (and for
/// busy, e.g. "the accept loop is still running", to turn false), then cancels the clients
/// left and waits (at most about a second) until they are gone and the kernel has let go of
/// every operation (LIFETIME: clients use state that main destroys before the io_context).
/// CORING_NO_SANITIZE_FUNCTION: an inline coroutine, see TRICKY in <coring/when_all.hpp>.
CORING_NO_SANITIZE_FUNCTION inline coring::task<> drain(coring::io_context& ctx,
                                                        client_list& clients, const bool& busy,
                                                        std::chrono::nanoseconds grace) {
  clients.shut_reads();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while ((clients.count > 0 || busy) && std::chrono::steady_clock::now() < deadline)
    co_await coring::sleep_for(ctx, std::chrono::milliseconds(5));
  clients.cancel_all();
  for (int i = 0; i < 1000 && (clients.count > 0 || ctx.in_flight() > 0); ++i)
    co_await coring::sleep_for(ctx, std::chrono::milliseconds(1));
}

}  // namespace example
