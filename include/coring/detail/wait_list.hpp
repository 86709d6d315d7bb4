// SPDX-License-Identifier: MIT
// Description: waiter and wait_list, the intrusive FIFO of suspended coroutines behind event,
// semaphore, mutex, wait_group and channel, and sync_op, the awaitable of one wait on them
// (with .with_timeout and .with_stop like an I/O operation).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/completion.hpp>
#include <coring/detail/intrusive_list.hpp>
#include <coring/detail/op.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace coring::detail {

class wait_list;

/// One suspended wait on a synchronization primitive: an intrusive node that lives in the
/// awaiting frame (no allocation per wait). Its completion base is the user_data of the wait's
/// own IORING_OP_TIMEOUT when it has a deadline.
///
/// LIFETIME: the wait ends once (a grant, close, destruction of the primitive, stop request or
/// deadline: end()); it then resumes its coroutine from a later loop turn (io_context::schedule),
/// or, when its timer is still in the kernel, once the timer's own CQE arrived (the timer is
/// cancelled first): the frame is never resumed while the kernel holds the timer's user_data.
/// A grant always wins: a stop request or deadline that comes after it finds the wait ended,
/// and the wait succeeds (so no token, lock or item is ever lost).
class waiter : public completion {
 public:
  explicit waiter(io_context& ctx) noexcept : completion{&waiter::on_timer}, ctx_(&ctx) {}
  /// Only before it is awaited.
  waiter(waiter&& o) noexcept
      : completion{&waiter::on_timer}, ctx_(o.ctx_), deadline_(o.deadline_), res_(o.res_) {}
  waiter& operator=(waiter&&) = delete;
  /// A frame destroyed while it waits (io_context::shutdown) leaves the primitive's list.
  ~waiter();

  /// The context the primitive runs on (stop_op).
  io_context& context() const noexcept { return *ctx_; }
  /// Ends the wait with operation_canceled if it still waits (stop_op; on the ring's thread).
  /// A wait already granted is left alone: the grant wins.
  void request_cancel() noexcept;
  /// Completes without waiting, with res (a negative errno) (stop_op: already stopped).
  void complete_inline(int res) noexcept { res_ = res; }
  /// Ends the wait with res (0: granted; a negative errno otherwise) and schedules its
  /// resumption. The primitive calls it after taking the waiter off its list.
  void wake(int res) noexcept;

 protected:
  /// Bounds the wait by d from now (an absolute CLOCK_MONOTONIC deadline).
  void set_deadline(std::chrono::nanoseconds d) noexcept { deadline_ = deadline_after(d); }
  /// Arms the deadline's timer (if any), then queues on l. Returns: true (suspended).
  /// Throws: std::system_error (no SQE for the timer); nothing is queued then.
  bool suspend_on(wait_list& l, std::coroutine_handle<> h);
  /// 0 if granted, else the negative errno the wait ended with.
  int res() const noexcept { return res_; }

 private:
  friend class wait_list;
  static void on_timer(completion* c, int res, std::uint32_t flags) noexcept;
  void end(int res) noexcept;

  list_links<waiter> links_;
  wait_list* list_ = nullptr;  // non-null while queued
  io_context* ctx_;
  std::coroutine_handle<> handle_{};
  kernel_timespec deadline_{0, -1};  // tv_nsec < 0: none. LIFETIME: read by the kernel
  cancel_node cancel_{};             // the timer's cancel, until its CQE
  int res_ = 0;
  bool timer_armed_ = false;  // the timer's CQE has not arrived yet
  bool ended_ = false;        // end() was called: the result is final
};

/// An intrusive FIFO of waiters (a primitive's queue). Not thread-safe.
class wait_list {
 public:
  wait_list() noexcept = default;
  wait_list(const wait_list&) = delete;
  wait_list& operator=(const wait_list&) = delete;
  /// Wakes what is left with operation_canceled (the primitive is destroyed).
  ~wait_list() { wake_all(-ECANCELED); }

  /// True if nobody waits.
  bool empty() const noexcept { return q_.empty(); }
  /// Queues w at the end.
  void push_back(waiter& w) noexcept;
  /// Takes the first waiter off the list. Returns: it, or null if empty.
  waiter* pop_front() noexcept;
  /// Takes w (queued here) off the list.
  void remove(waiter& w) noexcept;
  /// Ends every wait with res, in FIFO order.
  void wake_all(int res) noexcept;

 private:
  intrusive_list<waiter, &waiter::links_> q_;
};

/// CRTP base of a wait on a primitive. Op supplies
///   static constexpr const char* name;              (names the wait in errors)
///   bool await_ready() const noexcept;              (false: stop_op checks its token first)
///   bool await_suspend(std::coroutine_handle<>);    (takes what it waits for if it is there
///       and returns false, else suspend_on(the primitive's list, h))
///   result<T> await_resume_result() noexcept;       (the result; res() != 0: the error)
/// and gets with_timeout / with_stop with the guarantees of an I/O operation's.
template <class Op, class T>
class sync_op : public waiter {
 public:
  using value_type = T;
  using waiter::waiter;

  /// Bounds this wait by d (from now); on expiry the co_await throws
  /// std::system_error(std::errc::timed_out) (as_result: returns it). Needs a kernel timer only
  /// if the wait suspends.
  template <class Rep, class Period>
  Op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    set_deadline(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    return static_cast<Op&&>(*this);
  }
  /// Ends this wait with std::system_error(std::errc::operation_canceled) when stop is requested
  /// on tok (from any thread: another thread's request is forwarded to the ring's thread),
  /// unless it was granted first. A token stopped already cancels it without trying.
  stop_op<Op> with_stop(std::stop_token tok) && noexcept {
    return stop_op<Op>(static_cast<Op&&>(*this), std::move(tok));
  }

  T await_resume() {
    result<T> r = static_cast<Op*>(this)->await_resume_result();
    if (!r) throw_error(r.error(), Op::name);
    if constexpr (!std::is_void_v<T>) return std::move(*r);
  }

 protected:
  /// The error for a wait that ended with res() != 0.
  std::error_code error() const noexcept { return errno_code(-res()); }
};

}  // namespace coring::detail
