// SPDX-License-Identifier: MIT
// Description: event, an awaitable flag (manual or auto reset) for coroutines on one io_context.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <coroutine>
#include <utility>

namespace coring {

/// A flag coroutines wait on: `co_await ev.wait()` returns once it is set. A manual-reset event
/// stays set (every waiter, present and future, passes) until reset(); an auto-reset event lets
/// exactly one waiter pass per set() and clears itself. Waiters pass in FIFO order and resume
/// from a later loop turn, never inside set().
/// Not thread-safe: use it on its io_context's thread only (a stop request may come from any
/// thread). Note: destroying it wakes its waiters with operation_canceled.
class event {
 public:
  /// What set() does.
  enum class reset_mode {
    manual,    ///< stays set until reset(): wakes every waiter
    automatic  ///< wakes one waiter and stays clear, or stays set until one waiter takes it
  };
  /// One `co_await ev.wait()`: takes .with_timeout(d) (timed_out) and .with_stop(tok)
  /// (operation_canceled), and works with coring::as_result.
  class [[nodiscard]] wait_op : public detail::sync_op<wait_op, void> {
   public:
    static constexpr const char* name = "event wait";
    explicit wait_op(event& ev) noexcept : sync_op(*ev.ctx_), ev_(&ev) {}
    wait_op(wait_op&& o) noexcept : sync_op(std::move(o)), ev_(o.ev_) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      return !ev_->try_wait() && suspend_on(ev_->waiters_, h);
    }
    result<void> await_resume_result() noexcept {
      if (res() != 0) return error();
      return {};
    }

   private:
    event* ev_;
  };

  /// An event on ctx, initially set or not.
  explicit event(io_context& ctx, reset_mode mode = reset_mode::manual,
                 bool initially_set = false) noexcept
      : ctx_(&ctx), mode_(mode), set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// Sets the event: manual reset wakes every waiter; automatic wakes the first one (the event
  /// stays clear) or, with nobody waiting, stays set for the next wait.
  void set() noexcept;
  /// Clears the event (waiters already woken still pass).
  void reset() noexcept { set_ = false; }
  /// True if set.
  bool is_set() const noexcept { return set_; }
  /// Passes at once if set (an auto-reset event is then cleared), else waits for set().
  /// Throws (at co_await): std::system_error(timed_out / operation_canceled).
  wait_op wait() noexcept { return wait_op(*this); }
  /// Passes if set without waiting (an auto-reset event is then cleared). Returns: whether
  /// it was set.
  bool try_wait() noexcept {
    if (!set_) return false;
    if (mode_ == reset_mode::automatic) set_ = false;
    return true;
  }

 private:
  io_context* ctx_;
  reset_mode mode_;
  bool set_;
  detail::wait_list waiters_;
};

}  // namespace coring
