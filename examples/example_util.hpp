// SPDX-License-Identifier: MIT
// Description: tiny helpers shared by the examples: flag parsing, the open-file limit, SIGPIPE,
// and the live-client list, drain step and shutdown guard of a server's graceful shutdown.
#pragma once

#include <coring/coring.hpp>

#include "example_log.hpp"

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/resource.h>
#include <sys/socket.h>

namespace example {

/// Minimal `--name value` / `--flag` parser. Unknown flags, and a flag given twice, are an
/// error (exit 2, with the usage text).
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
        reject_repeat(name, i + 2);
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
      fail(name,
           ("must be a number from " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
    return n;
  }
  /// The shortest positive duration get_double accepts, in seconds: every get_double value is
  /// a duration in seconds, and a shorter one (1e-10) would round to "no deadline" or to a
  /// deadline finer than the clock serves; 0 stays allowed (it means "off" or "none").
  static constexpr double min_seconds = 0.001;
  /// A duration in seconds from lo to hi: 0 (if lo is 0) or at least min_seconds.
  double get_double(std::string_view name, double fallback, double lo, double hi) {
    std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    double n = std::strtod(v.c_str(), &end);
    const bool plain =
        !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '.');
    if (!plain || *end != '\0' || !(n >= lo && n <= hi))
      fail(name, "is out of range or not a number");
    if (n > 0 && n < min_seconds)
      fail(name, ("is " + v + " seconds: give 0 (off) or at least 0.001 (1 ms)").c_str());
    return n;
  }
  bool flag(std::string_view name) {
    for (int i = 1; i < argc_; ++i)
      if (argv_[i] == name) {
        used(i, 1);
        reject_repeat(name, i + 1);
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
    for (int k = i; k < i + n && k < argc_; ++k)
      consumed_[static_cast<std::size_t>(k)] = true;
  }
  // A second --name from argv[from] on (not one already taken as another flag's value) is an
  // error: silently taking the first or the last would hide a typo in a long command line.
  void reject_repeat(std::string_view name, int from) {
    for (int k = from; k < argc_; ++k)
      if (argv_[k] == name && !consumed_[static_cast<std::size_t>(k)])
        fail(name, "is given twice (give it once)");
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

/// Classifies (and logs, at most once a second) a failed accept. EMFILE, ENFILE, ENOMEM,
/// ENOBUFS: the connection waits in the backlog, so back off instead of spinning on the same
/// error (a multishot accept ends with it and is re-armed by the next accept);
/// operation_canceled: the listener was cancelled (shutdown; the cancel sticks, so an accept
/// after a back-off sees it too), stop; anything else (e.g. ECONNABORTED): log it and go on.
inline accept_action after_accept_error(std::error_code ec) {
  static auto last_log = std::chrono::steady_clock::time_point{};
  static unsigned quiet = 0;  // errors not logged since the last line
  if (ec == std::errc::operation_canceled) return accept_action::stop;
  const bool back_off = ec == std::errc::too_many_files_open ||
                        ec == std::errc::too_many_files_open_in_system ||
                        ec == std::errc::not_enough_memory || ec == std::errc::no_buffer_space;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_log >= std::chrono::seconds(1)) {
    std::string line = "accept: " + ec.message();
    if (back_off) line += "; pausing " + std::to_string(accept_back_off.count()) + " ms";
    if (quiet > 0) line += " (" + std::to_string(quiet) + " more accept errors)";
    log::err().line(line);
    last_log = now;
    quiet = 0;
  } else {
    ++quiet;
  }
  return back_off ? accept_action::back_off : accept_action::go_on;
}

/// A server's first line: SIGPIPE ignored, so a dead stdout or stderr (`server | head -1`)
/// gives EPIPE to whoever writes, never kills the process (sends already use MSG_NOSIGNAL).
inline void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

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

/// The live clients of a server (and other tasks that use its state, such as the accept
/// loop), so that shutdown can reach them and wait for them. Each task holds a node in its own
/// frame: it is on the list exactly while that coroutine runs (no allocation, nothing to
/// clean up). Single-threaded, like the io_context.
struct client_list {
  struct node {
    /// Joins the list; sock null: a task without a connection (it is waited for, not shut).
    /// A client that starts after shut_reads() (accepted while shutdown began) has its reading
    /// side shut at once, and one that starts after cancel_all() is cancelled at once.
    node(client_list& l, coring::socket* sock) : list(l), s(sock) {
      next = l.head;
      if (next) next->prev = this;
      l.head = this;
      ++l.count;
      if (s && l.closing) ::shutdown(s->fileno(), SHUT_RD);
      if (s && l.cancelled) s->cancel();
    }
    ~node() {
      if (prev)
        prev->next = next;
      else
        list.head = next;
      if (next) next->prev = prev;
      if (--list.count == 0 && list.on_empty) list.on_empty->request_stop();
    }
    node(const node&) = delete;
    node& operator=(const node&) = delete;
    client_list& list;
    coring::socket* s;
    node* prev = nullptr;
    node* next = nullptr;
  };

  /// Ends every client's reading side (SHUT_RD): its pending recv sees EOF once it read what
  /// arrived, a reply being sent still goes out, then its loop ends and it closes the
  /// connection. From now on closing is true (an accept loop should stop).
  void shut_reads() noexcept {
    closing = true;
    for (node* n = head; n; n = n->next)
      if (n->s) ::shutdown(n->s->fileno(), SHUT_RD);
  }
  /// Cancels every client's operations for good (socket::cancel sticks: each pending and each
  /// later operation throws operation_canceled), so every client ends.
  void cancel_all() noexcept {
    cancelled = true;
    for (node* n = head; n; n = n->next)
      if (n->s) n->s->cancel();
  }

  /// How many of the live tasks have no connection (an accept loop, say).
  std::size_t tasks_without_socket() const noexcept {
    std::size_t n = 0;
    for (node* i = head; i; i = i->next)
      n += i->s == nullptr;
    return n;
  }

  node* head = nullptr;
  std::size_t count = 0;
  bool closing = false, cancelled = false;
  std::stop_source* on_empty = nullptr;  // a waiter of wait_empty(), woken by the last node
};

/// Waits until clients is empty, at most limit: woken by the last client's end (through a
/// stop token on the sleep), not by polling. Returns: true if it is empty.
/// CORING_NO_SANITIZE_FUNCTION: an inline coroutine, see TRICKY in <coring/detail/awaitable.hpp>.
CORING_NO_SANITIZE_FUNCTION inline coring::task<bool> wait_empty(coring::io_context& ctx,
                                                                 client_list& clients,
                                                                 std::chrono::nanoseconds limit) {
  if (clients.count == 0) co_return true;
  std::stop_source woken;
  clients.on_empty = &woken;
  auto r = co_await coring::as_result(coring::sleep_for(ctx, limit).with_stop(woken.get_token()));
  (void)r;  // operation_canceled: woken; otherwise the limit passed
  clients.on_empty = nullptr;
  co_return clients.count == 0;
}

/// The end of a graceful shutdown, once the server stopped accepting (listener.cancel()):
/// shuts every client's reading side, waits up to grace for the clients (and the accept
/// loop) to finish, then cancels the clients left and waits up to a second more. Both waits
/// are bounded in time, and the cancel holds (a client that keeps sending, or never reads,
/// ends at the grace limit). Returns: true if every task ended; false if some did not (main
/// then ends them with io_context::shutdown, see shutdown_guard, before their state goes).
CORING_NO_SANITIZE_FUNCTION inline coring::task<bool> drain(coring::io_context& ctx,
                                                            client_list& clients,
                                                            std::chrono::nanoseconds grace) {
  // TRICKY: results are named: g++ 12 miscompiles a co_await of a task inside an if condition
  // (`if (co_await f())`, `if (!co_await f())`): the coroutine hits an illegal instruction or
  // never runs (seen at -O0 and -O2; clang 14 is fine). Name the result, then test it.
  clients.shut_reads();
  const bool ended = co_await wait_empty(ctx, clients, grace);
  if (ended) co_return true;
  clients.cancel_all();
  const bool ended_after_cancel = co_await wait_empty(ctx, clients, std::chrono::seconds(1));
  co_return ended_after_cancel;
}

/// Ends whatever still runs on ctx when it goes out of scope (io_context::shutdown: frames are
/// destroyed, never resumed, once the kernel let go of their operations). Declare it after
/// the state the server's tasks use (server struct, buffer_ring), so that those tasks are gone
/// before that state is destroyed, on every path out of the scope, exceptions included.
struct shutdown_guard {
  coring::io_context& ctx;
  ~shutdown_guard() { ctx.shutdown(); }
};

}  // namespace example
