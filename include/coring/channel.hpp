// SPDX-License-Identifier: MIT
// Description: channel<T>, a bounded FIFO queue between coroutines on one io_context (send waits
// when full, receive waits when empty, close ends both sides).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

/// A bounded queue of T between coroutines: `co_await ch.send(v)` waits while it holds
/// capacity items, `co_await ch.receive()` waits while it is empty and returns std::optional<T>
/// (std::nullopt once closed and drained). Waiters are served FIFO on each side and resume from
/// a later loop turn. An item handed to a waiting receiver is its own: a stop or deadline that
/// comes after it loses, and the receive returns the item (no item is ever lost).
/// close() wakes everyone: waiting receivers get std::nullopt, waiting senders (and later
/// sends) fail with std::errc::broken_pipe, and their items are dropped; what was queued
/// can still be received. Storage is allocated once, in the constructor.
/// Not thread-safe: use it on its io_context's thread only (a stop request may come from any
/// thread). Note: destroying it wakes its waiters on both sides with operation_canceled.
template <class T>
class channel {
  static_assert(std::is_nothrow_move_constructible_v<T>, "channel<T> needs a noexcept move");

 public:
  using value_type = T;

  /// One `co_await ch.send(v)`; holds v until it is queued or handed over. Takes
  /// .with_timeout(d) and .with_stop(tok), works with coring::as_result.
  class [[nodiscard]] send_op : public detail::sync_op<send_op, void> {
   public:
    static constexpr const char* name = "channel send";
    send_op(channel& ch, T v) noexcept
        : send_op::sync_op(*ch.ctx_), ch_(&ch), value_(std::move(v)) {}
    send_op(send_op&& o) noexcept
        : send_op::sync_op(std::move(o)), ch_(o.ch_), value_(std::move(o.value_)) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      if (ch_->closed_) {
        this->complete_inline(-EPIPE);
        return false;
      }
      return !ch_->try_send(std::move(value_)) && this->suspend_on(ch_->senders_, h);
    }
    result<void> await_resume_result() noexcept {
      if (this->res() != 0) return this->error();
      return {};
    }

   private:
    friend class channel;
    channel* ch_;
    T value_;
  };

  /// One `co_await ch.receive()`. Takes .with_timeout(d) and .with_stop(tok), works with
  /// coring::as_result.
  class [[nodiscard]] receive_op : public detail::sync_op<receive_op, std::optional<T>> {
   public:
    static constexpr const char* name = "channel receive";
    explicit receive_op(channel& ch) noexcept : receive_op::sync_op(*ch.ctx_), ch_(&ch) {}
    receive_op(receive_op&& o) noexcept : receive_op::sync_op(std::move(o)), ch_(o.ch_) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      item_ = ch_->try_receive();
      return !item_.has_value() && !ch_->closed_ && this->suspend_on(ch_->receivers_, h);
    }
    result<std::optional<T>> await_resume_result() noexcept {
      if (this->res() != 0) return this->error();
      return std::move(item_);
    }

   private:
    friend class channel;
    channel* ch_;
    std::optional<T> item_;
  };

  /// An open channel on ctx holding at most capacity items.
  /// Throws: std::invalid_argument if capacity is 0; std::bad_alloc.
  channel(io_context& ctx, std::size_t capacity) : ctx_(&ctx), capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("coring::channel: capacity must be >= 1");
    slots_ = std::make_unique<std::optional<T>[]>(capacity);
  }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Queues v, waiting (FIFO) while the channel is full.
  /// Throws (at co_await): std::system_error(broken_pipe) if closed; timed_out /
  /// operation_canceled. On any error v is dropped (destroyed with the operation).
  send_op send(T v) noexcept(std::is_nothrow_move_constructible_v<T>) {
    return send_op(*this, std::move(v));
  }
  /// Takes the oldest item, waiting while the channel is empty.
  /// Returns (at co_await): the item, or std::nullopt once closed and drained.
  /// Throws (at co_await): std::system_error(timed_out / operation_canceled).
  receive_op receive() noexcept { return receive_op(*this); }

  /// Queues v (or hands it to a waiting receiver) if there is room and the channel is open;
  /// v is moved from only then. Returns: whether it was queued.
  bool try_send(T&& v) noexcept {
    if (closed_) return false;
    if (!receivers_.empty()) {  // then the queue is empty: hand the item over
      auto* r = static_cast<receive_op*>(receivers_.pop_front());
      r->item_.emplace(std::move(v));
      r->wake(0);
      return true;
    }
    if (size_ == capacity_) return false;
    slots_[(head_ + size_) % capacity_].emplace(std::move(v));
    ++size_;
    return true;
  }
  /// As try_send(T&&), with a copy of v.
  bool try_send(const T& v) {
    if (closed_ || (receivers_.empty() && size_ == capacity_)) return false;
    T copy(v);
    return try_send(std::move(copy));
  }
  /// Takes the oldest item if there is one (a waiting sender's item then takes its place).
  /// Returns: the item, or std::nullopt if empty.
  std::optional<T> try_receive() noexcept {
    if (size_ == 0) return std::nullopt;
    std::optional<T> v(std::move(slots_[head_]));
    slots_[head_].reset();
    head_ = (head_ + 1) % capacity_;
    --size_;
    if (!senders_.empty()) {  // the queue was full: the first waiting sender's item goes in
      auto* s = static_cast<send_op*>(senders_.pop_front());
      slots_[(head_ + size_) % capacity_].emplace(std::move(s->value_));
      ++size_;
      s->wake(0);
    }
    return v;
  }
  /// Closes the channel (idempotent): waiting receivers get std::nullopt, waiting senders fail
  /// with broken_pipe; queued items can still be received.
  void close() noexcept {
    if (closed_) return;
    closed_ = true;
    receivers_.wake_all(0);  // nothing is queued while receivers wait: they get nullopt
    senders_.wake_all(-EPIPE);
  }
  /// True once close() was called.
  bool is_closed() const noexcept { return closed_; }
  /// Items queued now.
  std::size_t size() const noexcept { return size_; }
  /// The most items it queues.
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  io_context* ctx_;
  std::size_t capacity_;
  std::unique_ptr<std::optional<T>[]> slots_;
  std::size_t head_ = 0, size_ = 0;
  bool closed_ = false;
  detail::wait_list senders_, receivers_;
};

}  // namespace coring
