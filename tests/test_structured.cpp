// SPDX-License-Identifier: MIT
// Description: structured concurrency: when_all, when_any, with_timeout, task_group, of tasks
// and of io operations.
#include "test_support.hpp"

#include <array>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <chrono>
#include <csignal>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using coring::test::counted;

namespace {

task<int> value(int v) { co_return v; }
task<std::string> text_after(io_context& ctx, std::chrono::milliseconds d, std::string s) {
  co_await sleep_for(ctx, d);
  co_return s;
}
task<> bump(int& hits) {
  ++hits;
  co_return;
}
task<> bump_after(io_context& ctx, std::chrono::milliseconds d, int& hits) {
  co_await sleep_for(ctx, d);
  ++hits;
}
task<int> keep(io_context& ctx, counted, int v) {
  co_await sleep_for(ctx, 1ms);
  co_return v;
}
task<int> fail_now(std::string what) {
  throw std::runtime_error(what);
  co_return 0;
}
task<int> fail_after(io_context& ctx, std::chrono::milliseconds d, std::string what) {
  co_await sleep_for(ctx, d);
  throw std::runtime_error(what);
}
// Waits for bytes that the peer sends (proves that siblings run concurrently).
task<std::string> receive(coring::socket& s) {
  std::array<std::byte, 16> buf;
  std::size_t n = co_await s.recv(buf);
  co_return test::text(std::span(buf).first(n));
}
task<std::size_t> transmit(coring::socket& s, std::string what) {
  std::size_t n = co_await s.send_all(test::bytes(what));
  co_return n;
}

bool is_canceled(const std::system_error& e) { return e.code() == std::errc::operation_canceled; }

}  // namespace

// ---- when_all --------------------------------------------------------------------------------

TEST_CASE("when_all returns every child's value in argument order") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto all = when_all(text_after(ctx, 5ms, "slow"), value(2), text_after(ctx, 1ms, "fast"));
    std::tuple<std::string, int, std::string> r = co_await std::move(all);
    CHECK(std::get<0>(r) == "slow");
    CHECK(std::get<1>(r) == 2);
    CHECK(std::get<2>(r) == "fast");
  });
}

TEST_CASE("when_all runs its children concurrently") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    // The receiver comes first: run one after the other, it would wait forever.
    auto all = when_all(receive(pair.server), transmit(pair.client, "ping"));
    std::tuple<std::string, std::size_t> r = co_await std::move(all);
    CHECK(std::get<0>(r) == "ping");
    CHECK(std::get<1>(r) == 4);
  });
}

TEST_CASE("when_all of void children yields coring::unit") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int hits = 0;
    auto all = when_all(bump(hits), bump_after(ctx, 1ms, hits), bump(hits));
    std::tuple<unit, unit, unit> r = co_await std::move(all);
    CHECK(hits == 3);
    CHECK(std::get<0>(r) == unit{});
    auto none = when_all();
    std::tuple<> empty = co_await std::move(none);
    (void)empty;
  });
}

TEST_CASE("when_all mixes void and value children") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int hits = 0;
    auto all = when_all(value(1), bump_after(ctx, 2ms, hits), text_after(ctx, 1ms, "x"));
    std::tuple<int, unit, std::string> r = co_await std::move(all);
    CHECK(std::get<0>(r) == 1);
    CHECK(std::get<2>(r) == "x");
    CHECK(hits == 1);
  });
}

TEST_CASE("when_all over a vector returns the values in vector order") {
  io_context ctx;
  counted::reset();
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    std::vector<task<int>> ts;
    for (int i = 0; i < 200; ++i)
      ts.push_back(i % 3 == 0 ? value(i) : keep(ctx, counted{}, i));
    auto all = when_all(std::move(ts));
    std::vector<int> r = co_await std::move(all);
    REQUIRE(r.size() == 200);
    for (int i = 0; i < 200; ++i)
      CHECK(r[static_cast<std::size_t>(i)] == i);
    CHECK(counted::live == 0);

    int hits = 0;
    std::vector<task<>> vs;
    for (int i = 0; i < 50; ++i)
      vs.push_back(i % 2 ? bump(hits) : bump_after(ctx, 1ms, hits));
    auto vall = when_all(std::move(vs));
    co_await std::move(vall);
    CHECK(hits == 50);

    auto empty = when_all(std::vector<task<int>>{});
    std::vector<int> e = co_await std::move(empty);
    CHECK(e.empty());
  });
  CHECK(counted::live == 0);
}

TEST_CASE("when_all waits for every child when one throws, then rethrows the first failure") {
  io_context ctx;
  counted::reset();
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int hits = 0;
    // "late" comes first in argument order but fails after "early", which fails during start.
    auto all = when_all(fail_after(ctx, 2ms, "late"), fail_now("early"), keep(ctx, counted{}, 1),
                        bump_after(ctx, 5ms, hits));
    std::string what;
    try {
      co_await std::move(all);
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "early");
    CHECK(hits == 1);             // the slowest sibling finished before when_all threw
    CHECK(counted::live == 0);    // and every child frame is gone
    CHECK(ctx.in_flight() == 0);  // no child op outlives the call
  });
}

TEST_CASE("when_all of synchronously completing children does not grow the stack") {
  // Must pass at g++ -O0 with ASan, where symmetric transfer is no tail call.
  io_context ctx;
  auto body = []() -> task<long> {
    long sum = 0;
    for (int i = 0; i < 100'000; ++i) {
      auto all = when_all(value(1), value(2));
      std::tuple<int, int> r = co_await std::move(all);
      sum += std::get<0>(r) + std::get<1>(r);
    }
    co_return sum;
  };
  CHECK(test::run(ctx, body()) == 300'000L);
}

TEST_CASE("when_all runs a task and an io operation together") {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    // The receiving task comes first: run one after the other, it would wait forever.
    auto all = when_all(receive(pair.server), pair.client.send_all(test::bytes("op")),
                        sleep_for(ctx, 1ms));
    std::tuple<std::string, std::size_t, unit> r = co_await std::move(all);
    CHECK(std::get<0>(r) == "op");
    CHECK(std::get<1>(r) == 2);
    CHECK(ctx.in_flight() == 0);

    std::vector<decltype(sleep_for(ctx, 1ms))> sleeps;
    for (int i = 0; i < 10; ++i)
      sleeps.push_back(sleep_for(ctx, std::chrono::microseconds(i)));
    auto vall = when_all(std::move(sleeps));
    co_await std::move(vall);
    CHECK(ctx.in_flight() == 0);
  };
  test::run(ctx, body(ctx));
}

// ---- when_any --------------------------------------------------------------------------------

TEST_CASE("when_any of two operations binds them to its token: the loser is cancelled") {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    std::array<std::byte, 8> buf;
    // Nobody sends: the timer wins and the recv is cancelled before when_any returns.
    auto race = when_any(pair.server.recv(buf), sleep_for(ctx, 1ms));
    std::variant<std::size_t, unit> r = co_await std::move(race);
    CHECK(r.index() == 1);
    CHECK(ctx.in_flight() == 0);

    // Data is there: the recv wins and the 10 s sleep is cancelled.
    co_await pair.client.send_all(test::bytes("abc"));
    auto race2 = when_any(sleep_for(ctx, 10s), pair.server.recv(buf));
    std::variant<unit, std::size_t> r2 = co_await std::move(race2);
    REQUIRE(r2.index() == 1);
    CHECK(test::text(std::span(buf).first(std::get<1>(r2))) == "abc");
    CHECK(ctx.in_flight() == 0);
  };
  test::run(ctx, body(ctx));
}

TEST_CASE("when_any takes a factory that returns an operation, next to one that returns a task") {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    auto timer = [&ctx](std::stop_token tok) { return sleep_for(ctx, 10s).with_stop(tok); };
    auto quick = [](std::stop_token) { return value(5); };
    auto race = when_any(timer, quick);
    std::variant<unit, int> r = co_await std::move(race);
    REQUIRE(r.index() == 1);
    CHECK(std::get<1>(r) == 5);
    CHECK(ctx.in_flight() == 0);
  };
  test::run(ctx, body(ctx));
}

// A task has no token to cancel it with: when_any takes it only through a factory.
static_assert(!detail::stop_child<task<int>>);
static_assert(detail::stop_child<detail::sleep_op>);

TEST_CASE("when_any returns the fastest child and the loser blocked in recv has ended before") {
  io_context ctx;
  counted::reset();
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    bool loser_canceled = false, loser_ended = false;
    auto fast = [&ctx](std::stop_token) -> task<int> {
      co_await sleep_for(ctx, 1ms);
      co_return 7;
    };
    auto slow = [&pair, &loser_canceled, &loser_ended](std::stop_token tok) -> task<std::string> {
      counted c;  // a local of the loser's frame: must be destroyed before when_any returns
      std::array<std::byte, 8> buf;
      try {
        auto op = pair.server.recv(buf).with_stop(tok);
        co_await op;  // nobody ever sends
      } catch (const std::system_error& e) {
        loser_canceled = is_canceled(e);
      }
      loser_ended = true;
      co_return "never";
    };
    auto race = when_any(fast, slow);
    std::variant<int, std::string> r = co_await std::move(race);
    REQUIRE(r.index() == 0);
    CHECK(std::get<0>(r) == 7);
    CHECK(loser_canceled);
    CHECK(loser_ended);
    CHECK(counted::live == 0);
    CHECK(ctx.in_flight() == 0);
  });
}

TEST_CASE("when_any cancels a 10 s sleep that lost and reports the winner's index") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    int canceled = 0;
    auto sleeper = [&ctx, &canceled](std::stop_token tok) -> task<int> {
      try {
        auto op = sleep_for(ctx, 10s).with_stop(tok);
        co_await op;
      } catch (const std::system_error& e) {
        if (is_canceled(e)) ++canceled;
        throw;  // a cancelled loser's exception is swallowed by when_any
      }
      co_return 1;
    };
    auto winner = [&ctx](std::stop_token) -> task<int> {
      co_await sleep_for(ctx, 1ms);
      co_return 2;
    };
    // Same value type twice: the variant's index tells which child won.
    auto race = when_any(sleeper, winner, sleeper);
    std::variant<int, int, int> r = co_await std::move(race);
    CHECK(r.index() == 1);
    CHECK(std::get<1>(r) == 2);
    CHECK(canceled == 2);
    CHECK(ctx.in_flight() == 0);
  });
}

TEST_CASE("when_any whose first child finishes during start stops the later ones at once") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    bool saw_stop = false;
    auto now = [](std::stop_token) -> task<> { co_return; };
    auto later = [&ctx, &saw_stop](std::stop_token tok) -> task<int> {
      saw_stop = tok.stop_requested();
      auto op = sleep_for(ctx, 10s).with_stop(tok);
      co_await op;  // completes at once with operation_canceled: stop was already requested
      co_return 1;
    };
    auto race = when_any(now, later);
    std::variant<unit, int> r = co_await std::move(race);
    CHECK(r.index() == 0);
    CHECK(saw_stop);
    CHECK(ctx.in_flight() == 0);
  });
}

TEST_CASE("when_any rethrows the first finisher's exception after the others ended") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    bool loser_ended = false;
    auto bad = [&ctx](std::stop_token) -> task<int> { return fail_after(ctx, 1ms, "bad"); };
    auto slow = [&ctx, &loser_ended](std::stop_token tok) -> task<int> {
      try {
        auto op = sleep_for(ctx, 10s).with_stop(tok);
        co_await op;
      } catch (const std::system_error&) {
        loser_ended = true;
        throw std::runtime_error("swallowed");  // not the first finisher: dropped
      }
      co_return 0;
    };
    auto race = when_any(slow, bad);
    std::string what;
    try {
      co_await std::move(race);
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "bad");
    CHECK(loser_ended);
  });
}

TEST_CASE("when_any forwards a parent stop request to its children") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    std::stop_source parent;
    parent.request_stop();
    auto sleeper = [&ctx](std::stop_token tok) -> task<> {
      auto op = sleep_for(ctx, 10s).with_stop(tok);
      co_await op;
    };
    auto race = when_any(parent.get_token(), sleeper, sleeper);
    bool canceled = false;
    try {
      co_await std::move(race);
    } catch (const std::system_error& e) {
      canceled = is_canceled(e);
    }
    CHECK(canceled);
  });
}

// ---- with_timeout ----------------------------------------------------------------------------

TEST_CASE("with_timeout expires on a task blocked in recv and throws timed_out after it ended") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    bool ended = false;
    auto blocked = [&pair, &ended](std::stop_token tok) -> task<std::size_t> {
      std::array<std::byte, 8> buf;
      try {
        auto op = pair.server.recv(buf).with_stop(tok);
        std::size_t n = co_await op;
        co_return n;
      } catch (...) {
        ended = true;
        throw;
      }
    };
    auto bounded = cancel_after(ctx, 5ms, blocked);
    std::error_code code;
    try {
      co_await std::move(bounded);
    } catch (const std::system_error& e) {
      code = e.code();
    }
    CHECK(code == std::errc::timed_out);
    CHECK(ended);
    CHECK(ctx.in_flight() == 0);
  });
}

TEST_CASE("with_timeout returns the value when the task finishes first") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    co_await pair.client.send_all(test::bytes("hi"));
    auto reader = [&pair](std::stop_token tok) -> task<std::string> {
      std::array<std::byte, 8> buf;
      auto op = pair.server.recv(buf).with_stop(tok);
      std::size_t n = co_await op;
      co_return test::text(std::span(buf).first(n));
    };
    auto bounded = cancel_after(ctx, 10s, reader);
    std::string got = co_await std::move(bounded);
    CHECK(got == "hi");
    CHECK(ctx.in_flight() == 0);  // the 10 s timer was cancelled and has completed

    int hits = 0;
    auto v = [&hits](std::stop_token) -> task<> { return bump(hits); };
    auto bounded_void = cancel_after(ctx, 10s, v);
    co_await std::move(bounded_void);
    CHECK(hits == 1);
  });
}

TEST_CASE("with_timeout passes the task's own failure through") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    auto bad = [](std::stop_token) -> task<int> { return fail_now("own"); };
    auto bounded = cancel_after(ctx, 10s, bad);
    std::string what;
    try {
      co_await std::move(bounded);
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "own");
    CHECK(ctx.in_flight() == 0);
  });
}

// ---- task_group ------------------------------------------------------------------------------

TEST_CASE("task_group join with no children completes at once") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    task_group g(ctx);
    CHECK(g.size() == 0);
    co_await g.join();
    co_await g.join();
  });
}

TEST_CASE("task_group starts children in the next loop turn and joins 1,000 of them") {
  io_context ctx;
  counted::reset();
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    task_group g(ctx);
    int started = 0, finished = 0;
    for (int i = 0; i < 1000; ++i) {
      auto child = [&ctx, &started, &finished, i, c = counted{}](std::stop_token) -> task<> {
        ++started;
        if (i % 2) co_await sleep_for(ctx, std::chrono::microseconds(i % 7));
        ++finished;
      };
      g.spawn(child);
    }
    g.spawn(bump(finished));  // the task<> form
    CHECK(started == 0);      // nothing runs before this coroutine suspends
    CHECK(g.size() == 1001);
    CHECK(counted::live == 1000);
    co_await g.join();
    CHECK(started == 1000);
    CHECK(finished == 1001);
    CHECK(g.size() == 0);
    CHECK(counted::live == 0);  // every child frame, with its captures, is freed exactly once
  });
  CHECK(counted::live == 0);
  CHECK(counted::constructed >= 1000);
}

TEST_CASE("task_group: the first failure cancels the siblings; join rethrows it after all ended") {
  io_context ctx;
  counted::reset();
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    task_group g(ctx);
    int canceled = 0, ended = 0;
    auto sleeper = [&ctx, &canceled, &ended, c = counted{}](std::stop_token tok) -> task<> {
      try {
        auto op = sleep_for(ctx, 10s).with_stop(tok);
        co_await op;
      } catch (const std::system_error& e) {
        if (is_canceled(e)) ++canceled;
        ++ended;
        throw;  // operation_canceled after the stop request: not reported by join
      }
      ++ended;
    };
    auto failing = [&ctx](std::stop_token) -> task<> {
      co_await sleep_for(ctx, 1ms);
      throw std::runtime_error("first");
    };
    auto late_failure = [&ctx](std::stop_token tok) -> task<> {
      try {
        auto op = sleep_for(ctx, 10s).with_stop(tok);
        co_await op;
      } catch (const std::system_error&) {}
      throw std::runtime_error("second");  // after the first: dropped
    };
    for (int i = 0; i < 3; ++i)
      g.spawn(sleeper);
    g.spawn(failing);
    g.spawn(late_failure);
    std::string what;
    try {
      co_await g.join();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "first");
    CHECK(canceled == 3);
    CHECK(ended == 3);
    CHECK(g.size() == 0);
    CHECK(g.token().stop_requested());
    CHECK(counted::live == 1);  // only `sleeper` itself; the three copies in the children are gone
    CHECK(ctx.in_flight() == 0);
    co_await g.join();  // the failure was reported once
  });
  CHECK(counted::live == 0);
}

TEST_CASE("task_group::request_stop cancels the children without making join throw") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    task_group g(ctx);
    int canceled = 0;
    auto sleeper = [&ctx, &canceled](std::stop_token tok) -> task<> {
      try {
        auto op = sleep_for(ctx, 10s).with_stop(tok);
        co_await op;
      } catch (const std::system_error& e) {
        if (is_canceled(e)) ++canceled;
        throw;
      }
    };
    auto stopper = [&g](std::stop_token) -> task<> {
      g.request_stop();
      co_return;
    };
    g.spawn(sleeper);
    g.spawn(sleeper);
    g.spawn(stopper);
    co_await g.join();
    CHECK(canceled == 2);
  });
}

TEST_CASE("task_group children may spawn siblings while join waits") {
  io_context ctx;
  test::run_on(ctx, [](io_context& ctx) -> task<> {
    task_group g(ctx);
    int hits = 0;
    auto grandchild = [&ctx, &hits](std::stop_token) -> task<> {
      co_await sleep_for(ctx, 1ms);
      ++hits;
    };
    auto parent = [&g, &hits, grandchild](std::stop_token) -> task<> {
      g.spawn(grandchild);
      g.spawn(grandchild);
      ++hits;
      co_return;
    };
    g.spawn(parent);
    co_await g.join();
    CHECK(hits == 3);
  });
}

TEST_CASE("task_group spawns operations, bound to the group's token") {
  io_context ctx;
  auto body = [](io_context& ctx) -> task<> {
    auto pair = co_await test::make_tcp_pair(ctx);
    task_group g(ctx);
    std::array<std::byte, 8> buf;
    g.spawn(pair.client.send_all(test::bytes("xy")));  // temporaries: moved into the children
    g.spawn(pair.server.recv(buf));
    co_await g.join();
    CHECK(test::text(std::span(buf).first(2)) == "xy");

    // The first failure stops the group, and with it the operation children (bound to its token).
    std::array<std::byte, 8> never;
    auto failing = [&ctx](std::stop_token) -> task<> {
      co_await sleep_for(ctx, 1ms);
      throw std::runtime_error("first");
    };
    g.spawn(pair.server.recv(never));  // nobody sends
    g.spawn(sleep_for(ctx, 10s));
    g.spawn(failing);
    std::string what;
    try {
      co_await g.join();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "first");
    CHECK(ctx.in_flight() == 0);
  };
  test::run(ctx, body(ctx));
}

TEST_CASE("destroying a task_group with an unfinished child terminates the program") {
  // The child's stderr comes back on a pipe: a sanitizer that aborts (abort_on_error=1, meson's
  // default) would also end it with SIGABRT, so its report must be absent too.
  int err[2];
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(err[1], 2);
    std::signal(SIGABRT, SIG_DFL);
    io_context ctx;
    {
      task_group g(ctx);
      g.spawn(value(1));  // posted, not run: still unfinished when g goes away
    }
    ::_exit(0);  // not reached
  }
  ::close(err[1]);
  std::string text;  // until EOF (the child has exited), at most 10 s
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      FAIL_CHECK("the child did not end within 10 s");
      break;
    }
    pollfd p{err[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(err[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == SIGABRT);
  for (const char* mark : {"runtime error:", "Sanitizer"})
    CHECK_MESSAGE(text.find(mark) == std::string::npos, text);
}
