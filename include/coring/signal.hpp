// SPDX-License-Identifier: MIT
// Description: signal_set and wait_signal: receive POSIX signals as ring completions (signalfd).
#pragma once

#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <array>
#include <cstdint>
#include <initializer_list>

#include <signal.h>

namespace coring {

namespace detail {
/// co_await set.wait(): IORING_OP_READ of one signalfd_siginfo.
class signal_wait_op : public io_op<signal_wait_op, int> {
 public:
  static constexpr const char* name = "wait_signal";
  signal_wait_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  signal_wait_op(signal_wait_op&&) noexcept = default;
  void prep(io_uring_sqe& sqe) noexcept;
  result<int> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  alignas(8) std::array<unsigned char, 128> info_{};  // struct signalfd_siginfo
};
}  // namespace detail

/// A set of signals delivered through the ring instead of to handlers. The constructor blocks
/// them in the calling thread (call it before starting other threads so that they inherit the
/// mask) and opens a signalfd; the destructor closes it and restores the previous mask.
/// Note: move is not supported; keep it in the frame that awaits it.
class signal_set {
 public:
  /// Throws: std::system_error (errno of pthread_sigmask or signalfd).
  signal_set(io_context& ctx, std::initializer_list<int> signals);
  ~signal_set();
  signal_set(const signal_set&) = delete;
  signal_set& operator=(const signal_set&) = delete;

  /// Waits for one of the signals. Returns: the signal number.
  /// Throws: std::system_error (errno; operation_canceled on cancel).
  [[nodiscard]] detail::signal_wait_op wait() noexcept { return {*ctx_, fd_}; }

 private:
  io_context* ctx_;
  int fd_ = -1;
  sigset_t old_mask_{};
};

/// Waits for one of signals (e.g. {SIGINT, SIGTERM}) on the ring. Returns: the signal number.
[[nodiscard]] task<int> wait_signal(io_context& ctx, std::initializer_list<int> signals);

}  // namespace coring
