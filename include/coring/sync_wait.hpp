// SPDX-License-Identifier: MIT
// Description: sync_wait: run an io_context until one awaitable finishes (tests, main()).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <coroutine>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {
/// A task that awaits a (sync_wait of something that is not a task).
template <class A>
CORING_NO_SANITIZE_FUNCTION task<await_result_t<A>> as_task(A a) {
  if constexpr (std::is_void_v<await_result_t<A>>) {
    co_await std::move(a);
  } else {
    await_result_t<A> v = co_await std::move(a);  // named: no temporary around the co_await
    co_return std::move(v);
  }
}
}  // namespace detail

/// Starts a (a task, an operation such as `s.recv(buf)`, any awaitable) and runs ctx's loop
/// until it finishes (spawned tasks run meanwhile).
/// Returns: a's value. Throws: whatever a threw; std::logic_error if a is suspended while
/// nothing is in flight (it could never finish).
/// Note: a is taken by value (moved in), so a temporary operation is safe; what it refers to
/// (buffers, sockets) must outlive the call.
template <class A>
requires detail::awaitable<A> detail::await_result_t<A> sync_wait(io_context& ctx, A a) {
  if constexpr (!detail::is_task_v<A>) {
    return sync_wait(ctx, detail::as_task(std::move(a)));
  } else {
    auto h = a.handle();
    if (!h) throw std::logic_error("sync_wait: empty task");
    h.promise().continuation_ = std::noop_coroutine();
    h.resume();
    while (!h.done()) {
      // A turn that found nothing to wait for may still have resumed the task's last step
      // (from the ready or cross-thread queue): only a task left suspended is stuck.
      if (!ctx.run_once(true) && !h.done())
        throw std::logic_error("sync_wait: the task is suspended but nothing is in flight");
    }
    return h.promise().take();
  }
}

}  // namespace coring
