// SPDX-License-Identifier: MIT
// Description: acceptor: one multishot accept kept armed on a listening socket.
#pragma once

#include <coring/error.hpp>
#include <coring/io_context.hpp>
#include <coring/socket.hpp>

#include <coroutine>

namespace coring {

namespace detail {
struct acceptor_state;

/// co_await acceptor.accept().
class accept_next_op {
 public:
  using value_type = socket;
  explicit accept_next_op(acceptor_state* st) noexcept : st_(st) {}
  bool await_ready() const noexcept;
  void await_suspend(std::coroutine_handle<> h);
  socket await_resume();
  result<socket> await_resume_result() noexcept;

 private:
  acceptor_state* st_;
};
}  // namespace detail

/// How an acceptor accepts.
struct acceptor_options {
  /// Connections accepted ahead of the caller (1 to 256); then accepting pauses and new
  /// connections wait in the listen backlog.
  unsigned max_queued = 64;
  /// Use one multishot accept (Linux 5.19+; falls back to one accept per call without it).
  bool multishot = true;
};

/// Accepts connections on a listening socket with one multishot accept: one SQE serves any
/// number of connections. Accepted sockets are CLOEXEC.
/// Running out of descriptors (EMFILE/ENFILE) ends the multishot; accept() then throws that
/// error once, the connections stay queued in the backlog, and the next accept() re-arms: the
/// caller decides how long to back off (examples/echo_server pauses 100 ms) instead of spinning.
/// Note: the listening socket must outlive the acceptor; destroying the acceptor cancels the
/// multishot and closes connections accepted but not yet handed out.
class acceptor {
 public:
  explicit acceptor(socket& listener, acceptor_options opts = {});
  ~acceptor();
  acceptor(acceptor&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  acceptor& operator=(acceptor&&) = delete;
  acceptor(const acceptor&) = delete;

  /// Waits for the next connection. Returns: the connected socket.
  /// Throws: std::system_error (errno, e.g. EMFILE; operation_canceled after
  /// listener.cancel()).
  [[nodiscard]] detail::accept_next_op accept() noexcept { return detail::accept_next_op(st_); }

 private:
  detail::acceptor_state* st_;
};

}  // namespace coring
