// SPDX-License-Identifier: MIT
// Description: when_all / when_any / with_timeout: run awaitables concurrently; none outlives
// the call.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>
#include <coring/timer.hpp>

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <stop_token>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace coring {

/// Stands in for a void result (a task<void>, a void operation) in when_all's tuple and
/// when_any's variant.
struct unit {
  friend constexpr bool operator==(unit, unit) noexcept { return true; }
};

namespace detail {

template <class T>
using non_void_t = std::conditional_t<std::is_void_v<T>, unit, T>;

/// The value of the awaitable that factory F returns.
template <class F>
using factory_value_t = await_result_t<std::invoke_result_t<F&, std::stop_token>>;

/// The value when_any keeps of a child given as X (a factory or a stoppable awaitable).
template <class X>
using stop_child_value_t = non_void_t<await_result_t<bound_t<X>>>;

/// An argument of when_any: a factory or a stoppable awaitable, that when_any can keep (an
/// operation must be moved in).
template <class F>
concept when_any_arg = stop_child<std::decay_t<F>> && std::constructible_from<std::decay_t<F>, F>;

/// Counts the unfinished children of one join (cppcoro's when_all_counter, single-threaded).
///
/// TRICKY: it starts at children + 1. The extra count belongs to the starter and is given up
/// only after every child was started, so a child that finishes while its siblings are still
/// being started (synchronously, or because a sibling woke it) can never resume the waiter
/// from inside the starting loop. If all children finished during the start, the starter's own
/// decrement reaches 0 and the waiter continues inline (await_suspend returns false): a loop of
/// synchronously completing joins does not grow the stack (docs/design.md, "g++ 12").
class join_counter {
 public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  explicit join_counter(std::size_t children, std::stop_source* stop = nullptr) noexcept
      : pending_(children + 1), stop_(stop) {}
  join_counter(const join_counter&) = delete;
  join_counter& operator=(const join_counter&) = delete;

  /// Called by a child at its final suspend. Returns: the coroutine to transfer to (the waiter
  /// once the last child finished, else noop).
  std::coroutine_handle<> child_done(std::size_t index, const std::exception_ptr& error) noexcept {
    if (first_ == none) {
      first_ = index;
      // TRICKY: request stop before giving up this child's count: a loser that its stop
      // callback ends synchronously then cannot bring pending_ to 0 under our feet.
      if (stop_ != nullptr) stop_->request_stop();
    }
    if (error && !first_error_) first_error_ = error;
    if (--pending_ == 0) return waiter_;
    return std::noop_coroutine();
  }
  /// Called by the starter after it started every child. Returns: true if the waiter must
  /// suspend (some child is still running).
  bool started_all() noexcept { return --pending_ != 0; }

  void set_waiter(std::coroutine_handle<> h) noexcept { waiter_ = h; }
  /// Index of the first child that finished (value or exception), or none.
  std::size_t first() const noexcept { return first_; }
  /// The exception of the first child that failed (in time, not in argument order).
  const std::exception_ptr& first_error() const noexcept { return first_error_; }

 private:
  std::size_t pending_;
  std::stop_source* stop_;
  std::coroutine_handle<> waiter_{};
  std::size_t first_ = none;
  std::exception_ptr first_error_{};
};

/// The coroutine that runs one child of a join: it awaits the child's awaitable, keeps its result
/// or exception, and reports to the join_counter at its final suspend, where it stays until
/// the join destroys it (the join owns it, so a child never outlives the join).
template <class R>
class [[nodiscard]] join_child {
 public:
  struct promise_type {
    join_counter* counter_ = nullptr;
    std::size_t index_ = 0;
    std::optional<R> value_{};
    std::exception_ptr error_{};

    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
        promise_type& p = h.promise();
        return p.counter_->child_done(p.index_, p.error_);
      }
      void await_resume() const noexcept {}
    };

    join_child get_return_object() noexcept {
      return join_child{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    template <class U>
    void return_value(U&& v) {
      value_.emplace(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { error_ = std::current_exception(); }
  };
  using handle_type = std::coroutine_handle<promise_type>;

  explicit join_child(handle_type h) noexcept : h_(h) {}
  join_child(join_child&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  join_child& operator=(join_child&&) = delete;
  join_child(const join_child&) = delete;
  // LIFETIME: only ever destroyed unstarted or at its final suspend (the join waits for it).
  ~join_child() {
    if (h_) h_.destroy();
  }

  /// Attaches the child to its join and runs it until its first suspension.
  void start(join_counter& c, std::size_t index) noexcept {
    h_.promise().counter_ = &c;
    h_.promise().index_ = index;
    h_.resume();
  }
  /// Rethrows the child's exception, or moves its value out.
  R take() {
    promise_type& p = h_.promise();
    if (p.error_) std::rethrow_exception(p.error_);
    return std::move(*p.value_);
  }

 private:
  handle_type h_;
};

/// A join's child: a lives in the child's frame (one allocation) until the join ends.
template <class A>
CORING_NO_SANITIZE_FUNCTION join_child<non_void_t<await_result_t<A>>> await_child(A a) {
  using T = await_result_t<A>;
  if constexpr (std::is_void_v<T>) {
    co_await std::move(a);
    co_return unit{};
  } else {
    // Named: no non-trivial temporary around the co_await (docs/design.md, "g++ 12").
    T v = co_await std::move(a);
    co_return std::move(v);
  }
}

template <class... R>
void start_children(std::tuple<join_child<R>...>& kids, join_counter& c) noexcept {
  std::size_t i = 0;
  std::apply([&](auto&... k) { (k.start(c, i++), ...); }, kids);
}
template <class R>
void start_children(std::vector<join_child<R>>& kids, join_counter& c) noexcept {
  for (std::size_t i = 0; i < kids.size(); ++i)
    kids[i].start(c, i);
}

/// co_await join_all<Kids>{&counter, &kids}: starts every child, resumes when all finished.
template <class Kids>
struct join_all {
  join_counter* counter;
  Kids* kids;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> waiter) const noexcept {
    counter->set_waiter(waiter);
    start_children(*kids, *counter);
    return counter->started_all();
  }
  void await_resume() const noexcept {}
};

template <class... A>
CORING_NO_SANITIZE_FUNCTION task<std::tuple<non_void_t<await_result_t<A>>...>> when_all_impl(
    A... as) {
  using result_type = std::tuple<non_void_t<await_result_t<A>>...>;
  join_counter counter(sizeof...(A));
  std::tuple<join_child<non_void_t<await_result_t<A>>>...> kids{await_child(std::move(as))...};
  co_await join_all<decltype(kids)>{&counter, &kids};
  if (counter.first_error()) std::rethrow_exception(counter.first_error());
  result_type out = std::apply([](auto&... k) { return result_type{k.take()...}; }, kids);
  co_return std::move(out);
}

template <class T>
using vector_result_t = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;

template <class A>
CORING_NO_SANITIZE_FUNCTION task<vector_result_t<await_result_t<A>>> when_all_vector(
    std::vector<A> as) {
  using T = await_result_t<A>;
  join_counter counter(as.size());
  std::vector<join_child<non_void_t<T>>> kids;
  kids.reserve(as.size());
  for (A& a : as)
    kids.push_back(await_child(std::move(a)));
  co_await join_all<decltype(kids)>{&counter, &kids};
  if (counter.first_error()) std::rethrow_exception(counter.first_error());
  if constexpr (!std::is_void_v<T>) {
    std::vector<T> out;
    out.reserve(kids.size());
    for (auto& k : kids)
      out.push_back(k.take());
    co_return std::move(out);
  }
}

/// Moves the result of child `first` into alternative `first` of V, or rethrows its exception.
template <class V, class Kids, std::size_t... I>
V take_first(Kids& kids, std::size_t first, std::index_sequence<I...>) {
  std::optional<V> out;
  auto take_if = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
    if (J == first) out.emplace(std::in_place_index<J>, std::get<J>(kids).take());
  };
  (take_if(std::integral_constant<std::size_t, I>{}), ...);
  return std::move(*out);
}

/// Forwards a parent's stop request to the stop_source of a when_any.
struct forward_stop {
  std::stop_source* to;
  void operator()() const noexcept { to->request_stop(); }
};

template <class... F>
CORING_NO_SANITIZE_FUNCTION task<std::variant<stop_child_value_t<F>...>> when_any_impl(
    std::stop_token parent, F... fs) {
  using result_type = std::variant<stop_child_value_t<F>...>;
  std::stop_source stop;
  // LIFETIME: declared after `stop`, so it is unregistered before `stop` goes away.
  std::optional<std::stop_callback<forward_stop>> link;
  if (parent.stop_possible()) link.emplace(parent, forward_stop{&stop});
  join_counter counter(sizeof...(F), &stop);
  // The factories live in this frame until every child finished: capturing lambdas are safe.
  // An operation is moved out of fs into its child, bound to the token.
  std::tuple<join_child<stop_child_value_t<F>>...> kids{
      await_child(bind_stop(fs, stop.get_token()))...};
  co_await join_all<decltype(kids)>{&counter, &kids};
  result_type out = take_first<result_type>(kids, counter.first(), std::index_sequence_for<F...>{});
  co_return std::move(out);
}

/// The timer side of with_timeout: sleeps for d unless stop is requested first.
struct timeout_timer {
  io_context* ctx;
  std::chrono::nanoseconds d;
  auto operator()(std::stop_token tok) const {
    return sleep_for(*ctx, d).with_stop(std::move(tok));
  }
};

template <class F>
CORING_NO_SANITIZE_FUNCTION task<factory_value_t<F>> cancel_after_impl(io_context& ctx,
                                                                       std::chrono::nanoseconds d,
                                                                       F f,
                                                                       std::stop_token parent) {
  using T = factory_value_t<F>;
  task<std::variant<non_void_t<T>, unit>> race =
      when_any_impl(std::move(parent), std::move(f), timeout_timer{&ctx, d});
  std::variant<non_void_t<T>, unit> r = co_await std::move(race);
  if (r.index() == 1)
    throw std::system_error(std::make_error_code(std::errc::timed_out), "with_timeout");
  if constexpr (!std::is_void_v<T>) co_return std::get<0>(std::move(r));
}

}  // namespace detail

/// Runs the awaitables (tasks, operations such as `s.recv(buf)`, anything co_await takes)
/// concurrently: each is started in turn (in argument order) and runs until its first
/// suspension; then they interleave on the ring.
/// Returns: a tuple of their values in argument order; a void one contributes coring::unit.
/// Throws: the exception of the first child that failed (first in time), rethrown only after
/// every child finished: no child outlives the call. Other children are not cancelled (use
/// task_group or when_any for that).
/// Note: the awaitables are taken by value (moved into the children's frames), so temporaries
/// such as `when_all(s.send_all(out), s.recv(in))` are safe; what they refer to must outlive
/// the co_await. Allocates one small frame per child (holding the awaitable) besides the frames
/// of the tasks among them.
template <class... A>
requires(detail::awaitable<A>&&...)
    [[nodiscard]] task<std::tuple<detail::non_void_t<detail::await_result_t<A>>...>> when_all(
        A... as) {
  return detail::when_all_impl(std::move(as)...);
}

/// Runs the awaitables of a vector concurrently, as the variadic when_all.
/// Returns: their values in vector order (std::vector<T>); if they are void, nothing
/// (task<void>).
/// Throws: the first failure in time, after every child finished.
/// Note: allocates the vector of child frames, one frame per child, and the result vector.
template <class A>
requires detail::awaitable<A>
[[nodiscard]] task<detail::vector_result_t<detail::await_result_t<A>>> when_all(std::vector<A> as) {
  return detail::when_all_vector(std::move(as));
}

/// Races its children, each given either as a factory `F(std::stop_token) -> awaitable`
/// (a lambda returning a task or an operation) or as an operation that has `.with_stop(tok)`
/// (`s.recv(buf)`, `sleep_for(ctx, d)`), which when_any binds to its token itself. Every child
/// gets the token of a stop_source owned by when_any and is started in turn. The first child
/// to finish (with a value or an exception) decides the outcome; when_any then requests stop
/// and waits until every other child finished before it returns.
/// Returns: std::variant of the children's values (void -> coring::unit), holding the first
/// finisher's value at the finisher's index (variant::index(); duplicate types are fine).
/// Throws: the first finisher's exception, after every child finished. Exceptions of the other
/// children (operation_canceled or any other) are swallowed, and so is a loser's value that
/// raced the cancel (a recv's bytes are then lost: keep them in the child if they matter).
/// Note: cancellation reaches a child only through its token: a factory's ops must use
/// `.with_stop(tok)` (or it must poll tok). A child that ignores the token makes when_any wait
/// until it finishes on its own; that is why a task is not accepted as a child, only a factory
/// that makes it. If a child finishes while the others are still being started, the rest start
/// with stop already requested. The factories are kept in when_any's frame until it returns, so
/// capturing lambdas are fine; name them before the co_await (docs/design.md, "g++ 12").
/// Operations are taken by value (moved into the frame), so temporaries are safe.
/// Stop requests may come from any thread: an operation forwards one from another thread to its
/// ring's thread.
template <class... F>
requires(sizeof...(F) > 0 && (detail::when_any_arg<F> && ...))
    [[nodiscard]] task<std::variant<detail::stop_child_value_t<std::decay_t<F>>...>> when_any(
        F&&... fs) {
  return detail::when_any_impl(std::stop_token{}, std::forward<F>(fs)...);
}

/// As when_any(fs...), and a stop request on parent is forwarded to the children (for nesting a
/// race inside a task_group or another race). Same thread only.
template <class... F>
requires(sizeof...(F) > 0 && (detail::when_any_arg<F> && ...))
    [[nodiscard]] task<std::variant<detail::stop_child_value_t<std::decay_t<F>>...>> when_any(
        std::stop_token parent, F&&... fs) {
  return detail::when_any_impl(std::move(parent), std::forward<F>(fs)...);
}

/// Bounds the whole task made by `f(std::stop_token) -> task<T>` (or another awaitable) by d
/// (Asio's cancel_after; one operation alone takes the cheaper `.with_timeout(d)`, a kernel
/// linked timeout):
/// it races f's task against sleep_for(ctx, d) with when_any. On expiry stop is requested on
/// f's token and, once f's task has ended, the call throws.
/// Returns: the task's value if it finished first. Throws: std::system_error(std::errc::timed_out)
/// on expiry (even if the task, cancelled late, still produced a value); the task's own
/// exception if it failed first; operation_canceled if parent was stopped.
/// Note: as when_any, the task must pass its token to its ops (`.with_stop(tok)`); parent, if
/// given, forwards stop requests (same thread).
template <class Rep, class Period, class F>
requires detail::awaitable_factory<std::decay_t<F>>
[[nodiscard]] task<detail::factory_value_t<std::decay_t<F>>> cancel_after(
    io_context& ctx, std::chrono::duration<Rep, Period> d, F&& f, std::stop_token parent = {}) {
  return detail::cancel_after_impl<std::decay_t<F>>(
      ctx, std::chrono::duration_cast<std::chrono::nanoseconds>(d), std::forward<F>(f),
      std::move(parent));
}

}  // namespace coring
