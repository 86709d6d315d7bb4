// SPDX-License-Identifier: MIT
// Description: waiter and wait_list, the waits of the synchronization primitives (event,
// semaphore, mutex, wait_group, channel): the queue, the wake-ups and the per-wait deadline
// timer (IORING_OP_TIMEOUT owned by the waiting frame).
#include <coring/detail/wait_list.hpp>
#include <coring/event.hpp>
#include <coring/mutex.hpp>
#include <coring/semaphore.hpp>
#include <coring/wait_group.hpp>

#include <liburing.h>

#include <cerrno>
#include <stdexcept>

namespace coring::detail {

// ---- waiter ----

waiter::~waiter() {
  if (list_) list_->remove(*this);
}

bool waiter::suspend_on(wait_list& l, std::coroutine_handle<> h) {
  if (deadline_.tv_nsec >= 0) {
    io_uring_sqe& sqe = ring_access::acquire_sqe(*ctx_);  // may throw: nothing queued yet
    static_assert(sizeof(kernel_timespec) == sizeof(__kernel_timespec));
    io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&deadline_), 0,
                          IORING_TIMEOUT_ABS);
    ring_access::attach(*ctx_, sqe, this);
    timer_armed_ = true;
  }
  handle_ = h;
  l.push_back(*this);
  return true;
}

void waiter::request_cancel() noexcept {
  if (!list_ || ctx_->stopping()) return;  // ended already: a grant wins over the stop
  list_->remove(*this);
  end(-ECANCELED);
}

void waiter::wake(int res) noexcept { end(res); }

void waiter::end(int res) noexcept {
  ended_ = true;
  res_ = res;
  // LIFETIME (docs/design.md, "Teardown"): while the context shuts down nobody is resumed.
  if (ctx_->stopping()) return;
  if (timer_armed_) {
    // The frame may resume only once the kernel let go of the timer: on_timer resumes it.
    ring_access::cancel(*ctx_, cancel_, this);
    return;
  }
  // From the next loop turn, never inline: set()/release()/send() return before anyone runs.
  ctx_->schedule(handle_);
}

void waiter::on_timer(completion* c, int res, std::uint32_t) noexcept {
  auto* self = static_cast<waiter*>(c);
  self->timer_armed_ = false;
  ring_access::cancel_done(*self->ctx_, self->cancel_);
  if (self->ctx_->stopping()) return;
  if (!self->ended_) {
    // The deadline passed while queued (-ETIME); anything else is a cancel from outside.
    if (self->list_) self->list_->remove(*self);
    self->ended_ = true;
    self->res_ = res == -ETIME ? -ETIMEDOUT : -ECANCELED;
  }
  // Resumed from the completion loop, as every I/O operation is.
  self->handle_.resume();
}

// ---- wait_list ----

void wait_list::push_back(waiter& w) noexcept {
  w.list_ = this;
  q_.push_back(w);
}

waiter* wait_list::pop_front() noexcept {
  waiter* w = q_.front();
  if (w) remove(*w);
  return w;
}

void wait_list::remove(waiter& w) noexcept {
  q_.remove(w);
  w.list_ = nullptr;
}

void wait_list::wake_all(int res) noexcept {
  while (waiter* w = pop_front())
    w->wake(res);
}

}  // namespace coring::detail

namespace coring {

void event::set() noexcept {
  if (mode_ == reset_mode::manual) {
    set_ = true;
    waiters_.wake_all(0);
    return;
  }
  if (detail::waiter* w = waiters_.pop_front())
    w->wake(0);  // the event stays clear: this waiter took it
  else
    set_ = true;
}

void semaphore::release(std::size_t n) noexcept {
  count_ += n;
  while (count_ > 0 && !waiters_.empty()) {
    --count_;  // the unit is the waiter's from now on
    waiters_.pop_front()->wake(0);
  }
}

void mutex::unlock() noexcept {
  if (detail::waiter* w = waiters_.pop_front())
    w->wake(0);  // still locked: the lock is the waiter's from now on
  else
    locked_ = false;
}

void wait_group::done() {
  if (count_ == 0) throw std::logic_error("coring::wait_group::done: the count is zero already");
  if (--count_ == 0) waiters_.wake_all(0);
}

}  // namespace coring
