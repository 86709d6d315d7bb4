// SPDX-License-Identifier: MIT
// Description: the operation types behind socket's awaitable methods (prep and complete in
// src/socket.cpp). docs/design.md, "Adding an operation", walks through one.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>
#include <coring/datagram.hpp>
#include <coring/detail/op.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>

namespace coring {

class socket;
class ancillary;
class control_buffer;

namespace detail {

using bytes = std::span<std::byte>;              // a buffer the kernel writes
using const_bytes = std::span<const std::byte>;  // a buffer the kernel reads

/// co_await s.recv(buf): IORING_OP_RECV.
class recv_op : public fd_buffer_op<recv_op, std::size_t, bytes> {
 public:
  static constexpr const char* name = "recv";
  using fd_buffer_op::fd_buffer_op;
  void prep(io_uring_sqe& sqe) noexcept;
};

/// co_await s.send(buf): IORING_OP_SEND with MSG_NOSIGNAL; may be short.
class send_op : public fd_buffer_op<send_op, std::size_t, const_bytes> {
 public:
  static constexpr const char* name = "send";
  using fd_buffer_op::fd_buffer_op;
  void prep(io_uring_sqe& sqe) noexcept;
};

/// co_await s.send_all(buf): sends until every byte went out, resubmitting after short sends
/// from the completion path (the awaiting coroutine is resumed once, at the end).
class send_all_op : public fd_buffer_op<send_all_op, std::size_t, const_bytes> {
 public:
  static constexpr const char* name = "send_all";
  send_all_op(io_context& ctx, int fd, const_bytes buf, int flags, bool zero_copy = false) noexcept
      : fd_buffer_op(ctx, fd, buf, flags), zero_copy_(zero_copy) {}
  bool await_ready() const noexcept { return buf_.empty(); }
  void prep(io_uring_sqe& sqe) noexcept;
  bool again(int res, std::uint32_t flags) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;
  [[noreturn]] void raise(std::error_code ec) const;
  /// Bytes sent so far (also after a failure).
  std::size_t sent() const noexcept { return sent_; }

 private:
  bool zero_copy_;
  std::size_t sent_ = 0;
};

/// co_await s.poll(events) / coring::poll(ctx, fd, events): IORING_OP_POLL_ADD, one shot.
/// Result: the revents (POLLIN, POLLOUT, POLLHUP, POLLERR, POLLRDHUP, ...).
class poll_op : public io_op<poll_op, unsigned> {
 public:
  static constexpr const char* name = "poll";
  poll_op(io_context& ctx, int fd, unsigned events) noexcept
      : io_op(ctx), fd_(fd), events_(events) {}
  void prep(io_uring_sqe& sqe) noexcept;
  result<unsigned> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  unsigned events_;
};

/// co_await s.accept(): IORING_OP_ACCEPT, result CLOEXEC.
class accept_op : public io_op<accept_op, socket> {
 public:
  static constexpr const char* name = "accept";
  accept_op(io_context& ctx, int fd, address* peer) noexcept : io_op(ctx), fd_(fd), peer_(peer) {}
  void prep(io_uring_sqe& sqe) noexcept;
  result<socket> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  address* peer_;  // caller's, written on completion; may be null
  address storage_{};
  socklen_t len_ = address::capacity();
};

/// co_await s.connect(addr): IORING_OP_CONNECT.
class connect_op : public io_op<connect_op, void> {
 public:
  static constexpr const char* name = "connect";
  connect_op(io_context& ctx, int fd, const address& to) noexcept : io_op(ctx), fd_(fd), to_(to) {}
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  int fd_;
  address to_;  // LIFETIME: the kernel reads it until completion; a copy lives in the op
};

/// co_await s.send_to(buf, to): IORING_OP_SENDMSG with msg_name, MSG_NOSIGNAL.
class send_to_op : public fd_buffer_op<send_to_op, std::size_t, const_bytes> {
 public:
  static constexpr const char* name = "send_to";
  send_to_op(io_context& ctx, int fd, const_bytes buf, const address& to, int flags) noexcept
      : fd_buffer_op(ctx, fd, buf, flags), to_(to) {}
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  address to_;  // LIFETIME: a copy; msghdr and iovec are rebuilt in prep (the op may have moved)
  msghdr msg_{};
  iovec iov_{};
};

/// co_await s.recv_from(buf): IORING_OP_RECVMSG with msg_name.
class recv_from_op : public fd_buffer_op<recv_from_op, datagram, bytes> {
 public:
  static constexpr const char* name = "recv_from";
  using fd_buffer_op::fd_buffer_op;
  void prep(io_uring_sqe& sqe) noexcept;
  result<datagram> complete(int res, std::uint32_t flags) noexcept;

 private:
  address from_{};
  msghdr msg_{};
  iovec iov_{};
};

/// Scatter/gather list of a send_msg / recv_msg: a few iovecs inline, more on the heap.
class iovec_list {
 public:
  iovec_list() noexcept = default;
  template <class Span>
  explicit iovec_list(std::span<const Span> bufs) {
    iovec* out =
        bufs.size() <= inline_.size() ? inline_.data() : (heap_.resize(bufs.size()), heap_.data());
    for (std::size_t i = 0; i < bufs.size(); ++i)
      out[i] = iovec{const_cast<std::byte*>(bufs[i].data()), bufs[i].size()};
    size_ = bufs.size();
  }
  iovec* data() noexcept { return heap_.empty() ? inline_.data() : heap_.data(); }
  std::size_t size() const noexcept { return size_; }

 private:
  std::array<iovec, 4> inline_{};
  std::vector<iovec> heap_;
  std::size_t size_ = 0;
};

/// Calls f(ptr, size) for each iovec and the control area of m.
template <class F>
void for_each_msg_buffer(const msghdr& m, F& f) {
  for (std::size_t i = 0; i < m.msg_iovlen; ++i)
    f(m.msg_iov[i].iov_base, m.msg_iov[i].iov_len);
  if (m.msg_control != nullptr) f(m.msg_control, m.msg_controllen);
}

/// co_await s.send_msg(bufs, control, to): IORING_OP_SENDMSG, MSG_NOSIGNAL.
class send_msg_op : public io_op<send_msg_op, std::size_t> {
 public:
  static constexpr const char* name = "send_msg";
  send_msg_op(io_context& ctx, int fd, std::span<const const_bytes> bufs, const ancillary* control,
              const address* to, int flags)
      : io_op(ctx), fd_(fd), iov_(bufs), control_(control), flags_(flags) {
    if (to) to_ = *to;
  }
  /// The caller buffers the kernel reads (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    for_each_msg_buffer(msg_, f);
  }
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  int fd_;
  iovec_list iov_;
  const ancillary* control_;  // caller's; may be null
  address to_{};              // AF_UNSPEC: no msg_name
  int flags_;
  msghdr msg_{};
};

/// co_await s.recv_msg(bufs, control): IORING_OP_RECVMSG with msg_name and msg_control,
/// MSG_CMSG_CLOEXEC.
class recv_msg_op : public io_op<recv_msg_op, message_info> {
 public:
  static constexpr const char* name = "recv_msg";
  recv_msg_op(io_context& ctx, int fd, std::span<const bytes> bufs, control_buffer* control,
              int flags)
      : io_op(ctx), fd_(fd), iov_(bufs), control_(control), flags_(flags) {}
  /// The caller buffers the kernel writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    for_each_msg_buffer(msg_, f);
  }
  void prep(io_uring_sqe& sqe) noexcept;
  result<message_info> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  iovec_list iov_;
  control_buffer* control_;  // caller's; may be null (then no control data is received)
  int flags_;
  address from_{};
  msghdr msg_{};
};

/// co_await s.close(): IORING_OP_CLOSE. Owns the descriptor until it is submitted: an op that
/// is never awaited, or whose submission fails, closes it synchronously when destroyed.
class close_op : public io_op<close_op, void> {
 public:
  static constexpr const char* name = "close";
  close_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  close_op(close_op&& o) noexcept : io_op(std::move(o)), fd_(std::exchange(o.fd_, -1)) {}
  ~close_op();
  bool await_ready() const noexcept { return fd_ < 0; }
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  int fd_;
  bool submitted_ = false;  // the kernel owns fd_ from prep on (nothing throws after prep)
};

}  // namespace detail
}  // namespace coring
