// SPDX-License-Identifier: MIT
// Description: Unix sockets: stream, datagram and seqpacket over paths and abstract names,
// socket_pair, peer_credentials, from_fd readback, detach, and peers that go away.
#include "test_support.hpp"

#include <array>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace coring;
using test::bytes;
using test::text;

namespace {

/// A fresh temporary directory, removed (with the socket files in it) at the end.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/coring-unix-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

task<> stream_round_trip(io_context& ctx, address where, int type) {
  coring::socket listener(ctx, AF_UNIX, type);
  listener.bind(where);
  listener.listen();
  CHECK(listener.sock_name() == where);
  coring::socket client(ctx, AF_UNIX, type);
  co_await client.connect(where);
  coring::socket server = co_await listener.accept();
  CHECK(co_await client.send(bytes("hello")) == 5);
  CHECK(co_await client.send(bytes("world")) == 5);
  std::array<std::byte, 32> buf;
  std::size_t n = co_await server.recv(buf);
  if (type == SOCK_SEQPACKET) {
    CHECK(text(std::span(buf).first(n)) == "hello");  // record boundaries kept
    n = co_await server.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "world");
  } else {
    std::string got = text(std::span(buf).first(n));
    while (got.size() < 10) {
      n = co_await server.recv(buf);
      got += text(std::span(buf).first(n));
    }
    CHECK(got == "helloworld");
  }
  CHECK(server.peer_credentials() == credentials{::getpid(), ::getuid(), ::getgid()});
  CHECK(server.family() == AF_UNIX);
  CHECK(server.type() == type);
}

}  // namespace

TEST_CASE("Unix stream and seqpacket sockets work over paths and abstract names") {
  int type = 0;
  SUBCASE("SOCK_STREAM") { type = SOCK_STREAM; }
  SUBCASE("SOCK_SEQPACKET") { type = SOCK_SEQPACKET; }
  io_context ctx;
  temp_dir dir;
  test::run(ctx, stream_round_trip(ctx, address::unix_path(dir.path + "/s"), type));
  test::run(ctx,
            stream_round_trip(ctx, address::unix_abstract(test::unique_abstract_name("st")), type));
}

TEST_CASE("Unix datagram sockets carry datagrams with the sender's name") {
  temp_dir dir;
  address a_name, b_name;
  SUBCASE("names are paths") {
    a_name = address::unix_path(dir.path + "/a");
    b_name = address::unix_path(dir.path + "/b");
  }
  SUBCASE("names are abstract") {
    a_name = address::unix_abstract(test::unique_abstract_name("da"));
    b_name = address::unix_abstract(test::unique_abstract_name("db"));
  }
  io_context ctx;
  test::run_on(ctx, [a_name, b_name](io_context& ctx) -> task<> {
    coring::socket a(ctx, AF_UNIX, SOCK_DGRAM);
    coring::socket b(ctx, AF_UNIX, SOCK_DGRAM);
    a.bind(a_name);
    b.bind(b_name);
    CHECK(co_await a.send_to(bytes("dgram"), b_name) == 5);
    std::array<std::byte, 16> buf;
    datagram d = co_await b.recv_from(buf);
    CHECK(text(std::span(buf).first(d.size)) == "dgram");
    CHECK(d.from == a_name);
    // Truncation is reported on Unix datagrams too.
    co_await a.send_to(bytes("0123456789abcdef0123"), b_name);
    datagram t = co_await b.recv_from(buf);
    CHECK(t.truncated);
    CHECK(t.size == buf.size());
    // An unbound sender is unnamed: from is an AF_UNIX address with no name.
    coring::socket anon(ctx, AF_UNIX, SOCK_DGRAM);
    co_await anon.send_to(bytes("?"), b_name);
    datagram u = co_await b.recv_from(buf);
    CHECK(u.size == 1);
    CHECK((u.from.family() == AF_UNIX || u.from.family() == AF_UNSPEC));
  });
}

TEST_CASE("socket_pair connects two sockets of each type") {
  int type = 0;
  SUBCASE("SOCK_STREAM") { type = SOCK_STREAM; }
  SUBCASE("SOCK_DGRAM") { type = SOCK_DGRAM; }
  SUBCASE("SOCK_SEQPACKET") { type = SOCK_SEQPACKET; }
  io_context ctx;
  test::run_on(ctx, [type](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, type);
    CHECK(pair.first.type() == type);
    CHECK(pair.second.family() == AF_UNIX);
    CHECK((::fcntl(pair.first.fileno(), F_GETFD) & FD_CLOEXEC) != 0);
    co_await pair.first.send_all(bytes("pair"));
    std::array<std::byte, 8> buf;
    std::size_t n = co_await pair.second.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "pair");
    CHECK(pair.second.peer_credentials().pid == ::getpid());
  });
}

TEST_CASE("from_fd reads back family, type and protocol; detach releases the descriptor") {
  io_context ctx;
  struct kind {
    const char* name;
    int family, type, protocol;
  };
  for (kind k : {kind{"Unix stream", AF_UNIX, SOCK_STREAM, 0},
                 kind{"Unix seqpacket", AF_UNIX, SOCK_SEQPACKET, 0},
                 kind{"TCP over IPv4", AF_INET, SOCK_STREAM, IPPROTO_TCP},
                 kind{"UDP over IPv6", AF_INET6, SOCK_DGRAM, IPPROTO_UDP}}) {
    INFO("a socket for " << k.name);
    int fd = ::socket(k.family, k.type | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    coring::socket s = coring::socket::from_fd(ctx, fd);
    CHECK(s.fileno() == fd);
    CHECK(s.family() == k.family);
    CHECK(s.type() == k.type);
    CHECK(s.protocol() == k.protocol);
    int released = s.detach();
    CHECK(released == fd);
    CHECK_FALSE(s.is_open());
    CHECK(::fcntl(fd, F_GETFD) >= 0);  // still open: detach gave it back
    ::close(fd);
  }
}

TEST_CASE("from_fd of a descriptor that is not a socket throws ENOTSOCK and leaves it open") {
  io_context ctx;
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  try {
    (void)coring::socket::from_fd(ctx, fd);
    FAIL("from_fd should throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::error_code(ENOTSOCK, std::system_category()));
  }
  CHECK(::fcntl(fd, F_GETFD) >= 0);
  ::close(fd);
  CHECK_THROWS_AS((void)coring::socket::from_fd(ctx, -1), std::system_error);
}

TEST_CASE("connecting to a Unix name nobody listens on fails with ENOENT or ECONNREFUSED") {
  temp_dir dir;
  address to;
  std::errc expected{};
  SUBCASE("a path no socket file is at: ENOENT") {
    to = address::unix_path(dir.path + "/nobody");
    expected = std::errc::no_such_file_or_directory;
  }
  SUBCASE("an abstract name nobody bound: ECONNREFUSED") {
    to = address::unix_abstract(test::unique_abstract_name("nobody"));
    expected = std::errc::connection_refused;
  }
  io_context ctx;
  test::run_on(ctx, [to, expected](io_context& ctx) -> task<> {
    coring::socket s(ctx, AF_UNIX, SOCK_STREAM);
    auto r = co_await as_result(s.connect(to));
    REQUIRE_FALSE(r);
    CHECK(r.error() == expected);
  });
}

TEST_CASE("a peer that disappears mid-message: seqpacket and stream see EOF, then EPIPE") {
  int type = 0;
  SUBCASE("SOCK_STREAM") { type = SOCK_STREAM; }
  SUBCASE("SOCK_SEQPACKET") { type = SOCK_SEQPACKET; }
  io_context ctx;
  test::run_on(ctx, [type](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, type);
    co_await pair.first.send_all(bytes("partial mess"));
    co_await pair.first.close();  // gone before the rest of the message
    std::array<std::byte, 64> buf;
    std::size_t n = co_await pair.second.recv(buf);
    CHECK(text(std::span(buf).first(n)) == "partial mess");
    CHECK(co_await pair.second.recv(buf) == 0);
    auto r = co_await as_result(pair.second.send(bytes("anyone?")));
    CHECK(r.error() == std::errc::broken_pipe);
  });
}

TEST_CASE("operations after close throw EBADF instead of crashing") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_STREAM);
    co_await pair.first.close();
    std::array<std::byte, 4> buf;
    std::array<std::span<std::byte>, 1> bufs{std::span(buf)};
    control_buffer control;
    auto r = co_await as_result(pair.first.recv_msg(bufs, control));
    CHECK(r.error() == std::errc::bad_file_descriptor);
    CHECK_THROWS_AS((void)pair.first.peer_credentials(), std::system_error);
    CHECK_THROWS_AS((void)pair.first.family(), std::system_error);
  });
}
