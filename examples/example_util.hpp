// SPDX-License-Identifier: MIT
// Description: tiny helpers shared by the examples: flag parsing, the open-file limit, SIGPIPE,
// durations and peer names. (A server's connections and graceful shutdown are the library's:
// coring::connection_scope.)
#pragma once

#include <coring/coring.hpp>

#include "example_log.hpp"

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/resource.h>

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

}  // namespace example
