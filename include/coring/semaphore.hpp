// SPDX-License-Identifier: MIT
// Description: semaphore, a counting semaphore for coroutines on one io_context.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <coroutine>
#include <cstddef>
#include <utility>

namespace coring {

/// A counting semaphore: `co_await sem.acquire()` takes one unit, waiting while none is left;
/// release(n) gives n back. Strictly FIFO: release() hands units to the waiters in the order
/// they came (a unit handed to a waiter is its own even before it resumes, so try_acquire()
/// cannot take it), and they resume from a later loop turn, never inside release().
/// Not thread-safe: use it on its io_context's thread only (a stop request may come from any
/// thread). Note: destroying it wakes its waiters with operation_canceled.
class semaphore {
 public:
  /// One `co_await sem.acquire()`: takes .with_timeout(d) and .with_stop(tok), works with
  /// coring::as_result. A unit handed over before a stop or deadline is kept: the wait succeeds.
  class [[nodiscard]] acquire_op : public detail::sync_op<acquire_op, void> {
   public:
    static constexpr const char* name = "semaphore acquire";
    explicit acquire_op(semaphore& s) noexcept : sync_op(*s.ctx_), sem_(&s) {}
    acquire_op(acquire_op&& o) noexcept : sync_op(std::move(o)), sem_(o.sem_) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      return !sem_->try_acquire() && suspend_on(sem_->waiters_, h);
    }
    result<void> await_resume_result() noexcept {
      if (res() != 0) return error();
      return {};
    }

   private:
    semaphore* sem_;
  };

  /// A semaphore on ctx holding initial units.
  explicit semaphore(io_context& ctx, std::size_t initial = 0) noexcept
      : ctx_(&ctx), count_(initial) {}
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// Takes one unit, waiting (FIFO) while none is free.
  /// Throws (at co_await): std::system_error(timed_out / operation_canceled).
  acquire_op acquire() noexcept { return acquire_op(*this); }
  /// Takes one unit if one is free. Returns: whether it took one.
  bool try_acquire() noexcept {
    if (count_ == 0) return false;
    --count_;
    return true;
  }
  /// Gives n units back: the first n waiters get one each, the rest is free.
  void release(std::size_t n = 1) noexcept;
  /// Units free now.
  std::size_t available() const noexcept { return count_; }

 private:
  io_context* ctx_;
  std::size_t count_;
  detail::wait_list waiters_;
};

}  // namespace coring
