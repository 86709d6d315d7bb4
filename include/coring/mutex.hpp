// SPDX-License-Identifier: MIT
// Description: mutex, a FIFO-fair lock for coroutines on one io_context (a lock held across
// co_await points).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <coroutine>
#include <utility>

namespace coring {

/// A lock for coroutines: `auto g = co_await m.lock();` holds it until g is destroyed (or
/// g.unlock()), across any co_await. Fair: unlock() hands the lock straight to the first waiter
/// (FIFO; try_lock() cannot take it meanwhile), which resumes from a later loop turn.
/// Not thread-safe: use it on its io_context's thread only (a stop request may come from any
/// thread). It only orders coroutines of one thread; it is not std::mutex.
/// Note: destroying it wakes its waiters with operation_canceled; it must outlive its guards.
class mutex {
 public:
  /// Owns a lock on a mutex; unlocks it when destroyed. Movable.
  class [[nodiscard]] guard {
   public:
    /// Adopts the lock on m (held by the caller).
    explicit guard(mutex& m) noexcept : m_(&m) {}
    guard(guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    guard& operator=(guard&& o) noexcept {
      if (this != &o) {
        unlock();
        m_ = std::exchange(o.m_, nullptr);
      }
      return *this;
    }
    ~guard() { unlock(); }
    /// Unlocks now (idempotent).
    void unlock() noexcept {
      if (m_) std::exchange(m_, nullptr)->unlock();
    }
    /// True while it holds the lock.
    bool owns_lock() const noexcept { return m_ != nullptr; }

   private:
    mutex* m_;
  };

  /// One `co_await m.lock()`: takes .with_timeout(d) and .with_stop(tok), works with
  /// coring::as_result. A lock handed over before a stop or deadline is kept: the wait succeeds.
  class [[nodiscard]] lock_op : public detail::sync_op<lock_op, guard> {
   public:
    static constexpr const char* name = "mutex lock";
    explicit lock_op(mutex& m) noexcept : sync_op(*m.ctx_), m_(&m) {}
    lock_op(lock_op&& o) noexcept : sync_op(std::move(o)), m_(o.m_) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      return !m_->try_lock() && suspend_on(m_->waiters_, h);
    }
    result<guard> await_resume_result() noexcept {
      if (res() != 0) return error();
      return guard(*m_);
    }

   private:
    mutex* m_;
  };

  /// An unlocked mutex on ctx.
  explicit mutex(io_context& ctx) noexcept : ctx_(&ctx) {}
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  /// Locks, waiting (FIFO) while it is held. Returns (at co_await): the guard that unlocks.
  /// Throws (at co_await): std::system_error(timed_out / operation_canceled).
  lock_op lock() noexcept { return lock_op(*this); }
  /// Locks if free. Returns: whether it locked (then call unlock(), or adopt it in a guard).
  bool try_lock() noexcept {
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  /// Unlocks: the first waiter, if any, gets the lock. Must be locked.
  void unlock() noexcept;
  /// True while held (or handed to a waiter that has not resumed yet).
  bool is_locked() const noexcept { return locked_; }

 private:
  io_context* ctx_;
  bool locked_ = false;
  detail::wait_list waiters_;
};

}  // namespace coring
