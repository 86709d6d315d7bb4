// SPDX-License-Identifier: MIT
// Description: private: the liburing ring inside io_context, and the test-only fault seam.
#pragma once

#include <coring/io_context.hpp>

#include "epoll_backend.hpp"

#include <liburing.h>

#include <atomic>

namespace coring {

namespace detail {
/// What a MSG_RING wake-up in another ring refers to: a dup of the target ring's fd (made by
/// the first such waker) and the target's eventfd (the fallback if the message fails).
/// LIFETIME: shared by the context (one reference, dropped when its ring closes) and each
/// wake-up in flight to it (dropped when the sender reaps its CQE), so a target destroyed
/// meanwhile leaves neither descriptor to be reused under an SQE that names it.
struct wake_channel {
  std::atomic<unsigned> refs{1};
  std::atomic<int> ring_fd{-1};
  int event_fd = -1;
  void ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void unref() noexcept;
};
}  // namespace detail

struct io_context::impl {
  io_uring ring{};
  ring_features features{};
  bool ring_ok = false;
  std::uint16_t next_buffer_group = 0;      // buffer_ring group ids handed out so far
  int wake_fd = -1;                         // eventfd other threads write to wake the loop
  bool wake_armed = false;                  // a poll on wake_fd is in the ring
  bool wake_multishot = true;               // false after the kernel refused multishot poll
  detail::wake_channel* channel = nullptr;  // owns wake_fd; other rings' MSG_RING target
  bool msg_wake = false;                    // wake other rings with MSG_RING (send_wake)
  bool msg_unsubmitted = false;             // a MSG_RING SQE waits for this turn's submit
  std::size_t msgs_in_flight = 0;           // MSG_RING wake-ups sent, CQE not reaped yet
  /// Test seam: timer SQEs submitted (IORING_OP_TIMEOUT and linked timeouts), so that a test
  /// can tell a wait woken by an event from one that polls a timer (tests/test_scope.cpp).
  std::uint64_t timeouts_submitted = 0;
  // Issue 14: batched wake-ups (io_context::batched_wait).
  std::uint32_t batch_delay_us = 0;  // max_batch_delay in effect; 0: wake on the first completion
  std::uint32_t batch_wait_nr = 1;   // completions that end the next batched wait early
  bool last_batch_empty = true;      // the last batched wait gathered nothing: wait plainly

  // Issue 15: the backend seam (docs/design.md, "Backends"). Operations prepare io_uring SQEs
  // either way; these few calls are where the two backends differ: the ring's (liburing), or
  // the epoll executor's when `epoll` is set. One predictable branch per call.
  std::unique_ptr<detail::epoll_backend> epoll;
  io_uring_sqe* get_sqe() noexcept {
    if (epoll) [[unlikely]]
      return epoll->get_sqe();
    return io_uring_get_sqe(&ring);
  }
  unsigned sq_space_left() noexcept {
    if (epoll) [[unlikely]]
      return epoll->sq_space_left();
    return io_uring_sq_space_left(&ring);
  }
  int submit() noexcept {
    if (epoll) [[unlikely]]
      return epoll->submit();
    return io_uring_submit(&ring);
  }
  int submit_and_wait(unsigned n) noexcept {
    if (epoll) [[unlikely]]
      return epoll->enter(n, nullptr);
    return io_uring_submit_and_wait(&ring, n);
  }
  int submit_and_wait_timeout(unsigned n, __kernel_timespec* ts) noexcept {
    if (epoll) [[unlikely]]
      return epoll->enter(n, ts);
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&ring, &cqe, n, ts, nullptr);
  }
  /// Submits and collects what is ready without waiting (epoll: also looks at readiness).
  int submit_and_get_events() noexcept {
    if (epoll) [[unlikely]]
      return epoll->enter(0, nullptr);
    return io_uring_submit_and_get_events(&ring);
  }
  unsigned cq_ready() noexcept {
    if (epoll) [[unlikely]]
      return epoll->cq_ready();
    return io_uring_cq_ready(&ring);
  }
  unsigned peek_batch_cqe(io_uring_cqe** cqes, unsigned n) noexcept {
    if (epoll) [[unlikely]]
      return epoll->peek_batch(cqes, n);
    return io_uring_peek_batch_cqe(&ring, cqes, n);
  }
  void cq_advance(unsigned n) noexcept {
    if (epoll) [[unlikely]]
      return epoll->cq_advance(n);
    io_uring_cq_advance(&ring, n);
  }
  /// Provided-buffer rings (buffer_ring): registered with the kernel, or handed to the executor.
  int register_buf_ring(io_uring_buf_reg& reg) noexcept {
    if (epoll) [[unlikely]]
      return epoll->register_buf_ring(reinterpret_cast<void*>(reg.ring_addr), reg.ring_entries,
                                      reg.bgid);
    return io_uring_register_buf_ring(&ring, &reg, 0);
  }
  int unregister_buf_ring(int group) noexcept {
    if (epoll) [[unlikely]]
      return epoll->unregister_buf_ring(static_cast<unsigned>(group));
    return io_uring_unregister_buf_ring(&ring, group);
  }
  /// The ring's fd (epoll: the epoll fd), identifying the backend instance.
  int backend_fd() const noexcept { return epoll ? epoll->fd() : ring.ring_fd; }
};

namespace detail {
/// Test seam: when non-zero, the next io_context construction fails as if io_uring_queue_init
/// returned -errno_value (ENOSYS, EPERM, ENOMEM). Costs one load at ring setup only.
void inject_ring_init_failure(int errno_value) noexcept;
/// Issue 15: the backend CORING_BACKEND asks for, or `fallback` when it is unset or invalid.
backend_kind backend_from_env(backend_kind fallback) noexcept;
/// Explains a ring setup failure: the cause and the fix, for errc::io_uring_unavailable.
std::string explain_ring_failure(int errno_value);
}  // namespace detail

}  // namespace coring
