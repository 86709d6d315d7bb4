// SPDX-License-Identifier: MIT
// Description: file, pipe, splice and send_file: open/openat2 (RESOLVE_BENEATH), statx,
// read/write at offsets, deadlines and stops, teardown, and file → pipe → socket transfers.
#include "test_support.hpp"

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stop_token>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using test::bytes;
using test::temp_dir;
using test::text;
using test::write_file;

namespace {

// Deterministic bytes that differ at every offset of a few MiB (no period of 256).
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242U;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x & 0xff);
  }
  return s;
}

// The process's umask (read by setting it and back).
unsigned current_umask() {
  const mode_t m = ::umask(022);
  ::umask(m);
  return m;
}

}  // namespace

TEST_CASE("opening a missing file throws ENOENT naming the operation and the path") {
  temp_dir d("file");
  io_context ctx;
  const std::string missing = d / "missing.txt";
  test::run_on(ctx, [&missing](io_context& ctx) -> task<> {
    try {
      file f = co_await file::open(ctx, missing, O_RDONLY);
      FAIL("open succeeded");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::no_such_file_or_directory);
      const std::string what = e.what();
      CHECK(what.find("open") != std::string::npos);
      CHECK(what.find("missing.txt") != std::string::npos);
    }
    // A NUL byte would cut the path short in the kernel: refused before anything is submitted.
    const std::string with_nul = missing + std::string(1, '\0') + "x";
    auto r = co_await as_result(file::open(ctx, with_nul, O_RDONLY));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::invalid_argument);
  });
}

TEST_CASE("open_beneath refuses .., absolute paths and symlinks that leave the directory") {
  temp_dir d("file");
  REQUIRE(::mkdir((d / "root").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "root/sub").c_str(), 0755) == 0);
  write_file(d / "secret.txt", "outside");
  write_file(d / "root/a.txt", "inside");
  REQUIRE(::symlink("a.txt", (d / "root/in_link").c_str()) == 0);
  REQUIRE(::symlink("../a.txt", (d / "root/sub/up_link").c_str()) == 0);
  REQUIRE(::symlink("../secret.txt", (d / "root/out_rel").c_str()) == 0);
  REQUIRE(::symlink((d / "secret.txt").c_str(), (d / "root/out_abs").c_str()) == 0);
  io_context ctx;
  const std::string root_path = d / "root";
  const std::string secret_abs = d / "secret.txt";
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    file root = co_await file::open(ctx, root_path, O_RDONLY | O_DIRECTORY);
    // Every escape is EXDEV (RESOLVE_BENEATH), not ENOENT: the kernel refuses to resolve it.
    for (const char* bad : {"../secret.txt", "sub/../../secret.txt", "out_rel", "out_abs"}) {
      CAPTURE(bad);
      auto r = co_await as_result(file::open_beneath(ctx, root, bad, O_RDONLY));
      REQUIRE_FALSE(r);
      CHECK(r.error() == std::errc::cross_device_link);
    }
    {
      auto r = co_await as_result(file::open_beneath(ctx, root, secret_abs, O_RDONLY));
      REQUIRE_FALSE(r);
      CHECK(r.error() == std::errc::cross_device_link);
    }
    // Flags and a mode pass through: a directory with O_DIRECTORY (a mode without O_CREAT is
    // dropped, as openat2 would refuse it), a new file with O_CREAT and its mode.
    file sub = co_await file::open_beneath(ctx, root, "sub", O_RDONLY | O_DIRECTORY, 0644);
    file_status sub_st = co_await sub.stat();
    CHECK(sub_st.directory);
    file made = co_await file::open_beneath(ctx, root, "sub/new.txt", O_WRONLY | O_CREAT, 0640);
    file_status made_st = co_await made.stat();
    CHECK((made_st.mode & 0777) == (0640 & ~current_umask()));
    // A missing name inside is ENOENT, as for open.
    auto missing = co_await as_result(file::open_beneath(ctx, root, "nope.txt", O_RDONLY));
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == std::errc::no_such_file_or_directory);
    // Inside: plain names, a .. that stays inside, and symlinks that stay inside.
    for (const char* good : {"a.txt", "sub/../a.txt", "in_link", "sub/up_link", "./a.txt"}) {
      CAPTURE(good);
      file f = co_await file::open_beneath(ctx, root, good, O_RDONLY);
      std::array<std::byte, 16> buf{};
      std::size_t n = co_await f.read(buf, 0);
      CHECK(text(std::span(buf).first(n)) == "inside");
    }
  });
}

TEST_CASE("stat gives size, type and modification time") {
  temp_dir d("file");
  write_file(d / "f.txt", "twelve bytes");
  const timespec times[2] = {{1'700'000'000, 0}, {1'700'000'123, 456'000'000}};
  REQUIRE(::utimensat(AT_FDCWD, (d / "f.txt").c_str(), times, 0) == 0);
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    file f = co_await file::open(ctx, d / "f.txt", O_RDONLY);
    file_status st = co_await f.stat();
    CHECK(st.size == 12);
    CHECK(st.regular);
    CHECK_FALSE(st.directory);
    CHECK(st.mtime.time_since_epoch() ==
          std::chrono::seconds(1'700'000'123) + std::chrono::milliseconds(456));
    file dir = co_await file::open(ctx, d.path(), O_RDONLY | O_DIRECTORY);
    file_status ds = co_await dir.stat();
    CHECK(ds.directory);
    CHECK_FALSE(ds.regular);
    co_await f.close();
    CHECK_FALSE(f.is_open());
  });
}

TEST_CASE("read and write at offsets; a read at the end of the file returns 0") {
  temp_dir d("file");
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    file f = co_await file::open(ctx, d / "rw.bin", O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(co_await f.write(bytes("hello world"), 0) == 11);
    CHECK(co_await f.write(bytes("WORLD"), 6) == 5);
    CHECK(co_await f.write(bytes("!"), 11) == 1);
    std::array<std::byte, 32> buf{};
    std::size_t n = co_await f.read(buf, 0);
    CHECK(text(std::span(buf).first(n)) == "hello WORLD!");
    n = co_await f.read(std::span(buf).first(5), 6);
    CHECK(text(std::span(buf).first(n)) == "WORLD");
    CHECK(co_await f.read(buf, 12) == 0);
    CHECK(co_await f.read(buf, 1000) == 0);
    file_status st = co_await f.stat();
    CHECK(st.size == 12);
    // O_CREAT | O_EXCL on an existing file: EEXIST.
    auto again = co_await as_result(file::open(ctx, d / "rw.bin", O_RDWR | O_CREAT | O_EXCL, 0600));
    REQUIRE_FALSE(again);
    CHECK(again.error() == std::errc::file_exists);
    // The descriptor is close-on-exec.
    CHECK((::fcntl(f.fileno(), F_GETFD) & FD_CLOEXEC) != 0);
  });
}

TEST_CASE("a read from an empty pipe ends by its deadline or by a stop request") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    coring::pipe p = coring::pipe::open();
    file r = file::adopt(ctx, ::dup(p.read_fd()));
    std::array<std::byte, 8> buf{};
    const auto t0 = std::chrono::steady_clock::now();
    auto timed = co_await as_result(r.read(buf, file::current_position).with_timeout(30ms));
    REQUIRE_FALSE(timed);
    CHECK(timed.error() == std::errc::timed_out);
    CHECK(std::chrono::steady_clock::now() - t0 >= 25ms);

    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 10ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    auto stopped =
        co_await as_result(r.read(buf, file::current_position).with_stop(stop.get_token()));
    REQUIRE_FALSE(stopped);
    CHECK(stopped.error() == std::errc::operation_canceled);

    // The pipe is still usable: nothing was consumed or lost.
    REQUIRE(::write(p.write_fd(), "data", 4) == 4);
    std::size_t n = co_await r.read(buf, file::current_position).with_timeout(5s);
    CHECK(text(std::span(buf).first(n)) == "data");
  });
}

namespace {
task<> pending_pipe_read(file f, int& resumed) {
  std::array<std::byte, 64> buf{};
  auto r = co_await as_result(f.read(buf, file::current_position));
  (void)r;
  ++resumed;
}
}  // namespace

TEST_CASE("destroying an io_context with pipe reads in flight drains them and resumes nobody") {
  int resumed = 0;
  const int fds_before = test::open_fds();
  {
    std::vector<coring::pipe> pipes;
    test::watchdog w(20s, "io_context teardown");
    io_context ctx;
    for (int i = 0; i < 16; ++i) {
      pipes.push_back(coring::pipe::open());
      ctx.spawn(pending_pipe_read(file::adopt(ctx, ::dup(pipes.back().read_fd())), resumed));
    }
    for (int i = 0; i < 1000 && ctx.in_flight() < 16; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 16);
  }
  CHECK(resumed == 0);
  CHECK(test::open_fds() == fds_before);
}

TEST_CASE("splice moves file bytes through a pipe into a socket") {
  temp_dir d("file");
  write_file(d / "s.txt", "0123456789abcdef");
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    file f = co_await file::open(ctx, d / "s.txt", O_RDONLY);
    coring::pipe p = coring::pipe::open();
    // From offset 4 of the file: the file position does not move.
    std::size_t in = co_await coring::splice(ctx, f.fileno(), 4, p.write_fd(), -1, 8);
    CHECK(in == 8);
    std::size_t out = co_await coring::splice(ctx, p.read_fd(), -1, pair.server.fileno(), -1, in)
                          .with_timeout(5s);
    CHECK(out == 8);
    std::array<std::byte, 16> buf{};
    std::size_t n = 0;
    for (int i = 0; i < 8 && n < 8; ++i)
      n += co_await pair.client.recv(std::span(buf).subspan(n));
    CHECK(text(std::span(buf).first(n)) == "456789ab");
    CHECK(::lseek(f.fileno(), 0, SEEK_CUR) == 0);
    // A zero length completes at once; past the end of the file, 0.
    CHECK(co_await coring::splice(ctx, f.fileno(), 0, p.write_fd(), -1, 0) == 0);
    CHECK(co_await coring::splice(ctx, f.fileno(), 16, p.write_fd(), -1, 8) == 0);
  });
}

TEST_CASE("send_file sends a multi-MiB file whole and in order, also from an offset") {
  temp_dir d("file");
  const std::string content = pattern((5 << 20) + 12345);
  write_file(d / "big.bin", content);
  io_context ctx;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    file f = co_await file::open(ctx, d / "big.bin", O_RDONLY);
    coring::pipe p = coring::pipe::open();
    auto sender = [](coring::socket& s, const file& f, coring::pipe& p, std::uint64_t off,
                     std::uint64_t count) -> task<std::size_t> {
      auto sending = send_file(s, f, off, count, p, {.timeout = 20s});  // named: g++ 12
      std::size_t n = co_await std::move(sending);
      s.shutdown(SHUT_WR);
      co_return n;
    };
    auto send = sender(pair.server, f, p, 0, content.size());
    auto receive = test::read_all(pair.client);
    auto [sent, got] = co_await when_all(std::move(send), std::move(receive));
    CHECK(sent == content.size());
    REQUIRE(got.size() == content.size());
    CHECK(got == content);
    CHECK(static_cast<bool>(p));  // a finished transfer leaves the pipe empty and open

    // An offset and a count inside the file, on a new connection, with the same pipe.
    auto pair2 = co_await test::make_tcp_pair(ctx);
    auto send2 = sender(pair2.server, f, p, 1'000'001, 2'000'000);
    auto receive2 = test::read_all(pair2.client);
    auto [sent2, got2] = co_await when_all(std::move(send2), std::move(receive2));
    CHECK(sent2 == 2'000'000);
    CHECK(got2 == content.substr(1'000'001, 2'000'000));

    // Past the end of the file: unexpected_eof, and the pipe is closed.
    auto pair3 = co_await test::make_tcp_pair(ctx);
    auto r = co_await as_result(send_file(pair3.server, f, content.size() - 10, 20, p));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::unexpected_eof);
    CHECK_FALSE(static_cast<bool>(p));
  });
}

TEST_CASE("send_file to a peer that never reads ends at its deadline") {
  temp_dir d("file");
  {
    int fd = ::open((d / "sparse.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 256 << 20) == 0);  // 256 MiB of holes: more than any socket buffers
    ::close(fd);
  }
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    pair.server.set_option(sockopt::send_buffer_size{64 << 10});
    pair.client.set_option(sockopt::recv_buffer_size{64 << 10});
    file f = co_await file::open(ctx, d / "sparse.bin", O_RDONLY);
    coring::pipe p = coring::pipe::open();
    const auto t0 = std::chrono::steady_clock::now();
    auto bounded = send_file(pair.server, f, 0, 256 << 20, p, {.timeout = 200ms});  // g++ 12
    auto r = co_await as_result(std::move(bounded));
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);
    CHECK(took >= 190ms);
    CHECK(took < 5s);
    CHECK_FALSE(static_cast<bool>(p));

    // A stop request ends it the same way.
    p = coring::pipe::open();
    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 50ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    auto stoppable = send_file(pair.server, f, 0, 256 << 20, p, {.stop = stop.get_token()});
    auto s = co_await as_result(std::move(stoppable));  // named first: g++ 12
    REQUIRE_FALSE(s);
    CHECK(s.error() == std::errc::operation_canceled);
  });
}

TEST_CASE(
    "send_file by sendfile sends a multi-MiB file whole, from an offset, and restores flags") {
  temp_dir d("file");
  const std::string content = pattern((5 << 20) + 12345);
  write_file(d / "big.bin", content);
  io_context ctx;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    file f = co_await file::open(ctx, d / "big.bin", O_RDONLY);
    auto sender = [](coring::socket& s, const file& f, std::uint64_t off,
                     std::uint64_t count) -> task<std::size_t> {
      auto sending = send_file(s, f, off, count, {.timeout = 20s});  // named: g++ 12
      std::size_t n = co_await std::move(sending);
      s.shutdown(SHUT_WR);
      co_return n;
    };
    auto pair = co_await test::make_tcp_pair(ctx);
    // A small send buffer: sendfile meets EAGAIN and waits for POLLOUT many times.
    pair.server.set_option(sockopt::send_buffer_size{64 << 10});
    const int flags = ::fcntl(pair.server.fileno(), F_GETFL);
    REQUIRE((flags & O_NONBLOCK) == 0);
    auto send = sender(pair.server, f, 0, content.size());
    auto receive = test::read_all(pair.client);
    auto both = co_await when_all(std::move(send), std::move(receive));
    CHECK(std::get<0>(both) == content.size());
    REQUIRE(std::get<1>(both).size() == content.size());
    CHECK(std::get<1>(both) == content);
    CHECK(::fcntl(pair.server.fileno(), F_GETFL) == flags);

    auto pair2 = co_await test::make_tcp_pair(ctx);
    auto send2 = sender(pair2.server, f, 1'000'001, 2'000'000);
    auto receive2 = test::read_all(pair2.client);
    auto both2 = co_await when_all(std::move(send2), std::move(receive2));
    CHECK(std::get<0>(both2) == 2'000'000);
    CHECK(std::get<1>(both2) == content.substr(1'000'001, 2'000'000));

    // Past the end of the file: unexpected_eof, and the socket's flags are back.
    auto pair3 = co_await test::make_tcp_pair(ctx);
    auto past = send_file(pair3.server, f, content.size() - 10, 20);
    auto r = co_await as_result(std::move(past));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::unexpected_eof);
    CHECK((::fcntl(pair3.server.fileno(), F_GETFL) & O_NONBLOCK) == 0);
  });
}

TEST_CASE("send_file reads chunks that are not in the page cache through the ring") {
  temp_dir d("file");
  const std::string content = pattern((3 << 20) + 777);
  write_file(d / "cold.bin", content);
  {
    // Evict the file's pages (ext4 and the like; on tmpfs they stay, and the test still holds).
    int fd = ::open((d / "cold.bin").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ::fsync(fd);
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  io_context ctx;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    file f = co_await file::open(ctx, d / "cold.bin", O_RDONLY);
    auto pair = co_await test::make_tcp_pair(ctx);
    auto sender = [](coring::socket& s, const file& f, std::uint64_t n) -> task<std::size_t> {
      auto sending = send_file(s, f, 0, n, {.timeout = 20s});  // named: g++ 12
      std::size_t sent = co_await std::move(sending);
      s.shutdown(SHUT_WR);
      co_return sent;
    };
    auto send = sender(pair.server, f, content.size());
    auto receive = test::read_all(pair.client);
    auto both = co_await when_all(std::move(send), std::move(receive));
    CHECK(std::get<0>(both) == content.size());
    REQUIRE(std::get<1>(both).size() == content.size());
    CHECK(std::get<1>(both) == content);
  });
}

TEST_CASE("send_file by sendfile to a peer that never reads ends at its deadline or stop") {
  temp_dir d("file");
  write_file(d / "big.bin", pattern(16 << 20));
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    pair.server.set_option(sockopt::send_buffer_size{64 << 10});
    pair.client.set_option(sockopt::recv_buffer_size{64 << 10});
    file f = co_await file::open(ctx, d / "big.bin", O_RDONLY);
    const auto t0 = std::chrono::steady_clock::now();
    auto bounded = send_file(pair.server, f, 0, 16 << 20, {.timeout = 200ms});
    auto r = co_await as_result(std::move(bounded));
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);
    CHECK(took >= 190ms);
    CHECK(took < 5s);
    CHECK((::fcntl(pair.server.fileno(), F_GETFL) & O_NONBLOCK) == 0);

    std::stop_source stop;
    auto stopper = [](io_context& ctx, std::stop_source& s) -> task<> {
      co_await sleep_for(ctx, 50ms);
      s.request_stop();
    };
    ctx.spawn(stopper(ctx, stop));
    auto stoppable = send_file(pair.server, f, 0, 16 << 20, {.stop = stop.get_token()});
    auto s = co_await as_result(std::move(stoppable));
    REQUIRE_FALSE(s);
    CHECK(s.error() == std::errc::operation_canceled);

    // After socket::cancel(), it ends at once.
    pair.server.cancel();
    auto after_cancel = send_file(pair.server, f, 0, 16 << 20);
    auto c = co_await as_result(std::move(after_cancel));
    REQUIRE_FALSE(c);
    CHECK(c.error() == std::errc::operation_canceled);
  });
}

TEST_CASE("send_file by sendfile to a peer that reset fails with its errno, not SIGPIPE") {
  // SIGPIPE is at its default disposition (tests/support/main.cpp): a signal would kill us.
  temp_dir d("file");
  write_file(d / "big.bin", pattern(4 << 20));
  io_context ctx;
  test::run_on(ctx, [&d](io_context& ctx) -> task<> {
    file f = co_await file::open(ctx, d / "big.bin", O_RDONLY);
    for (int i = 0; i < 3; ++i) {
      auto pair = co_await test::make_tcp_pair(ctx);
      pair.client.set_option(sockopt::linger{true, 0});
      co_await pair.client.close();  // RST
      if (i > 0) {
        // A send takes the reset (ECONNRESET); sendfile then meets EPIPE, which raises SIGPIPE.
        auto first = co_await as_result(pair.server.send_all(bytes("x")));
        (void)first;
      }
      auto t = send_file(pair.server, f, 0, 4 << 20, {.timeout = 10s});
      auto r = co_await as_result(std::move(t));
      REQUIRE_FALSE(r);
      CHECK((r.error() == std::errc::broken_pipe || r.error() == std::errc::connection_reset));
    }
  });
}
