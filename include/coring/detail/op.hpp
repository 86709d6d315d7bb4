// SPDX-License-Identifier: MIT
// Description: io_op, the generic one-shot operation awaitable; each op adds prep and complete.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/detail/completion.hpp>
#include <coring/detail/ring_access.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

// In AddressSanitizer builds every operation checks, when its CQE arrives, that the caller's
// buffers it pointed the kernel at are still allocated. ASan cannot see the kernel write into a
// freed buffer (docs/design.md, "Sanitizers and the kernel's writes"); this turns that classic
// io_uring bug into a report.
#if defined(__SANITIZE_ADDRESS__)
#define CORING_CHECK_BUFFERS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORING_CHECK_BUFFERS 1
#endif
#endif
#ifdef CORING_CHECK_BUFFERS
#include <sanitizer/asan_interface.h>
#endif

namespace coring {

/// Called (ASan builds only) when an operation's completion arrives and a caller buffer it had
/// handed the kernel was freed meanwhile: the kernel may have written into freed memory.
using freed_buffer_handler = void (*)(const char* op, const void* buffer, std::size_t size);
/// Installs h (null: the default, which prints the op, address and size to stderr and aborts).
/// Returns: the previous handler. Not thread-safe: set it before starting io_contexts.
freed_buffer_handler set_freed_buffer_handler(freed_buffer_handler h) noexcept;

}  // namespace coring

namespace coring::detail {

/// Tells valgrind (when the program runs under it) that the kernel wrote [p, p + n): it cannot
/// see io_uring's writes (docs/design.md, "Sanitizers and the kernel's writes").
void kernel_wrote(const void* p, std::size_t n) noexcept;

/// Calls the installed freed_buffer_handler.
void report_freed_buffer(const char* op, const void* buffer, std::size_t size) noexcept;

/// Arms a linked timeout (IORING_OP_LINK_TIMEOUT, absolute CLOCK_MONOTONIC) behind sqe.
void link_timeout(io_context& ctx, io_uring_sqe& sqe, const kernel_timespec& deadline) noexcept;
/// Absolute CLOCK_MONOTONIC time d from now, as a kernel timespec.
kernel_timespec deadline_after(std::chrono::nanoseconds d) noexcept;

/// CRTP base for an operation awaited once (docs/design.md, "Adding an operation"). Op supplies:
///   static constexpr const char* name;                         (names the op in errors)
///   void prep(io_uring_sqe&) noexcept;                           (in src/: liburing lives there)
/// and may supply
///   result<T> complete(int res, std::uint32_t flags) noexcept;   (maps the CQE to a value; the
///       default: res < 0 is the errno, else T is void or res as a size)
///   bool again(int res, std::uint32_t flags) noexcept;   (true: prep and submit once more)
///   [[noreturn]] void raise(std::error_code);             (throws a richer error)
///   void for_each_buffer(F f) const;   (f(ptr, size) for each caller buffer the kernel uses;
///                                       ASan builds check them at completion; fd_buffer_op
///                                       supplies it)
///
/// LIFETIME: the op's address is the SQE's user_data, so an op must not move once awaited; it
/// lives in the awaiting coroutine's frame, and that frame stays suspended until the op's own
/// final CQE arrived, even when it was cancelled (a cancel is a request, never a completion).
/// Everything the SQE points at (buffers, sockaddr, msghdr, timespec) lives in the op or is the
/// caller's and must outlive the co_await.
template <class Op>
class stop_op;

template <class Op, class T>
class io_op : public completion {
 public:
  using value_type = T;

  explicit io_op(io_context& ctx) noexcept : completion{&io_op::on_cqe}, ctx_(&ctx) {}
  io_op(io_op&& o) noexcept  // only before it is awaited
      : completion{&io_op::on_cqe}, ctx_(o.ctx_), deadline_(o.deadline_), watch_fd_(o.watch_fd_),
        watch_generation_(o.watch_generation_) {}
  io_op& operator=(io_op&&) = delete;
  ~io_op() = default;

  /// Bounds the operation by a kernel linked timeout (IORING_OP_LINK_TIMEOUT); on expiry the
  /// co_await throws std::system_error(std::errc::timed_out) (as_result: returns it).
  template <class Rep, class Period>
  Op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    // The deadline is absolute from here: with_timeout is called in the co_await expression.
    deadline_ = deadline_after(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    return static_cast<Op&&>(*this);
  }
  /// Cancels the operation in the kernel when stop is requested on tok (from any thread: another
  /// thread's request is forwarded to the ring's thread); the co_await then throws
  /// std::system_error(std::errc::operation_canceled), unless the result raced the cancel: a
  /// result that completed is always delivered.
  /// Returns: the same operation wrapped with the stop callback (a separate object, so that
  /// operations without one carry no stop state).
  stop_op<Op> with_stop(std::stop_token tok) && noexcept {
    return stop_op<Op>(static_cast<Op&&>(*this), std::move(tok));
  }

  bool await_ready() const noexcept { return false; }

  bool await_suspend(std::coroutine_handle<> waiter) {
    if (socket_cancelled()) {  // socket::cancel() came first: the cancel sticks
      complete_inline(-ECANCELED);
      return false;
    }
    submit();  // may throw: nothing is attached yet (no throw after attach)
    ring_access::socket_op_started(*ctx_, watch_fd_);
    waiter_ = waiter;
    return true;
  }

  T await_resume() {
    result<T> r = complete_checked();
    if (!r) static_cast<Op*>(this)->raise(r.error());
    if constexpr (!std::is_void_v<T>) return std::move(*r);
  }

  /// The non-throwing form of await_resume (used by coring::as_result).
  result<T> await_resume_result() noexcept { return complete_checked(); }

  [[noreturn]] void raise(std::error_code ec) const { throw_error(ec, Op::name); }
  bool again(int, std::uint32_t) noexcept { return false; }
  /// The default result mapping: a negative res is the errno; otherwise nothing (T = void)
  /// or res itself (a byte count).
  result<T> complete(int res, std::uint32_t) noexcept {
    if (res < 0) return errno_code(-res);
    if constexpr (std::is_void_v<T>) {
      return {};
    } else {
      static_assert(std::is_same_v<T, std::size_t>,
                    "an op with this result type defines complete()");
      return static_cast<std::size_t>(res);
    }
  }

  /// The context the op runs on.
  io_context& context() const noexcept { return *ctx_; }
  /// Asks the kernel to cancel this op (in flight); its own CQE still ends it (stop_op).
  void request_cancel() noexcept {
    cancel_requested_ = true;
    ring_access::cancel(*ctx_, cancel_, this);
  }
  /// Completes without submitting, with res (a negative errno) (stop_op: already stopped).
  void complete_inline(int res) noexcept {
    cancel_requested_ = true;
    res_ = res;
  }
  /// Ties the op to a socket's sticky cancel: once ctx.cancel_generation(fd) differs from
  /// generation (socket::cancel() was called), the op neither starts nor resubmits.
  void watch_cancel(int fd, std::uint32_t generation) noexcept {
    watch_fd_ = fd;
    watch_generation_ = generation;
  }

 protected:
  bool cancel_requested() const noexcept { return cancel_requested_; }

 private:
  bool has_deadline() const noexcept { return deadline_.tv_nsec >= 0; }
  bool socket_cancelled() const noexcept {
    return watch_fd_ >= 0 && ring_access::cancel_generation(*ctx_, watch_fd_) != watch_generation_;
  }

  void submit() {
    io_uring_sqe& sqe = ring_access::acquire_sqe(*ctx_, has_deadline() ? 2 : 1);
    static_cast<Op*>(this)->prep(sqe);
    // Issue 14: a socket in the registered file table is named by its slot (same number).
    if (watch_fd_ >= 0 && ring_access::is_direct(*ctx_, watch_fd_))
      ring_access::use_direct(sqe, watch_fd_);
    ring_access::attach(*ctx_, sqe, this);
    if (has_deadline()) link_timeout(*ctx_, sqe, deadline_);
  }

  result<T> complete_checked() noexcept {
    // A linked timeout cancels its op with -ECANCELED; report it as a timeout unless a stop
    // request asked for the cancel.
    if (res_ == -ECANCELED && has_deadline() && !cancel_requested_) res_ = -ETIMEDOUT;
    return static_cast<Op*>(this)->complete(res_, flags_);
  }

  static void on_cqe(completion* c, int res, std::uint32_t flags) noexcept {
    auto* self = static_cast<io_op*>(c);
    auto* op = static_cast<Op*>(self);
#ifdef CORING_CHECK_BUFFERS
    check_buffers(*op);
#endif
    // Two-CQE operations (IORING_OP_SEND_ZC): the first CQE carries the result and
    // IORING_CQE_F_MORE; the last one (IORING_CQE_F_NOTIF) says the kernel let go of the buffer.
    // LIFETIME: resume only after the last one, or the caller could reuse the buffer too early.
    if (cqe_more(flags)) {
      self->res_ = res;
      return;
    }
    if (flags & cqe_f_notif) res = self->res_;
    if (!self->cancel_requested_ && self->socket_cancelled()) self->cancel_requested_ = true;
    // An op cancelled while it ran in an io-wq worker ends with -EINTR (the worker is
    // signalled); a cancelled op ends with ECANCELED whichever way the kernel said it.
    if (res == -EINTR && (self->cancel_requested_ || self->has_deadline())) res = -ECANCELED;
    // LIFETIME (docs/design.md, "Teardown"): while the context shuts down, nobody is resumed;
    // the frame is destroyed once every operation is back. Nothing is resubmitted either.
    if (self->ctx_->stopping()) {
      ring_access::cancel_done(*self->ctx_, self->cancel_);
      ring_access::socket_op_finished(*self->ctx_, self->watch_fd_, self->watch_generation_);
      self->res_ = res;
      self->flags_ = flags;
      return;
    }
    // again() first: it accounts for what this CQE did (send_all's partial count) even when
    // the op will not go on. A cancel is sticky: a cancelled op never resubmits, whoever
    // asked (stop token, socket::cancel(), deadline), and ends with ECANCELED.
    if (op->again(res, flags)) {
      if (self->cancel_requested_) {
        res = -ECANCELED;
      } else {
        try {
          self->submit();
          return;  // still in flight; the waiter stays suspended
        } catch (...) {
          res = -ECANCELED;  // could not resubmit: report as cancelled
        }
      }
    }
    ring_access::cancel_done(*self->ctx_, self->cancel_);
    ring_access::socket_op_finished(*self->ctx_, self->watch_fd_, self->watch_generation_);
    self->res_ = res;
    self->flags_ = flags;
    self->waiter_.resume();
  }

#ifdef CORING_CHECK_BUFFERS
  static void check_buffers(const Op& op) noexcept {
    if constexpr (requires { op.for_each_buffer([](const void*, std::size_t){}); }) {
      op.for_each_buffer([](const void* p, std::size_t n) {
        if (n > 0 && __asan_region_is_poisoned(const_cast<void*>(p), n) != nullptr)
          report_freed_buffer(Op::name, p, n);
      });
    }
  }
#endif

  io_context* ctx_;
  std::coroutine_handle<> waiter_{};
  kernel_timespec deadline_{0, -1};  // tv_nsec < 0: no deadline
  int res_ = 0;
  std::uint32_t flags_ = 0;
  detail::cancel_node cancel_{};  // on the context's list while a cancel is pending
  int watch_fd_ = -1;             // socket whose sticky cancel this op obeys (-1: none)
  std::uint32_t watch_generation_ = 0;
  bool cancel_requested_ = false;
};

/// The common shape of a socket operation: a descriptor, one caller buffer (std::span<std::byte>
/// written by the kernel, std::span<const std::byte> read by it) and msg flags. A plain op is
/// then its name and its prep (docs/design.md, "Adding an operation").
template <class Op, class T, class Buffer>
class fd_buffer_op : public io_op<Op, T> {
 public:
  fd_buffer_op(io_context& ctx, int fd, Buffer buf, int flags) noexcept
      : io_op<Op, T>(ctx), fd_(fd), buf_(buf), flags_(flags) {}
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
  /// As io_op::complete; a received byte count also tells valgrind what the kernel wrote.
  result<T> complete(int res, std::uint32_t flags) noexcept {
    if constexpr (!std::is_const_v<typename Buffer::element_type>) {
      if (res > 0) kernel_wrote(buf_.data(), std::min(buf_.size(), static_cast<std::size_t>(res)));
    }
    return io_op<Op, T>::complete(res, flags);
  }

 protected:
  int fd_;
  Buffer buf_;
  int flags_;
};

/// An operation plus a std::stop_token: a stop request cancels it in the kernel; the co_await
/// then throws std::system_error(std::errc::operation_canceled), unless the result raced the
/// cancel: a result that completed is always delivered. A request from another thread than the
/// ring's is forwarded to the ring's thread (one small allocation, only then).
template <class Op>
class [[nodiscard]] stop_op {
 public:
  using value_type = typename Op::value_type;
  stop_op(Op&& op, std::stop_token tok) noexcept : op_(std::move(op)), tok_(std::move(tok)) {}
  stop_op(stop_op&& o) noexcept : op_(std::move(o.op_)), tok_(std::move(o.tok_)) {}
  stop_op& operator=(stop_op&&) = delete;

  /// As io_op::with_timeout.
  template <class Rep, class Period>
  stop_op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    std::move(op_).with_timeout(d);
    return std::move(*this);
  }

  bool await_ready() const noexcept { return op_.await_ready(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (tok_.stop_requested()) {  // nothing submitted: complete at once
      op_.complete_inline(-ECANCELED);
      return false;
    }
    if (!op_.await_suspend(h)) return false;
    // TRICKY: registered after the SQE carries our address, and (std::stop_callback runs the
    // callback at once if stop was requested meanwhile) never before: a cancel needs a target.
    cb_.emplace(tok_, canceller{this});
    return true;
  }
  value_type await_resume() {
    finish();
    return op_.await_resume();
  }
  result<value_type> await_resume_result() noexcept {
    finish();
    return op_.await_resume_result();
  }

 private:
  // A stop request made on another thread: runs on the ring's thread, cancels the op if it is
  // still waiting (stop_op::finish() detaches it otherwise), then frees itself.
  struct remote_cancel final : remote_node {
    explicit remote_cancel(stop_op* o) noexcept : owner(o) { fn = &run; }
    static void run(remote_node* n, bool) noexcept {
      auto* self = static_cast<remote_cancel*>(n);
      if (stop_op* o = self->owner) {
        o->remote_ = nullptr;
        o->op_.request_cancel();
      }
      delete self;
    }
    stop_op* owner;
  };
  struct canceller {
    stop_op* self;
    void operator()() const noexcept {
      io_context& ctx = self->op_.context();
      if (ctx.running_in_this_thread()) {
        self->op_.request_cancel();
        return;
      }
      // LIFETIME: the op may complete on the ring's thread meanwhile; finish() (which runs after
      // this callback returned: ~stop_callback waits for it) detaches the node from the op.
      auto* n = new (std::nothrow) remote_cancel(self);
      if (!n) return;  // out of memory: the stop request is lost, the op completes normally
      self->remote_ = n;
      ring_access::post_remote(ctx, n);
    }
  };
  void finish() noexcept {
    cb_.reset();  // finished: no later stop request may target the op; waits for a running one
    if (remote_) std::exchange(remote_, nullptr)->owner = nullptr;
  }
  Op op_;
  std::stop_token tok_;
  std::optional<std::stop_callback<canceller>> cb_;
  remote_cancel* remote_ = nullptr;  // a forwarded request not yet run on the ring's thread
};

/// Bounds op by what is left until an absolute deadline (time_point::max(): none; one already
/// past times out at once) and by stop: the pieces of a longer bounded job (a connect over
/// several addresses, a read over several receives) share one deadline and one token.
template <class Op>
stop_op<Op> bound_by(Op&& op, std::chrono::steady_clock::time_point deadline,
                     const std::stop_token& stop) noexcept {
  if (deadline != std::chrono::steady_clock::time_point::max()) {
    std::move(op).with_timeout(std::max(deadline - std::chrono::steady_clock::now(),
                                        std::chrono::steady_clock::duration::zero()));
  }
  return std::move(op).with_stop(stop);
}

}  // namespace coring::detail

namespace coring {

/// Awaitable adaptor returned by as_result(): the same operation, but errors come back in
/// a result<T> instead of being thrown.
template <class Op>
class [[nodiscard]] result_awaiter {
 public:
  explicit result_awaiter(Op&& op) noexcept : op_(std::move(op)) {}
  bool await_ready() const noexcept { return op_.await_ready(); }
  auto await_suspend(std::coroutine_handle<> h) { return op_.await_suspend(h); }
  result<typename Op::value_type> await_resume() noexcept { return op_.await_resume_result(); }

 private:
  Op op_;
};

/// Wraps an operation so that `co_await as_result(op)` returns result<T> instead of throwing:
/// `auto r = co_await coring::as_result(s.recv(buf)); if (!r) log(r.error());`
template <class Op>
requires requires(Op& op) { op.await_resume_result(); }
result_awaiter<Op> as_result(Op&& op) noexcept { return result_awaiter<Op>(std::move(op)); }

/// as_result for a task (tcp_connect, recv_fds, your own): `co_await as_result(t)` returns
/// result<T> holding the std::system_error's code the task threw instead of throwing it.
/// Other exceptions (std::bad_alloc, ...) still propagate. The task is moved into the wrapper.
template <class T>
[[nodiscard]] CORING_NO_SANITIZE_FUNCTION task<result<T>> as_result(task<T> t) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      co_return result<void>{};
    } else {
      T v = co_await std::move(t);
      co_return result<T>(std::move(v));
    }
  } catch (const std::system_error& e) {
    co_return result<T>(e.code());
  }
}

}  // namespace coring
