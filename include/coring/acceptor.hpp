// SPDX-License-Identifier: MIT
// Description: acceptor: one multishot accept kept armed on a listening socket.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/stream_ops.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>
#include <coring/socket.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <system_error>
#include <utility>

namespace coring {

/// How an acceptor accepts.
struct acceptor_options {
  /// Connections accepted ahead of the caller (1 to 256); then accepting pauses and new
  /// connections wait in the listen backlog.
  unsigned max_queued = 64;
  /// Use one multishot accept (Linux 5.19+; falls back to one accept per call without it).
  bool multishot = true;
  /// Out of descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS): wait this long (one
  /// timer), then accept again, while the connections wait in the backlog; accept() does not
  /// fail. Zero turns the back-off off: accept() then throws the error once and the next
  /// accept() re-arms at once.
  std::chrono::milliseconds back_off{100};
  /// Called once when a back-off starts after a successful accept (or the first one), with
  /// the error; not again while accepts keep failing. Null (the default): one line on stderr.
  /// Note: runs inside the acceptor's completion: it must not throw (an exception is dropped)
  /// nor destroy the acceptor.
  std::function<void(std::error_code)> on_back_off{};
};

/// What an acceptor did so far (acceptor::stats).
struct acceptor_stats {
  std::uint64_t submissions = 0;  ///< accept SQEs submitted (one per multishot arm)
  std::uint64_t back_offs = 0;    ///< back-offs started (EMFILE and friends)
  std::uint64_t reported = 0;     ///< back-off episodes reported (on_back_off calls)
};

/// Accepts connections on a listening socket with one multishot accept: one SQE serves any
/// number of connections. Accepted sockets are CLOEXEC.
/// Running out of descriptors or memory (EMFILE/ENFILE/ENOMEM/ENOBUFS) ends the multishot; with
/// the default options the acceptor then waits back_off (100 ms) and re-arms, the connections
/// staying in the backlog meanwhile, and reports the error once (on_back_off) until an accept
/// succeeds again: no spinning, and accept() does not fail. With back_off zero accept() throws
/// that error once and the next accept() re-arms: the caller decides how long to back off.
/// Note: the listening socket must outlive the acceptor, and the acceptor every accept()
/// awaited on it; destroying the acceptor cancels the multishot and closes connections accepted
/// but not yet handed out. Only one coroutine may await accept() at a time.
class acceptor {
 public:
  /// Starts nothing yet: the first accept() arms the multishot.
  explicit acceptor(socket& listener, acceptor_options opts = {});
  /// Cancels the armed multishot (its final completion frees the state later) and closes the
  /// connections not handed out.
  ~acceptor();
  acceptor(acceptor&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  acceptor& operator=(acceptor&&) = delete;
  acceptor(const acceptor&) = delete;

  /// Waits for the next connection. `.with_timeout(d)` and `.with_stop(tok)` bound this wait
  /// only: the acceptor stays armed, and a connection accepted after the wait ended is handed
  /// to the next accept(). Returns: the connected socket.
  /// Throws: std::system_error (errno, e.g. EMFILE; operation_canceled after listener.cancel()
  /// or a stop request; timed_out after the deadline).
  [[nodiscard]] detail::accept_next_op accept() noexcept { return detail::accept_next_op(st_); }
  /// What it did so far: accept submissions, back-offs.
  acceptor_stats stats() const noexcept;

 private:
  detail::multishot_core* st_;
};

}  // namespace coring
