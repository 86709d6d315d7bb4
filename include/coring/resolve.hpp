// SPDX-License-Identifier: MIT
// Description: resolve, getaddrinfo off the ring's thread, woken through an eventfd read.
#pragma once

#include <coring/address.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <chrono>
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

/// Looks up host and service (getaddrinfo; numeric or named) on a helper
/// thread, so the ring's thread never blocks; the ring is woken by an eventfd that it reads with
/// IORING_OP_READ. An empty host means the loopback; an empty service means port 0.
/// family: AF_UNSPEC, AF_INET or AF_INET6; type: SOCK_STREAM or SOCK_DGRAM (one result per
/// address for that type).
/// Returns: the addresses in getaddrinfo's order (RFC 6724 preference), without duplicates.
/// Throws: std::system_error with resolve_category() (e.g. EAI_NONAME) and a message naming
/// host and service; std::system_error (errno) if the eventfd or thread cannot be created.
/// Note: host and service are copied into the task. If the task is destroyed before the lookup
/// ends (io_context teardown), the helper thread finishes on its own and frees its state.
[[nodiscard]] task<std::vector<address>> resolve(io_context& ctx, std::string host,
                                                 std::string service, int family = AF_UNSPEC,
                                                 int type = SOCK_STREAM);

namespace detail {
/// resolve, bounded by a deadline (time_point::max(): none; expiry throws timed_out) and a
/// stop token (operation_canceled). For tcp_connect.
[[nodiscard]] task<std::vector<address>> resolve_bounded(
    io_context& ctx, std::string host, std::string service, int family, int type,
    std::chrono::steady_clock::time_point deadline, std::stop_token stop);
}  // namespace detail

}  // namespace coring
