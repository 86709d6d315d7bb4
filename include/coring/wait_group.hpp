// SPDX-License-Identifier: MIT
// Description: wait_group, "wait until these N things finished" (Go's WaitGroup, Seastar's gate).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <coroutine>
#include <cstddef>
#include <utility>

namespace coring {

/// A counter of unfinished work: add(n) before starting n things, done() as each ends, and
/// `co_await wg.wait()` returns once the count is zero (at once if it is zero already). Every
/// waiter is woken when the count reaches zero, in FIFO order, from a later loop turn.
/// Not thread-safe: use it on its io_context's thread only (a stop request may come from any
/// thread). Note: destroying it wakes its waiters with operation_canceled.
class wait_group {
 public:
  /// One `co_await wg.wait()`: takes .with_timeout(d) and .with_stop(tok), works with
  /// coring::as_result.
  class [[nodiscard]] wait_op : public detail::sync_op<wait_op, void> {
   public:
    static constexpr const char* name = "wait_group wait";
    explicit wait_op(wait_group& g) noexcept : sync_op(*g.ctx_), wg_(&g) {}
    wait_op(wait_op&& o) noexcept : sync_op(std::move(o)), wg_(o.wg_) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      return wg_->count_ != 0 && suspend_on(wg_->waiters_, h);
    }
    result<void> await_resume_result() noexcept {
      if (res() != 0) return error();
      return {};
    }

   private:
    wait_group* wg_;
  };

  /// A group on ctx with count n.
  explicit wait_group(io_context& ctx, std::size_t n = 0) noexcept : ctx_(&ctx), count_(n) {}
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  /// Adds n to the count.
  void add(std::size_t n = 1) noexcept { count_ += n; }
  /// Takes one from the count; at zero, wakes every waiter.
  /// Throws: std::logic_error if the count is zero already.
  void done();
  /// The count.
  std::size_t count() const noexcept { return count_; }
  /// Waits until the count is zero.
  /// Throws (at co_await): std::system_error(timed_out / operation_canceled).
  wait_op wait() noexcept { return wait_op(*this); }

 private:
  io_context* ctx_;
  std::size_t count_;
  detail::wait_list waiters_;
};

}  // namespace coring
