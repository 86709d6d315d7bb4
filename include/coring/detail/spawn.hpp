// SPDX-License-Identifier: MIT
// Description: the detached coroutine io_context::spawn runs an awaitable in, and the context's
// list of them (so that shutdown can destroy the unfinished ones).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/detail/intrusive_list.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <utility>

namespace coring {

class io_context;

namespace detail {

struct spawn_promise;
class spawn_list;

/// The detached coroutine io_context::spawn wraps around an awaitable (spawn_body). Owns the
/// frame until released to the context.
class [[nodiscard]] spawned {
 public:
  using promise_type = spawn_promise;
  using handle_type = std::coroutine_handle<spawn_promise>;
  explicit spawned(handle_type h) noexcept : h_(h) {}
  spawned(spawned&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  spawned& operator=(spawned&&) = delete;
  ~spawned() {
    if (h_) h_.destroy();  // only ever reached unstarted (spawn failed)
  }
  /// The coroutine, still owned.
  handle_type handle() const noexcept { return h_; }
  /// Gives up ownership (to the context's ready queue and spawn_list).
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  handle_type h_;
};

/// The promise of a spawned coroutine: its links on the context's spawn_list (for shutdown).
/// At its end it unlinks and frees itself; an escaping exception goes to the context's handler.
struct spawn_promise {
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<spawn_promise> h) const noexcept;
    void await_resume() const noexcept {}
  };
  spawned get_return_object() noexcept {
    return spawned{std::coroutine_handle<spawn_promise>::from_promise(*this)};
  }
  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
  void return_void() const noexcept {}
  void unhandled_exception() noexcept;

  spawn_list* list_ = nullptr;
  list_links<spawn_promise> links_;
};

/// An io_context's intrusive list of its unfinished spawned coroutines.
class spawn_list {
 public:
  explicit spawn_list(io_context& ctx) noexcept : ctx_(&ctx) {}
  spawn_list(const spawn_list&) = delete;
  spawn_list& operator=(const spawn_list&) = delete;
  /// Links p, a coroutine that is queued to start.
  void push(spawn_promise& p) noexcept {
    p.list_ = this;
    frames_.push_front(p);
    ++size_;
  }
  /// Unlinks p (at its end, or before shutdown destroys it).
  void unlink(spawn_promise& p) noexcept {
    frames_.remove(p);
    --size_;
  }
  /// Hands e, escaped from a spawned coroutine, to the context's exception handler (not an
  /// operation_canceled during shutdown: that is the teardown's own doing).
  void report(std::exception_ptr e) noexcept;
  /// Destroys the frame of every coroutine still linked, without resuming it (shutdown).
  void destroy_all() noexcept;
  /// Linked coroutines.
  std::size_t size() const noexcept { return size_; }

 private:
  io_context* ctx_;
  intrusive_list<spawn_promise, &spawn_promise::links_> frames_;
  std::size_t size_ = 0;
};

inline void spawn_promise::unhandled_exception() noexcept {
  list_->report(std::current_exception());
}

inline void spawn_promise::final_awaiter::await_suspend(
    std::coroutine_handle<spawn_promise> h) const noexcept {
  h.promise().list_->unlink(h.promise());
  h.destroy();  // LIFETIME: nothing touches the frame (nor this awaiter) after this
}

/// The spawned coroutine: a lives in its frame (one allocation holds both) until it ends.
template <class A>
CORING_NO_SANITIZE_FUNCTION spawned spawn_body(A a) {
  static_cast<void>(co_await std::move(a));  // the value, if any, is discarded
}
}  // namespace detail

}  // namespace coring
