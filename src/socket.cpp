// SPDX-License-Identifier: MIT
// Description: socket: synchronous calls, and the prep/complete halves of each ring operation.
#include <coring/socket.hpp>

#include <liburing.h>

#include "detail/valgrind.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace coring {

using detail::ring_access;

namespace detail {

void accept_op::prep(io_uring_sqe& sqe) noexcept {
  len_ = address::capacity();
  io_uring_prep_accept(&sqe, fd_, storage_.data(), &len_, SOCK_CLOEXEC);
}

result<socket> accept_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  kernel_wrote(storage_.data(), len_);
  if (peer_) {
    *peer_ = storage_;
    peer_->resize(len_);
  }
  return socket(context(), res, nullptr);
}

void connect_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_connect(&sqe, fd_, to_.data(), to_.size());
}

void poll_op::prep(io_uring_sqe& sqe) noexcept { io_uring_prep_poll_add(&sqe, fd_, events_); }

result<unsigned> poll_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  return static_cast<unsigned>(res);
}

void recv_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_recv(&sqe, fd_, buf_.data(), buf_.size(), flags_);
}

void send_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_send(&sqe, fd_, buf_.data(), buf_.size(), flags_ | MSG_NOSIGNAL);
}

void send_all_op::prep(io_uring_sqe& sqe) noexcept {
  auto rest = buf_.subspan(sent_);
  // MSG_WAITALL: on stream sockets the kernel itself retries short sends (io_net_retry), so a
  // large send usually needs one CQE; again() still covers the short counts it can return.
  if (zero_copy_ && context().features().op_send_zc)
    io_uring_prep_send_zc(&sqe, fd_, rest.data(), rest.size(), flags_ | MSG_NOSIGNAL | MSG_WAITALL,
                          0);
  else
    io_uring_prep_send(&sqe, fd_, rest.data(), rest.size(), flags_ | MSG_NOSIGNAL | MSG_WAITALL);
}

bool send_all_op::again(int res, std::uint32_t) noexcept {
  if (res <= 0) return false;
  sent_ += static_cast<std::size_t>(res);
  return sent_ < buf_.size();
}

result<std::size_t> send_all_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  // again() already counted a positive res; 0 means the kernel accepted nothing more.
  if (sent_ < buf_.size() && res == 0) return errno_code(EPIPE);
  return sent_;
}

void send_all_op::raise(std::error_code ec) const {
  throw_error(ec, "send_all: " + std::to_string(sent_) + " of " + std::to_string(buf_.size()) +
                      " bytes sent");
}

void send_to_op::prep(io_uring_sqe& sqe) noexcept {
  // LIFETIME: msghdr and iovec live in the op, which stays put from here to the final CQE.
  iov_ = iovec{const_cast<std::byte*>(buf_.data()), buf_.size()};
  msg_ = msghdr{};
  msg_.msg_name = to_.data();
  msg_.msg_namelen = to_.size();
  msg_.msg_iov = &iov_;
  msg_.msg_iovlen = 1;
  io_uring_prep_sendmsg(&sqe, fd_, &msg_, static_cast<unsigned>(flags_ | MSG_NOSIGNAL));
}

void recv_from_op::prep(io_uring_sqe& sqe) noexcept {
  iov_ = iovec{buf_.data(), buf_.size()};
  msg_ = msghdr{};
  msg_.msg_name = from_.data();
  msg_.msg_namelen = address::capacity();
  msg_.msg_iov = &iov_;
  msg_.msg_iovlen = 1;
  io_uring_prep_recvmsg(&sqe, fd_, &msg_, static_cast<unsigned>(flags_));
}

result<datagram> recv_from_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  kernel_wrote(buf_.data(), std::min(buf_.size(), static_cast<std::size_t>(res)));
  kernel_wrote(from_.data(), msg_.msg_namelen);
  datagram d;
  d.size = static_cast<std::size_t>(res);
  // A connected stream leaves msg_namelen 0: from stays empty (AF_UNSPEC).
  from_.resize(msg_.msg_namelen);
  if (msg_.msg_namelen == 0) from_ = address{};
  d.from = from_;
  d.truncated = (msg_.msg_flags & MSG_TRUNC) != 0;
  return d;
}

void send_msg_op::prep(io_uring_sqe& sqe) noexcept {
  msg_ = msghdr{};
  if (to_.family() != AF_UNSPEC) {
    msg_.msg_name = to_.data();
    msg_.msg_namelen = to_.size();
  }
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  if (control_ && !control_->empty()) {
    auto c = control_->bytes();
    msg_.msg_control = const_cast<std::byte*>(c.data());
    msg_.msg_controllen = c.size();
  }
  io_uring_prep_sendmsg(&sqe, fd_, &msg_, static_cast<unsigned>(flags_ | MSG_NOSIGNAL));
}

void recv_msg_op::prep(io_uring_sqe& sqe) noexcept {
  msg_ = msghdr{};
  msg_.msg_name = from_.data();
  msg_.msg_namelen = address::capacity();
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  if (control_) {
    control_->clear();
    msg_.msg_control = control_->data();
    msg_.msg_controllen = control_->capacity();
  }
  io_uring_prep_recvmsg(&sqe, fd_, &msg_, static_cast<unsigned>(flags_ | MSG_CMSG_CLOEXEC));
}

result<message_info> recv_msg_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  kernel_wrote(msg_.msg_iov, msg_.msg_iovlen, static_cast<std::size_t>(res));
  kernel_wrote(from_.data(), msg_.msg_namelen);
  if (msg_.msg_control) kernel_wrote(msg_.msg_control, msg_.msg_controllen);
  if (control_) {
    try {
      if (auto ec = control_->adopt(msg_.msg_controllen, (msg_.msg_flags & MSG_CTRUNC) != 0))
        return ec;
    } catch (...) {  // bad_alloc while adopting: adopt() closed every descriptor
      return make_error_code(std::errc::not_enough_memory);
    }
  }
  message_info m;
  m.size = static_cast<std::size_t>(res);
  from_.resize(msg_.msg_namelen);
  if (msg_.msg_namelen == 0) from_ = address{};
  m.from = from_;
  m.flags = msg_.msg_flags;
  return m;
}

void close_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_close(&sqe, fd_);
  submitted_ = true;
}

close_op::~close_op() {
  if (fd_ >= 0 && !submitted_) ::close(fd_);
}

}  // namespace detail
socket::socket(io_context& ctx, int family, int type, int protocol) : ctx_(&ctx) {
  fd_ = ::socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) throw_errno(errno, "socket");
  ring_access::fd_closing(ctx, fd_);  // a new descriptor: the epoll backend forgets the number
  cancel_generation_ = ring_access::cancel_generation(ctx, fd_);
}

socket socket::from_fd(io_context& ctx, int fd) {
  if (fd < 0) throw_errno(EBADF, "socket::from_fd");
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) throw_errno(errno, "socket::from_fd");
  ring_access::fd_closing(ctx, fd);  // possibly a new descriptor (socketpair, adopted)
  return socket(ctx, fd, nullptr);
}

namespace {
int int_option(int fd, int name, const char* what) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, SOL_SOCKET, name, &v, &len) < 0) throw_errno(errno, what);
  return v;
}
}  // namespace

int socket::family() const { return int_option(fd_, SO_DOMAIN, "getsockopt SO_DOMAIN"); }
int socket::type() const { return int_option(fd_, SO_TYPE, "getsockopt SO_TYPE"); }
int socket::protocol() const { return int_option(fd_, SO_PROTOCOL, "getsockopt SO_PROTOCOL"); }

credentials socket::peer_credentials() const {
  ucred u{};
  socklen_t len = sizeof u;
  if (::getsockopt(fd_, SOL_SOCKET, SO_PEERCRED, &u, &len) < 0)
    throw_errno(errno, "getsockopt SO_PEERCRED");
  return credentials{u.pid, u.uid, u.gid};
}

std::pair<socket, socket> socket_pair(io_context& ctx, int type, int family) {
  int fds[2];
  if (::socketpair(family, type | SOCK_CLOEXEC, 0, fds) < 0) throw_errno(errno, "socketpair");
  return {socket::from_fd(ctx, fds[0]), socket::from_fd(ctx, fds[1])};
}

task<std::size_t> send_fds(socket& s, std::span<const int> fds, std::span<const std::byte> data) {
  ancillary control;
  control.add_fds(fds);
  std::array<std::span<const std::byte>, 1> bufs{data};
  std::size_t n = co_await s.send_msg(bufs, control);
  co_return n;
}

task<received_fds> recv_fds(socket& s, std::span<std::byte> data, std::size_t max_fds) {
  control_buffer control(control_buffer::space_for_fds(max_fds == 0 ? 1 : max_fds));
  std::array<std::span<std::byte>, 1> bufs{data};
  message_info m = co_await s.recv_msg(bufs, control);
  received_fds out;
  out.size = m.size;
  out.flags = m.flags;
  out.fds = std::move(control.fds());
  if (out.fds.size() > max_fds) {  // CMSG_SPACE rounding can leave room for one more
    out.fds.clear();
    throw_error(errc::message_truncated, "recv_fds: more descriptors than max_fds");
  }
  co_return out;
}

socket& socket::operator=(socket&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      if (ctx_) ring_access::fd_closing(*ctx_, fd_);
      ::close(fd_);
    }
    ctx_ = o.ctx_;
    fd_ = std::exchange(o.fd_, -1);
    cancel_generation_ = o.cancel_generation_;
  }
  return *this;
}

socket::~socket() {
  if (fd_ >= 0) {
    if (ctx_) ring_access::fd_closing(*ctx_, fd_);
    ::close(fd_);
  }
}

void socket::bind(const address& addr) {
  if (::bind(fd_, addr.data(), addr.size()) < 0) {
    int e = errno;
    throw_errno(e, ("bind " + addr.to_string()).c_str());
  }
}

void socket::listen(int backlog) {
  if (::listen(fd_, backlog) < 0) throw_errno(errno, "listen");
}

void socket::shutdown(int how) {
  if (::shutdown(fd_, how) < 0) throw_errno(errno, "shutdown");
}

void socket::cancel() noexcept {
  if (fd_ >= 0 && ctx_) ring_access::cancel_fd(*ctx_, fd_);
}

address socket::peer_name() const {
  address a;
  socklen_t len = address::capacity();
  if (::getpeername(fd_, a.data(), &len) < 0) throw_errno(errno, "getpeername");
  a.resize(len);
  return a;
}

address socket::sock_name() const {
  address a;
  socklen_t len = address::capacity();
  if (::getsockname(fd_, a.data(), &len) < 0) throw_errno(errno, "getsockname");
  a.resize(len);
  return a;
}

void socket::set_option(int level, int name, const void* value, socklen_t len) {
  if (::setsockopt(fd_, level, name, value, len) < 0) throw_errno(errno, "setsockopt");
}

socklen_t socket::get_option(int level, int name, void* value, socklen_t len) const {
  if (::getsockopt(fd_, level, name, value, &len) < 0) throw_errno(errno, "getsockopt");
  return len;
}

}  // namespace coring
