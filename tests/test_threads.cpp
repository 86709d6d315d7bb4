// SPDX-License-Identifier: MIT
// Description: crossing threads: execute() and stop() from other threads, work guards,
// resume_on between two contexts, and requests still queued when a context is destroyed.
// Runs under TSan in CI (scripts/test): every cross-thread edge here is an atomic or a join.
#include "test_support.hpp"

#include <coring/threads.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {
long thread_id();

// A thread that owns an io_context: it creates, runs and destroys it there (with SINGLE_ISSUER
// the ring belongs to the creating thread) and runs it, held by a work guard, until stop() or
// until the guard is released on the loop's thread (finish()).
struct context_thread {
  std::atomic<io_context*> ctx{nullptr};
  io_context::work_guard* guard = nullptr;
  std::thread::id id;
  long tid = 0;
  std::atomic<bool> returned{false};
  std::thread t;
  context_thread()
      : t([this] {
          io_context c;
          io_context::work_guard g(c);
          guard = &g;
          id = std::this_thread::get_id();
          tid = thread_id();
          ctx.store(&c);
          c.run();
          returned = true;
        }) {
    for (int i = 0; i < 10'000'000 && ctx.load() == nullptr; ++i)
      std::this_thread::yield();
    REQUIRE(ctx.load() != nullptr);
  }
  io_context& context() { return *ctx.load(); }
  void finish() {
    context().execute([this] { guard->reset(); });
    t.join();
  }
};
}  // namespace

TEST_CASE(
    "execute from 4 threads: 40,000 functions run on the context's thread, in order per "
    "thread") {
  test::watchdog w(60s, "execute from 4 threads");
  context_thread ct;
  constexpr int producers = 4, per = 10'000;
  std::vector<int> next(producers, 0);  // touched on the context's thread only
  int out_of_order = 0, wrong_thread = 0, ran = 0;
  const std::thread::id loop_thread = ct.id;
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per; ++i) {
        ct.context().execute([&, p, i] {
          if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
          if (next[static_cast<std::size_t>(p)] != i) ++out_of_order;
          next[static_cast<std::size_t>(p)] = i + 1;
          ++ran;
        });
      }
    });
  }
  for (auto& t : threads)
    t.join();
  ct.finish();  // queued after every producer's last function
  CHECK(ran == producers * per);
  CHECK(out_of_order == 0);
  CHECK(wrong_thread == 0);
}

TEST_CASE("stop() from another thread makes a run() blocked in the kernel return") {
  test::watchdog w(20s, "remote stop");
  context_thread ct;  // nothing in flight; its work guard keeps run() waiting in the kernel
  std::atomic<bool> inside{false};
  ct.context().execute([&] { inside = true; });
  for (int i = 0; i < 10'000'000 && !inside; ++i)
    std::this_thread::yield();
  REQUIRE(inside);  // run() is really running
  ct.context().stop();
  ct.t.join();
  CHECK(ct.returned);
}

TEST_CASE("a work guard released on another thread lets an idle run() return") {
  test::watchdog w(20s, "work guard");
  context_thread ct;
  std::atomic<int> ran{0};
  ct.context().execute([&] { ++ran; });
  ct.guard->reset();  // from this thread: run() returns once the function ran and no work is left
  ct.t.join();
  CHECK(ran == 1);
  CHECK(ct.returned);
}

TEST_CASE("running a context on another thread than its creator's is a clear error" *
          test::skip_unless(test::ring_supports(test::feature::thread_bound_ring))) {
  io_context ctx;
  REQUIRE((ctx.features().single_issuer || ctx.features().registered_ring_fd));
  std::string what;
  std::thread other([&] {
    try {
      ctx.run_once(false);
    } catch (const std::logic_error& e) {
      what = e.what();
    }
  });
  other.join();
  CHECK(what.find("another thread") != std::string::npos);
}

TEST_CASE("execute takes move-only functions; an exception goes to the exception handler") {
  io_context ctx;
  int handled = 0, value = 0;
  ctx.set_exception_handler([&](std::exception_ptr) { ++handled; });
  auto p = std::make_unique<int>(42);
  ctx.execute([p = std::move(p), &value] { value = *p; });
  ctx.execute([] { throw std::runtime_error("boom"); });
  ctx.run_once(false);
  CHECK(value == 42);
  CHECK(handled == 1);
}

namespace {
// The kernel's thread id. Not std::this_thread::get_id(): pthread_self() is declared
// __attribute__((const)), so clang may reuse its value across a co_await that changed threads.
long thread_id() { return ::syscall(SYS_gettid); }

task<int> ping_pong(io_context& a, io_context& b, long ta, long tb, int rounds) {
  int wrong = 0;
  for (int i = 0; i < rounds; ++i) {
    co_await resume_on(b);
    if (thread_id() != tb) ++wrong;
    co_await resume_on(a);
    if (thread_id() != ta) ++wrong;
  }
  co_return wrong;
}
}  // namespace

TEST_CASE("resume_on moves a coroutine between two contexts' threads, 1,000 round trips") {
  test::watchdog w(60s, "resume_on ping-pong");
  context_thread b;
  io_context a;
  int wrong = -1;
  {
    auto guard_a = a.make_work_guard();  // a has nothing in flight while the task is on b
    auto body = [&]() -> task<> {
      wrong = co_await ping_pong(a, b.context(), thread_id(), b.tid, 1000);
      a.stop();
    };
    a.spawn(body());
    a.run();
  }
  b.finish();
  CHECK(wrong == 0);
}

TEST_CASE(
    "requests still queued when a context is destroyed: resume_on resumes with "
    "context_stopping, functions are destroyed unrun") {
  test::counted::reset();
  io_context home;
  bool stopped = false, ran = false;
  {
    io_context doomed;  // never run
    auto mover = [](io_context& to, bool& stopped) -> task<> {
      try {
        co_await resume_on(to);
      } catch (const std::system_error& e) {
        stopped = e.code() == errc::context_stopping;
      }
    };
    home.spawn(mover(doomed, stopped));
    home.run_once(false);  // the task starts and queues itself on doomed
    doomed.execute([c = test::counted{}, &ran] { ran = true; });
    CHECK(test::counted::live == 1);
  }
  CHECK(stopped);
  CHECK_FALSE(ran);
  CHECK(test::counted::live == 0);
  CHECK(home.spawned() == 0);  // the mover finished (on the destroying thread)
}

namespace {
task<> stoppable_recv(io_context& ctx, int fd, std::stop_token tok, std::atomic<int>& state,
                      std::atomic<int>& outcome) {
  coring::socket s = coring::socket::from_fd(ctx, ::dup(fd));
  std::array<std::byte, 16> buf{};
  state = 1;  // about to wait: the other thread may request stop from now on
  auto r = co_await as_result(s.recv(buf).with_stop(std::move(tok)));
  outcome = r ? 1 : (r.error() == std::errc::operation_canceled ? 2 : 3);
  state = 2;
}
}  // namespace

TEST_CASE(
    "a stop request from another thread cancels an operation waiting on the ring's thread "
    "(1,000 rounds, both before and while it waits)") {
  test::watchdog w(60s, "cross-thread stop");
  context_thread ct;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  int cancelled = 0, other = 0, hung = 0;
  for (int i = 0; i < 1000; ++i) {
    std::stop_source src;
    std::atomic<int> state{0}, outcome{0};
    io_context& ctx = ct.context();
    ctx.execute([&ctx, fd = sv[0], tok = src.get_token(), &state, &outcome] {
      ctx.spawn(stoppable_recv(ctx, fd, tok, state, outcome));
    });
    for (int t = 0; t < 10'000'000 && state.load() == 0; ++t)
      std::this_thread::yield();
    src.request_stop();  // runs the op's stop callback here, on this thread, if it registered
    int t = 0;
    for (; t < 10'000'000 && state.load() != 2; ++t)
      std::this_thread::yield();
    if (state.load() != 2) {
      ++hung;
      break;
    }
    if (outcome.load() == 2)
      ++cancelled;
    else
      ++other;
  }
  ct.finish();
  ::close(sv[0]);
  ::close(sv[1]);
  CHECK(hung == 0);
  CHECK(other == 0);
  CHECK(cancelled == 1000);
}
