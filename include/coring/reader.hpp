// SPDX-License-Identifier: MIT
// Description: reader: buffered reading on a socket or a recv_stream (Python's
// makefile().readline(), Asio's async_read_until): read_exact, read_until, read_line.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

class socket;
class recv_stream;
class reader;

namespace detail {

struct reader_state;

/// What a reader operation asks for.
enum class read_kind : unsigned char { exact, until, line };

/// The non-template part of a reader operation (src/reader.cpp).
class reader_op_base {
 public:
  reader_op_base(reader_state* st, read_kind kind, std::size_t n, std::string_view delim,
                 char ch = 0) noexcept
      : st_(st), kind_(kind), n_(n), delim_(delim), ch_(ch) {}
  /// Only before it is awaited.
  reader_op_base(reader_op_base&& o) noexcept
      : st_(o.st_), kind_(o.kind_), n_(o.n_), delim_(o.delim_), ch_(o.ch_), deadline_(o.deadline_),
        stop_(std::move(o.stop_)) {}
  reader_op_base& operator=(reader_op_base&&) = delete;

  /// False: await_suspend looks at the buffer (await_ready is const for as_result).
  bool await_ready() const noexcept { return false; }
  /// Answers from the buffer, else runs the reader's receive loop until it answers or waits.
  /// Returns: false if answered (the caller goes on without suspending).
  bool await_suspend(std::coroutine_handle<> waiter) noexcept;

 protected:
  /// Throws the error (exception_, else error_ with a message that says what was read).
  [[noreturn]] void raise() const;
  /// The error as a code (an exception that is no std::system_error: not_enough_memory).
  std::error_code failure() const noexcept;
  void set_timeout(std::chrono::nanoseconds d) noexcept;

  friend struct reader_state;  // the receive loop (src/reader.cpp)
  reader_state* st_;
  read_kind kind_;
  std::size_t n_;           // exact: the count; until and line: the max
  std::string_view delim_;  // until: the caller's delimiter (empty: ch_)
  char ch_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::stop_token stop_;
  std::coroutine_handle<> waiter_{};
  std::size_t scanned_ = 0;     // bytes already searched for the delimiter
  const char* data_ = nullptr;  // the answer, in the reader's buffer
  std::size_t size_ = 0;
  bool has_value_ = true;     // line: false at EOF with nothing left
  std::size_t received_ = 0;  // exact: bytes there were at EOF
  std::error_code error_{};
  std::exception_ptr exception_{};
};

/// co_await r.read_exact(n), r.read_until(...), r.read_line(...): takes .with_timeout(d) and
/// .with_stop(tok), which bound the whole read (every receive it needs), and coring::as_result.
template <class T>
class [[nodiscard]] reader_op : public reader_op_base {
 public:
  using value_type = T;
  using reader_op_base::reader_op_base;

  /// Bounds the whole read by d from now; on expiry the co_await throws
  /// std::system_error(std::errc::timed_out). Bytes received so far stay buffered.
  template <class Rep, class Period>
  reader_op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    set_timeout(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    return std::move(*this);
  }
  /// Ends the read with std::system_error(std::errc::operation_canceled) when stop is requested
  /// on tok (from any thread). Bytes received so far stay buffered.
  reader_op with_stop(std::stop_token tok) && noexcept {
    stop_ = std::move(tok);
    return std::move(*this);
  }

  T await_resume() {
    if (exception_ || error_) raise();
    return value();
  }
  /// The non-throwing form of await_resume (used by coring::as_result).
  result<T> await_resume_result() noexcept {
    if (exception_ || error_) return failure();
    return value();
  }

 private:
  T value() const noexcept {
    if constexpr (std::is_same_v<T, std::span<const std::byte>>) {
      return {reinterpret_cast<const std::byte*>(data_), size_};
    } else if constexpr (std::is_same_v<T, std::string_view>) {
      return {data_, size_};
    } else {
      if (!has_value_) return std::nullopt;
      return std::string_view(data_, size_);
    }
  }
};

}  // namespace detail

/// Buffered reading from a connected stream socket, or from a recv_stream (the buffer-ring
/// path), into one buffer the reader owns, allocated once: at most max_line + 2 bytes per
/// reader, never more (a line longer than max_line is an error, not a bigger buffer).
/// ```
/// coring::reader in(sock, 4096);
/// while (auto line = co_await in.read_line()) co_await sock.send_all(*line);
/// ```
/// Results are views into the reader's buffer, valid until the next read on the reader or its
/// destruction. Every read takes `.with_timeout(d)` (the whole read, however many receives it
/// takes: a peer that sends one byte a second cannot hold it longer) and `.with_stop(tok)`;
/// a read that fails keeps what it received buffered for the next read. No allocation per read.
/// Over a recv_stream, each ring buffer is copied into the reader's buffer and given back at
/// once: an incomplete line holds nothing from the shared ring. (Only when a ring buffer holds
/// more than the reader's buffer can take is its rest kept until the next read.)
/// Note: the socket or stream must outlive the reader, and the reader every read awaited on
/// it; one read at a time. Destroy the reader only while no read is suspended (as any buffer
/// the kernel writes into; io_context teardown is the exception: it is safe then).
class reader {
 public:
  /// Reads with plain recv on s. max_line bounds every request (at least 1).
  /// Throws: std::bad_alloc.
  explicit reader(socket& s, std::size_t max_line = 64 * 1024);
  /// Reads through rx (each of its buffers is copied and given back at once).
  /// Throws: std::bad_alloc.
  explicit reader(recv_stream& rx, std::size_t max_line = 64 * 1024);
  reader(reader&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  reader& operator=(reader&&) = delete;
  reader(const reader&) = delete;
  ~reader();

  /// Exactly n bytes (n <= max_line()).
  /// Returns: a view of them (valid until the next read). Throws: std::system_error:
  /// errc::unexpected_eof ("read_exact: peer closed after K of N bytes"; the K bytes stay
  /// buffered), std::errc::invalid_argument if n > max_line(), or the receive's errno.
  [[nodiscard]] detail::reader_op<std::span<const std::byte>> read_exact(std::size_t n) noexcept {
    return {st_, detail::read_kind::exact, n, {}};
  }
  /// The bytes up to and including the first delimiter, at most max (default and cap: max_line())
  /// bytes in all. Returns: them; at EOF what was left without a delimiter (Python's readline),
  /// empty once nothing is left. Throws: std::system_error: errc::line_too_long (no delimiter
  /// within max bytes; nothing is consumed), or the receive's errno.
  /// Note: delimiter (not empty) must stay valid until the co_await completes.
  [[nodiscard]] detail::reader_op<std::string_view> read_until(
      std::string_view delimiter, std::size_t max = SIZE_MAX) noexcept {
    return {st_, detail::read_kind::until, max, delimiter};
  }
  /// As above, for a one-character delimiter (copied into the operation).
  [[nodiscard]] detail::reader_op<std::string_view> read_until(
      char delimiter, std::size_t max = SIZE_MAX) noexcept {
    return {st_, detail::read_kind::until, max, {}, delimiter};
  }
  /// One line: the text before "\n" or "\r\n" (the ending is consumed, not returned), at most
  /// max (default and cap: max_line()) bytes without the ending.
  /// Returns: the line; at EOF the last line without an ending, then std::nullopt. Throws:
  /// std::system_error: errc::line_too_long (nothing is consumed: read_exact or close), or the
  /// receive's errno.
  [[nodiscard]] detail::reader_op<std::optional<std::string_view>> read_line(
      std::size_t max = SIZE_MAX) noexcept {
    return {st_, detail::read_kind::line, max, {}, '\n'};
  }
  /// The bytes received and not yet returned (e.g. after errc::line_too_long).
  std::string_view buffered() const noexcept;
  /// The longest request this reader serves.
  std::size_t max_line() const noexcept;

 private:
  detail::reader_state* st_;
};

}  // namespace coring
