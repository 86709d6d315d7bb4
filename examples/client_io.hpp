// SPDX-License-Identifier: MIT
// Description: what the example clients (and ping, fd_pass) share: a dead stdout is an error,
// not a kill, and every wait for a peer can be bounded by --timeout.
//
// A program whose stdout is a pipe with no reader left (`echo_client | head -1`) is killed by
// SIGPIPE at its next write unless it ignores SIGPIPE; these programs ignore it (first thing in
// main) and check every flush of stdout instead, so that the write fails with EPIPE and they
// exit 1 with a message on stderr.
#pragma once

#include <coring/coring.hpp>

#include "example_util.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string_view>
#include <system_error>

namespace example {

// ignore_sigpipe() (call it first in main) is in example_util.hpp, shared with the servers.

/// Flushes stdout. Throws: std::system_error ("stdout: Broken pipe" when its reader is gone,
/// ENOSPC on a full disk, ...) if this or an earlier write to stdout failed.
inline void flush_stdout() {
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw std::system_error(errno != 0 ? errno : EIO, std::generic_category(), "stdout");
}

/// Writes bytes (NULs included) to stdout and flushes. Throws: as flush_stdout.
inline void write_stdout(std::string_view bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  flush_stdout();
}

/// Awaits op bounded by timeout (0: no bound). On expiry the co_await throws
/// std::system_error(std::errc::timed_out).
/// CORING_NO_SANITIZE_FUNCTION: an inline coroutine, see TRICKY in <coring/detail/awaitable.hpp>.
template <class Op>
CORING_NO_SANITIZE_FUNCTION inline coring::task<typename Op::value_type> bounded(
    Op op, std::chrono::nanoseconds timeout) {
  if (timeout.count() > 0) co_return co_await std::move(op).with_timeout(timeout);
  co_return co_await std::move(op);
}

/// Connects a TCP socket to server, the connect bounded by timeout (0: no bound).
CORING_NO_SANITIZE_FUNCTION inline coring::task<coring::socket> tcp_connect(
    coring::io_context& ctx, coring::address server, std::chrono::nanoseconds timeout) {
  coring::socket s(ctx, server.family(), SOCK_STREAM);
  s.set_option(coring::sockopt::no_delay{true});
  co_await bounded(s.connect(server), timeout);
  co_return s;
}

}  // namespace example
