// SPDX-License-Identifier: MIT
// Description: datagram and message_info: what recv_from and recv_msg return.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>

#include <cstddef>

#include <sys/socket.h>

namespace coring {

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

}  // namespace coring
