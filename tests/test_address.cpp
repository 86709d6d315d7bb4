// SPDX-License-Identifier: MIT
// Description: address: parse/to_string round trips, kernel sockaddrs, equality, every bad input.
#include "test_support.hpp"

#include <coring/address.hpp>
#include <coring/error.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ostream>  // doctest prints std::error_code with operator<<
#include <string>
#include <string_view>
#include <system_error>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using coring::address;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace coring::test {
namespace {

/// Asserts that f() throws std::system_error with code `code` and a what() containing `needle`.
template <class F>
void check_fails(F&& f, coring::errc code, std::string_view needle) {
  CHECK_THROWS_AS(f(), std::system_error);
  try {
    f();
  } catch (const std::system_error& e) {
    INFO("what(): ", e.what());
    CHECK(e.code() == code);
    CHECK(std::string_view(e.what()).find(needle) != std::string_view::npos);
  }
}

/// Asserts that parse(text) fails with `code` and quotes the text (`shown`: its escaped form).
void check_parse_fails(std::string_view text, coring::errc code = coring::errc::invalid_address,
                       std::string_view shown = {}) {
  std::string printable(text);
  for (char& c : printable)
    if (c == '\0') c = '0';  // doctest prints via C strings
  INFO("input: ", printable);
  std::string needle = '"' + std::string(shown.empty() ? text : shown) + '"';
  check_fails([&] { (void)address::parse(text); }, code, needle);
}

/// parse(text) succeeds, prints back as text, and reparses to an equal address.
address check_round_trip(std::string_view text) {
  INFO("input: ", std::string(text));
  address a = address::parse(text);
  CHECK(a.to_string() == text);
  CHECK(address::parse(a.to_string()) == a);
  return a;
}

sockaddr_in make_sin(const char* ip, std::uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
  return sin;
}

requirement has_lo() {
  return {requirement::kind::environment, "a loopback interface named lo",
          ::if_nametoindex("lo") != 0 ? "" : "no interface lo in this network namespace"};
}

}  // namespace
}  // namespace coring::test

using namespace coring::test;

TEST_SUITE("address") {
  TEST_CASE("a default address is AF_UNSPEC and prints as the empty string") {
    address a;
    CHECK(a.family() == AF_UNSPEC);
    CHECK(a.size() == 0);
    CHECK(a.to_string().empty());
    CHECK(a.host().empty());
    CHECK(a.port() == 0);
    CHECK(a == address{});
  }

  TEST_CASE("IPv4 host:port round-trips") {
    address a = check_round_trip("127.0.0.1:9000");
    CHECK(a.family() == AF_INET);
    CHECK(a.is_ip());
    CHECK_FALSE(a.is_unix());
    CHECK(a.size() == sizeof(sockaddr_in));
    CHECK(a.host() == "127.0.0.1");
    CHECK(a.port() == 9000);
    check_round_trip("0.0.0.0:80");
    check_round_trip("255.255.255.255:1");
  }

  TEST_CASE("ports 0 and 65535 are accepted on IPv4 and IPv6") {
    CHECK(check_round_trip("10.1.2.3:0").port() == 0);
    CHECK(check_round_trip("10.1.2.3:65535").port() == 65535);
    CHECK(check_round_trip("[::1]:0").port() == 0);
    CHECK(check_round_trip("[::1]:65535").port() == 65535);
  }

  TEST_CASE("leading zeros in the port are accepted and dropped when printing") {
    address a = address::parse("127.0.0.1:0080");
    CHECK(a.port() == 80);
    CHECK(a.to_string() == "127.0.0.1:80");
  }

  TEST_CASE("IPv6 [host]:port round-trips and host() has no brackets") {
    address a = check_round_trip("[::1]:9000");
    CHECK(a.family() == AF_INET6);
    CHECK(a.size() == sizeof(sockaddr_in6));
    CHECK(a.host() == "::1");
    CHECK(a.port() == 9000);
    check_round_trip("[2001:db8::42]:443");
    check_round_trip("[::ffff:192.0.2.1]:53");
    check_round_trip("[::]:1");
  }

  TEST_CASE("IPv6 text is printed in canonical form") {
    address a = address::parse("[0:0:0:0:0:0:0:1]:80");
    CHECK(a.to_string() == "[::1]:80");
    CHECK(a == address::loopback_v6(80));
  }

  TEST_CASE("IPv6 numeric scope id round-trips as a number") {
    address a = check_round_trip("[fe80::1%1]:80");
    CHECK(reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_scope_id == 1);
    CHECK(a.host() == "fe80::1%1");
    CHECK(a != address::parse("[fe80::1%2]:80"));
    CHECK(a != address::parse("[fe80::1]:80"));
  }

  TEST_CASE("IPv6 scope id by interface name resolves to the interface index" *
            skip_unless(has_lo())) {
    unsigned lo = ::if_nametoindex("lo");
    REQUIRE(lo != 0);
    address a = address::parse("[fe80::1%lo]:80");
    CHECK(reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_scope_id == lo);
    CHECK(a.to_string() == "[fe80::1%" + std::to_string(lo) + "]:80");
    CHECK(address::parse(a.to_string()) == a);
  }

  TEST_CASE("Unix path round-trips and counts the terminating NUL like the kernel") {
    address a = check_round_trip("unix:/run/coring.sock");
    CHECK(a.is_unix());
    CHECK_FALSE(a.is_abstract());
    CHECK(a.host() == "/run/coring.sock");
    CHECK(a.port() == 0);
    CHECK(a.size() == offsetof(sockaddr_un, sun_path) + std::strlen("/run/coring.sock") + 1);
    check_round_trip("unix:relative.sock");
    CHECK(address::unix_path("/run/coring.sock") == a);
  }

  TEST_CASE("a Unix path of 107 bytes is the longest accepted") {
    std::string path = "/" + std::string(106, 'p');
    address a = check_round_trip("unix:" + path);
    CHECK(a.host() == path);
    CHECK(a.size() == sizeof(sockaddr_un));
  }

  TEST_CASE("Unix abstract name round-trips with a leading NUL and no terminator") {
    address a = check_round_trip("unix:@coring-test");
    CHECK(a.is_abstract());
    CHECK(a.host() == "@coring-test");
    CHECK(a.size() == offsetof(sockaddr_un, sun_path) + 1 + std::strlen("coring-test"));
    const auto* sun = reinterpret_cast<const sockaddr_un*>(a.data());
    CHECK(sun->sun_path[0] == '\0');
    CHECK(std::memcmp(sun->sun_path + 1, "coring-test", 11) == 0);
    CHECK(address::unix_abstract("coring-test") == a);
  }

  TEST_CASE("an abstract name of 107 bytes is the longest accepted") {
    address a = check_round_trip("unix:@" + std::string(107, 'a'));
    CHECK(a.size() == offsetof(sockaddr_un, sun_path) + 1 + 107);
  }

  TEST_CASE("abstract names may hold arbitrary bytes, including NUL, and round-trip") {
    std::string text = "unix:@a\0b\xff"s;
    address a = check_round_trip(text);
    CHECK(a.is_abstract());
    CHECK(a.size() == offsetof(sockaddr_un, sun_path) + 1 + 4);
    CHECK(a != address::parse("unix:@a"));
  }

  TEST_CASE("an empty abstract name is distinct from the unnamed address") {
    address empty_abstract = check_round_trip("unix:@");
    CHECK(empty_abstract.is_abstract());
    CHECK(empty_abstract.size() == offsetof(sockaddr_un, sun_path) + 1);
    CHECK(empty_abstract != address::parse("unix:"));
  }

  TEST_CASE("unix: alone is the unnamed Unix address") {
    address a = check_round_trip("unix:");
    CHECK(a.is_unix());
    CHECK_FALSE(a.is_abstract());
    CHECK(a.size() == sizeof(sa_family_t));
    CHECK(a.host().empty());
  }

  TEST_CASE("ip() takes bare IPv4 and IPv6 literals with an optional scope") {
    CHECK(address::ip("127.0.0.1", 80) == address::parse("127.0.0.1:80"));
    CHECK(address::ip("::1", 80) == address::parse("[::1]:80"));
    CHECK(address::ip("fe80::1%3", 7) == address::parse("[fe80::1%3]:7"));
    address scoped = address::parse("[fe80::1%3]:7");
    CHECK(address::ip(scoped.host(), scoped.port()) == scoped);
  }

  TEST_CASE("loopback_v4 and loopback_v6 are 127.0.0.1 and ::1") {
    CHECK(address::loopback_v4() == address::parse("127.0.0.1:0"));
    CHECK(address::loopback_v4(8080).to_string() == "127.0.0.1:8080");
    CHECK(address::loopback_v6() == address::parse("[::1]:0"));
    CHECK(address::loopback_v6(443).to_string() == "[::1]:443");
  }

  TEST_CASE("set_port changes IP ports in host order and leaves Unix addresses alone") {
    address a = address::loopback_v4();
    a.set_port(54321);
    CHECK(a.port() == 54321);
    CHECK(reinterpret_cast<const sockaddr_in*>(a.data())->sin_port == htons(54321));
    address b = address::loopback_v6();
    b.set_port(1);
    CHECK(b.to_string() == "[::1]:1");
    address u = address::parse("unix:/x");
    u.set_port(80);
    CHECK(u.port() == 0);
    CHECK(u == address::parse("unix:/x"));
  }

  TEST_CASE("equality compares family, host, port and scope") {
    CHECK(address::parse("127.0.0.1:80") == address::parse("127.0.0.1:80"));
    CHECK(address::parse("127.0.0.1:80") != address::parse("127.0.0.1:81"));
    CHECK(address::parse("127.0.0.1:80") != address::parse("127.0.0.2:80"));
    CHECK(address::parse("127.0.0.1:80") != address::parse("[::ffff:127.0.0.1]:80"));
    CHECK(address::parse("[::1]:80") != address::parse("[::2]:80"));
    CHECK(address::parse("unix:/a") != address::parse("unix:/b"));
    CHECK(address::parse("unix:/a") != address::parse("unix:@/a"));
    CHECK(address::parse("unix:@a") != address::parse("unix:@ab"));
    CHECK(address::parse("unix:") == address::parse("unix:"));
    CHECK(address{} != address::parse("unix:"));
  }

  TEST_CASE("an address built from a kernel sockaddr_in equals the parsed text") {
    sockaddr_in sin = make_sin("192.0.2.7", 8080);
    address a(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
    CHECK(a.family() == AF_INET);
    CHECK(a.size() == sizeof sin);
    CHECK(a.to_string() == "192.0.2.7:8080");
    CHECK(a == address::parse("192.0.2.7:8080"));
    CHECK(std::memcmp(a.data(), &sin, sizeof sin) == 0);
  }

  TEST_CASE("sin_zero garbage and an oversized length do not affect equality") {
    sockaddr_storage ss;
    std::memset(&ss, 0xab, sizeof ss);
    sockaddr_in sin = make_sin("10.0.0.1", 1);
    std::memset(sin.sin_zero, 0xcd, sizeof sin.sin_zero);
    std::memcpy(&ss, &sin, sizeof sin);
    address a(reinterpret_cast<const sockaddr*>(&ss), sizeof ss);
    CHECK(a.size() == sizeof(sockaddr_in));
    CHECK(a == address::parse("10.0.0.1:1"));
  }

  TEST_CASE("an address built from a kernel sockaddr_in6 keeps the scope id") {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(53);
    sin6.sin6_scope_id = 7;
    REQUIRE(::inet_pton(AF_INET6, "fe80::beef", &sin6.sin6_addr) == 1);
    address a(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
    CHECK(a.to_string() == "[fe80::beef%7]:53");
    CHECK(address::parse(a.to_string()) == a);
  }

  TEST_CASE("a Unix path sockaddr with or without the terminating NUL equals the parsed path") {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strcpy(sun.sun_path, "/tmp/s");
    auto without_nul = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 6);
    address a(reinterpret_cast<const sockaddr*>(&sun), without_nul);
    address b(reinterpret_cast<const sockaddr*>(&sun), without_nul + 1);
    address c(reinterpret_cast<const sockaddr*>(&sun), sizeof sun);
    CHECK(a == address::parse("unix:/tmp/s"));
    CHECK(b == address::parse("unix:/tmp/s"));
    CHECK(c == address::parse("unix:/tmp/s"));
    CHECK(a.to_string() == "unix:/tmp/s");
    CHECK(c.to_string() == "unix:/tmp/s");
  }

  TEST_CASE("getsockname of a bound abstract socket equals the parsed address") {
    std::string text = "unix:@coring-test-address-" + std::to_string(::getpid());
    address want = address::parse(text);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    REQUIRE(::bind(fd, want.data(), want.size()) == 0);
    address got;
    socklen_t len = address::capacity();
    REQUIRE(::getsockname(fd, got.data(), &len) == 0);
    got.resize(len);
    ::close(fd);
    CHECK(got == want);
    CHECK(got.size() == want.size());
    CHECK(got.to_string() == text);
  }

  TEST_CASE("getsockname of a bound Unix path socket equals the parsed address") {
    char dir[] = "/tmp/coring-test-address-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    std::string path = std::string(dir) + "/s";
    address want = address::unix_path(path);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int rc = ::bind(fd, want.data(), want.size());
    address got;
    socklen_t len = address::capacity();
    if (rc == 0 && ::getsockname(fd, got.data(), &len) == 0) got.resize(len);
    ::close(fd);
    ::unlink(path.c_str());
    ::rmdir(dir);
    REQUIRE(rc == 0);
    CHECK(got == want);
    CHECK(got.size() == want.size());
    CHECK(got.to_string() == "unix:" + path);
  }

  TEST_CASE("getsockname of an IPv4 socket bound to port 0 reads back a real port") {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    address want = address::loopback_v4();
    REQUIRE(::bind(fd, want.data(), want.size()) == 0);
    address got;
    socklen_t len = address::capacity();
    REQUIRE(::getsockname(fd, got.data(), &len) == 0);
    got.resize(len);
    ::close(fd);
    CHECK(got.port() != 0);
    want.set_port(got.port());
    CHECK(got == want);
    CHECK(address::parse(got.to_string()) == got);
  }

  // ---- bad input: each asserts the error code and that what() quotes the input ----

  TEST_CASE("parse rejects the empty string") { check_parse_fails(""); }

  TEST_CASE("parse rejects a host without a port") {
    check_parse_fails("127.0.0.1");
    check_parse_fails("127.0.0.1:");
    check_parse_fails("[::1]");
    check_parse_fails("[::1]:");
    check_parse_fails("localhost");
  }

  TEST_CASE("parse rejects a missing host") {
    check_parse_fails(":80");
    check_parse_fails("[]:80");
  }

  TEST_CASE("parse rejects ports out of range") {
    check_parse_fails("127.0.0.1:65536");
    check_parse_fails("[::1]:65536");
    check_parse_fails("127.0.0.1:99999999999999999999999");
  }

  TEST_CASE("parse rejects ports that are not plain decimal digits") {
    check_parse_fails("127.0.0.1:+1");
    check_parse_fails("127.0.0.1:-1");
    check_parse_fails("127.0.0.1:12a");
    check_parse_fails("127.0.0.1:0x10");
    check_parse_fails("127.0.0.1: 80");
    check_parse_fails("127.0.0.1:80 ");
    check_parse_fails(" 127.0.0.1:80");
    check_parse_fails("[::1]:http");
  }

  TEST_CASE("parse rejects an unbracketed IPv6 address with a port") {
    check_parse_fails("::1:80");
    check_parse_fails("fe80::1:443");
    check_parse_fails("::1");
  }

  TEST_CASE("parse rejects an unterminated bracket and junk after it") {
    check_parse_fails("[::1");
    check_parse_fails("[::1:80");
    check_parse_fails("[::1]80");
    check_parse_fails("[::1]]:80");
    check_parse_fails("[::1]:80]");
  }

  TEST_CASE("parse rejects garbage and non-numeric hosts") {
    check_parse_fails("1.2.3:80");
    check_parse_fails("1.2.3.4.5:80");
    check_parse_fails("256.0.0.1:80");
    check_parse_fails("01.2.3.4:80");
    check_parse_fails("localhost:80");
    check_parse_fails("[1.2.3.4]:80");
    check_parse_fails("[::g]:80");
    check_parse_fails("[::1::2]:80");
    check_parse_fails("%%%");
    check_parse_fails("UNIX:/x");
  }

  TEST_CASE("parse rejects bad IPv6 scope ids") {
    check_parse_fails("[fe80::1%]:80");
    check_parse_fails("[fe80::1%4294967296]:80");
    check_parse_fails("[fe80::1%no-such-interface]:80");
    check_parse_fails("[fe80::1%" + std::string(40, 'x') + "]:80");
    check_parse_fails("[%1]:80");
  }

  TEST_CASE("parse rejects an over-long IPv6 host without reading past it") {
    check_parse_fails("[" + std::string(200, '1') + "]:80");
    check_parse_fails(std::string(200, '1') + ":80");
  }

  TEST_CASE("parse rejects a Unix path of 108 bytes as too long") {
    check_parse_fails("unix:/" + std::string(107, 'p'), coring::errc::address_too_long);
  }

  TEST_CASE("parse rejects an abstract name of 108 bytes as too long") {
    check_parse_fails("unix:@" + std::string(108, 'a'), coring::errc::address_too_long);
  }

  TEST_CASE("parse rejects embedded NULs outside abstract names and escapes them in the message") {
    check_parse_fails("127.0.0.1\0:80"sv, coring::errc::invalid_address, "127.0.0.1\\x00:80");
    check_parse_fails("127.0.0.1:8\0"sv, coring::errc::invalid_address, "127.0.0.1:8\\x00");
    check_parse_fails("[::1\0]:80"sv, coring::errc::invalid_address, "[::1\\x00]:80");
    check_parse_fails("unix:/tmp/a\0b"sv, coring::errc::invalid_address, "unix:/tmp/a\\x00b");
    check_parse_fails("\0"sv, coring::errc::invalid_address, "\\x00");
  }

  TEST_CASE("error messages escape quotes and backslashes in the input") {
    check_parse_fails("a\"b\\c", coring::errc::invalid_address, "a\\\"b\\\\c");
  }

  TEST_CASE("error messages say why the input was rejected") {
    try {
      (void)address::parse("1.2.3:80");
      FAIL("no exception");
    } catch (const std::system_error& e) {
      std::string_view what = e.what();
      CHECK(what.find("\"1.2.3:80\"") != std::string_view::npos);
      CHECK(what.find("IPv4") != std::string_view::npos);
      CHECK(e.code() == std::errc::invalid_argument);  // errc maps to the generic condition
    }
  }

  TEST_CASE("ip() rejects brackets, ports, garbage and NULs, naming the host") {
    check_fails([] { (void)address::ip("[::1]", 80); }, coring::errc::invalid_address, "\"[::1]\"");
    check_fails([] { (void)address::ip("127.0.0.1:80", 80); }, coring::errc::invalid_address,
                "\"127.0.0.1:80\"");
    check_fails([] { (void)address::ip("", 80); }, coring::errc::invalid_address, "\"\"");
    check_fails([] { (void)address::ip("example.com", 80); }, coring::errc::invalid_address,
                "\"example.com\"");
    check_fails([] { (void)address::ip("::1\0"sv, 80); }, coring::errc::invalid_address,
                "\"::1\\x00\"");
    check_fails([] { (void)address::ip("fe80::1%", 80); }, coring::errc::invalid_address,
                "\"fe80::1%\"");
  }

  TEST_CASE("unix_path rejects empty, NUL-containing and over-long paths") {
    check_fails([] { (void)address::unix_path(""); }, coring::errc::invalid_address, "\"\"");
    check_fails([] { (void)address::unix_path("/a\0b"sv); }, coring::errc::invalid_address,
                "\"/a\\x00b\"");
    std::string too_long(108, 'p');
    check_fails([&] { (void)address::unix_path(too_long); }, coring::errc::address_too_long,
                '"' + too_long + '"');
    CHECK(address::unix_path(std::string(107, 'p')).host() == std::string(107, 'p'));
  }

  TEST_CASE("unix_abstract rejects names over 107 bytes") {
    std::string too_long(108, 'a');
    check_fails([&] { (void)address::unix_abstract(too_long); }, coring::errc::address_too_long,
                '"' + too_long + '"');
  }

  TEST_CASE("the sockaddr constructor rejects bad lengths") {
    sockaddr_storage ss{};
    ss.ss_family = AF_INET;
    const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
    check_fails([&] { address a(sa, 0); }, coring::errc::invalid_address, "length 0");
    check_fails([&] { address a(sa, 1); }, coring::errc::invalid_address, "length 1");
    check_fails([&] { address a(sa, sizeof ss + 1); }, coring::errc::invalid_address,
                "length " + std::to_string(sizeof ss + 1));
    check_fails([&] { address a(sa, sizeof(sockaddr_in) - 1); }, coring::errc::invalid_address,
                "too short");
    ss.ss_family = AF_INET6;
    check_fails([&] { address a(sa, sizeof(sockaddr_in)); }, coring::errc::invalid_address,
                "too short");
    ss.ss_family = AF_UNIX;
    check_fails([&] { address a(sa, sizeof(sockaddr_un) + 1); }, coring::errc::invalid_address,
                "sockaddr_un");
    check_fails([&] { address a(nullptr, 16); }, coring::errc::invalid_address, "null");
  }

  TEST_CASE("the sockaddr constructor rejects families other than INET, INET6 and UNIX") {
    sockaddr_storage ss{};
    const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
    ss.ss_family = AF_UNSPEC;
    check_fails([&] { address a(sa, sizeof ss); }, coring::errc::invalid_address, "family 0");
    ss.ss_family = AF_PACKET;
    check_fails([&] { address a(sa, sizeof ss); }, coring::errc::invalid_address,
                "family " + std::to_string(AF_PACKET));
  }

  TEST_CASE("the sockaddr constructor accepts an unnamed Unix sockaddr") {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    address a(reinterpret_cast<const sockaddr*>(&sun), sizeof(sa_family_t));
    CHECK(a == address::parse("unix:"));
    CHECK(a.to_string() == "unix:");
  }

}  // TEST_SUITE
