// SPDX-License-Identifier: MIT
// Description: socket, Python's socket object as io_uring awaitables (one class, all methods).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>
#include <coring/ancillary.hpp>
#include <coring/datagram.hpp>
#include <coring/detail/socket_ops.hpp>
#include <coring/io_context.hpp>
#include <coring/sockopt.hpp>
#include <coring/task.hpp>
#include <coring/unique_fd.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/socket.h>

namespace coring {

/// A socket bound to an io_context, shaped like Python's socket.socket. Cheap calls (bind,
/// listen, shutdown, options, names) are synchronous; calls that can block are awaitable and run
/// on the ring. Every awaitable also takes `.with_timeout(d)` and `.with_stop(token)`, and
/// `coring::as_result(op)` gives its non-throwing form.
/// Note: move-only; owns its descriptor. Operations hold the descriptor number, so the socket
/// must outlive every operation awaited on it (natural when it lives in the awaiting frame).
/// Buffers passed to an operation are the caller's and must stay valid until its co_await
/// completes.
class socket {
 public:
  /// An empty socket (fileno() == -1).
  socket() noexcept = default;
  /// Opens a socket (CLOEXEC): family AF_INET/AF_INET6/AF_UNIX, type SOCK_STREAM/SOCK_DGRAM/
  /// SOCK_SEQPACKET/SOCK_RAW. Throws: std::system_error (errno, "socket").
  socket(io_context& ctx, int family, int type, int protocol = 0);
  /// Adopts an open socket descriptor (takes ownership once it returns; family(), type() and
  /// protocol() then read back what it is).
  /// Throws: std::system_error(EBADF) if fd < 0, std::system_error(ENOTSOCK) if fd is not a
  /// socket (fd is then still the caller's).
  static socket from_fd(io_context& ctx, int fd);
  /// Adopts fd without any check (for descriptors known to be sockets, such as those an accept
  /// returned); its only system call puts fd in the context's registered file table, when it
  /// has one (issue 14). Takes ownership.
  static socket adopt(io_context& ctx, int fd) noexcept { return socket(ctx, fd, nullptr); }
  socket(socket&& o) noexcept
      : ctx_(o.ctx_), fd_(std::exchange(o.fd_, -1)), cancel_generation_(o.cancel_generation_),
        direct_(std::exchange(o.direct_, false)) {}
  socket& operator=(socket&& o) noexcept;
  socket(const socket&) = delete;
  socket& operator=(const socket&) = delete;
  /// Closes the descriptor synchronously if still open (errors are ignored: co_await close()
  /// to see them).
  ~socket();

  /// Binds to addr. Throws: std::system_error (errno, "bind <addr>").
  void bind(const address& addr);
  /// Starts listening. Throws: std::system_error (errno, "listen").
  void listen(int backlog = SOMAXCONN);
  /// Waits for a connection. Returns: the connected socket (CLOEXEC).
  /// Throws: std::system_error (errno, e.g. EMFILE when out of descriptors).
  [[nodiscard]] detail::accept_op accept() noexcept {
    return watched(detail::accept_op{*ctx_, fd_, nullptr});
  }
  /// As accept(), and stores the peer's address in peer (Python's `conn, addr = s.accept()`).
  /// Note: peer must stay valid until the co_await completes.
  [[nodiscard]] detail::accept_op accept(address& peer) noexcept {
    return watched(detail::accept_op{*ctx_, fd_, &peer});
  }
  /// Connects to addr (copied into the operation).
  /// Throws: std::system_error (errno, e.g. ECONNREFUSED, ENETUNREACH).
  [[nodiscard]] detail::connect_op connect(const address& addr) noexcept {
    return watched(detail::connect_op{*ctx_, fd_, addr});
  }
  /// Waits until the socket is ready for events (POLLIN, POLLOUT, POLLRDHUP, ...; POLLHUP and
  /// POLLERR are always reported), IORING_OP_POLL_ADD. Returns: the ready events (revents).
  /// Throws: std::system_error (errno; timed_out/operation_canceled on a deadline or a stop).
  [[nodiscard]] detail::poll_op poll(unsigned events) noexcept {
    return watched(detail::poll_op{*ctx_, fd_, events});
  }
  /// Receives up to buf.size() bytes.
  /// Returns: bytes received; 0 once the peer has shut down and all data was read (EOF is not
  /// an error). Throws: std::system_error (errno, e.g. ECONNRESET; operation_canceled on cancel).
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::recv_op recv(std::span<std::byte> buf, int flags = 0) noexcept {
    return watched(detail::recv_op{*ctx_, fd_, buf, flags});
  }
  /// Sends some of buf (MSG_NOSIGNAL: a closed peer gives EPIPE, never SIGPIPE).
  /// Returns: bytes sent, possibly fewer than buf.size(). Throws: std::system_error (errno).
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::send_op send(std::span<const std::byte> buf, int flags = 0) noexcept {
    return watched(detail::send_op{*ctx_, fd_, buf, flags});
  }
  /// Sends all of buf, resubmitting after short sends (Python's sendall).
  /// Returns: buf.size(). Throws: std::system_error whose message says how many bytes went out
  /// before the error. Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::send_all_op send_all(std::span<const std::byte> buf,
                                             int flags = 0) noexcept {
    return watched(detail::send_all_op{*ctx_, fd_, buf, flags});
  }
  /// As send_all, with IORING_OP_SEND_ZC (Linux 6.0+; plain send without it): the kernel sends
  /// from buf itself instead of copying it. Each submission completes twice (result, then the
  /// notification that the kernel let go of buf), and the co_await resumes after both.
  /// Returns/Throws: as send_all. Note: pays for large buffers on real NICs; on loopback it
  /// costs more than a copy (bench/sendzc measures it).
  [[nodiscard]] detail::send_all_op send_all_zc(std::span<const std::byte> buf,
                                                int flags = 0) noexcept {
    return watched(detail::send_all_op{*ctx_, fd_, buf, flags, true});
  }
  /// send_all for text. Note: the characters must stay valid until the co_await completes.
  [[nodiscard]] detail::send_all_op send_all(std::string_view text, int flags = 0) noexcept {
    return send_all(std::as_bytes(std::span(text.data(), text.size())), flags);
  }
  /// Sends one datagram to `to` (sendto; IORING_OP_SENDMSG, MSG_NOSIGNAL). Works on any
  /// socket type; on a connected one `to` must match the peer or be ignored, as the kernel says.
  /// Returns: bytes sent. Throws: std::system_error (errno, e.g. EMSGSIZE, ECONNREFUSED after an
  /// ICMP error on a connected socket, EAFNOSUPPORT for a wrong-family `to`).
  /// Note: buf must stay valid until the co_await completes; `to` is copied into the operation.
  [[nodiscard]] detail::send_to_op send_to(std::span<const std::byte> buf, const address& to,
                                           int flags = 0) noexcept {
    return watched(detail::send_to_op{*ctx_, fd_, buf, to, flags});
  }
  /// send_to for text. Note: the characters must stay valid until the co_await completes.
  template <class Text>
  requires std::is_convertible_v<const Text&, std::string_view>
  [[nodiscard]] detail::send_to_op send_to(const Text& text, const address& to,
                                           int flags = 0) noexcept {
    std::string_view v(text);
    return send_to(std::as_bytes(std::span(v.data(), v.size())), to, flags);
  }
  /// Receives one datagram and its sender (recvfrom; IORING_OP_RECVMSG). A datagram longer
  /// than buf is truncated, not an error: the result has truncated == true and size ==
  /// buf.size() (pass MSG_TRUNC in flags to get the full length in size instead, which may then
  /// exceed buf.size(); on a TCP socket MSG_TRUNC discards data, as recv(2) says).
  /// MSG_PEEK and MSG_WAITALL pass through.
  /// Returns: datagram{size, from, truncated}; size 0 with an empty datagram or at EOF.
  /// Throws: std::system_error (errno; operation_canceled on cancel).
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::recv_from_op recv_from(std::span<std::byte> buf, int flags = 0) noexcept {
    return watched(detail::recv_from_op{*ctx_, fd_, buf, flags});
  }
  /// Sends a message gathered from buffers, with ancillary data (SCM_RIGHTS, SCM_CREDENTIALS,
  /// IP_PKTINFO, ...) and an optional destination (sendmsg; IORING_OP_SENDMSG, MSG_NOSIGNAL).
  /// Returns: bytes sent (on a stream socket possibly fewer than the total).
  /// Throws: std::system_error (errno, e.g. EPERM for foreign credentials, EBADF for a closed
  /// descriptor in SCM_RIGHTS); std::bad_alloc when more than 4 buffers need heap iovecs.
  /// Note: the buffers, the span of buffers' pointees, and control must stay valid until the
  /// co_await completes (the iovec array and *to are copied into the operation).
  [[nodiscard]] detail::send_msg_op send_msg(std::span<const std::span<const std::byte>> buffers,
                                             const ancillary& control, const address* to = nullptr,
                                             int flags = 0) {
    return watched(detail::send_msg_op{*ctx_, fd_, buffers, &control, to, flags});
  }
  /// Receives a message scattered into buffers, with its sender and its ancillary data, which
  /// lands, parsed and owned, in control (recvmsg; IORING_OP_RECVMSG with MSG_CMSG_CLOEXEC, so
  /// received descriptors are close-on-exec). MSG_PEEK and MSG_WAITALL pass through (with a
  /// control buffer the kernel may still end a MSG_WAITALL stream receive early, as seen on
  /// Linux 6.18 over a Unix stream: loop if you need every byte).
  /// Returns: message_info{size, from, flags}; a datagram longer than the buffers is
  /// truncated and reported by truncated(), not thrown.
  /// Throws: std::system_error(errc::message_truncated) if the control messages did not fit
  /// control (MSG_CTRUNC; descriptors that did arrive are closed, the data is consumed);
  /// std::system_error (errno).
  /// Note: the buffers and control must stay valid (and control unmoved) until the co_await
  /// completes; the iovec array is copied into the operation.
  [[nodiscard]] detail::recv_msg_op recv_msg(std::span<const std::span<std::byte>> buffers,
                                             control_buffer& control, int flags = 0) {
    return watched(detail::recv_msg_op{*ctx_, fd_, buffers, &control, flags});
  }
  /// Closes the descriptor on the ring; the socket is empty at once. Idempotent. The descriptor
  /// is closed even if the operation is never awaited (synchronously, when it is destroyed).
  /// Throws: std::system_error (errno, "close").
  [[nodiscard]] detail::close_op close() noexcept {
    release_direct();
    return {*ctx_, std::exchange(fd_, -1)};
  }
  /// Shuts down reading (SHUT_RD), writing (SHUT_WR) or both (SHUT_RDWR); the peer's recv then
  /// returns 0 once it read everything. Throws: std::system_error (errno, e.g. ENOTCONN).
  void shutdown(int how = SHUT_RDWR);
  /// Cancels every operation pending on this socket, for good: each throws operation_canceled
  /// (unless its result raced the cancel: a completed result is delivered), a send_all stops
  /// after the part in flight (its error says how many bytes went out), and every operation
  /// started on this socket afterwards (also acceptor::accept, recv_stream::next) throws
  /// operation_canceled at once. Use it to end a connection's work; unlike Asio's cancel it
  /// is sticky, so a coroutine between two operations cannot miss it. Never throws.
  void cancel() noexcept;
  /// True once cancel() was called on this socket.
  bool cancelled() const noexcept {
    return ctx_ && fd_ >= 0 &&
           detail::ring_access::cancel_generation(*ctx_, fd_) != cancel_generation_;
  }
  /// Releases ownership of the descriptor and returns it; the socket becomes empty.
  /// (Its slot in the registered file table, if any, is emptied first.)
  [[nodiscard]] int detach() noexcept {
    release_direct();
    return std::exchange(fd_, -1);
  }
  /// The descriptor, or -1 if empty.
  int fileno() const noexcept { return fd_; }
  /// True if the socket holds a descriptor.
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// True if the socket also holds slot fileno() of its context's registered file table, so
  /// that its ring operations skip the descriptor lookup (issue 14, io_context_options::
  /// direct_files). Informational: every call works the same either way.
  /// Note: asks the context: call it while the context exists.
  bool direct() const noexcept { return direct_ && detail::ring_access::is_direct(*ctx_, fd_); }
  /// The connected peer's address (getpeername; Asio calls it remote_endpoint).
  /// Throws: std::system_error (errno, e.g. ENOTCONN).
  address peer_name() const;
  /// The local address (getsockname; Asio calls it local_endpoint): after bind to port 0 it
  /// holds the port the kernel picked. Throws: std::system_error (errno).
  address sock_name() const;
  io_context& context() const noexcept { return *ctx_; }
  /// The socket's address family (getsockopt SO_DOMAIN): AF_INET, AF_INET6, AF_UNIX, ...
  /// Throws: std::system_error (errno, e.g. EBADF when empty).
  int family() const;
  /// The socket type (SO_TYPE): SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_RAW.
  /// Throws: std::system_error (errno).
  int type() const;
  /// The protocol (SO_PROTOCOL), e.g. IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP; 0 for AF_UNIX.
  /// Throws: std::system_error (errno).
  int protocol() const;
  /// The credentials of the connected Unix peer, as they were at connect/socketpair time
  /// (SO_PEERCRED). Throws: std::system_error (errno, e.g. ENOTCONN).
  credentials peer_credentials() const;

  /// Sets a typed option: `s.set_option(sockopt::no_delay{true})`.
  /// Throws: std::system_error (errno, "setsockopt").
  template <class Option>
  void set_option(const Option& o) {
    if constexpr (std::is_same_v<Option, sockopt::linger>) {
      ::linger l{o.enabled ? 1 : 0, o.seconds};
      set_option(Option::level, Option::name, &l, sizeof l);
    } else {
      int v = static_cast<int>(o.value);
      set_option(Option::level, Option::name, &v, sizeof v);
    }
  }
  /// Reads a typed option: `s.get_option<sockopt::send_buffer_size>().value`.
  /// Throws: std::system_error (errno, "getsockopt").
  template <class Option>
  Option get_option() const {
    Option o{};
    if constexpr (std::is_same_v<Option, sockopt::linger>) {
      ::linger l{};
      get_option(Option::level, Option::name, &l, sizeof l);
      o.enabled = l.l_onoff != 0;
      o.seconds = l.l_linger;
    } else {
      int v = 0;
      get_option(Option::level, Option::name, &v, sizeof v);
      o.value = static_cast<decltype(o.value)>(v);
    }
    return o;
  }
  /// Raw setsockopt. Throws: std::system_error (errno, "setsockopt").
  void set_option(int level, int name, const void* value, socklen_t len);
  /// Raw getsockopt; returns the length the kernel wrote. Throws: std::system_error.
  socklen_t get_option(int level, int name, void* value, socklen_t len) const;

 private:
  friend class detail::accept_op;
  friend struct detail::ring_access;  // cancel_generation(s), for multishot states
  socket(io_context& ctx, int fd, std::nullptr_t) noexcept
      : ctx_(&ctx), fd_(fd), cancel_generation_(detail::ring_access::cancel_generation(ctx, fd)),
        direct_(detail::ring_access::install_direct(ctx, fd)) {}
  // Issue 14: empties the socket's slot in the registered file table (if it has one), and
  // closes fd_ too if close_fd; on another thread than the context's, the context's thread
  // does both (src/direct_files.cpp). fd_ is left as it is.
  void release_direct() noexcept {
    if (direct_) drop_direct(false);
  }
  void drop_direct(bool close_fd) noexcept;
  // Ties an operation to this socket's sticky cancel (cancel()).
  template <class Op>
  Op watched(Op&& op) const noexcept {
    op.watch_cancel(fd_, cancel_generation_);
    return std::move(op);
  }

  io_context* ctx_ = nullptr;
  int fd_ = -1;
  std::uint32_t cancel_generation_ = 0;  // ctx_->cancel_generation(fd_) when opened
  bool direct_ = false;                  // install_direct(fd_) succeeded: the slot must be released
};

inline std::uint32_t detail::ring_access::cancel_generation(const socket& s) noexcept {
  return s.cancel_generation_;
}

/// Waits until descriptor fd (any pollable kind: socket, pipe, eventfd) is ready for events,
/// IORING_OP_POLL_ADD. Returns: the ready events (revents). Throws: std::system_error (errno;
/// timed_out/operation_canceled on a deadline or a stop). Note: fd must stay open until the
/// co_await completes; unlike socket::poll, socket::cancel() does not reach it.
[[nodiscard]] inline detail::poll_op poll(io_context& ctx, int fd, unsigned events) noexcept {
  return {ctx, fd, events};
}

/// Creates a connected pair of Unix sockets (socketpair, CLOEXEC): type SOCK_STREAM,
/// SOCK_DGRAM or SOCK_SEQPACKET. Returns: the two ends.
/// Throws: std::system_error (errno, "socketpair").
std::pair<socket, socket> socket_pair(io_context& ctx, int type = SOCK_STREAM,
                                      int family = AF_UNIX);

/// Sends data plus the descriptors fds in one SCM_RIGHTS message (Python's socket.send_fds).
/// Returns: bytes of data sent (data must not be empty on a stream socket: the descriptors ride
/// on the data). Throws: std::system_error (errno, e.g. EBADF for a closed descriptor).
/// Note: s, fds and data must stay valid until the task completes; the descriptors stay the
/// caller's (the receiver gets duplicates).
[[nodiscard]] task<std::size_t> send_fds(socket& s, std::span<const int> fds,
                                         std::span<const std::byte> data);

/// What recv_fds() returns.
struct received_fds {
  std::size_t size = 0;        ///< bytes of data stored in the buffer
  std::vector<unique_fd> fds;  ///< received descriptors, owned and CLOEXEC
  int flags = 0;               ///< msg_flags (MSG_TRUNC when the data did not fit)
};
/// Receives data and up to max_fds descriptors (Python's socket.recv_fds).
/// Returns: received_fds. Throws: std::system_error(errc::message_truncated) if more than
/// max_fds descriptors came (all of them are closed; the data is consumed); std::system_error
/// (errno). Note: s and data must stay valid until the task completes.
[[nodiscard]] task<received_fds> recv_fds(socket& s, std::span<std::byte> data,
                                          std::size_t max_fds);

}  // namespace coring
