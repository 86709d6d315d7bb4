// SPDX-License-Identifier: MIT
// Description: address, a socket endpoint (IPv4, IPv6, Unix path or abstract) parsed from text.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace coring {

/// A socket address: AF_INET, AF_INET6 or AF_UNIX (filesystem path, abstract name or unnamed),
/// or AF_UNSPEC when empty. Value type; holds a sockaddr_storage.
///
/// Text forms (parse and to_string round-trip):
///   `127.0.0.1:9000`, `[::1]:9000`, `[fe80::1%lo]:80` (scope by name or number),
///   `unix:/run/x.sock` (path), `unix:@name` (abstract; `@` is the leading NUL), `unix:` (unnamed).
class address {
 public:
  /// The empty address (family AF_UNSPEC).
  address() noexcept;
  /// Copies a kernel sockaddr of len bytes.
  /// Throws: std::system_error(errc::invalid_address) if len is larger than sockaddr_storage or
  /// the family is not AF_INET, AF_INET6 or AF_UNIX.
  address(const sockaddr* sa, socklen_t len);

  /// Parses any text form above. Host parts must be numeric (name lookup is coring::resolve).
  /// Throws: std::system_error(errc::invalid_address) naming the text; errc::address_too_long for
  /// a Unix path longer than 107 bytes (abstract: 107 after the @).
  static address parse(std::string_view text);
  /// IPv4 or IPv6 literal host plus port, e.g. ipv4("127.0.0.1", 0) or ip("::1", 80).
  /// Throws: std::system_error(errc::invalid_address) naming the host.
  static address ip(std::string_view host, std::uint16_t port);
  /// Unix filesystem path. Throws: errc::address_too_long (> 107 bytes), errc::invalid_address
  /// (empty, or contains NUL).
  static address unix_path(std::string_view path);
  /// Unix abstract name (without the leading NUL). Throws: errc::address_too_long (> 107 bytes).
  static address unix_abstract(std::string_view name);
  /// The IPv4 loopback 127.0.0.1 with the given port (0 = any free port when binding).
  static address loopback_v4(std::uint16_t port = 0) noexcept;
  /// The IPv6 loopback ::1 with the given port.
  static address loopback_v6(std::uint16_t port = 0) noexcept;

  /// AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC.
  int family() const noexcept { return storage_.ss_family; }
  bool is_ip() const noexcept { return family() == AF_INET || family() == AF_INET6; }
  bool is_unix() const noexcept { return family() == AF_UNIX; }
  /// True for a Unix abstract name.
  bool is_abstract() const noexcept;
  /// Port in host order; 0 for non-IP addresses.
  std::uint16_t port() const noexcept;
  /// Sets the port of an IP address (no effect otherwise).
  void set_port(std::uint16_t port) noexcept;
  /// Host part as text: "127.0.0.1", "::1", the Unix path, or "@name" for abstract.
  std::string host() const;
  /// The canonical text form, accepted by parse().
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  /// Meaningful bytes of data() (for bind/connect/sendto).
  socklen_t size() const noexcept { return len_; }
  /// sizeof(sockaddr_storage): room for the kernel to fill (accept/recvfrom/getsockname).
  static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
  /// Sets the meaningful length after the kernel filled data().
  void resize(socklen_t len) noexcept { len_ = len <= capacity() ? len : capacity(); }

  friend bool operator==(const address& a, const address& b) noexcept;

 private:
  sockaddr_storage storage_;
  socklen_t len_;
};

}  // namespace coring
