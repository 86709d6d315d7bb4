// SPDX-License-Identifier: MIT
// Description: signal_set and wait_signal: receive POSIX signals as ring completions (signalfd).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/signal_op.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include <signal.h>

namespace coring {

/// A set of signals delivered through the ring instead of to handlers. The constructor blocks
/// them in the calling thread (call it before starting other threads so that they inherit the
/// mask) and opens a signalfd; the destructor closes it and restores the previous mask.
/// Note: move-only (the moved-from set neither closes nor restores anything); it must outlive
/// a wait() in flight.
class signal_set {
 public:
  /// Throws: std::system_error (errno of pthread_sigmask or signalfd).
  signal_set(io_context& ctx, std::initializer_list<int> signals);
  signal_set(signal_set&& o) noexcept
      : ctx_(o.ctx_), fd_(std::exchange(o.fd_, -1)), old_mask_(o.old_mask_) {}
  signal_set& operator=(signal_set&&) = delete;
  ~signal_set();

  /// Waits for one of the signals. Returns: the signal number.
  /// Throws: std::system_error (errno; operation_canceled on cancel).
  [[nodiscard]] detail::signal_wait_op wait() noexcept { return {*ctx_, fd_}; }

 private:
  io_context* ctx_;
  int fd_ = -1;
  sigset_t old_mask_{};
};

/// Waits for one of signals (e.g. {SIGINT, SIGTERM}) on the ring. The signals are blocked and
/// routed to the ring at once, when wait_signal is called (not when the task starts), so one
/// that arrives before the co_await is not lost; the mask is restored when the task ends.
/// Returns: the signal number. Throws: as signal_set (when called), then as signal_set::wait.
/// Note: g++ 12 cannot keep a braced list alive across a co_await ("array used as
/// initializer"): inside a co_await expression use the form below, `wait_signal(ctx, SIGINT,
/// SIGTERM)`, or name the task first.
[[nodiscard]] task<int> wait_signal(io_context& ctx, std::initializer_list<int> signals);
/// As above, the signals as arguments: `co_await wait_signal(ctx, SIGINT, SIGTERM)`.
template <class... Signals>
requires(sizeof...(Signals) > 0 && (std::is_convertible_v<Signals, int> && ...))
    [[nodiscard]] task<int> wait_signal(io_context& ctx, Signals... signals) {
  return wait_signal(ctx, std::initializer_list<int>{static_cast<int>(signals)...});
}

}  // namespace coring
