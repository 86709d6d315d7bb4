// SPDX-License-Identifier: MIT
// Description: test helpers: watchdog, run-with-timeout, loopback pairs, counted objects, and
// requirements that skip a test case with its reason (or fail it under CORING_REQUIRE_FEATURES=1).
#pragma once

#include <coring/coring.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

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
/// Note: the watchdog guards the run only, not ctx's destruction; a test that must bound its
/// teardown declares its own watchdog before the io_context, so that it outlives it.
template <class T>
T run(io_context& ctx, task<T> t, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  watchdog w(limit);
  return sync_wait(ctx, std::move(t));
}

/// Runs the coroutine body(ctx) to completion on ctx under a watchdog, so that a test reads
/// `test::run_on(ctx, [](io_context& ctx) -> task<> { ... });`. Returns: the task's value.
/// Note: body is held here until its task finished, so a lambda's captures outlive the coroutine
/// that uses them (a lambda coroutine's captures live in the lambda object, not in its frame).
template <class Body>
requires std::invocable<Body&, io_context&>
auto run_on(io_context& ctx, Body body,
            std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  watchdog w(limit);
  return sync_wait(ctx, body(ctx));
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

/// Something a test case needs, and whether this process has it.
struct requirement {
  /// kernel: a feature of this kernel's io_uring. With CORING_REQUIRE_FEATURES=1 (scripts/test
  /// sets it: the CI machine's kernel has every feature the tests probe) its absence fails the
  /// test case instead of skipping it.
  /// environment: a privilege, a sysctl, a tool or a service of this machine: always a skip.
  /// build: a property of this build (e.g. a check only ASan builds make): always a skip.
  enum class kind { kernel, environment, build };
  kind of = kind::kernel;
  std::string what;     ///< what is needed, e.g. "provided-buffer rings"
  std::string missing;  ///< why it is unavailable here; empty if it is available
  bool met() const noexcept { return missing.empty(); }
};

/// True if the environment has CORING_REQUIRE_FEATURES=1.
bool features_required();

/// The io_uring features a test case can need (see ring_supports).
enum class feature {
  provided_buffer_rings,  ///< buffer rings the kernel picks receive buffers from (5.19+)
  multishot_accept,       ///< one accept SQE that completes once per connection (5.19+)
  multishot_recv,         ///< one recv SQE that completes once per buffer of data (6.0+)
  thread_bound_ring,      ///< SINGLE_ISSUER or a registered ring fd: the ring is tied to a thread
};

/// Whether this kernel's ring has f, as a kernel requirement for skip_unless, e.g.
/// `TEST_CASE("..." * test::skip_unless(test::ring_supports(test::feature::multishot_accept)))`.
/// Its `what` is the name a skip shows ("needs provided-buffer rings"). Probed once per process
/// on a fresh io_context; if io_uring is unavailable altogether, missing says why. With
/// CORING_TEST_PRETEND_LACKING=<what> in the environment it reports f as missing.
const requirement& ring_supports(feature f);

/// Issue 15: the backend a default io_context of this process runs on ("io_uring", "epoll"),
/// from its features().backend. Probed once; "" if no io_context can be made at all.
const std::string& backend_name();

/// Issue 15: the io_uring backend, as an environment requirement for skip_unless, for a case
/// about io_uring itself (multishot, SQE counts, ring features): on another backend
/// (CORING_BACKEND=epoll, or io_uring denied) the case skips, its reason naming the backend.
/// ring_supports reports a feature the other backend lacks the same way (a skip even under
/// CORING_REQUIRE_FEATURES=1).
requirement io_uring_backend();

/// The ICMP sockets a test case can need (see can_open).
enum class icmp_socket {
  raw,              ///< SOCK_RAW: needs CAP_NET_RAW
  datagram,         ///< SOCK_DGRAM, a "ping socket": needs our gid in net.ipv4.ping_group_range
  raw_or_datagram,  ///< either one (the ping example takes whichever it can open)
};

/// Whether this process may open the ICMP socket `kind` names, as an environment requirement
/// for skip_unless; if not, missing holds what socket(2) answered.
requirement can_open(icmp_socket kind);

/// The python3 meson found at configure time (environment variable PYTHON3), or nullptr.
const char* python3();

/// A python3 to run a test's Python client, as an environment requirement for skip_unless.
requirement has_python3();

/// A doctest decorator: TEST_CASE("name" * test::skip_unless(req)). If req is met, nothing
/// happens. Otherwise it prints "SKIP reason: <name>: needs <what>: <missing>" and skips the
/// case, except for a kernel requirement under CORING_REQUIRE_FEATURES=1: then it prints
/// "REQUIRED: ..." and the case fails with that reason instead of running.
class skip_unless {
 public:
  explicit skip_unless(requirement r) : r_(std::move(r)) {}
  void fill(doctest::detail::TestCase& tc) const;

 private:
  requirement r_;
};

/// The missing kernel requirements seen under CORING_REQUIRE_FEATURES=1 (one line each); main
/// fails the program if any.
const std::vector<std::string>& missing_required_features();

/// Waits until pred() holds, re-checking it each time `changed` is set (the test's own coroutines
/// set it after every change pred() reads), for at most limit: no polling on a timer.
/// Returns: pred() at the end (false if limit passed first).
/// Note: pred and changed must outlive the co_await; changed is reset while waiting.
template <class Pred>
task<bool> wait_until(event& changed, const Pred& pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) co_return false;
    changed.reset();
    auto w = as_result(changed.wait().with_timeout(left));
    auto r = co_await w;
    if (!r) co_return pred();
  }
  co_return true;
}

/// Waits until ctx has no operation in flight, checking once a millisecond, for at most limit.
/// A timer wait kept on purpose: the kernel's final completion of a cancelled multishot or
/// timer resumes nobody, so nothing can signal it. Returns: whether in_flight() reached 0.
task<bool> kernel_idle(io_context& ctx, std::chrono::milliseconds limit = std::chrono::seconds(1));

/// A fresh unique abstract AF_UNIX name for this test run.
std::string unique_abstract_name(std::string_view tag);

/// A directory made with mkdtemp under the temporary directory, removed with everything in it
/// when the object goes. Throws (REQUIRE) if it cannot be made.
class temp_dir {
 public:
  explicit temp_dir(std::string_view tag = "dir");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  /// The directory's path.
  const std::string& path() const noexcept { return path_; }
  /// The path of name inside the directory.
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// Writes content to path synchronously (created or truncated, mode 0644); REQUIREs success.
void write_file(const std::string& path, std::string_view content);

}  // namespace coring::test
