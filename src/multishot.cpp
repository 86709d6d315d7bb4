// SPDX-License-Identifier: MIT
// Description: multishot_core, the state machine shared by acceptor and recv_stream, and the
// non-template part of multishot_op.
#include "detail/multishot.hpp"

#include "detail/ring.hpp"

#include <coring/error.hpp>

#include <algorithm>
#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

namespace coring::detail {

// ---- item_queue ----

item_queue::~item_queue() {
  if (items_ != inline_) delete[] items_;
}

void item_queue::reserve(std::uint32_t n) {
  if (n <= capacity_) return;
  auto* bigger = new multishot_item[n];
  for (std::uint32_t i = 0; i < size_; ++i)
    bigger[i] = items_[(head_ + i) % capacity_];
  if (items_ != inline_) delete[] items_;
  items_ = bigger;
  capacity_ = n;
  head_ = 0;
}

void item_queue::push(multishot_item it) {
  if (size_ == capacity_) reserve(capacity_ * 2);
  items_[(head_ + size_) % capacity_] = it;
  ++size_;
}

multishot_item item_queue::pop() noexcept {
  multishot_item it = items_[head_];
  head_ = (head_ + 1) % capacity_;
  --size_;
  return it;
}

// ---- multishot_core ----

multishot_core::multishot_core(io_context& ctx, int fd, std::uint32_t cancel_generation,
                               const multishot_config& cfg)
    : completion{&multishot_core::on_cqe}, ctx_(&ctx), idle_(cfg.idle),
      last_activity_(clock::now()), fd_(fd), cancel_generation_(cancel_generation),
      max_queued_(static_cast<std::uint16_t>(cfg.max_queued)), multishot_(cfg.multishot),
      read_ahead_(cfg.read_ahead), sticky_end_(cfg.sticky_end) {
  timer_.fn_ = &multishot_core::on_timer;
  timer_.owner = this;
}

multishot_core::~multishot_core() = default;

void multishot_core::arm() {
  prepare();
  io_uring_sqe& sqe = ring_access::acquire_sqe(*ctx_);
  prep(sqe);
  ring_access::attach(*ctx_, sqe, this);
  armed_ = true;
}

void multishot_core::rearm_or_fail() noexcept {
  if (socket_cancelled()) {  // the cancel sticks: no new reception
    error_ = ECANCELED;
    return;
  }
  try {
    arm();
  } catch (const std::system_error& e) {
    const int v = e.code().value();
    error_ = e.code() == errc::context_stopping || v == 0 ? ECANCELED : v;
  } catch (const std::bad_alloc&) {
    error_ = ENOMEM;
  }
}

void multishot_core::end_with(int error) noexcept {
  if (error_ == 0) error_ = error;
  if (armed_ && !cancel_pending_) {
    cancel_pending_ = true;
    detail::ring_access::cancel(*ctx_, this);
  }
}

void multishot_core::on_cqe(completion* c, int res, std::uint32_t flags) noexcept {
  static_cast<multishot_core*>(c)->handle_cqe(res, flags);
}

void multishot_core::handle_cqe(int res, std::uint32_t flags) noexcept {
  const bool own_cancel = cancel_pending_;
  if (!cqe_more(flags)) {
    armed_ = false;
    cancel_pending_ = false;
  }
  multishot_item it;
  const cqe_kind kind = convert(res, flags, it);
  if (kind == cqe_kind::item) {
    bool ok = deliver(it);
    while (next_item(it)) {  // the rest of a recv bundle, in order; none after a lost one
      if (ok)
        ok = deliver(it);
      else
        dispose(it);
    }
  }
  if (orphaned_) {
    if (can_delete()) delete this;
    return;
  }
  // LIFETIME (docs/design.md, "Teardown"): while the context shuts down, what came stays queued
  // (the owner's destructor disposes of it), nobody is resumed and nothing is armed.
  if (ctx_->stopping()) return;
  switch (kind) {
    case cqe_kind::item:
      if (idle_.count() > 0) last_activity_ = clock::now();
      break;
    case cqe_kind::end:
      eof_ = true;
      break;
    case cqe_kind::error:
      // Our own cancel (backpressure, idle timeout) is no error; socket::cancel() is.
      if (!(res == -ECANCELED && own_cancel) && error_ == 0) error_ = -res;
      break;
    case cqe_kind::none:
      break;
  }
  // Backpressure (docs/design.md, "Buffer rings and backpressure"): at max_queued, cancel the
  // reception; further data waits in the kernel (socket buffer, listen backlog) instead.
  if (armed_ && !cancel_pending_ && queue_.size() >= max_queued_) {
    cancel_pending_ = true;
    detail::ring_access::cancel(*ctx_, this);
  }
  // Re-arm after the reception ended (a one-shot's CQE, the backpressure cancel, ENOBUFS):
  // for a waiter that finds nothing queued, or to read ahead.
  const bool wanted = read_ahead_ ? (kind == cqe_kind::item || waiter_ != nullptr)
                                  : (waiter_ != nullptr && queue_.empty());
  if (!armed_ && !ended() && !paused() && queue_.size() < max_queued_ && wanted) rearm_or_fail();
  finish_turn();
}

bool multishot_core::deliver(multishot_item it) noexcept {
  if (!orphaned_) {
    try {
      queue_.push(it);
      return true;
    } catch (const std::bad_alloc&) {
      end_with(ENOMEM);  // the item is lost: the stream cannot go on as if nothing happened
    }
  }
  dispose(it);
  return false;
}

void multishot_core::finish_turn() noexcept {
  if (waiter_ && (ready() || waiter_->res != 0)) {
    resume_waiter();
    return;
  }
  settle_timer();
}

void multishot_core::resume_waiter() noexcept {
  multishot_wait* w = std::exchange(waiter_, nullptr);
  const std::coroutine_handle<> h = std::exchange(w->handle, {});
  settle_timer();
  h.resume();  // LIFETIME: may destroy the owner, and with it this state: nothing after this
}

void multishot_core::released() noexcept {
  if (orphaned_) {
    if (can_delete()) delete this;
    return;
  }
  if (ctx_->stopping()) return;
  if (waiter_ && !armed_ && !paused() && !ready()) rearm_or_fail();
  if (waiter_ && ready()) resume_waiter();
}

void multishot_core::orphan() noexcept {
  while (!queue_.empty())
    dispose(queue_.pop());
  orphaned_ = true;
  // A waiter outliving the owner is never resumed (the owner must outlive its waits); its
  // frame's destruction must not touch this state any more.
  if (waiter_) std::exchange(waiter_, nullptr)->handle = {};
  if (armed_) detail::ring_access::cancel(*ctx_, this);
  if (timer_armed_) detail::ring_access::cancel(*ctx_, &timer_);
  if (can_delete()) delete this;
}

// ---- the timer: the waiter's deadline and the idle timeout ----
// One IORING_OP_TIMEOUT per stream, armed for the earliest of the two and re-armed lazily when
// it fires: a wait that ends early leaves it armed (while the reception keeps the context busy
// anyway), so a stream of waits with deadlines costs about one timer per deadline period, not
// an SQE per wait.

multishot_core::clock::time_point multishot_core::next_due() const noexcept {
  clock::time_point due = waiter_ ? waiter_->deadline : clock::time_point::max();
  if (idle_.count() > 0 && !ended()) due = std::min(due, last_activity_ + idle_);
  return due;
}

void multishot_core::arm_timer(clock::time_point when) {
  io_uring_sqe& sqe = ring_access::acquire_sqe(*ctx_);
  // steady_clock is CLOCK_MONOTONIC on Linux (libstdc++ and libc++).
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  timer_at_ = {ns / 1'000'000'000, ns % 1'000'000'000};
  io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&timer_at_), 0,
                        IORING_TIMEOUT_ABS);
  ring_access::attach(*ctx_, sqe, &timer_);
  timer_armed_ = true;
}

void multishot_core::update_timer() {
  const clock::time_point due = next_due();
  if (due == clock::time_point::max()) {
    // Nothing to time. An armed timer goes now if nothing else keeps the context busy.
    if (timer_armed_ && !armed_ && !timer_cancel_pending_) {
      timer_cancel_pending_ = true;
      detail::ring_access::cancel(*ctx_, &timer_);
    }
    return;
  }
  if (!timer_armed_) {
    arm_timer(due);
    return;
  }
  const auto armed_for = clock::time_point(std::chrono::duration_cast<clock::duration>(
      std::chrono::seconds(timer_at_.tv_sec) + std::chrono::nanoseconds(timer_at_.tv_nsec)));
  if (due < armed_for && !timer_cancel_pending_) {
    timer_cancel_pending_ = true;  // armed for later than needed: its CQE re-arms
    detail::ring_access::cancel(*ctx_, &timer_);
  }
}

void multishot_core::settle_timer() noexcept {
  try {
    update_timer();
  } catch (...) {
    // No SQE (context stopping, or the SQ stays full): the next completion tries again.
  }
}

void multishot_core::on_timer(completion* c, int res, std::uint32_t) noexcept {
  static_cast<timer_completion*>(c)->owner->handle_timer(res);
}

void multishot_core::handle_timer(int res) noexcept {
  timer_armed_ = false;
  timer_cancel_pending_ = false;
  if (orphaned_) {
    if (can_delete()) delete this;
    return;
  }
  if (ctx_->stopping()) return;
  // Expired, or cancelled by us (to wake earlier, or unneeded): both are re-evaluated here. Any
  // other result means the kernel refused the timer: what relies on it expires now rather than
  // never (and the timer is not re-armed into the same refusal).
  const bool refused = res != -ETIME && res != -ECANCELED && res != 0;
  const clock::time_point now = refused ? clock::time_point::max() : clock::now();
  if (idle_.count() > 0 && !ended() && now >= last_activity_ + idle_) end_with(ETIMEDOUT);
  if (waiter_ && !ready() && waiter_->deadline != clock::time_point::max() &&
      now >= waiter_->deadline)
    waiter_->res = -ETIMEDOUT;
  finish_turn();
}

// ---- waits ----

bool multishot_core::poll() noexcept {
  // socket::cancel() sticks (docs/design.md, "Cancellation"): what the kernel already gave is
  // handed out first, then every wait ends with operation_canceled. A reception still in flight
  // is being cancelled by it: its final CQE (or data that raced the cancel) ends the wait.
  if (!ready() && !armed_ && socket_cancelled()) error_ = ECANCELED;
  return ready();
}

bool multishot_core::suspend(multishot_wait& w, std::coroutine_handle<> h) {
  if (w.deadline != clock::time_point::max() && w.deadline <= clock::now()) {
    w.res = -ETIMEDOUT;
    return false;
  }
  if (!armed_ && !paused()) arm();  // may throw: nothing is registered yet
  w.handle = h;
  waiter_ = &w;
  try {
    update_timer();
  } catch (...) {
    waiter_ = nullptr;
    w.handle = {};
    throw;
  }
  return true;
}

void multishot_core::abandon(multishot_wait& w, int res) noexcept {
  if (waiter_ != &w) return;  // resumed already (stop_op detaches later requests)
  waiter_ = nullptr;
  w.res = res;
  const std::coroutine_handle<> h = std::exchange(w.handle, {});
  if (ctx_->stopping()) return;  // teardown: nobody is resumed
  settle_timer();
  // TRICKY: not resumed here. This runs inside request_stop(), in code that expects to go on
  // after it; the waiter resumes from the ready queue instead (as an io_op would from its CQE).
  try {
    ctx_->schedule(h);
  } catch (...) {
    h.resume();  // out of memory for the queue: resume in place rather than never
  }
}

void multishot_core::forget(multishot_wait& w) noexcept {
  if (waiter_ == &w) waiter_ = nullptr;
  w.handle = {};
}

multishot_outcome multishot_core::take(multishot_wait& w) noexcept {
  // An item that raced the deadline or the stop request is delivered, never lost.
  if (!queue_.empty()) return {true, queue_.pop(), 0};
  if (w.res != 0) return {false, {}, -w.res};
  if (error_ != 0) return {false, {}, sticky_end_ ? error_ : std::exchange(error_, 0)};
  return {};
}

// ---- multishot_op_base ----

bool multishot_op_base::await_ready() const noexcept { return st_->poll(); }

bool multishot_op_base::await_suspend(std::coroutine_handle<> h) { return st_->suspend(wait_, h); }

io_context& multishot_op_base::context() const noexcept { return st_->context(); }

void multishot_op_base::request_cancel() noexcept { st_->abandon(wait_, -ECANCELED); }

void multishot_op_base::forget() noexcept { st_->forget(wait_); }

}  // namespace coring::detail
