// SPDX-License-Identifier: MIT
// Description: ancillary data: control messages to send (ancillary) and received ones
// (control_buffer, parse_control).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/address.hpp>
#include <coring/unique_fd.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include <sys/types.h>

namespace coring {

namespace detail {
class recv_msg_op;
}  // namespace detail

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
  std::vector<int> fds;                ///< every SCM_RIGHTS descriptor, in order
  std::optional<credentials> creds;    ///< the last SCM_CREDENTIALS
  std::optional<packet_info> pktinfo;  ///< the last IP_PKTINFO / IPV6_PKTINFO
  std::size_t other = 0;               ///< well-formed messages of other kinds (skipped)
  bool malformed = false;              ///< a header was cut short or its length lied
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

 private:
  friend class detail::recv_msg_op;  // fills it: data(), clear(), adopt()
  void* data() noexcept { return storage_.data(); }
  // Drops the previous contents (closing descriptors) before a new receive.
  void clear() noexcept;
  // Adopts what the kernel wrote. Returns: errc::message_truncated if ctrunc (all arrived
  // descriptors closed), or success.
  std::error_code adopt(std::size_t used, bool ctrunc);

  std::vector<std::max_align_t> storage_;  // LIFETIME: msg_control points here during recv_msg
  std::size_t used_ = 0;
  std::vector<unique_fd> fds_;
  std::optional<credentials> creds_;
  std::optional<packet_info> pktinfo_;
};

}  // namespace coring
