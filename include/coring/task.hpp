// SPDX-License-Identifier: MIT
// Description: task<T>, a lazy coroutine that resumes its awaiter without growing the stack.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <cassert>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace coring {

template <class T = void>
class task;

namespace detail {

/// State shared by every task promise.
///
/// TRICKY: g++ 12 does not turn symmetric transfer into a tail call at -O0/-O1 or under ASan
/// (docs/design.md, "g++ 12"), so a loop of a million synchronously completing `co_await child()`
/// would overflow the stack if each completion "returned" the parent's handle. Instead the
/// awaiter resumes the child from a bool await_suspend and, if the child finished before
/// resume() returned, answers false: the parent continues on the same stack frame. Only a child
/// that completes later (resumed from the run loop) transfers to its parent, and that nesting
/// is bounded by the depth of the await chain, not by the number of iterations.
struct promise_base {
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
      promise_base& p = h.promise();
      if (p.in_resume_) {  // our awaiter is still inside resume(): let it continue inline
        p.done_inline_ = true;
        return std::noop_coroutine();
      }
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  std::coroutine_handle<> continuation_{};
  std::exception_ptr exception_{};
  bool in_resume_ = false;
  bool done_inline_ = false;
};

template <class T>
struct task_promise : promise_base {
  task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    if (exception_) std::rethrow_exception(exception_);
    return std::move(*value_);
  }
  std::optional<T> value_;
};

template <>
struct task_promise<void> : promise_base {
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const {
    if (exception_) std::rethrow_exception(exception_);
  }
};

}  // namespace detail

/// A lazy coroutine returning T. It starts when first awaited (or when spawned / sync_wait'ed);
/// exceptions thrown inside are rethrown to the awaiter. It knows nothing of io_context:
/// io_context::spawn and task_group run it inside a small detached coroutine of their own.
/// Note: move-only. A task owns its frame: destroying a task that started and has not finished
/// is a bug unless no operation of it is in flight (the io_context destructor does that safely).
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  explicit task(handle_type h) noexcept : h_(h) {}
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  /// True if this task holds a coroutine.
  bool valid() const noexcept { return static_cast<bool>(h_); }
  /// True once the coroutine ran to its end (value or exception).
  bool done() const noexcept { return !h_ || h_.done(); }

  /// What co_await on a task awaits: starts the task, continues the caller when it ends.
  struct awaiter {
    handle_type h_;
    bool await_ready() const noexcept { return !h_ || h_.done(); }
    bool await_suspend(std::coroutine_handle<> caller) noexcept {
      promise_type& p = h_.promise();
      p.continuation_ = caller;
      p.in_resume_ = true;
      h_.resume();
      p.in_resume_ = false;
      return !p.done_inline_;  // false: it finished already; continue the caller right here
    }
    T await_resume() {
      assert(h_ && "co_await on an empty task");
      return h_.promise().take();
    }
  };
  /// Starts the task and suspends the caller until it finishes.
  /// Returns: the task's value. Throws: whatever the task threw.
  awaiter operator co_await() && noexcept { return awaiter{h_}; }
  awaiter operator co_await() & noexcept { return awaiter{h_}; }

  /// Gives up ownership of the coroutine: the caller must destroy it.
  handle_type release() noexcept { return std::exchange(h_, {}); }
  /// The coroutine, still owned by the task (sync_wait drives it).
  handle_type handle() const noexcept { return h_; }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  handle_type h_{};
};

namespace detail {
/// True for task<T>.
template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace coring
