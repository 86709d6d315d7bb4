// SPDX-License-Identifier: MIT
// Description: coring's error model: errc + category, result<T>, and throw helpers.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <cassert>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

/// Library-defined error conditions (kernel failures use std::system_category()).
enum class errc {
  invalid_address = 1,   ///< address text could not be parsed
  address_too_long,      ///< AF_UNIX path longer than sun_path allows
  wrong_family,          ///< address family does not match the socket or operation
  not_supported,         ///< the running kernel lacks a feature coring needs for this call
  io_uring_unavailable,  ///< io_uring could not be set up (see the message for cause and fix)
  context_stopping,      ///< the io_context is being destroyed; no new operations are accepted
  message_truncated,     ///< a datagram or control message did not fit the buffer
  line_too_long,         ///< reader: no delimiter within the maximum (condition: message_size)
  unexpected_eof,        ///< reader: the peer closed before the bytes asked for arrived
  tls_failed,            ///< TLS: protocol error, bad record, version or cipher refused, ...
  tls_verify_failed,     ///< TLS: the peer's certificate was rejected (chain, host, dates)
  tls_truncated,         ///< TLS: the peer closed the TCP connection without close_notify
};

/// The category of coring::errc values; name() is "coring".
const std::error_category& error_category() noexcept;

/// Makes std::error_code from coring::errc (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Throws std::system_error(errno_value, system_category, what). Never returns.
[[noreturn]] void throw_errno(int errno_value, const char* what);
/// Throws std::system_error(ec, what). Never returns.
[[noreturn]] void throw_error(std::error_code ec, const char* what);
/// Throws std::system_error(ec, what). Never returns.
[[noreturn]] void throw_error(std::error_code ec, const std::string& what);

/// Converts a negative kernel result (-errno) to std::error_code.
inline std::error_code errno_code(int errno_value) noexcept {
  return {errno_value, std::system_category()};
}

/// A minimal subset of std::expected<T, std::error_code>: has_value(), operator bool, *, ->,
/// value() (throws std::system_error), error(), value_or(). Kept small so that it can become
/// `std::expected<T, std::error_code>` under C++23 without breaking callers.
template <class T>
class [[nodiscard]] result {
 public:
  result(T v) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit like expected
      : ok_(true) {
    new (&value_) T(std::move(v));
  }
  result(std::error_code ec) noexcept : ok_(false) { new (&error_) std::error_code(ec); }  // NOLINT
  result(const result& o) : ok_(o.ok_) {
    if (ok_)
      new (&value_) T(o.value_);
    else
      new (&error_) std::error_code(o.error_);
  }
  result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(o.ok_) {
    if (ok_)
      new (&value_) T(std::move(o.value_));
    else
      new (&error_) std::error_code(o.error_);
  }
  result& operator=(result o) noexcept(std::is_nothrow_move_constructible_v<T>) {
    this->~result();
    new (this) result(std::move(o));
    return *this;
  }
  ~result() {
    if (ok_) value_.~T();
  }

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  T& operator*() & noexcept {
    assert(ok_);
    return value_;
  }
  const T& operator*() const& noexcept {
    assert(ok_);
    return value_;
  }
  T&& operator*() && noexcept {
    assert(ok_);
    return std::move(value_);
  }
  T* operator->() noexcept {
    assert(ok_);
    return &value_;
  }
  const T* operator->() const noexcept {
    assert(ok_);
    return &value_;
  }
  /// Returns the value. Throws: std::system_error(error()) if there is none.
  T& value() & {
    check();
    return value_;
  }
  const T& value() const& {
    check();
    return value_;
  }
  T&& value() && {
    check();
    return std::move(value_);
  }
  /// The error; only meaningful when !has_value().
  std::error_code error() const noexcept { return ok_ ? std::error_code{} : error_; }
  template <class U>
  T value_or(U&& alt) const& {
    return ok_ ? value_ : static_cast<T>(std::forward<U>(alt));
  }
  template <class U>
  T value_or(U&& alt) && {
    return ok_ ? std::move(value_) : static_cast<T>(std::forward<U>(alt));
  }

 private:
  void check() const {
    if (!ok_) throw_error(error_, "coring::result::value");
  }
  union {
    T value_;
    std::error_code error_;
  };
  bool ok_;
};

/// result<void>: success or an error code.
template <>
class [[nodiscard]] result<void> {
 public:
  result() noexcept = default;
  result(std::error_code ec) noexcept : error_(ec) {}  // NOLINT: implicit like expected
  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return !error_; }
  void operator*() const noexcept {}
  /// Throws: std::system_error(error()) if this holds an error.
  void value() const {
    if (error_) throw_error(error_, "coring::result::value");
  }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_{};
};

}  // namespace coring

template <>
struct std::is_error_code_enum<coring::errc> : std::true_type {};
