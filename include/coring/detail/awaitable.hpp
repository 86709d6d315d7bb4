// SPDX-License-Identifier: MIT
// Description: the awaitable concept and await_result_t: what spawn, sync_wait, when_all,
// when_any and task_group accept (a task, an operation, anything co_await takes).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <concepts>
#include <coroutine>
#include <functional>
#include <stop_token>
#include <type_traits>
#include <utility>

// TRICKY: clang <= 14 with -fsanitize=function (part of -fsanitize=undefined) fails with "error in
// backend: Cannot represent a difference across sections" on coroutines that are templates or
// inline (comdat), llvm/llvm-project#49689. Every header coroutine opts out of that one check.
#ifndef CORING_NO_SANITIZE_FUNCTION
#if defined(__clang__)
#define CORING_NO_SANITIZE_FUNCTION __attribute__((no_sanitize("function")))
#else
#define CORING_NO_SANITIZE_FUNCTION
#endif
#endif

namespace coring::detail {

/// Has await_ready, await_suspend(std::coroutine_handle<>) and await_resume.
template <class T>
concept awaiter = requires(T& a, std::coroutine_handle<> h) {
  { a.await_ready() } -> std::convertible_to<bool>;
  a.await_suspend(h);
  a.await_resume();
};

/// What `co_await a` awaits on, for an rvalue a: its operator co_await's result, or a itself.
template <class A>
decltype(auto) get_awaiter(A&& a) noexcept {
  if constexpr (requires { static_cast<A&&>(a).operator co_await(); })
    return static_cast<A&&>(a).operator co_await();
  else if constexpr (requires { operator co_await(static_cast<A&&>(a)); })
    return operator co_await(static_cast<A&&>(a));
  else
    return static_cast<A&&>(a);
}

/// The type of get_awaiter(a) for an rvalue A, without its reference.
template <class A>
using awaiter_t = std::remove_reference_t<decltype(get_awaiter(std::declval<A>()))>;

/// An object that can be moved into a coroutine frame and awaited there as an rvalue: a
/// task<T>, an operation (`s.recv(buf)`, `sleep_for(ctx, d)`), anything with operator co_await
/// or await_ready/await_suspend/await_resume.
template <class A>
concept awaitable = std::is_object_v<A> && std::move_constructible<A> && requires {
  typename awaiter_t<A>;
} && awaiter<awaiter_t<A>>;

/// The value of `co_await std::move(a)` for an awaitable A, without reference or const (a
/// reference result is copied); void if it has none.
template <class A>
requires awaitable<A>
using await_result_t = std::remove_cvref_t<decltype(std::declval<awaiter_t<A>&>().await_resume())>;

/// A callable that makes an awaitable from a std::stop_token: `F(std::stop_token) -> A`.
template <class F>
concept awaitable_factory =
    std::invocable<F&, std::stop_token> && awaitable<std::invoke_result_t<F&, std::stop_token>>;

/// An awaitable that can be bound to a stop token: `std::move(a).with_stop(tok)` (an operation).
template <class A>
concept stoppable = awaitable<A> && requires(A&& a, std::stop_token tok) {
  { static_cast<A&&>(a).with_stop(std::move(tok)) } -> awaitable;
};

/// What when_any and task_group run with a stop token: an awaitable_factory or a stoppable.
template <class X>
concept stop_child = awaitable_factory<X> || stoppable<X>;

/// Makes x's awaitable for tok: f(tok) for a factory, `std::move(op).with_stop(tok)` for a
/// stoppable (called once: it moves the operation out of x).
template <class X>
requires stop_child<X>
auto bind_stop(X& x, std::stop_token tok) {
  if constexpr (awaitable_factory<X>)
    return std::invoke(x, std::move(tok));
  else
    return std::move(x).with_stop(std::move(tok));
}

/// The awaitable bind_stop makes for an X.
template <class X>
using bound_t = decltype(bind_stop(std::declval<X&>(), std::stop_token{}));

}  // namespace coring::detail
