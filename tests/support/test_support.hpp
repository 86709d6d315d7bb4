// SPDX-License-Identifier: MIT
// Description: test helpers: watchdog, run-with-timeout, loopback pairs, counted objects.
#pragma once

#include <coring/coring.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace coring::test {

/// Aborts the process with a message if not disarmed (destroyed) within the limit: a hung test
/// fails with its name instead of hanging until meson's timeout.
class watchdog {
 public:
  explicit watchdog(std::chrono::milliseconds limit, std::string what = "test");
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// Runs t to completion on ctx under a watchdog. Returns t's value.
template <class T>
T run(io_context& ctx, task<T> t, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  watchdog w(limit);
  return sync_wait(ctx, std::move(t));
}

/// A connected TCP pair over 127.0.0.1 (listener on port 0).
struct tcp_pair {
  socket client, server;
};
task<tcp_pair> make_tcp_pair(io_context& ctx, const address& where = address::loopback_v4());

/// The bytes of a string, for send/recv.
inline std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}
inline std::string text(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// Reads until EOF or max bytes. Returns: what was read.
task<std::string> read_all(socket& s, std::size_t max = std::size_t(1) << 30);

/// Counts live instances: checks that frames and their locals are destroyed exactly once.
struct counted {
  static inline int live = 0;
  static inline int constructed = 0;
  counted() noexcept { ++live, ++constructed; }
  counted(const counted&) noexcept { ++live, ++constructed; }
  counted(counted&&) noexcept { ++live, ++constructed; }
  ~counted() { --live; }
  static void reset() { live = constructed = 0; }
};

/// Number of open descriptors of this process (/proc/self/fd).
int open_fds();

/// For doctest::skip(): true if this kernel's ring has what `has` asks for; otherwise prints
/// "SKIP reason: this kernel lacks <what>: <features>" once and returns false (also when io_uring
/// is unavailable altogether; main then exits 77 before any test runs).
bool ring_supports(const char* what, bool (*has)(const ring_features&));

/// A fresh unique abstract AF_UNIX name for this test run.
std::string unique_abstract_name(std::string_view tag);

}  // namespace coring::test
