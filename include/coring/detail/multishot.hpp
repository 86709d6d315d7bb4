// SPDX-License-Identifier: MIT
// Description: multishot_op, the awaitable of one wait on a multishot stream
// (acceptor::accept, recv_stream::next), with a per-wait deadline and stop token. The state
// machine it waits on is private (src/detail/multishot.hpp).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/op.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <coroutine>
#include <stop_token>
#include <utility>

namespace coring::detail {

class multishot_core;

/// One co_await on a multishot stream. It lives in the awaiting frame, and the kernel never
/// points into it: the reception and the timer belong to the stream's heap state. So a wait that
/// a deadline or a stop request ends can resume at once, and the stream stays armed for the
/// next wait.
struct multishot_wait {
  using clock = std::chrono::steady_clock;
  /// The suspended coroutine while it waits on the stream (null otherwise).
  std::coroutine_handle<> handle{};
  /// When the wait ends with timed_out (max: never).
  clock::time_point deadline = clock::time_point::max();
  /// -ECANCELED (stop request) or -ETIMEDOUT (deadline) once the wait ended without an item.
  int res = 0;
};

/// The non-template part of multishot_op (src/multishot.cpp).
class multishot_op_base {
 public:
  explicit multishot_op_base(multishot_core* st) noexcept : st_(st) {}
  /// Only before it is awaited.
  multishot_op_base(multishot_op_base&& o) noexcept : st_(o.st_), wait_(o.wait_) {}
  multishot_op_base& operator=(multishot_op_base&&) = delete;
  /// A frame destroyed while it waits (io_context::shutdown) leaves the stream's state.
  ~multishot_op_base() {
    if (wait_.handle) forget();
  }

  /// True if an item, an error or the end is there already (checks the socket's sticky cancel).
  bool await_ready() const noexcept;
  /// Arms the reception if needed and waits. Returns: false if the deadline already passed.
  /// Throws: std::system_error (no SQE); then nothing is registered.
  bool await_suspend(std::coroutine_handle<> h);

  /// The context the stream runs on (stop_op).
  io_context& context() const noexcept;
  /// Ends the wait with operation_canceled (stop_op; on the ring's thread). The stream, and an
  /// item arriving meanwhile, stay for the next wait.
  void request_cancel() noexcept;
  /// Completes without waiting, with res (a negative errno) (stop_op: already stopped).
  void complete_inline(int res) noexcept { wait_.res = res; }

 protected:
  multishot_core* st_;
  multishot_wait wait_;

 private:
  void forget() noexcept;
};

/// CRTP base of a wait on a multishot stream. Op supplies
///   static constexpr const char* name;           (names the op in errors)
///   result<T> await_resume_result() noexcept;     (takes the item, or the error)
/// and gets with_timeout / with_stop with the guarantees of io_op's: a result that arrived is
/// delivered, never lost (if the wait ended first, it stays queued for the next one).
template <class Op, class T>
class multishot_op : public multishot_op_base {
 public:
  using value_type = T;
  using multishot_op_base::multishot_op_base;

  /// Bounds this wait by d (from now); on expiry the co_await throws
  /// std::system_error(std::errc::timed_out) (as_result: returns it). The stream goes on.
  template <class Rep, class Period>
  Op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    using clock = multishot_wait::clock;
    auto ns = std::chrono::duration_cast<clock::duration>(d);
    if (ns.count() < 0) ns = clock::duration(0);
    const auto now = clock::now();
    wait_.deadline = ns >= clock::time_point::max() - now ? clock::time_point::max() : now + ns;
    return static_cast<Op&&>(*this);
  }
  /// Ends this wait with std::system_error(std::errc::operation_canceled) when stop is
  /// requested on tok (from any thread: another thread's request is forwarded to the ring's
  /// thread). The stream goes on.
  stop_op<Op> with_stop(std::stop_token tok) && noexcept {
    return stop_op<Op>(static_cast<Op&&>(*this), std::move(tok));
  }

  T await_resume() {
    result<T> r = static_cast<Op*>(this)->await_resume_result();
    if (!r) throw_error(r.error(), Op::name);
    return std::move(*r);
  }
};

}  // namespace coring::detail
