// SPDX-License-Identifier: MIT
// Description: crossing threads: resume_on moves a coroutine to another io_context's thread.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/ring_access.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <coroutine>

namespace coring {

namespace detail {
/// The awaiter of resume_on(ctx): an intrusive remote_node in the awaiting frame.
class resume_on_awaiter : remote_node {
 public:
  explicit resume_on_awaiter(io_context& ctx) noexcept : ctx_(&ctx) { fn = &run; }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    waiter_ = h;
    // LIFETIME: from here the coroutine may already run on the other thread; touch nothing.
    ring_access::post_remote(*ctx_, this);
  }
  void await_resume() const {
    if (stopping_) throw_error(errc::context_stopping, "resume_on");
  }

 private:
  static void run(remote_node* n, bool cancelled) noexcept {
    auto* self = static_cast<resume_on_awaiter*>(n);
    self->stopping_ = cancelled;
    self->waiter_.resume();
  }
  io_context* ctx_;
  std::coroutine_handle<> waiter_{};
  bool stopping_ = false;
};
}  // namespace detail

/// `co_await resume_on(ctx)` continues the awaiting coroutine on the thread running ctx (in
/// ctx's next loop turn). Thread-safe, allocation-free. Whatever awaits this coroutine is then
/// resumed on that thread too: hop back with `co_await resume_on(home)` before touching home's
/// sockets (an io_context and its sockets are used from one thread only).
/// Throws (from the co_await): std::system_error(errc::context_stopping) if ctx is destroyed
/// before it ran the coroutine (which then continues on the destroying thread).
/// Note: a thread blocked in ctx.run() with nothing in flight returns at once unless a
/// work_guard (io_context::make_work_guard) keeps it waiting for such requests. Compilers may
/// reuse a thread-identity value across the co_await (glibc declares pthread_self() const, and
/// clang caches it): read std::this_thread::get_id() in a non-inlined function, or use gettid().
[[nodiscard]] inline detail::resume_on_awaiter resume_on(io_context& ctx) noexcept {
  return detail::resume_on_awaiter(ctx);
}

}  // namespace coring
