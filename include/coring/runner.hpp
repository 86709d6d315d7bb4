// SPDX-License-Identifier: MIT
// Description: runner: thread per core, one io_context per thread, one stop, one join.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

namespace detail {
/// Runs the awaitable f(ctx, index[, stop]) returns, its value discarded.
template <class F>
task<> run_worker_function(F& f, io_context& ctx, unsigned index, std::stop_token stop) {
  if constexpr (std::is_invocable_v<F&, io_context&, unsigned, std::stop_token>) {
    auto a = f(ctx, index, std::move(stop));
    (void)co_await std::move(a);
  } else {
    auto a = f(ctx, index);
    (void)co_await std::move(a);
  }
}
}  // namespace detail

/// Thread per core: N threads, each creating, running and destroying its own io_context (with
/// the same io_context_options), each running one function. Stopped from any thread or by a
/// signal (request_stop(), stop_on_signals()); join() reports the first worker failure.
///   coring::runner r(4);
///   r.stop_on_signals({SIGINT, SIGTERM});
///   r.start([](io_context& ctx, unsigned i, std::stop_token stop) -> task<> { ... });
///   r.join();  // rethrows the first exception a worker function threw
/// Note: not copyable or movable (its threads refer to it); start, join and the destructor are
/// for the thread that owns it; request_stop(), stop_requested() and stop_token() for any.
class runner {
 public:
  /// threads: how many (0: std::thread::hardware_concurrency(), at least 1); options: each
  /// thread's io_context.
  explicit runner(unsigned threads = 0, io_context_options options = {});
  /// Requests stop and joins (a worker failure is then dropped: call join() to see it).
  ~runner();
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;

  /// Starts every thread: each creates its io_context, and once all have, each runs
  /// `co_await f(ctx, index)` or `co_await f(ctx, index, stop_token)` (index 0..size()-1) on
  /// its context until it finishes; the context is then shut down and destroyed on its thread.
  /// A work guard holds each loop while f runs, so f may wait for requests from other threads.
  /// f is shared by the threads (called once on each): it must be safe to call concurrently.
  /// Throws: the first failure to create a thread or a context (std::system_error keeps its
  /// code, e.g. errc::io_uring_unavailable); the threads already started are stopped and
  /// joined first, and none of them has run f. std::logic_error if called twice.
  template <class F>
  void start(F f) {
    start_impl([f = std::move(f)](io_context& ctx, unsigned index,
                                  std::stop_token stop) mutable -> task<> {
      return detail::run_worker_function(f, ctx, index, std::move(stop));
    });
  }

  /// Thread-safe, idempotent: requests stop on stop_token() (which every worker function
  /// receives) and wakes every ring, so operations bound with `.with_stop(tok)` end.
  /// Note: a worker function that ignores the token keeps its thread, and join(), waiting.
  void request_stop() noexcept;
  /// True once stop was requested.
  bool stop_requested() const noexcept { return stop_.stop_requested(); }
  /// The token request_stop() (and a worker failure) requests stop on.
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }

  /// Makes each of signals (e.g. {SIGINT, SIGTERM}) call request_stop(): a handler installed
  /// with sigaction wakes a small helper thread, which requests stop. The previous handlers
  /// come back in join(). Call it before start(); a signal blocked in a thread (a
  /// coring::signal_set there) is not seen through that thread.
  /// Throws: std::logic_error if another runner already handles signals;
  /// std::system_error (sigaction, eventfd, thread creation).
  void stop_on_signals(std::initializer_list<int> signals);

  /// Waits for every thread to end (after its function returned), then restores the signal
  /// handlers. Throws: the first exception a worker function threw (rethrown as it was: its
  /// type, what() and code; a failing worker also requests stop, so the others end too).
  void join();

  /// How many threads.
  unsigned size() const noexcept { return threads_; }
  /// Worker index's io_context, for execute() or resume_on from other threads.
  /// Note: valid while that worker's function runs (from inside the worker functions, when
  /// they run until stop is requested); it is destroyed when the function returns.
  io_context& context(unsigned index) const noexcept { return *slots_[index].ctx; }

 private:
  using function = std::function<task<>(io_context&, unsigned, std::stop_token)>;
  struct slot {
    std::thread thread;
    io_context* ctx = nullptr;  // set (under mu_) while the context exists
    std::exception_ptr error;   // why this worker could not start, or what it threw
    detail::remote_node wake;   // posted once when stop is requested: a turn of the loop
  };
  void start_impl(function f);
  void worker_main(unsigned index) noexcept;
  void stop_signals() noexcept;
  void join_threads() noexcept;

  unsigned threads_;
  io_context_options options_;
  function f_;
  std::unique_ptr<slot[]> slots_;
  std::stop_source stop_;
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned reported_ = 0;  // threads that created their context, or failed to
  bool decided_ = false;   // start() decided: go_ (run the functions) or not
  bool go_ = false;
  bool started_ = false;
  std::exception_ptr first_error_;  // first worker function failure (join rethrows it)
  // stop_on_signals(): the helper thread and the handlers it replaced.
  struct signal_state;
  std::unique_ptr<signal_state> signals_;
};

}  // namespace coring
