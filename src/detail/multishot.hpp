// SPDX-License-Identifier: MIT
// Description: private: multishot_core, the one state machine behind acceptor and recv_stream
// (a long-lived reception, its bounded queue, one waiter, backpressure, orphaning, teardown).
#pragma once

#include <coring/detail/completion.hpp>
#include <coring/detail/multishot.hpp>
#include <coring/detail/ring_access.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>

namespace coring::detail {

/// What one CQE of a reception produced: an accepted descriptor (value), or a received piece
/// (value: its ring buffer id, or -1 for recv_stream's private fallback buffer; len: bytes;
/// offset: where in the ring buffer they start, for an incremental ring).
struct multishot_item {
  std::int32_t value = -1;
  std::uint32_t len = 0;
  std::uint32_t offset = 0;
};

/// How the derived type reads a CQE (multishot_core::convert).
enum class cqe_kind : std::uint8_t {
  item,   ///< it produced an item
  none,   ///< nothing to report (a recv's ENOBUFS: the ring was empty; go on)
  end,    ///< end of stream (a recv's 0)
  error,  ///< -res is the error (unless it is our own cancel's ECANCELED)
};

/// What a finished wait yields: an item, or else an errno (0: end of stream).
struct multishot_outcome {
  bool has_item = false;
  multishot_item item{};
  int error = 0;
};

/// FIFO of items. A few fit inline (a recv_stream's default max_queued is 2); more live on the
/// heap. It is bounded by max_queued plus the completions that raced a backpressure cancel,
/// which the kernel already consumed and which must never be dropped.
class item_queue {
 public:
  item_queue() noexcept = default;
  ~item_queue();
  item_queue(const item_queue&) = delete;
  item_queue& operator=(const item_queue&) = delete;

  /// Makes room for n items. Throws: std::bad_alloc.
  void reserve(std::uint32_t n);
  bool empty() const noexcept { return size_ == 0; }
  std::uint32_t size() const noexcept { return size_; }
  /// Appends it; grows if full (rare: completions that raced a cancel). Throws: std::bad_alloc.
  void push(multishot_item it);
  /// Removes and returns the oldest item (not empty).
  multishot_item pop() noexcept;

 private:
  static constexpr std::uint32_t inline_capacity = 4;
  multishot_item* items_ = inline_;
  std::uint32_t capacity_ = inline_capacity, head_ = 0, size_ = 0;
  multishot_item inline_[inline_capacity];
};

/// How a multishot stream behaves (fixed for its life).
struct multishot_config {
  /// Items received ahead of the consumer; at this bound the reception is cancelled
  /// (backpressure) and re-armed when a waiter finds the queue empty.
  unsigned max_queued = 1;
  /// Keep one multishot armed (if the kernel has it) instead of one one-shot per reception.
  bool multishot = true;
  /// Re-arm after each item while below max_queued, also with nobody waiting (recv_stream's
  /// one-shot mode reads ahead); otherwise only for a waiter that finds the queue empty.
  bool read_ahead = false;
  /// Errors and the end stay (a stream that ended stays ended); otherwise an error is reported
  /// once and the next wait re-arms (acceptor: EMFILE).
  bool sticky_end = false;
  /// Non-zero: no item for this long ends the stream with ETIMEDOUT.
  std::chrono::nanoseconds idle{0};
};

/// The state of a multishot stream, on the heap because the kernel keeps its reception armed
/// between two waits (docs/design.md, "Operation lifetime"). Its address is the reception's
/// user_data; a timer of its own serves the waiter's deadline and the idle timeout.
/// The derived type (acceptor_state, recv_stream_state) prepares the reception and turns a CQE
/// into an item; everything else is here:
/// - armed: one reception in flight; re-armed after its final CQE when someone needs it;
/// - backpressure: at max_queued queued items the reception is cancelled (data waits in the
///   kernel), and re-armed when a waiter finds the queue empty;
/// - orphaned: the owner was destroyed while the kernel still refers to the state; the state is
///   freed at the last completion (reception, timer) or release of a held item;
/// - the socket's sticky cancel (socket::cancel()) ends waits with operation_canceled once the
///   queue is empty;
/// - teardown (io_context::stopping()): completions are recorded, nobody is resumed, nothing is
///   armed;
/// - one waiter at a time; a wait ended by its deadline or a stop request leaves the stream
///   armed and what arrives queued for the next wait.
class multishot_core : public completion {
 public:
  multishot_core(const multishot_core&) = delete;
  multishot_core& operator=(const multishot_core&) = delete;

  // ---- for the owner (acceptor, recv_stream) ----
  /// The owner is gone: disposes of the queued items, cancels what the kernel holds, and frees
  /// the state now or at the last completion.
  void orphan() noexcept;
  io_context& context() const noexcept { return *ctx_; }

  // ---- for multishot_op ----
  /// await_ready: true if an item, an error or the end is there.
  bool poll() noexcept;
  /// await_suspend: arms the reception if needed and registers w. Returns: false if w's
  /// deadline already passed. Throws: std::system_error (no SQE); then nothing is registered.
  bool suspend(multishot_wait& w, std::coroutine_handle<> h);
  /// A stop request: ends w (if it still waits) with res; it resumes in the next loop turn.
  void abandon(multishot_wait& w, int res) noexcept;
  /// w's frame is destroyed while w waits (teardown): unregisters it.
  void forget(multishot_wait& w) noexcept;
  /// await_resume: the oldest item, else w's own end (stop, deadline), else the stream's
  /// error or end.
  multishot_outcome take(multishot_wait& w) noexcept;

 protected:
  multishot_core(io_context& ctx, int fd, std::uint32_t cancel_generation,
                 const multishot_config& cfg);
  virtual ~multishot_core();

  /// Decides and allocates what prep() needs (called before an SQE is taken, with nothing in
  /// flight). Throws: std::bad_alloc.
  virtual void prepare() {}
  /// Prepares the reception in sqe: a multishot if multishot() and the kernel has it, else a
  /// one-shot.
  virtual void prep(io_uring_sqe& sqe) noexcept = 0;
  /// Reads one CQE of the reception; fills it for cqe_kind::item.
  virtual cqe_kind convert(int res, std::uint32_t flags, multishot_item& it) noexcept = 0;
  /// After convert() gave an item: the CQE's further items in order, one per call (a recv
  /// bundle fills several buffers). Returns: false when there are no more.
  virtual bool next_item(multishot_item&) noexcept { return false; }
  /// Gives back what an item holds (closes a descriptor, returns a buffer) when it will never
  /// be handed out.
  virtual void dispose(multishot_item it) noexcept = 0;
  /// True while something outside the kernel still refers to the state (a handed-out buffer,
  /// the acceptor's back-off timer).
  virtual bool held() const noexcept { return false; }
  /// True while the reception must not be re-armed (the acceptor backs off); call released()
  /// when that ends.
  virtual bool paused() const noexcept { return false; }
  /// The derived type's hold ended (held() changed to false).
  void released() noexcept;

  /// Makes room for n queued items (no allocation per item). Throws: std::bad_alloc.
  void reserve_queue(std::uint32_t n) { queue_.reserve(n); }
  /// Items waiting for the consumer.
  std::uint32_t queued() const noexcept { return queue_.size(); }
  /// The most items received ahead of the consumer (multishot_config::max_queued).
  std::uint32_t max_queued() const noexcept { return max_queued_; }
  int fd() const noexcept { return fd_; }
  bool multishot() const noexcept { return multishot_; }
  bool orphaned() const noexcept { return orphaned_; }

 private:
  using clock = multishot_wait::clock;

  static void on_cqe(completion* c, int res, std::uint32_t flags) noexcept;
  static void on_timer(completion* c, int res, std::uint32_t flags) noexcept;
  void handle_cqe(int res, std::uint32_t flags) noexcept;
  void handle_timer(int res) noexcept;

  bool ended() const noexcept { return eof_ || error_ != 0; }
  bool ready() const noexcept { return !queue_.empty() || ended(); }
  bool socket_cancelled() const noexcept {
    return ring_access::cancel_generation(*ctx_, fd_) != cancel_generation_;
  }
  // LIFETIME: the state goes once the owner is gone and nothing refers to it any more.
  bool can_delete() const noexcept { return orphaned_ && !armed_ && !timer_armed_ && !held(); }

  void arm();                                // may throw (no SQE): nothing is attached then
  bool deliver(multishot_item it) noexcept;  // queues it, else disposes of it: false
  void rearm_or_fail() noexcept;
  void end_with(int error) noexcept;
  void finish_turn() noexcept;
  void resume_waiter() noexcept;

  clock::time_point next_due() const noexcept;
  void update_timer();  // may throw (no SQE)
  void settle_timer() noexcept;
  void arm_timer(clock::time_point when);

  io_context* ctx_;
  multishot_wait* waiter_ = nullptr;
  item_queue queue_;
  struct timer_completion : completion {
    multishot_core* owner;
  } timer_{};
  kernel_timespec timer_at_{};  // LIFETIME: read by the kernel at submission; in the state
  std::chrono::nanoseconds idle_;
  clock::time_point last_activity_;
  int fd_;
  std::uint32_t cancel_generation_;  // the socket's (socket::cancel_generation)
  int error_ = 0;
  std::uint16_t max_queued_;
  bool multishot_, read_ahead_, sticky_end_;
  bool eof_ = false;
  bool armed_ = false;           // the reception is in flight (until its final CQE)
  bool cancel_pending_ = false;  // we cancelled it ourselves (backpressure, idle timeout)
  bool orphaned_ = false;
  bool timer_armed_ = false;
  bool timer_cancel_pending_ = false;
};

}  // namespace coring::detail
