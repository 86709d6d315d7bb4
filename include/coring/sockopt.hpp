// SPDX-License-Identifier: MIT
// Description: sockopt: typed socket options for socket::set_option / get_option.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace coring {

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
using reuse_address = boolean<SOL_SOCKET, SO_REUSEADDR>;  ///< SO_REUSEADDR
using reuse_port = boolean<SOL_SOCKET, SO_REUSEPORT>;     ///< SO_REUSEPORT
using keep_alive = boolean<SOL_SOCKET, SO_KEEPALIVE>;     ///< SO_KEEPALIVE
using broadcast = boolean<SOL_SOCKET, SO_BROADCAST>;      ///< SO_BROADCAST
using no_delay = boolean<IPPROTO_TCP, TCP_NODELAY>;       ///< TCP_NODELAY
using v6_only = boolean<IPPROTO_IPV6, IPV6_V6ONLY>;       ///< IPV6_V6ONLY
using recv_buffer_size = integer<SOL_SOCKET, SO_RCVBUF>;  ///< SO_RCVBUF (kernel doubles it)
using send_buffer_size = integer<SOL_SOCKET, SO_SNDBUF>;  ///< SO_SNDBUF (kernel doubles it)
using error = integer<SOL_SOCKET, SO_ERROR>;              ///< SO_ERROR (read only)
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

}  // namespace coring
