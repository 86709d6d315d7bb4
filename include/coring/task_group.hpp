// SPDX-License-Identifier: MIT
// Description: task_group, a nursery: spawn children, first failure stops the rest, join them all.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/detail/intrusive_list.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

class task_group;

namespace detail {

/// The coroutine that runs one child of a task_group. It is scheduled on the io_context (so the
/// child starts in the next loop turn), reports an escaping exception to the group, and at its
/// final suspend frees itself and tells the group, which resumes the joiner after the last one.
class [[nodiscard]] group_child {
 public:
  struct promise_type {
    task_group* group_ = nullptr;
    detail::list_links<promise_type> links_;  // on the group's list of unfinished children

    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept;
      void await_resume() const noexcept {}
    };

    group_child get_return_object() noexcept {
      return group_child{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept;
  };
  using handle_type = std::coroutine_handle<promise_type>;

  explicit group_child(handle_type h) noexcept : h_(h) {}
  group_child(group_child&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  group_child& operator=(group_child&&) = delete;
  group_child(const group_child&) = delete;
  ~group_child() {
    if (h_) h_.destroy();  // only ever reached unstarted (spawn failed)
  }
  handle_type handle() const noexcept { return h_; }
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  handle_type h_;
};

template <class F>
group_child group_call(task_group& g, F f);
template <class A>
group_child group_run(A a);

/// True if e is a std::system_error with std::errc::operation_canceled.
inline bool is_operation_canceled(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& se) {
    return se.code() == std::errc::operation_canceled;
  } catch (...) {}
  return false;
}

}  // namespace detail

/// A nursery (cppcoro's async_scope, Trio's nursery): children spawned into it run
/// concurrently on its io_context, and co_await join() resumes once every one of them finished.
///   task_group g(ctx);
///   g.spawn([&](std::stop_token tok) -> task<> { co_await s.recv(buf).with_stop(tok); ... });
///   g.spawn(out.send_all(msg));  // an operation: bound to the group's token by spawn
///   co_await g.join();
/// The first child to fail requests stop on the group's stop_source: siblings see it through
/// the token they were given (or g.token()) and their ops end with operation_canceled. join()
/// rethrows that first failure after all children finished. An operation_canceled thrown by a
/// child after stop was requested is the consequence, not a failure, and is not reported.
/// Note: not thread-safe (one io_context thread). Not movable: children point at it.
/// Destroying a group that still has unfinished children is a bug: it asserts in debug builds
/// and calls std::terminate() in release builds (the children's frames cannot be freed while
/// their operations are in flight), except during io_context::shutdown(), which destroys the
/// unfinished children (nothing is in flight any more then). A group is reusable after join(); stop
/// requests are not undone, so children spawned into a stopped group start with a stopped token.
class task_group {
 public:
  /// Creates an empty group whose children run on ctx.
  /// Throws: std::bad_alloc (the stop_source's shared state).
  explicit task_group(io_context& ctx) : ctx_(&ctx) {}
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  /// Note: terminates the program if children are still running (see the class note),
  /// except while its io_context shuts down (io_context::shutdown): then nothing is in flight
  /// any more and the children's frames are destroyed, without resuming them.
  ~task_group() {
    if (count_ != 0 && ctx_->stopping()) destroy_children();
    assert(count_ == 0 && "task_group destroyed with unfinished children: co_await join() first");
    if (count_ != 0) std::terminate();
  }

  /// Spawns `f(token())` as a child: f is stored in the child's frame and called in the next
  /// loop turn; the awaitable it returns (a task, an operation) runs there and its value, if
  /// any, is discarded.
  /// Throws: std::bad_alloc; nothing is spawned then.
  /// Note: f (and whatever it captures by value) lives until the child finished, so capturing
  /// coroutine lambdas are safe here.
  template <class F>
  requires detail::awaitable_factory<std::decay_t<F>>
  void spawn(F&& f) { start(detail::group_call(*this, std::decay_t<F>(std::forward<F>(f)))); }
  /// Spawns an awaitable as a child (a task, or an operation such as `s.recv(buf)`); it starts
  /// in the next loop turn and its value, if any, is discarded. An operation that has
  /// `.with_stop(tok)` is bound to token() here, so the group's stop cancels it; a task is
  /// cancellable only if it was given token() (or watches it).
  /// Throws: std::bad_alloc; a is destroyed unstarted then.
  /// Note: a is taken by value (moved into the child's frame), so a temporary operation is
  /// safe; what it refers to (buffers, sockets) must outlive the child.
  template <class A>
  requires detail::awaitable<A>
  void spawn(A a) {
    if constexpr (detail::stoppable<A>)
      start(detail::group_run(std::move(a).with_stop(token())));
    else
      start(detail::group_run(std::move(a)));
  }

  /// co_await g.join(): waits until every child finished (at once if there are none).
  /// Throws: the first failure of a child (after all finished); it is then cleared.
  /// Note: one joiner at a time. Children may spawn more children while the join waits.
  [[nodiscard]] auto join() noexcept {
    struct awaiter {
      task_group* g;
      bool await_ready() const noexcept { return g->count_ == 0; }
      void await_suspend(std::coroutine_handle<> h) const noexcept {
        assert(!g->joiner_ && "task_group::join awaited twice at once");
        g->joiner_ = h;
      }
      void await_resume() const {
        g->joiner_ = {};
        if (g->error_) std::rethrow_exception(std::exchange(g->error_, {}));
      }
    };
    return awaiter{this};
  }

  /// The group's stop token: stop is requested by the first failure or by request_stop().
  std::stop_token token() const noexcept { return stop_.get_token(); }
  /// Asks every child to stop (through token()); join() still waits for all of them. Any
  /// thread: an operation forwards a request from another thread to its ring's thread.
  void request_stop() noexcept { stop_.request_stop(); }
  /// Children spawned and not finished yet (including those not started yet).
  std::size_t size() const noexcept { return count_; }
  /// The io_context the children run on.
  io_context& context() const noexcept { return *ctx_; }

 private:
  friend struct detail::group_child::promise_type;

  void start(detail::group_child c) {
    detail::group_child::handle_type h = c.handle();
    auto& p = h.promise();
    p.group_ = this;
    ctx_->schedule(h);  // may throw: c still owns the unstarted frame and frees it
    c.release();
    children_.push_front(p);
    ++count_;
  }

  void unlink(detail::group_child::promise_type& p) noexcept { children_.remove(p); }

  // Shutdown only: no operation of any child is in flight any more (io_context::shutdown).
  void destroy_children() noexcept {
    while (detail::group_child::promise_type* p = children_.front()) {
      unlink(*p);
      --count_;
      detail::group_child::handle_type::from_promise(*p).destroy();
    }
  }

  void child_failed(std::exception_ptr e) noexcept {
    const bool consequence = stop_.stop_requested() && detail::is_operation_canceled(e);
    if (!error_ && !consequence) error_ = std::move(e);
    stop_.request_stop();
  }

  std::coroutine_handle<> child_done() noexcept {
    assert(count_ > 0);
    if (--count_ == 0 && joiner_) return joiner_;
    return std::noop_coroutine();
  }

  io_context* ctx_;
  std::stop_source stop_{};
  detail::intrusive_list<detail::group_child::promise_type,
                         &detail::group_child::promise_type::links_>
      children_;  // unfinished children
  std::size_t count_ = 0;
  std::coroutine_handle<> joiner_{};
  std::exception_ptr error_{};
};

namespace detail {

inline std::coroutine_handle<> group_child::promise_type::final_awaiter::await_suspend(
    std::coroutine_handle<promise_type> h) const noexcept {
  task_group* g = h.promise().group_;
  g->unlink(h.promise());
  // LIFETIME: the frame (with f and the child's task) is freed before the joiner may run, so
  // everything a child owned is gone when join() returns. Nothing below touches the frame.
  h.destroy();
  return g->child_done();
}

inline void group_child::promise_type::unhandled_exception() noexcept {
  group_->child_failed(std::current_exception());
}

template <class F>
CORING_NO_SANITIZE_FUNCTION group_child group_call(task_group& g, F f) {
  auto a = std::invoke(f, g.token());        // named: no non-trivial temporary around the co_await
  static_cast<void>(co_await std::move(a));  // the value, if any, is discarded
}

template <class A>
CORING_NO_SANITIZE_FUNCTION group_child group_run(A a) {
  static_cast<void>(co_await std::move(a));  // the value, if any, is discarded
}

}  // namespace detail

}  // namespace coring
