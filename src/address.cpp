// SPDX-License-Identifier: MIT
// Description: address: parse and format IPv4, IPv6 and Unix (path, abstract, unnamed) endpoints.
#include <coring/address.hpp>

#include <coring/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

// Text grammar accepted by address::parse (and produced by to_string):
//   ipv4      = dotted-quad (inet_pton AF_INET: exactly four decimal parts, no leading zeros)
//   ipv6      = inet_pton AF_INET6 text, optionally followed by "%" scope
//   scope     = decimal interface index (0..4294967295) | interface name (if_nametoindex)
//   port      = 1*DIGIT with value 0..65535 (no sign, no spaces)
//   address   = ipv4 ":" port | "[" ipv6 "]" ":" port
//             | "unix:" path | "unix:@" abstract-name | "unix:"
// Every byte of the input is examined through std::string_view bounds; inet_pton and
// if_nametoindex only ever see a bounded, NUL-terminated copy that was checked for embedded NULs.

namespace coring {
namespace {

constexpr std::string_view unix_prefix = "unix:";
constexpr std::size_t sun_path_offset = offsetof(sockaddr_un, sun_path);
constexpr std::size_t sun_path_size = sizeof(sockaddr_un{}.sun_path);
/// Longest filesystem path: sun_path keeps one byte for the NUL terminator.
constexpr std::size_t max_unix_path = sun_path_size - 1;  // 107
/// Longest abstract name after the leading NUL: the whole rest of sun_path, as the kernel allows.
constexpr std::size_t max_abstract_name = sun_path_size - 1;  // 107
/// Error messages quote at most this much of the offending text.
constexpr std::size_t max_quoted = 256;

/// The text in double quotes, with `"`, `\` and non-printable bytes escaped so that embedded
/// NULs cannot truncate e.what(). Long inputs are cut at max_quoted bytes and marked with "...".
std::string quoted(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(text.size(), max_quoted) + 8);
  out += '"';
  for (std::size_t i = 0; i < text.size() && i < max_quoted; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (text.size() > max_quoted) out += "...";
  return out;
}

/// Throws std::system_error(e) with `<fn> "<text>" (<why>)`; what() then appends the errc message.
[[noreturn]] void fail(errc e, const char* fn, std::string_view text, const char* why) {
  std::string what = fn;
  what += ' ';
  what += quoted(text);
  what += " (";
  what += why;
  what += ')';
  throw_error(make_error_code(e), what);
}

/// Throws std::system_error(errc::invalid_address) for a sockaddr the constructor cannot take.
[[noreturn]] void bad_sockaddr(const std::string& why) {
  throw_error(make_error_code(errc::invalid_address), "address(sockaddr): " + why);
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

/// Parses 1..n decimal digits into value <= max. Returns false on empty, non-digit or overflow.
bool parse_decimal(std::string_view s, std::uint32_t max, std::uint32_t& value) noexcept {
  if (s.empty()) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > max) return false;  // also bounds v, so it never overflows
  }
  value = static_cast<std::uint32_t>(v);
  return true;
}

/// Parses the text after the last ':' as a port; `text` is the whole input, for the message.
std::uint16_t parse_port(std::string_view port, const char* fn, std::string_view text) {
  if (port.empty()) fail(errc::invalid_address, fn, text, "missing port after ':'");
  if (!std::all_of(port.begin(), port.end(), is_digit))
    fail(errc::invalid_address, fn, text, "port must be decimal digits");
  std::uint32_t v = 0;
  if (!parse_decimal(port, 65535, v))
    fail(errc::invalid_address, fn, text, "port out of range 0..65535");
  return static_cast<std::uint16_t>(v);
}

/// Copies s into buf as a C string. Returns false if it does not fit or contains a NUL.
template <std::size_t N>
bool to_cstr(std::string_view s, char (&buf)[N]) noexcept {
  if (s.size() >= N || s.find('\0') != std::string_view::npos) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  return true;
}

/// Scope id by number or interface name.
std::uint32_t parse_scope(std::string_view scope, const char* fn, std::string_view text) {
  if (scope.empty()) fail(errc::invalid_address, fn, text, "empty scope id after '%'");
  std::uint32_t index = 0;
  if (std::all_of(scope.begin(), scope.end(), is_digit)) {
    if (!parse_decimal(scope, 0xffffffffu, index))
      fail(errc::invalid_address, fn, text, "scope id out of range");
    return index;
  }
  char name[IF_NAMESIZE];
  if (!to_cstr(scope, name))
    fail(errc::invalid_address, fn, text, "scope is not an interface name");
  index = ::if_nametoindex(name);
  if (index == 0) fail(errc::invalid_address, fn, text, "unknown interface in scope id");
  return index;
}

/// Fills a with the IPv6 literal `host` (optionally `%scope`) and port.
void make_v6(address& a, std::string_view host, std::uint16_t port, const char* fn,
             std::string_view text) {
  std::uint32_t scope_id = 0;
  std::string_view literal = host;
  if (auto pct = host.find('%'); pct != std::string_view::npos) {
    literal = host.substr(0, pct);
    scope_id = parse_scope(host.substr(pct + 1), fn, text);
  }
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_scope_id = scope_id;
  char buf[INET6_ADDRSTRLEN + 16];  // inet_pton accepts at most 45 characters (with zero padding)
  if (literal.empty() || !to_cstr(literal, buf) || ::inet_pton(AF_INET6, buf, &sin6.sin6_addr) != 1)
    fail(errc::invalid_address, fn, text, "host is not a numeric IPv6 address");
  a = address(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
}

/// Fills a with the IPv4 literal `host` and port. Returns false (a untouched) if host is not one.
bool make_v4(address& a, std::string_view host, std::uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  char buf[INET_ADDRSTRLEN];
  if (!to_cstr(host, buf) || ::inet_pton(AF_INET, buf, &sin.sin_addr) != 1) return false;
  a = address(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
  return true;
}

/// Unix filesystem path; `text` and fn name the caller's input in messages.
address make_unix_path(std::string_view path, const char* fn, std::string_view text) {
  if (path.empty()) fail(errc::invalid_address, fn, text, "empty unix path");
  if (path.find('\0') != std::string_view::npos)
    fail(errc::invalid_address, fn, text, "unix path contains a NUL byte");
  if (path.size() > max_unix_path)
    fail(errc::address_too_long, fn, text, "unix path longer than 107 bytes");
  address a;
  auto* sun = reinterpret_cast<sockaddr_un*>(a.data());
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, path.data(), path.size());  // the NUL after it is already zero
  // Count the terminating NUL, as getsockname/accept report a bound path, so that addresses
  // from parse and from the kernel hold identical bytes.
  a.resize(static_cast<socklen_t>(sun_path_offset + path.size() + 1));
  return a;
}

/// Unix abstract name (without the leading NUL); any bytes, including NUL, are allowed.
address make_unix_abstract(std::string_view name, const char* fn, std::string_view text) {
  if (name.size() > max_abstract_name)
    fail(errc::address_too_long, fn, text, "abstract unix name longer than 107 bytes");
  address a;
  auto* sun = reinterpret_cast<sockaddr_un*>(a.data());
  sun->sun_family = AF_UNIX;
  sun->sun_path[0] = '\0';
  std::memcpy(sun->sun_path + 1, name.data(), name.size());
  // Not NUL-terminated: the kernel takes exactly this many bytes as the name.
  a.resize(static_cast<socklen_t>(sun_path_offset + 1 + name.size()));
  return a;
}

/// The sun_path bytes that belong to a (empty for unnamed). For a path, stops at the first NUL
/// (the kernel reports the terminator in the length); for abstract, includes the leading NUL.
std::string_view unix_name(const address& a) noexcept {
  if (a.size() <= sun_path_offset) return {};
  const auto* sun = reinterpret_cast<const sockaddr_un*>(a.data());
  std::size_t n = std::min<std::size_t>(a.size() - sun_path_offset, sun_path_size);
  std::string_view name(sun->sun_path, n);
  if (name.front() != '\0') name = name.substr(0, name.find('\0'));  // npos: whole view
  return name;
}

const sockaddr_in& v4(const address& a) noexcept {
  return *reinterpret_cast<const sockaddr_in*>(a.data());
}
const sockaddr_in6& v6(const address& a) noexcept {
  return *reinterpret_cast<const sockaddr_in6*>(a.data());
}

}  // namespace

address::address() noexcept : storage_{}, len_(0) {}

address::address(const sockaddr* sa, socklen_t len) : storage_{}, len_(0) {
  if (sa == nullptr) bad_sockaddr("null pointer");
  if (len > sizeof(sockaddr_storage))
    bad_sockaddr("length " + std::to_string(len) + " exceeds sockaddr_storage");
  if (len < sizeof(sa_family_t))
    bad_sockaddr("length " + std::to_string(len) + " is shorter than sa_family_t");
  sa_family_t family;
  std::memcpy(&family, &sa->sa_family, sizeof family);  // sa may be any byte buffer
  std::size_t need = 0;
  std::size_t keep = len;
  switch (family) {
    case AF_INET:
      need = keep = sizeof(sockaddr_in);
      break;
    case AF_INET6:
      need = keep = sizeof(sockaddr_in6);
      break;
    case AF_UNIX:
      if (len > sizeof(sockaddr_un))
        bad_sockaddr("length " + std::to_string(len) + " exceeds sockaddr_un for AF_UNIX");
      break;
    default:
      bad_sockaddr("family " + std::to_string(family) + " is not AF_INET, AF_INET6 or AF_UNIX");
  }
  if (len < need)
    bad_sockaddr("length " + std::to_string(len) + " is too short for family " +
                 std::to_string(family));
  // IP addresses keep exactly their struct (trailing bytes of a longer len carry no meaning).
  std::memcpy(&storage_, sa, keep);
  len_ = static_cast<socklen_t>(keep);
  if (family == AF_INET) {
    auto& sin = reinterpret_cast<sockaddr_in&>(storage_);
    std::memset(sin.sin_zero, 0, sizeof sin.sin_zero);
  }
}

address address::parse(std::string_view text) {
  constexpr const char* fn = "address::parse";
  if (text.empty()) fail(errc::invalid_address, fn, text, "empty");

  if (text.substr(0, unix_prefix.size()) == unix_prefix) {
    std::string_view rest = text.substr(unix_prefix.size());
    if (rest.empty()) {
      address a;
      a.storage_.ss_family = AF_UNIX;
      a.len_ = sizeof(sa_family_t);  // unnamed (autobind on bind)
      return a;
    }
    if (rest.front() == '@') return make_unix_abstract(rest.substr(1), fn, text);
    return make_unix_path(rest, fn, text);
  }

  address a;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) fail(errc::invalid_address, fn, text, "unterminated '['");
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      fail(errc::invalid_address, fn, text, "expected ':port' after ']'");
    std::uint16_t port = parse_port(rest.substr(1), fn, text);
    make_v6(a, text.substr(1, close - 1), port, fn, text);
    return a;
  }

  auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    fail(errc::invalid_address, fn, text, "expected host:port, [ipv6]:port or unix:path");
  std::string_view host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos)
    fail(errc::invalid_address, fn, text, "IPv6 needs brackets: [host]:port");
  if (host.empty()) fail(errc::invalid_address, fn, text, "missing host before ':'");
  std::uint16_t port = parse_port(text.substr(colon + 1), fn, text);
  if (!make_v4(a, host, port))
    fail(errc::invalid_address, fn, text, "host is not a numeric IPv4 address");
  return a;
}

address address::ip(std::string_view host, std::uint16_t port) {
  constexpr const char* fn = "address::ip";
  address a;
  if (host.find(':') != std::string_view::npos) {
    make_v6(a, host, port, fn, host);
  } else if (!make_v4(a, host, port)) {
    fail(errc::invalid_address, fn, host, "host is not a numeric IPv4 or IPv6 address");
  }
  return a;
}

address address::unix_path(std::string_view path) {
  return make_unix_path(path, "address::unix_path", path);
}

address address::unix_abstract(std::string_view name) {
  return make_unix_abstract(name, "address::unix_abstract", name);
}

address address::loopback_v4(std::uint16_t port) noexcept {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address a;
  std::memcpy(a.data(), &sin, sizeof sin);
  a.len_ = sizeof sin;
  return a;
}

address address::loopback_v6(std::uint16_t port) noexcept {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_addr = in6addr_loopback;
  address a;
  std::memcpy(a.data(), &sin6, sizeof sin6);
  a.len_ = sizeof sin6;
  return a;
}

bool address::is_abstract() const noexcept {
  if (!is_unix()) return false;
  std::string_view name = unix_name(*this);
  return !name.empty() && name.front() == '\0';
}

std::uint16_t address::port() const noexcept {
  switch (family()) {
    case AF_INET:
      return ntohs(v4(*this).sin_port);
    case AF_INET6:
      return ntohs(v6(*this).sin6_port);
    default:
      return 0;
  }
}

void address::set_port(std::uint16_t port) noexcept {
  switch (family()) {
    case AF_INET:
      reinterpret_cast<sockaddr_in&>(storage_).sin_port = htons(port);
      break;
    case AF_INET6:
      reinterpret_cast<sockaddr_in6&>(storage_).sin6_port = htons(port);
      break;
    default:
      break;
  }
}

std::string address::host() const {
  char buf[INET6_ADDRSTRLEN];
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &v4(*this).sin_addr, buf, sizeof buf);  // cannot fail: buf fits
      return buf;
    case AF_INET6: {
      ::inet_ntop(AF_INET6, &v6(*this).sin6_addr, buf, sizeof buf);
      std::string h = buf;
      // Numeric scope: stable across renames and exactly what parse/ip read back.
      if (auto scope = v6(*this).sin6_scope_id) h += '%' + std::to_string(scope);
      return h;
    }
    case AF_UNIX: {
      std::string_view name = unix_name(*this);
      if (name.empty()) return {};
      if (name.front() != '\0') return std::string(name);
      std::string h(name);
      h.front() = '@';
      return h;
    }
    case AF_UNSPEC:
      return {};
    default:
      return "<family " + std::to_string(family()) + ">";
  }
}

// Unix names are printed byte for byte: an abstract name may hold any bytes (NUL, newline,
// non-UTF-8), which are left as-is so that parse(to_string()) gives back the same name. Escape
// before logging untrusted peers' names. Two kernel-only forms have no exact text: a path that
// starts with '@' (prints like an abstract name).
std::string address::to_string() const {
  switch (family()) {
    case AF_INET:
      return host() + ':' + std::to_string(port());
    case AF_INET6:
      return '[' + host() + "]:" + std::to_string(port());
    case AF_UNIX:
      return std::string(unix_prefix) + host();
    default:
      return host();
  }
}

bool operator==(const address& a, const address& b) noexcept {
  if (a.family() != b.family()) return false;
  switch (a.family()) {
    case AF_INET:
      // Field-wise: sin_zero and length differences carry no meaning.
      return v4(a).sin_port == v4(b).sin_port && v4(a).sin_addr.s_addr == v4(b).sin_addr.s_addr;
    case AF_INET6:
      // sin6_flowinfo is ignored: it is not part of the endpoint and to_string cannot show it.
      return v6(a).sin6_port == v6(b).sin6_port && v6(a).sin6_scope_id == v6(b).sin6_scope_id &&
             std::memcmp(&v6(a).sin6_addr, &v6(b).sin6_addr, sizeof(in6_addr)) == 0;
    case AF_UNIX:
      // A path compares up to its NUL (with or without the terminator in the length); an
      // abstract name compares all of its bytes; unnamed compares equal to unnamed.
      return unix_name(a) == unix_name(b);
    default:
      return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
  }
}

}  // namespace coring
