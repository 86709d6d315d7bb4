// SPDX-License-Identifier: MIT
// Description: sync_wait: run an io_context until one task finishes (tests, main()).
#pragma once

#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <coroutine>
#include <stdexcept>
#include <utility>

namespace coring {

/// Starts t and runs ctx's loop until t finishes (spawned tasks run meanwhile).
/// Returns: t's value. Throws: whatever t threw; std::logic_error if t is suspended while
/// nothing is in flight (it could never finish).
template <class T>
T sync_wait(io_context& ctx, task<T> t) {
  auto h = t.handle();
  if (!h) throw std::logic_error("sync_wait: empty task");
  h.promise().continuation_ = std::noop_coroutine();
  h.resume();
  while (!h.done()) {
    if (!ctx.run_once(true))
      throw std::logic_error("sync_wait: the task is suspended but nothing is in flight");
  }
  return h.promise().take();
}

}  // namespace coring
