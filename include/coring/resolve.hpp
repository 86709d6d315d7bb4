// SPDX-License-Identifier: MIT
// Description: resolve, getaddrinfo on a small process-wide pool of lookup threads.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstddef>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include <sys/socket.h>

namespace coring {

/// The category of getaddrinfo's EAI_* codes (name() "resolve"; message() is gai_strerror).
/// The values are the (negative) EAI_* constants themselves, e.g. EAI_NONAME for an unknown
/// host; EAI_SYSTEM is reported as the errno in std::system_category() instead.
const std::error_category& resolve_category() noexcept;

/// What to look up and how long to wait for it (resolve's second form).
struct resolve_options {
  int family = AF_UNSPEC;  ///< AF_UNSPEC, AF_INET or AF_INET6
  int type = SOCK_STREAM;  ///< SOCK_STREAM or SOCK_DGRAM (one result per address for it)
  /// If non-zero: the co_await throws std::errc::timed_out once this much time has passed.
  std::chrono::nanoseconds timeout{0};
  /// A stop request (from any thread) ends the co_await with std::errc::operation_canceled.
  std::stop_token stop{};
};

/// Looks up host and service (getaddrinfo; numeric or named) on a process-wide pool of at most
/// detail::resolver_max_threads threads, started on first use, so the ring's thread never
/// blocks; the ring is woken through one eventfd per io_context, whatever the number of lookups.
/// An empty host means the loopback; an empty service means port 0.
/// family: AF_UNSPEC, AF_INET or AF_INET6; type: SOCK_STREAM or SOCK_DGRAM (one result per
/// address for that type).
/// Returns: the addresses in getaddrinfo's order (RFC 6724 preference), without duplicates.
/// Throws: std::system_error with resolve_category() (e.g. EAI_NONAME) and a message naming
/// host and service; std::system_error (errno) if the eventfd or the first thread cannot be
/// created.
/// Note: host and service are copied into the task. The io_context (and the task) may be
/// destroyed while the lookup still waits or runs: the pool then drops or discards it.
[[nodiscard]] task<std::vector<address>> resolve(io_context& ctx, std::string host,
                                                 std::string service, int family = AF_UNSPEC,
                                                 int type = SOCK_STREAM);

/// As above, with opts' family and type, bounded by opts.timeout and opts.stop. Either one
/// resumes the caller at once: a lookup still queued is dropped, and one already in getaddrinfo
/// (which cannot be interrupted) finishes on its thread and its result is discarded.
/// Throws: as above; std::system_error(std::errc::timed_out or operation_canceled).
[[nodiscard]] task<std::vector<address>> resolve(io_context& ctx, std::string host,
                                                 std::string service, resolve_options opts);

namespace detail {
/// resolve, bounded by a deadline (time_point::max(): none; expiry throws timed_out) and a
/// stop token (operation_canceled). For tcp_connect.
[[nodiscard]] task<std::vector<address>> resolve_bounded(
    io_context& ctx, std::string host, std::string service, int family, int type,
    std::chrono::steady_clock::time_point deadline, std::stop_token stop);

/// The most threads the lookup pool runs at once; idle ones end after 30 s.
inline constexpr std::size_t resolver_max_threads = 4;

/// A snapshot of the lookup pool, for tests: live threads, jobs waiting for a thread, jobs in
/// getaddrinfo.
struct resolver_stats {
  std::size_t threads = 0, queued = 0, running = 0;
};
/// Returns: the pool's counters now (all zero before the first lookup).
resolver_stats resolver_pool_stats() noexcept;

/// Test seam: a pool thread calls the hook with the host before each getaddrinfo, and may block
/// there (a slow name server). Null: none. Returns: the previous hook.
using resolve_hook = void (*)(const std::string& host) noexcept;
resolve_hook set_resolve_hook(resolve_hook hook) noexcept;
}  // namespace detail

}  // namespace coring
