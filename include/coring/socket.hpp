// SPDX-License-Identifier: MIT
// Description: socket, Python's socket object as io_uring awaitables (one class, all methods).
#pragma once

#include <coring/address.hpp>
#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace coring {

class socket;

/// Typed socket options for socket::set_option / get_option.
namespace sockopt {
/// A boolean option: `s.set_option(sockopt::no_delay{true})`.
template <int Level, int Name>
struct boolean {
  static constexpr int level = Level, name = Name;
  bool value = false;
};
/// An int option: `s.get_option<sockopt::recv_buffer_size>().value`.
template <int Level, int Name>
struct integer {
  static constexpr int level = Level, name = Name;
  int value = 0;
};
using reuse_address = boolean<SOL_SOCKET, SO_REUSEADDR>;   ///< SO_REUSEADDR
using reuse_port = boolean<SOL_SOCKET, SO_REUSEPORT>;      ///< SO_REUSEPORT
using keep_alive = boolean<SOL_SOCKET, SO_KEEPALIVE>;      ///< SO_KEEPALIVE
using broadcast = boolean<SOL_SOCKET, SO_BROADCAST>;       ///< SO_BROADCAST
using no_delay = boolean<IPPROTO_TCP, TCP_NODELAY>;        ///< TCP_NODELAY
using v6_only = boolean<IPPROTO_IPV6, IPV6_V6ONLY>;        ///< IPV6_V6ONLY
using recv_buffer_size = integer<SOL_SOCKET, SO_RCVBUF>;   ///< SO_RCVBUF (kernel doubles it)
using send_buffer_size = integer<SOL_SOCKET, SO_SNDBUF>;   ///< SO_SNDBUF (kernel doubles it)
using error = integer<SOL_SOCKET, SO_ERROR>;               ///< SO_ERROR (read only)
/// SO_LINGER. `linger{true, 0}` makes close() send a reset (RST) instead of a FIN.
struct linger {
  static constexpr int level = SOL_SOCKET, name = SO_LINGER;
  bool enabled = false;
  int seconds = 0;
};
}  // namespace sockopt

namespace detail {

/// co_await s.accept(): IORING_OP_ACCEPT, result CLOEXEC.
class accept_op : public io_op<accept_op, socket> {
 public:
  static constexpr const char* name = "accept";
  accept_op(io_context& ctx, int fd, address* peer) noexcept : io_op(ctx), fd_(fd), peer_(peer) {}
  accept_op(accept_op&&) noexcept = default;
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
  connect_op(connect_op&&) noexcept = default;
  void prep(io_uring_sqe& sqe) noexcept;
  result<void> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  address to_;  // LIFETIME: the kernel reads it until completion; a copy lives in the op
};

/// co_await s.recv(buf): IORING_OP_RECV.
class recv_op : public io_op<recv_op, std::size_t> {
 public:
  static constexpr const char* name = "recv";
  recv_op(io_context& ctx, int fd, std::span<std::byte> buf, int flags) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), flags_(flags) {}
  recv_op(recv_op&&) noexcept = default;
  void prep(io_uring_sqe& sqe) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  std::span<std::byte> buf_;
  int flags_;
};

/// co_await s.send(buf): IORING_OP_SEND with MSG_NOSIGNAL; may be short.
class send_op : public io_op<send_op, std::size_t> {
 public:
  static constexpr const char* name = "send";
  send_op(io_context& ctx, int fd, std::span<const std::byte> buf, int flags) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), flags_(flags) {}
  send_op(send_op&&) noexcept = default;
  void prep(io_uring_sqe& sqe) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  std::span<const std::byte> buf_;
  int flags_;
};

/// co_await s.send_all(buf): sends until every byte went out, resubmitting after short sends
/// from the completion path (the awaiting coroutine is resumed once, at the end).
class send_all_op : public io_op<send_all_op, std::size_t> {
 public:
  static constexpr const char* name = "send_all";
  send_all_op(io_context& ctx, int fd, std::span<const std::byte> buf, int flags) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), flags_(flags) {}
  send_all_op(send_all_op&&) noexcept = default;
  bool await_ready() const noexcept { return buf_.empty(); }
  void prep(io_uring_sqe& sqe) noexcept;
  bool again(int res, std::uint32_t flags) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;
  [[noreturn]] void raise(std::error_code ec) const;
  /// Bytes sent so far (also after a failure).
  std::size_t sent() const noexcept { return sent_; }

 private:
  int fd_;
  std::span<const std::byte> buf_;
  int flags_;
  std::size_t sent_ = 0;
};

/// co_await s.close(): IORING_OP_CLOSE.
class close_op : public io_op<close_op, void> {
 public:
  static constexpr const char* name = "close";
  close_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  close_op(close_op&&) noexcept = default;
  bool await_ready() const noexcept { return fd_ < 0; }
  void prep(io_uring_sqe& sqe) noexcept;
  result<void> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
};

}  // namespace detail

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
  /// Adopts an open descriptor (takes ownership). Throws: std::system_error(EBADF) if fd < 0.
  static socket from_fd(io_context& ctx, int fd);
  socket(socket&& o) noexcept : ctx_(o.ctx_), fd_(std::exchange(o.fd_, -1)) {}
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
  [[nodiscard]] detail::accept_op accept() noexcept { return {*ctx_, fd_, nullptr}; }
  /// As accept(), and stores the peer's address in peer (Python's `conn, addr = s.accept()`).
  /// Note: peer must stay valid until the co_await completes.
  [[nodiscard]] detail::accept_op accept(address& peer) noexcept { return {*ctx_, fd_, &peer}; }
  /// Connects to addr (copied into the operation).
  /// Throws: std::system_error (errno, e.g. ECONNREFUSED, ENETUNREACH).
  [[nodiscard]] detail::connect_op connect(const address& addr) noexcept {
    return {*ctx_, fd_, addr};
  }
  /// Receives up to buf.size() bytes.
  /// Returns: bytes received; 0 once the peer has shut down and all data was read (EOF is not
  /// an error). Throws: std::system_error (errno, e.g. ECONNRESET; operation_canceled on cancel).
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::recv_op recv(std::span<std::byte> buf, int flags = 0) noexcept {
    return {*ctx_, fd_, buf, flags};
  }
  /// Sends some of buf (MSG_NOSIGNAL: a closed peer gives EPIPE, never SIGPIPE).
  /// Returns: bytes sent, possibly fewer than buf.size(). Throws: std::system_error (errno).
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::send_op send(std::span<const std::byte> buf, int flags = 0) noexcept {
    return {*ctx_, fd_, buf, flags};
  }
  /// Sends all of buf, resubmitting after short sends (Python's sendall).
  /// Returns: buf.size(). Throws: std::system_error whose message says how many bytes went out
  /// before the error. Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::send_all_op send_all(std::span<const std::byte> buf, int flags = 0) noexcept {
    return {*ctx_, fd_, buf, flags};
  }
  /// send_all for text.
  [[nodiscard]] detail::send_all_op send_all(std::string_view text, int flags = 0) noexcept {
    return send_all(std::as_bytes(std::span(text.data(), text.size())), flags);
  }
  /// Closes the descriptor on the ring; the socket is empty at once. Idempotent.
  /// Throws: std::system_error (errno, "close").
  [[nodiscard]] detail::close_op close() noexcept { return {*ctx_, std::exchange(fd_, -1)}; }
  /// Shuts down reading (SHUT_RD), writing (SHUT_WR) or both (SHUT_RDWR); the peer's recv then
  /// returns 0 once it read everything. Throws: std::system_error (errno, e.g. ENOTCONN).
  void shutdown(int how = SHUT_RDWR);
  /// Asks the kernel to cancel every operation pending on this socket; each throws
  /// operation_canceled (unless its result raced the cancel). Never throws.
  void cancel() noexcept;
  /// Releases ownership of the descriptor and returns it; the socket becomes empty.
  [[nodiscard]] int detach() noexcept { return std::exchange(fd_, -1); }
  /// The descriptor, or -1 if empty.
  int fileno() const noexcept { return fd_; }
  /// True if the socket holds a descriptor.
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// The connected peer's address (getpeername; also known as remote_endpoint).
  /// Throws: std::system_error (errno, e.g. ENOTCONN).
  address peer_name() const;
  /// The local address (getsockname; also known as local_endpoint): after bind to port 0 it
  /// holds the port the kernel picked. Throws: std::system_error (errno).
  address sock_name() const;
  io_context& context() const noexcept { return *ctx_; }

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
  socket(io_context& ctx, int fd, std::nullptr_t) noexcept : ctx_(&ctx), fd_(fd) {}

  io_context* ctx_ = nullptr;
  int fd_ = -1;
};

/// Opens a TCP listener on "host:port" (numeric host; port 0 picks a free one) with
/// SO_REUSEADDR. Read the chosen port back with sock_name().port().
/// Throws: std::system_error (errc::invalid_address, or the errno of socket/bind/listen).
socket tcp_listen(io_context& ctx, std::string_view host_port, int backlog = SOMAXCONN);
/// As above, for an address.
socket tcp_listen(io_context& ctx, const address& addr, int backlog = SOMAXCONN);
/// Connects a new TCP socket to "host:port" (numeric host) or to addr, with TCP_NODELAY.
/// Throws: std::system_error (errc::invalid_address, or the errno, e.g. ECONNREFUSED).
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, std::string_view host_port);
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, address addr);

}  // namespace coring
