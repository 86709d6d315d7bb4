// SPDX-License-Identifier: MIT
// Description: io_context owns one io_uring and runs the coroutines whose I/O it carries.
#pragma once

#include <coring/detail/completion.hpp>
#include <coring/task.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace coring {

/// How an io_context sets up its ring. The defaults suit a server on one thread.
struct io_context_options {
  unsigned sq_entries = 256;     ///< submission queue size (rounded up to a power of two)
  unsigned cq_entries = 0;       ///< completion queue size; 0 = 16 x sq_entries
  bool single_issuer = true;     ///< ask for IORING_SETUP_SINGLE_ISSUER (6.0+), fall back if refused
  bool defer_taskrun = true;     ///< ask for IORING_SETUP_DEFER_TASKRUN (6.1+), else COOP_TASKRUN
  bool register_ring_fd = true;  ///< io_uring_register_ring_fd (5.18+): cheaper io_uring_enter
};

/// What the running kernel granted and supports, probed once when the ring is created.
struct ring_features {
  unsigned sq_entries = 0, cq_entries = 0;
  bool single_issuer = false;       ///< IORING_SETUP_SINGLE_ISSUER in effect
  bool defer_taskrun = false;       ///< IORING_SETUP_DEFER_TASKRUN in effect
  bool coop_taskrun = false;        ///< IORING_SETUP_COOP_TASKRUN in effect
  bool registered_ring_fd = false;  ///< the ring fd is registered
  bool nodrop = false;              ///< IORING_FEAT_NODROP: CQ overflow never loses completions
  bool ext_arg = false;             ///< IORING_FEAT_EXT_ARG: waits with a timeout need no SQE
  bool cqe_skip = false;            ///< IORING_FEAT_CQE_SKIP (IOSQE_CQE_SKIP_SUCCESS)
  bool fast_poll = false;           ///< IORING_FEAT_FAST_POLL
  bool op_socket = false;           ///< IORING_OP_SOCKET (5.19+)
  bool op_send_zc = false;          ///< IORING_OP_SEND_ZC (6.0+)
  bool op_link_timeout = false;     ///< IORING_OP_LINK_TIMEOUT
  bool accept_multishot = false;    ///< multishot accept (5.19+)
  bool recv_multishot = false;      ///< multishot recv (6.0+)
  bool buf_ring = false;            ///< provided-buffer rings (5.19+)
  bool cancel_any = false;          ///< IORING_ASYNC_CANCEL_ANY / _FD (5.19+)
  /// One line per feature, for logs and test skips.
  std::string describe() const;
};

/// Owns one io_uring and runs the coroutines whose operations it carries. One per thread; not
/// thread-safe (except where noted). Operations prepared while coroutines run are submitted
/// together, once per loop turn, in a single io_uring_submit_and_wait.
/// Note: destroying it cancels every operation in flight and waits (bounded) for the kernel to
/// finish with their buffers before freeing anything; unfinished spawned tasks are destroyed.
class io_context {
 public:
  /// Creates the ring.
  /// Throws: std::system_error(errc::io_uring_unavailable) whose message names the cause
  /// (ENOSYS: kernel without io_uring; EPERM: disabled by sysctl or seccomp; ENOMEM: memlock
  /// limit) and the fix.
  explicit io_context(io_context_options opts = {});
  ~io_context();
  io_context(const io_context&) = delete;
  io_context& operator=(const io_context&) = delete;

  /// Runs until stop() is called or nothing is left to do (no operation in flight, nothing
  /// queued to resume). Exceptions escaping spawned tasks go to the exception handler.
  void run();
  /// Runs one loop turn: resumes queued coroutines, submits, waits for at least one completion
  /// if block is true, dispatches. Returns: false if there was nothing to wait for.
  bool run_once(bool block = true);
  /// Makes run() return after the current loop turn. run() may be called again afterwards.
  void stop() noexcept;
  /// True if stop() was called since the last run().
  bool stopped() const noexcept { return stop_; }

  /// Starts t on this context in the next loop turn and lets it run detached; its frame is freed
  /// when it ends. An exception escaping it goes to the exception handler and the context goes on.
  void spawn(task<> t);
  /// Resumes h in the next loop turn (same thread only).
  void post(std::coroutine_handle<> h);
  /// Replaces the handler for exceptions escaping spawned tasks (default: print to stderr).
  void set_exception_handler(std::function<void(std::exception_ptr)> handler);

  /// What the kernel granted and supports.
  const ring_features& features() const noexcept;
  /// Operations submitted whose final completion has not arrived yet.
  std::size_t in_flight() const noexcept { return in_flight_; }
  /// Spawned tasks that have not finished yet.
  std::size_t spawned() const noexcept { return spawned_; }

  // ---- for operation types (coring::detail); not part of the user-facing API ----
  /// Returns a free SQE, making room by submitting if the SQ is full. With n > 1 it guarantees
  /// n consecutive SQEs (for linked operations): call acquire_sqe() again n - 1 times.
  /// Throws: std::system_error (errc::context_stopping while the context is being destroyed,
  /// or the io_uring_enter error).
  io_uring_sqe& acquire_sqe(unsigned n = 1);
  /// Puts c's address in sqe's user_data and counts it in flight until its final CQE.
  void attach(io_uring_sqe& sqe, detail::completion* c) noexcept;
  /// Best-effort: asks the kernel to cancel the operation whose user_data is c. Never throws.
  void cancel(detail::completion* c) noexcept;
  /// Best-effort: cancels every operation on fd (IORING_ASYNC_CANCEL_FD|ALL). Never throws.
  void cancel_fd(int fd) noexcept;

  struct impl;
  /// The private ring state (src/detail/ring.hpp), for coring's own sources.
  impl& native() noexcept { return *impl_; }

 private:
  friend void detail::detached_task_done(detail::promise_base&) noexcept;
  void run_ready();
  void reap();
  void teardown() noexcept;

  std::unique_ptr<impl> impl_;
  std::vector<std::coroutine_handle<>> ready_, running_;
  detail::promise_base* spawned_head_ = nullptr;
  std::function<void(std::exception_ptr)> on_exception_;
  std::size_t in_flight_ = 0;
  std::size_t spawned_ = 0;
  bool stop_ = false;
  bool stopping_ = false;  // destructor running: no new operations
};

}  // namespace coring
