// SPDX-License-Identifier: MIT
// Description: tiny helpers shared by the examples: flag parsing and the open-file limit.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <sys/resource.h>

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
    if (v.empty() || *end != '\0' || n < lo || n > hi)
      fail(name, ("must be a number from " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
    return n;
  }
  double get_double(std::string_view name, double fallback, double lo, double hi) {
    std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    double n = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(n >= lo && n <= hi))
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
      if (!(consumed_ >> i & 1ULL) && i < 64) {
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
    for (int k = i; k < i + n && k < 64; ++k) consumed_ |= 1ULL << k;
  }
  int argc_;
  char** argv_;
  const char* usage_;
  unsigned long long consumed_ = 0;
};

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

}  // namespace example
