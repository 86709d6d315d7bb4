// SPDX-License-Identifier: MIT
// Description: io_context owns one io_uring and runs the coroutines whose I/O it carries.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/awaitable.hpp>
#include <coring/detail/completion.hpp>
#include <coring/detail/spawn.hpp>
#include <coring/task.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

namespace detail {
struct ring_access;
template <class F>
struct remote_function;
/// A request handed to an io_context from any thread (io_context::post_remote). Intrusive: it
/// lives in the requester (an awaiter in a frame, or execute()'s heap node) until fn ran.
struct remote_node {
  remote_node* next = nullptr;
  /// Runs on the context's thread; cancelled: the context is being destroyed (then it runs on
  /// the destroying thread).
  void (*fn)(remote_node*, bool cancelled) noexcept = nullptr;
};
}  // namespace detail

/// Issue 15: which engine an io_context runs its operations on (docs/design.md, "Backends").
enum class backend_kind {
  automatic,  ///< io_uring; epoll when the ring cannot be created (EPERM, EACCES, ENOSYS, sysctl)
  io_uring,   ///< io_uring only: throws errc::io_uring_unavailable when the ring cannot be created
  epoll,      ///< epoll and non-blocking system calls, even where io_uring works
};

/// How an io_context sets up its ring. The defaults suit a server on one thread.
struct io_context_options {
  /// Issue 15: the backend; the environment variable CORING_BACKEND=epoll|io_uring|auto
  /// overrides this field.
  backend_kind backend = backend_kind::automatic;
  unsigned sq_entries = 256;  ///< submission queue size (rounded up to a power of two)
  unsigned cq_entries = 0;    ///< completion queue size; 0 = 16 x sq_entries
  bool single_issuer = true;  ///< ask for IORING_SETUP_SINGLE_ISSUER (6.0+), fall back if refused
  bool defer_taskrun = true;  ///< ask for IORING_SETUP_DEFER_TASKRUN (6.1+), else COOP_TASKRUN
  bool register_ring_fd = true;  ///< io_uring_register_ring_fd (5.18+): cheaper io_uring_enter
  /// Wake other contexts (execute(), resume_on, stop() called during this one's loop turn on
  /// its thread) with IORING_OP_MSG_RING (5.18+) from this ring, sent with its own submission,
  /// instead of writing their eventfd. Off by default: not faster on Linux 6.18 (README,
  /// "Threads"). The environment variable CORING_MSG_RING=1 or =0 overrides this field.
  bool msg_ring_wake = false;
  /// Issue 14: latency budget for batched wake-ups; 0 (default) wakes on the first completion.
  /// When > 0 the loop's blocking wait may hold back up to this long to gather completions
  /// (min_wait_usec, Linux 6.12+; else wait_nr > 1 with this timeout): README, "Batched
  /// wake-ups". Timers and cross-thread wake-ups still run within it. The environment variable
  /// CORING_MAX_BATCH_DELAY_US (microseconds) overrides this field.
  std::chrono::microseconds max_batch_delay{0};
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
  bool msg_ring = false;            ///< IORING_OP_MSG_RING (5.18+): wakes other rings with it
  /// The kernel's TLS ULP (kTLS) is there: /proc/sys/net/ipv4/tcp_available_ulp lists "tls".
  /// Informational: coring::tls does its records in OpenSSL, not in the kernel (issue 13).
  bool tls_ulp = false;
  /// IORING_FEAT_MIN_TIMEOUT (6.12+): waits take min_wait_usec (used by max_batch_delay).
  bool min_wait = false;
  /// Issue 15: the backend in use (backend_kind::io_uring or backend_kind::epoll).
  backend_kind backend = backend_kind::io_uring;
  /// Issue 15: why that backend: "default", "forced by CORING_BACKEND", or the ring setup
  /// failure that made an automatic context fall back to epoll.
  std::string backend_reason;
  /// Every field as `name=value` pairs on one line, for logs and test skips.
  std::string describe() const;
};

/// Owns one io_uring and runs the coroutines whose operations it carries. One per thread; not
/// thread-safe, except stop(), execute() and work guards, which any thread may
/// use while the context exists (coring::resume_on moves a coroutine between contexts).
/// Create, run and destroy it on the same thread: with SINGLE_ISSUER and the registered ring fd
/// (the defaults) the kernel ties the ring to the thread that created it. Operations prepared while
/// coroutines run are submitted together, once per loop turn, in a single io_uring_submit_and_wait.
/// Note: destroying it calls shutdown() (see there): coroutines still suspended in it are
/// destroyed, never resumed, once the kernel has let go of their buffers.
class io_context {
 public:
  /// Creates the ring (or, where io_uring is denied and opts.backend allows it, the epoll
  /// backend: docs/design.md, "Backends").
  /// Throws: std::system_error(errc::io_uring_unavailable) whose message names the cause
  /// (ENOSYS: kernel without io_uring; EPERM: disabled by sysctl or seccomp; ENOMEM: memlock
  /// limit) and the fix, when io_uring is required (backend_kind::io_uring) or fails otherwise.
  explicit io_context(io_context_options opts = {});
  ~io_context();
  io_context(const io_context&) = delete;
  io_context& operator=(const io_context&) = delete;

  /// Runs until stop() is called or nothing is left to do (no operation in flight, nothing
  /// queued to resume). Exceptions escaping spawned tasks go to the exception handler.
  void run();
  /// Runs one loop turn: resumes queued coroutines, submits, waits for at least one completion
  /// if block is true, dispatches. Returns: false if there was nothing to wait for.
  /// Throws: std::logic_error if called on another thread than the one that created the
  /// context while SINGLE_ISSUER or the registered ring fd ties the ring to that thread.
  bool run_once(bool block = true);
  /// Makes run() return after the current loop turn (thread-safe: wakes a blocked run()).
  /// run() may be called again afterwards.
  void stop() noexcept;
  /// True if called on the thread that created the context (the one that runs it).
  bool running_in_this_thread() const noexcept { return std::this_thread::get_id() == owner_; }
  /// True if stop() was called since the last run().
  bool stopped() const noexcept { return stop_.load(std::memory_order_acquire); }

  /// Thread-safe: runs f() on this context's thread in a coming loop turn, waking a blocked
  /// run() (what Asio calls post; schedule() is the same-thread form). f may be move-only; an
  /// exception escaping it goes to the exception handler.
  /// Functions still queued when the context is destroyed are destroyed without running.
  /// Throws: std::bad_alloc (one allocation per call; coring::resume_on needs none).
  template <class F>
  void execute(F&& f);

  /// While one exists, run() does not return for lack of work: it waits for execute(),
  /// resume_on or stop() (Asio's executor_work_guard). Created and destroyed on any thread.
  class work_guard {
   public:
    explicit work_guard(io_context& ctx) noexcept : ctx_(&ctx) { ctx.add_work(); }
    work_guard(work_guard&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
    work_guard& operator=(work_guard&&) = delete;
    ~work_guard() { reset(); }
    /// Releases the guard early (idempotent).
    void reset() noexcept {
      if (ctx_) std::exchange(ctx_, nullptr)->drop_work();
    }

   private:
    io_context* ctx_;
  };
  /// Returns: a work_guard on this context.
  [[nodiscard]] work_guard make_work_guard() noexcept { return work_guard(*this); }

  /// Runs a (a task, an operation such as `s.send_all(buf)`, any awaitable) detached on this
  /// context: it starts in the next loop turn, its value is discarded, and a small coroutine
  /// frame that holds a is freed when it ends. An exception escaping it goes to the exception
  /// handler and the context goes on.
  /// Throws: std::bad_alloc (a is destroyed unstarted then).
  /// Note: a is taken by value (moved into the frame), so `ctx.spawn(s.send_all(buf))` is safe;
  /// what a refers to (buf, s) must outlive it. While shutting down, a is destroyed unstarted.
  template <class A>
  requires detail::awaitable<A>
  void spawn(A a);
  /// Resumes h in a coming loop turn; on the context's thread only. (From another thread, use
  /// execute(f): it is the thread-safe one, what Asio calls post.)
  void schedule(std::coroutine_handle<> h);
  /// Ends everything still running on this context, without running any of it: cancels every
  /// operation in flight, waits until the kernel has let go of each one (their buffers and
  /// frames stay untouched until then; bounded by 5 s, after which what is left is leaked with
  /// a message rather than freed under the kernel), then destroys the frames of unfinished
  /// spawned tasks. Suspended coroutines are never resumed: only destructors of their locals
  /// run. Afterwards new operations throw errc::context_stopping. Idempotent; the destructor
  /// calls it. Call it yourself before destroying objects that unfinished tasks still use (a
  /// server's state, a buffer_ring declared after the context), so their destructors find them.
  /// Note: on this context's thread, not from inside a coroutine running on it.
  void shutdown() noexcept;
  /// True once shutdown() (or the destructor) started.
  bool stopping() const noexcept { return stopping_; }

  /// Replaces the handler for exceptions escaping spawned tasks (default: print to stderr).
  void set_exception_handler(std::function<void(std::exception_ptr)> handler);

  /// What the kernel granted and supports.
  const ring_features& features() const noexcept;
  /// Operations submitted whose final completion has not arrived yet.
  std::size_t in_flight() const noexcept { return in_flight_; }
  /// Spawned tasks that have not finished yet.
  std::size_t spawned() const noexcept { return spawned_.size(); }

 private:
  struct impl;
  // LIFETIME, TRICKY: what operations need from the ring is reachable only through
  // detail::ring_access (coring's operation types and sources), never from user code.
  friend struct detail::ring_access;
  template <class F>
  friend struct detail::remote_function;
  impl& native() noexcept { return *impl_; }
  /// Returns a free SQE, making room by submitting if the SQ is full. With n > 1 it guarantees
  /// n consecutive SQEs (for linked operations): call acquire_sqe() again n - 1 times.
  /// Throws: std::system_error (errc::context_stopping while the context is being destroyed,
  /// or the io_uring_enter error).
  io_uring_sqe& acquire_sqe(unsigned n = 1);
  /// Puts c's address in sqe's user_data and counts it in flight until its final CQE.
  void attach(io_uring_sqe& sqe, detail::completion* c) noexcept;
  /// Best-effort: asks the kernel to cancel the operation whose user_data is c. Never throws.
  /// (Multishot states; a cancel that finds nothing is not repeated.)
  void cancel(detail::completion* c) noexcept;
  /// Cancels the one-shot operation c until it ends: n (in the operation) tracks the request,
  /// and a cancel that finds nothing (-ENOENT) while c is still in flight is repeated. The
  /// operation calls cancel_done(n) at its final CQE, before anything may free it. Never throws.
  void cancel(detail::cancel_node& n, detail::completion* c) noexcept;
  void cancel_done(detail::cancel_node& n) noexcept {
    if (!n.target) return;
    cancels_.remove(n);
    n.target = nullptr;
  }
  /// Cancels every operation on fd (IORING_ASYNC_CANCEL_FD|ALL) and makes the cancel sticky:
  /// cancel_generation(fd) changes, so operations that snapshotted the old value (socket ops)
  /// neither resubmit nor start. Never throws.
  void cancel_fd(int fd) noexcept;
  /// How many times cancel_fd(fd) was called on this context (0 if never); socket operations
  /// compare it with the value their socket saw when it was opened.
  std::uint32_t cancel_generation(int fd) const noexcept {
    const auto i = static_cast<std::size_t>(fd);
    return fd >= 0 && i < fds_.size() ? fds_[i].generation : 0;
  }
  /// A socket operation on fd was submitted (first submission) / got its final completion
  /// (generation: the one it snapshotted). cancel_fd retries its kernel cancel while
  /// operations it targeted are still in flight.
  void socket_op_started(int fd) noexcept {
    const auto i = static_cast<std::size_t>(fd);
    if (fd < 0) return;
    if (i >= fds_.size()) grow_fds(i);
    if (i < fds_.size()) ++fds_[i].in_flight;
  }
  void socket_op_finished(int fd, std::uint32_t generation) noexcept {
    const auto i = static_cast<std::size_t>(fd);
    if (fd < 0 || i >= fds_.size() || fds_[i].in_flight == 0) return;
    --fds_[i].in_flight;
    if (generation != fds_[i].generation && fds_[i].stale > 0) --fds_[i].stale;
  }

  /// Thread-safe, never allocates: queues n, whose fn runs on this context's thread. n must stay
  /// alive until then. Must not be called once the destructor has started.
  void post_remote(detail::remote_node* n) noexcept;
  /// Hands e to the exception handler (as for a spawned task).
  void report_exception(std::exception_ptr e) noexcept;

  void run_ready();
  void reap();
  void exit_ring() noexcept;
  void add_work() noexcept { work_.fetch_add(1, std::memory_order_relaxed); }
  void drop_work() noexcept;
  void wake() noexcept;
  void on_wake(int res, std::uint32_t flags) noexcept;
  void arm_wake() noexcept;
  void run_remote(bool cancelled) noexcept;
  int batched_wait();  // issue 14: the blocking wait under max_batch_delay
  // Issue 15: the epoll backend (docs/design.md, "Backends").
  void start_epoll(const io_context_options& o, std::string reason);
  static bool falls_back(int err) noexcept;  // a ring failure that selects epoll (automatic)
  static std::string fallback_reason(int err);
  /// fd is being closed or was just created outside the backend (socket): the epoll backend
  /// forgets what it knew about the number. Never throws.
  void fd_closing(int fd) noexcept;
  bool send_wake(io_context& target) noexcept;
  void on_wake_sent(std::uint64_t user_data, int res) noexcept;

  std::unique_ptr<impl> impl_;
  std::vector<std::coroutine_handle<>> ready_, running_;
  detail::spawn_list spawned_{*this};  // unfinished spawned coroutines
  std::function<void(std::exception_ptr)> on_exception_;
  std::size_t in_flight_ = 0;
  std::atomic<bool> stop_{false};
  bool stopping_ = false;  // shutdown() started: no new operations, no resumptions
  bool busy_ = false;      // the last reap() had many completions (run_once)
  // Per descriptor: cancel_fd() count (sticky cancels), socket operations in flight, and how
  // many of those a cancel_fd() targeted (it retries until they are back).
  struct fd_state {
    std::uint32_t generation = 0, in_flight = 0, stale = 0;
  };
  std::vector<fd_state> fds_;
  // Operations being cancelled (cancel(node, c)).
  detail::intrusive_list<detail::cancel_node, &detail::cancel_node::links> cancels_;
  std::uint32_t next_cancel_id_ = 0;
  void submit_op_cancel(detail::cancel_node& n) noexcept;
  void on_op_cancel(std::uint64_t user_data, int res) noexcept;
  void grow_fds(std::size_t i) noexcept;
  void submit_fd_cancel(int fd, unsigned attempt) noexcept;
  void on_fd_cancel(std::uint64_t user_data, int res) noexcept;
  // Cross-thread requests: a lock-free LIFO pushed by any thread, drained by the context's
  // thread each loop turn and whenever a wake-up arrives (wake()): a write to the eventfd the
  // ring polls, or a MSG_RING completion another ring sent (msg_ring_wake).
  std::atomic<detail::remote_node*> remote_head_{nullptr};
  // A wake-up (eventfd write or MSG_RING) is on its way: skip another.
  std::atomic<bool> wake_pending_{false};
  std::atomic<std::size_t> work_{0};  // live work_guards
  // Other threads inside stop()/post_remote()/drop_work(): the destructor waits for them, as
  // the loop may see their request, return and destroy the context before they finish waking it.
  std::atomic<int> remote_callers_{0};
  struct remote_call;
  std::thread::id owner_ = std::this_thread::get_id();
  bool owner_only_ = false;  // SINGLE_ISSUER or registered ring fd: only owner_ may enter
};

namespace detail {
/// execute()'s heap node: the function and the context to report its exception to.
template <class F>
struct remote_function final : remote_node {
  remote_function(io_context& c, F&& fn) : ctx(&c), f(std::move(fn)) { this->fn = &run; }
  static void run(remote_node* n, bool cancelled) noexcept {
    std::unique_ptr<remote_function> self(static_cast<remote_function*>(n));
    if (cancelled) return;
    try {
      self->f();
    } catch (...) {
      self->ctx->report_exception(std::current_exception());
    }
  }
  io_context* ctx;
  F f;
};
}  // namespace detail

template <class A>
requires detail::awaitable<A>
void io_context::spawn(A a) {
  if constexpr (detail::is_task_v<A>) {
    if (!a.valid()) return;
  }
  if (stopping_) return;                                 // never started: a is destroyed here
  detail::spawned c = detail::spawn_body(std::move(a));  // may throw: a is destroyed unstarted
  ready_.push_back(c.handle());                          // may throw: c frees the unstarted frame
  spawned_.push(c.release().promise());
}

template <class F>
void io_context::execute(F&& f) {
  using fn_t = std::decay_t<F>;
  fn_t copy(std::forward<F>(f));
  post_remote(new detail::remote_function<fn_t>(*this, std::move(copy)));
}

}  // namespace coring
