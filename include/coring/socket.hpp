// SPDX-License-Identifier: MIT
// Description: socket, Python's socket object as io_uring awaitables (one class, all methods).
#pragma once

#include <coring/address.hpp>
#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>
#include <coring/task.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace coring {

class socket;
class ancillary;
class control_buffer;

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
/// SO_PASSCRED: a Unix socket receives SCM_CREDENTIALS with every message (control_buffer).
using pass_credentials = boolean<SOL_SOCKET, SO_PASSCRED>;
/// IP_PKTINFO: an IPv4 datagram socket receives each datagram's destination and interface.
using packet_info_v4 = boolean<IPPROTO_IP, IP_PKTINFO>;
/// IPV6_RECVPKTINFO: an IPv6 datagram socket receives each datagram's destination and interface.
using packet_info_v6 = boolean<IPPROTO_IPV6, IPV6_RECVPKTINFO>;
/// SO_LINGER. `linger{true, 0}` makes close() send a reset (RST) instead of a FIN.
struct linger {
  static constexpr int level = SOL_SOCKET, name = SO_LINGER;
  bool enabled = false;
  int seconds = 0;
};
}  // namespace sockopt

/// A process's credentials, as SO_PEERCRED and SCM_CREDENTIALS carry them.
struct credentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  friend bool operator==(const credentials&, const credentials&) = default;
};

/// Where a datagram arrived (IP_PKTINFO / IPV6_PKTINFO): its destination address (port 0) and
/// the index of the interface it came in on.
struct packet_info {
  address destination;
  unsigned interface_index = 0;
};

/// What recv_from() returns.
struct datagram {
  /// Bytes stored in the buffer (never more than its size, unless MSG_TRUNC was passed in
  /// flags: then the kernel reports the datagram's full length here).
  std::size_t size = 0;
  /// The sender (empty/AF_UNSPEC for a connected stream or an unnamed Unix peer).
  address from;
  /// True if the datagram was longer than the buffer and its tail was discarded (MSG_TRUNC).
  bool truncated = false;
};

/// What recv_msg() returns (the ancillary data goes to the control_buffer).
struct message_info {
  /// Bytes stored across the buffers (see datagram::size about MSG_TRUNC).
  std::size_t size = 0;
  /// The sender (empty for a connected stream or an unnamed Unix peer).
  address from;
  /// msg_flags as the kernel returned them (MSG_TRUNC, MSG_EOR, MSG_OOB, ...).
  int flags = 0;
  /// True if the datagram was longer than the buffers (MSG_TRUNC in flags).
  bool truncated() const noexcept { return (flags & MSG_TRUNC) != 0; }
};

/// An owned file descriptor (of any kind): closes it on destruction. Move-only.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  /// Takes ownership of fd (-1: empty).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  /// The descriptor, or -1.
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership. Returns: the descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the held descriptor (errors ignored) and takes fd.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

/// Ancillary data (control messages) to send with socket::send_msg, built in typed steps:
/// `coring::ancillary a; a.add_fds(fds).add_credentials();`
/// Note: owns its (heap) bytes; it must stay alive and unchanged until the send_msg co_await
/// that uses it completes. Descriptors added by add_fds are not owned: they must stay open
/// until then too (the kernel duplicates them into the receiver).
class ancillary {
 public:
  ancillary() = default;
  /// Appends a control message with an arbitrary level, type and payload.
  /// Returns: *this. Throws: std::bad_alloc.
  ancillary& add(int level, int type, std::span<const std::byte> payload);
  /// Appends SCM_RIGHTS carrying fds (the receiver gets duplicates). Returns: *this.
  /// Throws: std::system_error(EINVAL) for more than 253 descriptors (SCM_MAX_FD).
  ancillary& add_fds(std::span<const int> fds);
  /// Appends SCM_CREDENTIALS with the caller's pid, uid and gid (the kernel checks them;
  /// root may send others). Returns: *this.
  ancillary& add_credentials();
  /// Appends SCM_CREDENTIALS with explicit values (privileged unless they are the caller's).
  ancillary& add_credentials(const credentials& c);
  /// Appends IP_PKTINFO (IPv4 source) or IPV6_PKTINFO (IPv6 source): the datagram is sent
  /// from source (port ignored) via interface_index (0: routing decides).
  /// Throws: std::system_error(errc::wrong_family) if source is not IPv4 or IPv6.
  ancillary& add_packet_info(const address& source, unsigned interface_index = 0);
  /// The encoded control bytes (msg_control / msg_controllen).
  std::span<const std::byte> bytes() const noexcept { return {buf_.data(), buf_.size()}; }
  bool empty() const noexcept { return buf_.empty(); }
  /// Removes every message.
  void clear() noexcept { buf_.clear(); }

 private:
  std::vector<std::byte> buf_;  // heap blocks are aligned for cmsghdr
};

/// The result of parsing received control bytes (parse_control). Descriptors are raw numbers:
/// the parser takes no ownership (control_buffer adopts them).
struct parsed_control {
  std::vector<int> fds;                     ///< every SCM_RIGHTS descriptor, in order
  std::optional<credentials> creds;         ///< the last SCM_CREDENTIALS
  std::optional<packet_info> pktinfo;       ///< the last IP_PKTINFO / IPV6_PKTINFO
  std::size_t other = 0;                    ///< well-formed messages of other kinds (skipped)
  bool malformed = false;                   ///< a header was cut short or its length lied
};

/// Parses len bytes of received control messages (msg_control after recvmsg), defensively:
/// any byte string is accepted; a header whose cmsg_len is too small or runs past len stops
/// the walk and sets malformed. Pure: no system calls, no ownership taken.
/// Returns: the typed contents. Throws: std::bad_alloc only.
/// Note: control must be aligned for cmsghdr (alignof(std::max_align_t) is enough) if len > 0.
parsed_control parse_control(const void* control, std::size_t len);

/// Caller-owned storage for the control messages recv_msg receives, and their parsed, owned
/// contents after each recv_msg: fds() (SCM_RIGHTS, CLOEXEC), credentials() (SCM_CREDENTIALS),
/// packet_info() (IP_PKTINFO / IPV6_PKTINFO). Reusable; each recv_msg replaces the contents
/// (closing descriptors nobody took).
/// Note: must stay alive and unmoved until the recv_msg co_await that uses it completes.
class control_buffer {
 public:
  /// Room for capacity bytes of control messages; space_for_fds(n) etc. help size it.
  explicit control_buffer(std::size_t capacity = 512);
  control_buffer(control_buffer&&) noexcept = default;
  control_buffer& operator=(control_buffer&&) noexcept = default;
  /// Bytes needed for one SCM_RIGHTS message with n descriptors (CMSG_SPACE).
  static std::size_t space_for_fds(std::size_t n) noexcept;
  /// Bytes needed for one SCM_CREDENTIALS message.
  static std::size_t space_for_credentials() noexcept;
  /// Bytes needed for one IPV6_PKTINFO (also enough for IP_PKTINFO) message.
  static std::size_t space_for_packet_info() noexcept;

  /// Descriptors received by the last recv_msg (owned, CLOEXEC); move them out to keep them.
  std::vector<unique_fd>& fds() noexcept { return fds_; }
  /// Credentials received by the last recv_msg (needs sockopt::pass_credentials).
  const std::optional<credentials>& creds() const noexcept { return creds_; }
  /// Destination and interface of the last datagram (needs sockopt::packet_info_v4/_v6).
  const std::optional<packet_info>& pktinfo() const noexcept { return pktinfo_; }
  /// Capacity in bytes.
  std::size_t capacity() const noexcept { return storage_.size() * sizeof(std::max_align_t); }
  /// Raw bytes the kernel wrote last time (for control messages coring does not type).
  std::span<const std::byte> raw() const noexcept {
    return std::as_bytes(std::span(storage_)).first(used_);
  }

  // ---- for recv_msg_op ----
  void* data() noexcept { return storage_.data(); }
  /// Drops the previous contents (closing descriptors) before a new receive.
  void clear() noexcept;
  /// Adopts what the kernel wrote. Returns: errc::message_truncated if ctrunc (all arrived
  /// descriptors closed), or success.
  std::error_code adopt(std::size_t used, bool ctrunc);

 private:
  std::vector<std::max_align_t> storage_;  // LIFETIME: msg_control points here during recv_msg
  std::size_t used_ = 0;
  std::vector<unique_fd> fds_;
  std::optional<credentials> creds_;
  std::optional<packet_info> pktinfo_;
};

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
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
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
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
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
  send_all_op(io_context& ctx, int fd, std::span<const std::byte> buf, int flags,
              bool zero_copy = false) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), flags_(flags), zero_copy_(zero_copy) {}
  send_all_op(send_all_op&&) noexcept = default;
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
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
  bool zero_copy_;
  std::size_t sent_ = 0;
};

/// co_await s.send_to(buf, to): IORING_OP_SENDMSG with msg_name, MSG_NOSIGNAL.
class send_to_op : public io_op<send_to_op, std::size_t> {
 public:
  static constexpr const char* name = "send_to";
  send_to_op(io_context& ctx, int fd, std::span<const std::byte> buf, const address& to,
             int flags) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), to_(to), flags_(flags) {}
  send_to_op(send_to_op&&) noexcept = default;
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
  void prep(io_uring_sqe& sqe) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  std::span<const std::byte> buf_;
  address to_;  // LIFETIME: a copy; msghdr and iovec are rebuilt in prep (the op may have moved)
  int flags_;
  msghdr msg_{};
  iovec iov_{};
};

/// co_await s.recv_from(buf): IORING_OP_RECVMSG with msg_name.
class recv_from_op : public io_op<recv_from_op, datagram> {
 public:
  static constexpr const char* name = "recv_from";
  recv_from_op(io_context& ctx, int fd, std::span<std::byte> buf, int flags) noexcept
      : io_op(ctx), fd_(fd), buf_(buf), flags_(flags) {}
  recv_from_op(recv_from_op&&) noexcept = default;
  /// The caller buffer the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    f(buf_.data(), buf_.size());
  }
  void prep(io_uring_sqe& sqe) noexcept;
  result<datagram> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  std::span<std::byte> buf_;
  int flags_;
  address from_{};
  msghdr msg_{};
  iovec iov_{};
};

/// Calls f(ptr, size) for each iovec and the control area of m.
template <class F>
void for_each_msg_buffer(const msghdr& m, F& f) {
  for (std::size_t i = 0; i < m.msg_iovlen; ++i) f(m.msg_iov[i].iov_base, m.msg_iov[i].iov_len);
  if (m.msg_control != nullptr) f(m.msg_control, m.msg_controllen);
}

/// Scatter/gather list of a send_msg / recv_msg: a few iovecs inline, more on the heap.
class iovec_list {
 public:
  iovec_list() noexcept = default;
  template <class Span>
  explicit iovec_list(std::span<const Span> bufs) {
    iovec* out = bufs.size() <= inline_.size() ? inline_.data() : (heap_.resize(bufs.size()), heap_.data());
    for (std::size_t i = 0; i < bufs.size(); ++i)
      out[i] = iovec{const_cast<std::byte*>(bufs[i].data()), bufs[i].size()};
    size_ = bufs.size();
  }
  iovec_list(iovec_list&&) noexcept = default;
  iovec* data() noexcept { return heap_.empty() ? inline_.data() : heap_.data(); }
  std::size_t size() const noexcept { return size_; }

 private:
  std::array<iovec, 4> inline_{};
  std::vector<iovec> heap_;
  std::size_t size_ = 0;
};

/// co_await s.send_msg(bufs, control, to): IORING_OP_SENDMSG, MSG_NOSIGNAL.
class send_msg_op : public io_op<send_msg_op, std::size_t> {
 public:
  static constexpr const char* name = "send_msg";
  send_msg_op(io_context& ctx, int fd, std::span<const std::span<const std::byte>> bufs,
              const ancillary* control, const address* to, int flags)
      : io_op(ctx), fd_(fd), iov_(bufs), control_(control), flags_(flags) {
    if (to) to_ = *to;
  }
  send_msg_op(send_msg_op&&) noexcept = default;
  /// The caller buffers the kernel reads or writes (checked at completion in ASan builds).
  template <class F>
  void for_each_buffer(F f) const {
    for_each_msg_buffer(msg_, f);
  }
  void prep(io_uring_sqe& sqe) noexcept;
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;

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
  recv_msg_op(io_context& ctx, int fd, std::span<const std::span<std::byte>> bufs,
              control_buffer* control, int flags)
      : io_op(ctx), fd_(fd), iov_(bufs), control_(control), flags_(flags) {}
  recv_msg_op(recv_msg_op&&) noexcept = default;
  /// The caller buffers the kernel reads or writes (checked at completion in ASan builds).
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
  /// Adopts an open socket descriptor (takes ownership once it returns; family(), type() and
  /// protocol() then read back what it is).
  /// Throws: std::system_error(EBADF) if fd < 0, std::system_error(ENOTSOCK) if fd is not a
  /// socket (fd is then still the caller's).
  static socket from_fd(io_context& ctx, int fd);
  /// Adopts fd without any check or syscall (for descriptors known to be sockets, such as
  /// those an accept returned). Takes ownership.
  static socket adopt(io_context& ctx, int fd) noexcept { return socket(ctx, fd, nullptr); }
  socket(socket&& o) noexcept
      : ctx_(o.ctx_), fd_(std::exchange(o.fd_, -1)), cancel_generation_(o.cancel_generation_) {}
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
  [[nodiscard]] detail::send_all_op send_all(std::span<const std::byte> buf, int flags = 0) noexcept {
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
  /// send_all for text.
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
  /// Closes the descriptor on the ring; the socket is empty at once. Idempotent.
  /// Throws: std::system_error (errno, "close").
  [[nodiscard]] detail::close_op close() noexcept { return {*ctx_, std::exchange(fd_, -1)}; }
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
    return ctx_ && fd_ >= 0 && ctx_->cancel_generation(fd_) != cancel_generation_;
  }
  /// The context's cancel_generation(fileno()) when this socket was opened (for coring's
  /// operation types: see io_context::cancel_fd).
  std::uint32_t cancel_generation() const noexcept { return cancel_generation_; }
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
  socket(io_context& ctx, int fd, std::nullptr_t) noexcept
      : ctx_(&ctx), fd_(fd), cancel_generation_(ctx.cancel_generation(fd)) {}
  // Ties an operation to this socket's sticky cancel (cancel()).
  template <class Op>
  Op watched(Op&& op) const noexcept {
    op.watch_cancel(fd_, cancel_generation_);
    return std::move(op);
  }

  io_context* ctx_ = nullptr;
  int fd_ = -1;
  std::uint32_t cancel_generation_ = 0;  // ctx_->cancel_generation(fd_) when opened
};

/// Creates a connected pair of Unix sockets (socketpair, CLOEXEC): type SOCK_STREAM,
/// SOCK_DGRAM or SOCK_SEQPACKET. Returns: the two ends.
/// Throws: std::system_error (errno, "socketpair").
std::pair<socket, socket> socket_pair(io_context& ctx, int type = SOCK_STREAM, int family = AF_UNIX);

/// Sends data plus the descriptors fds in one SCM_RIGHTS message (Python's socket.send_fds).
/// Returns: bytes of data sent (data must not be empty on a stream socket: the descriptors ride
/// on the data). Throws: std::system_error (errno, e.g. EBADF for a closed descriptor).
/// Note: s, fds and data must stay valid until the task completes; the descriptors stay the
/// caller's (the receiver gets duplicates).
[[nodiscard]] task<std::size_t> send_fds(socket& s, std::span<const int> fds,
                                         std::span<const std::byte> data);

/// What recv_fds() returns.
struct received_fds {
  std::size_t size = 0;          ///< bytes of data stored in the buffer
  std::vector<unique_fd> fds;    ///< received descriptors, owned and CLOEXEC
  int flags = 0;                 ///< msg_flags (MSG_TRUNC when the data did not fit)
};
/// Receives data and up to max_fds descriptors (Python's socket.recv_fds).
/// Returns: received_fds. Throws: std::system_error(errc::message_truncated) if more than
/// max_fds descriptors came (all of them are closed; the data is consumed); std::system_error
/// (errno). Note: s and data must stay valid until the task completes.
[[nodiscard]] task<received_fds> recv_fds(socket& s, std::span<std::byte> data,
                                          std::size_t max_fds);

/// Opens a TCP listener on "host:port" (numeric host; port 0 picks a free one) with
/// SO_REUSEADDR. Read the chosen port back with sock_name().port().
/// Throws: std::system_error (errc::invalid_address, or the errno of socket/bind/listen).
socket tcp_listen(io_context& ctx, std::string_view host_port, int backlog = SOMAXCONN);
/// As above, for an address.
socket tcp_listen(io_context& ctx, const address& addr, int backlog = SOMAXCONN);
/// Connects a new TCP socket, with TCP_NODELAY, to addr or to "host:port". A numeric host is
/// used as is; a name ("localhost:9000", "[name]:port" also works) is looked up with
/// coring::resolve (off the ring's thread) and each address is tried in turn.
/// Returns: the connected socket.
/// Throws: std::system_error: errc::invalid_address (no port), resolve_category() (lookup
/// failed), or the errno of the last address tried (e.g. ECONNREFUSED).
/// Note: host_port is copied before the first suspension; it need not outlive the call.
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, std::string_view host_port);
[[nodiscard]] task<socket> tcp_connect(io_context& ctx, address addr);

}  // namespace coring
