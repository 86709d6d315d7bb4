// SPDX-License-Identifier: MIT
// Description: private: the epoll backend, a user-space executor of the SQEs coring prepares.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace coring::detail {

/// An SQE not yet submitted that names descriptor fd as its file (recv, send, accept, connect,
/// poll, read, write, splice) is made to name -1, so that it fails with EBADF: fd is being
/// closed, or was just handed out again, and the SQE was prepared for the descriptor that had
/// the number before (both backends: io_context::fd_closing).
void unname_fd(io_uring_sqe& q, int fd) noexcept;

/// Issue 15 (docs/design.md, "Backends"): runs the io_uring SQEs that coring's operations
/// prepare without io_uring. Each SQE is tried at once with a non-blocking system call; one that
/// would block waits on its descriptor's list until epoll reports the descriptor ready, then is
/// retried. Results come back as CQEs (same user_data, res and flags as the kernel's) in a
/// completion queue of its own, which io_context reaps as it reaps the ring's.
/// Not thread-safe: used by its io_context's thread only.
class epoll_backend {
 public:
  /// Creates the epoll descriptor and room for sq_entries SQEs.
  /// Throws: std::system_error (epoll_create1's errno), std::bad_alloc.
  explicit epoll_backend(unsigned sq_entries);
  ~epoll_backend();
  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;

  /// The epoll descriptor (identifies the backend where the ring's fd would).
  int fd() const noexcept { return epfd_; }
  /// A zeroed free SQE, or null when the queue is full (submit() empties it).
  io_uring_sqe* get_sqe() noexcept;
  /// Free SQEs.
  unsigned sq_space_left() const noexcept { return static_cast<unsigned>(sq_.size()) - sq_count_; }
  /// Runs the queued SQEs (each completes or waits on its descriptor). Returns: how many.
  int submit() noexcept;
  /// submit(), then looks at readiness and timers, waiting until wait_nr completions are ready
  /// or ts (relative; null: no limit) has passed. Returns: submitted count, -ETIME when ts
  /// passed first, -EINTR when a signal interrupted the wait.
  int enter(unsigned wait_nr, const __kernel_timespec* ts) noexcept;
  /// Completions ready to reap.
  unsigned cq_ready() const noexcept { return static_cast<unsigned>(cq_.size() - cq_head_); }
  /// Points out[0..n) at up to n ready completions (valid until the next call that posts).
  unsigned peek_batch(io_uring_cqe** out, unsigned n) noexcept;
  /// Drops the first n ready completions (after peek_batch).
  void cq_advance(unsigned n) noexcept;
  /// Provided buffers: the application fills br (io_uring_buf_ring layout) as for the kernel;
  /// the backend keeps the head. Returns: 0 or a negative errno.
  int register_buf_ring(void* br, unsigned entries, unsigned group) noexcept;
  int unregister_buf_ring(unsigned group) noexcept;
  /// fd is being closed or was just opened: forget what the backend knew about the number.
  void forget_fd(int fd) noexcept;

 private:
  struct node;
  struct fd_entry;
  struct buf_group {
    io_uring_buf_ring* br;
    unsigned mask;
    unsigned group;
    std::uint16_t head;
  };
  enum list_kind : std::uint8_t { no_list = 0, read_list = 1, write_list = 2, poll_list = 3 };

  void execute(const io_uring_sqe& sqe, const io_uring_sqe* link) noexcept;
  int attempt(node& n) noexcept;
  int try_once(node& n) noexcept;
  void park(node& n, list_kind list) noexcept;
  void finish(node& n, int res, std::uint32_t flags = 0) noexcept;
  void release(node& n) noexcept;
  void unlink(node& n) noexcept;
  node* alloc_node() noexcept;
  void post(std::uint64_t user_data, int res, std::uint32_t flags, std::uint8_t sqe_flags) noexcept;
  int cancel(const io_uring_sqe& sqe) noexcept;
  void ready(int fd, std::uint32_t events) noexcept;
  void run_list(int fd, list_kind list) noexcept;
  void expire(std::int64_t now) noexcept;
  fd_entry* entry(int fd) noexcept;
  bool watch(int fd, bool always) noexcept;
  buf_group* group(unsigned id) noexcept;
  // The timer heap (earliest deadline first), indexed: a node knows its place.
  bool heap_push(node& n) noexcept;  // false: out of memory
  void heap_remove(node& n) noexcept;
  void heap_up(std::size_t i) noexcept;
  void heap_down(std::size_t i) noexcept;

  int epfd_ = -1;
  bool pwait2_ = true;  // epoll_pwait2 works (else epoll_wait, ms precision)
  std::vector<io_uring_sqe> sq_;
  unsigned sq_count_ = 0;
  std::vector<io_uring_cqe> cq_;
  std::size_t cq_head_ = 0;
  std::vector<fd_entry> fds_;
  std::vector<node*> heap_;
  std::vector<std::unique_ptr<node[]>> chunks_;  // node storage; never shrinks
  node* free_ = nullptr;
  node* active_ = nullptr;  // every node waiting (fd lists and timers), for cancels
  std::vector<buf_group> groups_;
};

}  // namespace coring::detail
