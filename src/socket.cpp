// SPDX-License-Identifier: MIT
// Description: socket: synchronous calls, and the prep/complete halves of each ring operation.
#include <coring/socket.hpp>

#include <liburing.h>

#include <cerrno>
#include <string>

#include <sys/socket.h>
#include <unistd.h>

namespace coring {

namespace detail {

void accept_op::prep(io_uring_sqe& sqe) noexcept {
  len_ = address::capacity();
  io_uring_prep_accept(&sqe, fd_, storage_.data(), &len_, SOCK_CLOEXEC);
}

result<socket> accept_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  if (peer_) {
    *peer_ = storage_;
    peer_->resize(len_);
  }
  return socket(context(), res, nullptr);
}

void connect_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_connect(&sqe, fd_, to_.data(), to_.size());
}

result<void> connect_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  return {};
}

void recv_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_recv(&sqe, fd_, buf_.data(), buf_.size(), flags_);
}

result<std::size_t> recv_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  return static_cast<std::size_t>(res);
}

void send_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_send(&sqe, fd_, buf_.data(), buf_.size(), flags_ | MSG_NOSIGNAL);
}

result<std::size_t> send_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  return static_cast<std::size_t>(res);
}

void send_all_op::prep(io_uring_sqe& sqe) noexcept {
  auto rest = buf_.subspan(sent_);
  // MSG_WAITALL: on stream sockets the kernel itself retries short sends (io_net_retry), so a
  // large send usually needs one CQE; again() still covers the short counts it can return.
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

void close_op::prep(io_uring_sqe& sqe) noexcept { io_uring_prep_close(&sqe, fd_); }

result<void> close_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  return {};
}

}  // namespace detail

socket::socket(io_context& ctx, int family, int type, int protocol) : ctx_(&ctx) {
  fd_ = ::socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) throw_errno(errno, "socket");
}

socket socket::from_fd(io_context& ctx, int fd) {
  if (fd < 0) throw_errno(EBADF, "socket::from_fd");
  return socket(ctx, fd, nullptr);
}

socket& socket::operator=(socket&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    ctx_ = o.ctx_;
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

socket::~socket() {
  if (fd_ >= 0) ::close(fd_);
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
  if (fd_ >= 0 && ctx_) ctx_->cancel_fd(fd_);
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

socket tcp_listen(io_context& ctx, const address& addr, int backlog) {
  socket s(ctx, addr.family(), SOCK_STREAM);
  s.set_option(sockopt::reuse_address{true});
  s.bind(addr);
  s.listen(backlog);
  return s;
}

socket tcp_listen(io_context& ctx, std::string_view host_port, int backlog) {
  return tcp_listen(ctx, address::parse(host_port), backlog);
}

task<socket> tcp_connect(io_context& ctx, address addr) {
  socket s(ctx, addr.family(), SOCK_STREAM);
  s.set_option(sockopt::no_delay{true});
  co_await s.connect(addr);
  co_return s;
}

task<socket> tcp_connect(io_context& ctx, std::string_view host_port) {
  // Not a coroutine: the text is parsed now, so it need not outlive the task.
  return tcp_connect(ctx, address::parse(host_port));
}

}  // namespace coring
