// SPDX-License-Identifier: MIT
// Description: ancillary data: building and parsing control messages (SCM_RIGHTS,
// SCM_CREDENTIALS, IP_PKTINFO). No coroutines here, so the cmsg fuzzer compiles it as is.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <coring/socket.hpp>
#include <cstring>
#include <string>

namespace coring {

// ---- ancillary data ----

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

ancillary& ancillary::add(int level, int type, std::span<const std::byte> payload) {
  std::size_t at = buf_.size();
  buf_.resize(at + CMSG_SPACE(payload.size()));
  // Each message starts at a CMSG_ALIGNed offset of a heap block (aligned for cmsghdr).
  cmsghdr h{};
  h.cmsg_len = CMSG_LEN(payload.size());
  h.cmsg_level = level;
  h.cmsg_type = type;
  std::memcpy(buf_.data() + at, &h, sizeof h);
  if (!payload.empty()) std::memcpy(buf_.data() + at + CMSG_LEN(0), payload.data(), payload.size());
  return *this;
}

ancillary& ancillary::add_fds(std::span<const int> fds) {
  if (fds.size() > 253) throw_errno(EINVAL, "ancillary::add_fds: more than 253 (SCM_MAX_FD)");
  return add(SOL_SOCKET, SCM_RIGHTS, std::as_bytes(fds));
}

ancillary& ancillary::add_credentials() {
  return add_credentials(credentials{::getpid(), ::getuid(), ::getgid()});
}

ancillary& ancillary::add_credentials(const credentials& c) {
  ucred u{c.pid, c.uid, c.gid};
  return add(SOL_SOCKET, SCM_CREDENTIALS, std::as_bytes(std::span(&u, 1)));
}

ancillary& ancillary::add_packet_info(const address& source, unsigned interface_index) {
  if (source.family() == AF_INET) {
    in_pktinfo p{};
    p.ipi_ifindex = static_cast<int>(interface_index);
    p.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(source.data())->sin_addr;
    return add(IPPROTO_IP, IP_PKTINFO, std::as_bytes(std::span(&p, 1)));
  }
  if (source.family() == AF_INET6) {
    in6_pktinfo p{};
    p.ipi6_ifindex = interface_index;
    p.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(source.data())->sin6_addr;
    return add(IPPROTO_IPV6, IPV6_PKTINFO, std::as_bytes(std::span(&p, 1)));
  }
  throw_error(errc::wrong_family, "ancillary::add_packet_info: source must be IPv4 or IPv6");
}

parsed_control parse_control(const void* control, std::size_t len) {
  parsed_control out;
  if (control == nullptr || len < sizeof(cmsghdr)) return out;
  // CMSG_FIRSTHDR/CMSG_NXTHDR only look at msg_control and msg_controllen.
  msghdr msg{};
  msg.msg_control = const_cast<void*>(control);
  msg.msg_controllen = len;
  const auto* base = static_cast<const unsigned char*>(control);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;) {
    auto offset = static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(c) - base);
    std::size_t room = len - offset;  // CMSG_* guarantee a whole header fits at offset
    std::size_t clen = c->cmsg_len;
    // TRICKY: check cmsg_len before CMSG_NXTHDR and before touching the payload, so that a
    // lying length can neither overflow pointer arithmetic nor read past len.
    if (clen < CMSG_LEN(0) || clen > room) {
      out.malformed = true;
      break;
    }
    const unsigned char* payload = CMSG_DATA(c);
    std::size_t plen = clen - CMSG_LEN(0);
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::size_t n = plen / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, payload + i * sizeof(int), sizeof fd);
        out.fds.push_back(fd);
      }
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
               plen >= sizeof(ucred)) {
      ucred u;
      std::memcpy(&u, payload, sizeof u);
      out.creds = credentials{u.pid, u.uid, u.gid};
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
               plen >= sizeof(in_pktinfo)) {
      in_pktinfo p;
      std::memcpy(&p, payload, sizeof p);
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr = p.ipi_addr;
      out.pktinfo = packet_info{address(reinterpret_cast<const sockaddr*>(&sin), sizeof sin),
                                static_cast<unsigned>(p.ipi_ifindex)};
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               plen >= sizeof(in6_pktinfo)) {
      in6_pktinfo p;
      std::memcpy(&p, payload, sizeof p);
      sockaddr_in6 sin6{};
      sin6.sin6_family = AF_INET6;
      sin6.sin6_addr = p.ipi6_addr;
      out.pktinfo = packet_info{address(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6),
                                p.ipi6_ifindex};
    } else {
      ++out.other;
    }
    c = CMSG_NXTHDR(&msg, c);
  }
  return out;
}

control_buffer::control_buffer(std::size_t capacity)
    : storage_((capacity + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t)) {}

std::size_t control_buffer::space_for_fds(std::size_t n) noexcept {
  return CMSG_SPACE(n * sizeof(int));
}
std::size_t control_buffer::space_for_credentials() noexcept { return CMSG_SPACE(sizeof(ucred)); }
std::size_t control_buffer::space_for_packet_info() noexcept {
  return CMSG_SPACE(sizeof(in6_pktinfo));
}

void control_buffer::clear() noexcept {
  used_ = 0;
  fds_.clear();
  creds_.reset();
  pktinfo_.reset();
}

std::error_code control_buffer::adopt(std::size_t used, bool ctrunc) {
  used_ = std::min(used, capacity());
  parsed_control p;
  try {
    p = parse_control(storage_.data(), used_);
  } catch (...) {
    // LIFETIME: the descriptors are ours now; without memory to list them, close them by
    // walking the bytes again without allocating.
    msghdr msg{};
    msg.msg_control = storage_.data();
    msg.msg_controllen = used_;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      std::size_t room =
          used_ - static_cast<std::size_t>(reinterpret_cast<unsigned char*>(c) -
                                           reinterpret_cast<unsigned char*>(storage_.data()));
      if (c->cmsg_len < CMSG_LEN(0) || c->cmsg_len > room) break;
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
    }
    throw;
  }
  // Own every descriptor first, so that nothing below can leak one.
  try {
    fds_.reserve(p.fds.size());
  } catch (...) {
    for (int fd : p.fds)
      ::close(fd);
    throw;
  }
  for (int fd : p.fds)
    fds_.emplace_back(fd);
  creds_ = p.creds;
  pktinfo_ = p.pktinfo;
  if (ctrunc) {
    clear();  // closes the descriptors that did arrive
    return make_error_code(errc::message_truncated);
  }
  return {};
}

}  // namespace coring
