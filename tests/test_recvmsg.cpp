// SPDX-License-Identifier: MIT
// Description: send_msg / recv_msg: scatter/gather, SCM_RIGHTS (CLOEXEC, MSG_CTRUNC without
// leaks), SCM_CREDENTIALS, MSG_PEEK, MSG_WAITALL, and the pure cmsg parser.
#include "test_support.hpp"

#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

using namespace coring;
using test::bytes;
using test::text;

namespace {

/// A temporary file holding content; its descriptor is open for reading.
struct temp_file {
  int fd = -1;
  explicit temp_file(std::string_view content) {
    char tmpl[] = "/tmp/coring-msg-XXXXXX";
    fd = ::mkostemp(tmpl, O_CLOEXEC);
    REQUIRE(fd >= 0);
    ::unlink(tmpl);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  }
  ~temp_file() { ::close(fd); }
};

std::string pread_all(int fd) {
  char buf[256];
  ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

TEST_CASE("send_msg gathers and recv_msg scatters") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_SEQPACKET);
    // More buffers than the op keeps inline (4) to cover the heap iovec path too.
    std::array<std::span<const std::byte>, 6> out{bytes("ab"),  bytes("cd"), bytes(""),
                                                  bytes("efg"), bytes("h"),  bytes("ij")};
    ancillary none;
    CHECK(co_await pair.first.send_msg(out, none) == 10);
    std::array<std::byte, 3> b1;
    std::array<std::byte, 20> b2;
    std::array<std::span<std::byte>, 2> in{std::span(b1), std::span(b2)};
    control_buffer control;
    message_info m = co_await pair.second.recv_msg(in, control);
    CHECK(m.size == 10);
    CHECK_FALSE(m.truncated());
    CHECK(text(b1) == "abc");
    CHECK(text(std::span(b2).first(7)) == "defghij");
    CHECK(control.fds().empty());
    CHECK(control.raw().empty());
  });
}

TEST_CASE("SCM_RIGHTS passes a real file; the received descriptor is CLOEXEC and readable") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_STREAM);
    temp_file f("file content 42");
    int before = test::open_fds();
    std::array<int, 2> fds{f.fd, f.fd};
    CHECK(co_await send_fds(pair.first, fds, bytes("F")) == 1);
    std::array<std::byte, 8> buf;
    {
      received_fds r = co_await recv_fds(pair.second, buf, 4);
      CHECK(r.size == 1);
      CHECK(text(std::span(buf).first(1)) == "F");
      REQUIRE(r.fds.size() == 2);
      for (auto& fd : r.fds) {
        CHECK(fd.get() != f.fd);
        CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(pread_all(fd.get()) == "file content 42");
      }
      CHECK(test::open_fds() == before + 2);
    }
    CHECK(test::open_fds() == before);  // unique_fd closed them
  });
}

TEST_CASE("sockets passed with SCM_RIGHTS can be adopted with from_fd") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto carrier = socket_pair(ctx, SOCK_DGRAM);
    auto inner = socket_pair(ctx, SOCK_SEQPACKET);
    std::array<int, 1> fds{inner.second.fileno()};
    co_await send_fds(carrier.first, fds, bytes("s"));
    std::array<std::byte, 1> buf;
    received_fds r = co_await recv_fds(carrier.second, buf, 1);
    REQUIRE(r.fds.size() == 1);
    coring::socket adopted = coring::socket::from_fd(ctx, r.fds[0].release());
    CHECK(adopted.type() == SOCK_SEQPACKET);
    co_await inner.first.send_all(bytes("via passed socket"));
    std::array<std::byte, 32> in;
    std::size_t n = co_await adopted.recv(in);
    CHECK(text(std::span(in).first(n)) == "via passed socket");
  });
}

TEST_CASE("a control buffer too small is message_truncated and leaks no descriptor") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_DGRAM);
    temp_file f("x");
    std::array<int, 8> fds;
    fds.fill(f.fd);
    int before = test::open_fds();
    co_await send_fds(pair.first, fds, bytes("M"));
    std::array<std::byte, 4> buf;
    std::array<std::span<std::byte>, 1> in{std::span(buf)};
    control_buffer control(control_buffer::space_for_fds(1));  // 8 do not fit
    try {
      (void)co_await pair.second.recv_msg(in, control);
      FAIL("recv_msg should report MSG_CTRUNC");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::message_truncated);
    }
    CHECK(control.fds().empty());
    CHECK(test::open_fds() == before);
    // recv_fds reports the same, also when only the CMSG_SPACE rounding let an extra one in.
    co_await send_fds(pair.first, std::span(fds).first(3), bytes("N"));
    try {
      (void)co_await recv_fds(pair.second, buf, 2);
      FAIL("recv_fds should report more descriptors than max_fds");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::message_truncated);
    }
    CHECK(test::open_fds() == before);
  });
}

TEST_CASE("MSG_PEEK leaves the data queued and MSG_WAITALL fills every buffer") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_STREAM);
    co_await pair.first.send_all(bytes("peekaboo"));
    std::array<std::byte, 4> a;
    std::array<std::span<std::byte>, 1> in{std::span(a)};
    control_buffer control;
    message_info p = co_await pair.second.recv_msg(in, control, MSG_PEEK);
    CHECK(text(std::span(a).first(p.size)) == "peek");
    std::array<std::byte, 8> all;
    std::array<std::span<std::byte>, 1> in2{std::span(all)};
    message_info m = co_await pair.second.recv_msg(in2, control);
    CHECK(text(std::span(all).first(m.size)) == "peekaboo");
    // MSG_WAITALL waits for the second half instead of returning a short read (recvmsg
    // without control data: recv_from).
    co_await pair.first.send_all(bytes("half"));
    task<std::size_t> later = [](coring::socket& s) -> task<std::size_t> {
      co_return co_await s.send_all(bytes("+two"));
    }(pair.first);
    ctx.spawn([](task<std::size_t> t) -> task<> { (void)co_await std::move(t); }(std::move(later)));
    datagram w = co_await pair.second.recv_from(all, MSG_WAITALL);
    CHECK(w.size == 8);
    CHECK(text(all) == "half+two");
    // recv_msg passes MSG_WAITALL through too, but with a control buffer the kernel may end
    // the receive early (seen on Linux 6.18, Unix stream): never more than asked, never lost.
    co_await pair.first.send_all(bytes("12345678"));
    message_info m2 = co_await pair.second.recv_msg(in2, control, MSG_WAITALL);
    std::string got = text(std::span(all).first(m2.size));
    while (got.size() < 8) {
      std::size_t n = co_await pair.second.recv(std::span(all).first(8 - got.size()));
      REQUIRE(n > 0);
      got += text(std::span(all).first(n));
    }
    CHECK(got == "12345678");
  });
}

TEST_CASE("SCM_CREDENTIALS arrive with SO_PASSCRED, explicit or filled in by the kernel") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_DGRAM);
    pair.second.set_option(sockopt::pass_credentials{true});
    credentials me{::getpid(), ::getuid(), ::getgid()};
    ancillary creds;
    creds.add_credentials();
    std::array<std::span<const std::byte>, 1> out{bytes("c")};
    co_await pair.first.send_msg(out, creds);
    std::array<std::byte, 4> buf;
    std::array<std::span<std::byte>, 1> in{std::span(buf)};
    control_buffer control(control_buffer::space_for_credentials());
    (void)co_await pair.second.recv_msg(in, control);
    REQUIRE(control.creds().has_value());
    CHECK(*control.creds() == me);
    ancillary none;
    co_await pair.first.send_msg(out, none);
    (void)co_await pair.second.recv_msg(in, control);
    REQUIRE(control.creds().has_value());
    CHECK(*control.creds() == me);
  });
}

TEST_CASE("send_msg with a closed descriptor in SCM_RIGHTS throws EBADF") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = socket_pair(ctx, SOCK_DGRAM);
    int fd = ::dup(0);
    ::close(fd);
    std::array<int, 1> fds{fd};
    try {
      (void)co_await send_fds(pair.first, fds, bytes("x"));
      FAIL("send_fds should fail");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::bad_file_descriptor);
    }
  });
}

TEST_CASE("parse_control walks well-formed messages and stops safely at lying lengths") {
  ancillary a;
  std::array<int, 3> fds{7, 8, 9};
  a.add_fds(fds).add_credentials(credentials{1, 2, 3}).add_packet_info(address::loopback_v4(), 5);
  a.add(SOL_SOCKET, 12345, {});
  auto raw = a.bytes();
  std::vector<std::max_align_t> aligned(raw.size() / sizeof(std::max_align_t) + 1);
  std::memcpy(aligned.data(), raw.data(), raw.size());
  parsed_control p = parse_control(aligned.data(), raw.size());
  CHECK_FALSE(p.malformed);
  CHECK(p.fds == std::vector<int>{7, 8, 9});
  REQUIRE(p.creds.has_value());
  CHECK(*p.creds == credentials{1, 2, 3});
  REQUIRE(p.pktinfo.has_value());
  CHECK(p.pktinfo->interface_index == 5);
  CHECK(p.other == 1);
  // Every prefix parses without reading past it.
  for (std::size_t len = 0; len <= raw.size(); ++len) {
    CAPTURE(len);
    std::vector<std::byte> copy(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(len));
    std::vector<std::max_align_t> al(len / sizeof(std::max_align_t) + 1);
    if (len > 0) std::memcpy(al.data(), copy.data(), len);  // copy.data() may be null at 0
    parsed_control q = parse_control(al.data(), len);
    CHECK(q.fds.size() <= 3);
  }
  // A header that claims more bytes than there are is malformed, not followed.
  cmsghdr h{};
  h.cmsg_len = 1u << 30;
  h.cmsg_level = SOL_SOCKET;
  h.cmsg_type = SCM_RIGHTS;
  std::array<std::max_align_t, 4> lie{};
  std::memcpy(lie.data(), &h, sizeof h);
  parsed_control l = parse_control(lie.data(), sizeof lie);
  CHECK(l.malformed);
  CHECK(l.fds.empty());
  h.cmsg_len = 3;  // shorter than a header
  std::memcpy(lie.data(), &h, sizeof h);
  CHECK(parse_control(lie.data(), sizeof lie).malformed);
  CHECK_FALSE(parse_control(nullptr, 100).malformed);
}
