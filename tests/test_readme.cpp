// SPDX-License-Identifier: MIT
// Description: the README's C++ snippets that are not lines of an example, compiled and run.
// scripts/check-snippets checks that each README block marked with this file is a run of lines
// of it: change a snippet here and in the README together.
#include "test_support.hpp"

#include <coring/threads.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <variant>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

// README, the opening example (kept as written there).
coring::task<> echo(coring::socket s) {
  std::array<std::byte, 4096> buf;
  while (std::size_t n = co_await s.recv(buf))
    co_await s.send_all(std::span(buf).first(n));
}

coring::task<int> fetch(int x) { co_return x * 10; }

// s holds two datagrams; token is never stopped. children counts the task_group's children.
coring::task<> time_and_structure(coring::io_context& ctx, coring::socket& s, std::stop_token token,
                                  int& children) {
  std::array<std::byte, 64> buf;
  const int x = 1, y = 2;
  auto f = [](std::stop_token) -> coring::task<int> { co_return 1; };
  auto g = [&ctx](std::stop_token tok) -> coring::task<int> {
    co_await coring::sleep_for(ctx, 1h).with_stop(tok);  // f wins: this sleep is cancelled
    co_return 2;
  };
  auto child = [&children](std::stop_token) -> coring::task<> {
    ++children;
    co_return;
  };
  // README, "Time, cancellation and structured concurrency" (kept as written there):
  // clang-format off
  co_await coring::sleep_for(ctx, 10ms);                  // IORING_OP_TIMEOUT
  std::size_t n = co_await s.recv(buf).with_timeout(5s);  // kernel linked timeout: timed_out
  co_await s.recv(buf).with_stop(token);                  // std::stop_token: operation_canceled
  s.cancel();                                             // everything on s, for good

  auto all = coring::when_all(fetch(x), fetch(y));     // named first (g++ 12: docs/design.md)
  auto both = co_await std::move(all);                 // std::tuple, concurrently
  auto first = co_await coring::when_any(f, g);        // F(std::stop_token) -> task<T>; losers
                                                       // are cancelled and awaited
  auto v = co_await coring::cancel_after(ctx, 2s, f);   // a whole task, bounded
  coring::task_group group(ctx);                       // a nursery: the first failure cancels
  group.spawn(child);  co_await group.join();          // the siblings and is rethrown
  // clang-format on

  CHECK(n == 5);
  CHECK(std::get<0>(both) == 10);
  CHECK(std::get<1>(both) == 20);
  CHECK(first.index() == 0);
  CHECK(std::get<0>(first) == 1);
  CHECK(v == 1);
}

// Not inlined: compilers may keep a thread identity across a co_await (see resume_on).
[[gnu::noinline]] long this_thread_tid() { return static_cast<long>(::syscall(SYS_gettid)); }

// A thread that creates, runs (held by a work guard) and destroys its own io_context.
struct context_thread {
  std::atomic<coring::io_context*> ctx{nullptr};
  coring::io_context::work_guard* guard = nullptr;  // used on the thread's loop only
  long tid = 0;
  std::thread t{[this] {
    coring::io_context c;
    coring::io_context::work_guard g(c);
    guard = &g;
    tid = this_thread_tid();
    ctx.store(&c);
    c.run();
  }};
  context_thread() {
    for (int i = 0; i < 10'000'000 && ctx.load() == nullptr; ++i)
      std::this_thread::yield();
    REQUIRE(ctx.load() != nullptr);
  }
  ~context_thread() {
    ctx.load()->execute([this] { guard->reset(); });
    t.join();
  }
};

struct readme_job {
  explicit readme_job(bool& r) : ran(r) {}
  void run() { ran = true; }
  bool& ran;
};

// Starts on ctx's thread, stops ctx's run(), hops to other's thread and back.
coring::task<> threads(coring::io_context& ctx, coring::io_context& other, bool& ran, long& away,
                       bool& done) {
  auto job = std::make_unique<readme_job>(ran);
  // README, "Threads" (kept as written there):
  // clang-format off
  ctx.execute([p = std::move(job)] { p->run(); });  // any thread: runs on ctx's thread next turn
  ctx.stop();                                        // any thread: a blocked run() returns
  auto guard = ctx.make_work_guard();                // run() waits for such requests while idle
  co_await coring::resume_on(other);                 // this coroutine continues on other's thread
  // clang-format on

  away = this_thread_tid();
  co_await coring::resume_on(ctx);
  done = true;
}

// README, "Files" (kept as written there): sends the file name under dir to s, whole.
// clang-format off
coring::task<std::size_t> send_named(coring::io_context& ctx, coring::socket& s,
                                     const coring::file& dir, std::string_view name) {
  coring::file f = co_await coring::file::open_beneath(ctx, dir, name, O_RDONLY);  // EXDEV: outside
  coring::file_status st = co_await f.stat();            // IORING_OP_STATX: size, mtime, type
  std::array<std::byte, 16> head;
  std::size_t n = co_await f.read(head, 0);              // IORING_OP_READ at an offset; 0: EOF
  co_await s.send_all(std::span(head).first(n));
  coring::send_file_options opts{.timeout = 30s};        // the rest by sendfile(2), no copy
  std::size_t rest = co_await coring::send_file(s, f, n, st.size - n, opts);
  co_return n + rest;
}
// clang-format on

}  // namespace

TEST_CASE("the README's file lines send a file beneath a directory and refuse one outside") {
  coring::io_context ctx;
  coring::test::temp_dir d("readme");
  std::string content;
  for (int i = 0; i < 20000; ++i)
    content += std::to_string(i) + ",";
  coring::test::write_file(d / "data.txt", content);
  auto body = [&](coring::io_context& ctx) -> coring::task<> {
    coring::file dir = co_await coring::file::open(ctx, d.path(), O_RDONLY | O_DIRECTORY);
    std::pair<coring::socket, coring::socket> pair = coring::socket_pair(ctx, SOCK_STREAM);
    auto sender = [&]() -> coring::task<std::size_t> {
      std::size_t n = co_await send_named(ctx, pair.first, dir, "data.txt");
      pair.first.shutdown(SHUT_WR);
      co_return n;
    };
    auto both = coring::when_all(sender(), coring::test::read_all(pair.second));
    std::tuple<std::size_t, std::string> results = co_await std::move(both);
    const std::size_t sent = std::get<0>(results);
    const std::string& got = std::get<1>(results);
    CHECK(sent == content.size());
    CHECK(got.size() == content.size());
    CHECK(got == content);
    auto outside = coring::as_result(coring::file::open_beneath(ctx, dir, "../x", O_RDONLY));
    auto r = co_await std::move(outside);
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::cross_device_link);
  };
  coring::test::run_on(ctx, body);
}

TEST_CASE("the README's first echo coroutine echoes until the peer shuts down") {
  coring::io_context ctx;
  auto body = [](coring::io_context& ctx) -> coring::task<> {
    std::pair<coring::socket, coring::socket> pair = coring::socket_pair(ctx, SOCK_STREAM);
    ctx.spawn(echo(std::move(pair.second)));
    co_await pair.first.send_all("hello, coring");
    pair.first.shutdown(SHUT_WR);
    std::string back = co_await coring::test::read_all(pair.first);
    CHECK(back == "hello, coring");
  };
  coring::test::run(ctx, body(ctx));
}

// These two run the coroutine with spawn and run(), not sync_wait: sync_wait takes a task that
// finished in a turn's queued resumes (task_group::join, resume_on back home) with nothing left
// in flight for one that can never finish, and throws.
TEST_CASE("the README's time, cancellation and structured concurrency lines do what they say") {
  coring::test::watchdog w(20s, "README time and structure");
  coring::io_context ctx;
  bool done = false;
  auto body = [](coring::io_context& ctx, bool& done) -> coring::task<> {
    std::pair<coring::socket, coring::socket> pair = coring::socket_pair(ctx, SOCK_DGRAM);
    std::size_t sent = co_await pair.second.send(coring::test::bytes("first"));
    CHECK(sent == 5);
    sent = co_await pair.second.send(coring::test::bytes("second"));
    CHECK(sent == 6);
    std::stop_source source;
    std::stop_token token = source.get_token();
    int children = 0;
    co_await time_and_structure(ctx, pair.first, token, children);
    CHECK(children == 1);
    auto after_cancel = co_await coring::as_result(pair.first.recv(std::span<std::byte>()));
    CHECK(after_cancel.error() == std::errc::operation_canceled);  // s.cancel() sticks
    done = true;
  };
  ctx.spawn(body(ctx, done));
  ctx.run();
  CHECK(done);
}

TEST_CASE("the README's Threads lines run: execute, stop, a work guard and resume_on") {
  coring::test::watchdog w(20s, "README threads");
  coring::io_context ctx;
  context_thread other;
  bool ran = false, done = false;
  long away = 0;
  ctx.spawn(threads(ctx, *other.ctx.load(), ran, away, done));
  ctx.run();  // returns after the turn in which the coroutine called ctx.stop() (by then it may
              // be back already: the turn's completions include the wake-ups from other threads)
  ctx.run();  // if not, its work guard keeps this run() waiting until it is back and ends
  CHECK(done);
  CHECK(ran);
  CHECK(away == other.tid);  // resume_on(other) continued on other's thread
  CHECK(away != this_thread_tid());
}
