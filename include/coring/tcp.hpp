// SPDX-License-Identifier: MIT
// Description: TCP in one call: tcp_listen, and tcp_connect with name lookup, timeout and stop.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>
#include <coring/io_context.hpp>
#include <coring/socket.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <stop_token>
#include <string_view>

#include <sys/socket.h>

namespace coring {

/// Opens a TCP listener on "host:port" (numeric host; port 0 picks a free one) with
/// SO_REUSEADDR. Read the chosen port back with sock_name().port().
/// Throws: std::system_error (errc::invalid_address, or the errno of socket/bind/listen).
socket tcp_listen(io_context& ctx, std::string_view host_port, int backlog = SOMAXCONN);
/// As above, for an address.
socket tcp_listen(io_context& ctx, const address& addr, int backlog = SOMAXCONN);

/// Bounds a tcp_connect (Python's create_connection timeout, and a stop token).
struct connect_options {
  /// If non-zero: the whole connect (name lookup and every address tried) must end within this
  /// time, or tcp_connect throws std::errc::timed_out.
  std::chrono::nanoseconds timeout{0};
  /// A stop request ends the connect with std::errc::operation_canceled (from any thread).
  std::stop_token stop{};
};

/// Connects a new TCP socket, with TCP_NODELAY, to "host:port" (Python's create_connection). A
/// numeric host is used as is; a name ("localhost:9000", "[name]:port" also works) is looked up
/// with coring::resolve (off the ring's thread) and each address is tried in turn.
/// Returns: the connected socket.
/// Throws: std::system_error: errc::invalid_address (no port), resolve_category() (lookup
/// failed), timed_out / operation_canceled (opts), or the errno of the last address tried
/// (e.g. ECONNREFUSED).
/// Note: host_port is copied before the first suspension; it need not outlive the call. With
/// g++ 12, build options that hold a stop token before the co_await (`connect_options o{.stop =
/// tok}; co_await tcp_connect(ctx, hp, std::move(o));`): g++ 12 may destroy a non-trivial
/// temporary of a co_await expression twice (docs/design.md, "g++ 12").
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, std::string_view host_port,
                                       connect_options opts = {});
/// As above, for an address.
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, address addr, connect_options opts = {});

}  // namespace coring
