// SPDX-License-Identifier: MIT
// Description: event, semaphore, mutex, wait_group and channel: FIFO wake order, wake-ups from a
// later loop turn, stop requests (same and other thread), deadlines, close, destruction and
// teardown with waiters.
#include "test_support.hpp"

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace coring;
using namespace std::chrono_literals;
using coring::test::counted;

namespace {

static_assert(detail::stoppable<event::wait_op>);
static_assert(detail::stoppable<semaphore::acquire_op>);
static_assert(detail::stoppable<mutex::lock_op>);
static_assert(detail::stoppable<wait_group::wait_op>);
static_assert(detail::stoppable<channel<int>::send_op>);
static_assert(detail::stoppable<channel<int>::receive_op>);

/// Resumes the awaiting coroutine from the next loop turn.
struct next_turn {
  io_context& ctx;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { ctx.schedule(h); }
  void await_resume() const noexcept {}
};

/// Lets the loop run n turns.
task<> turns(io_context& ctx, int n = 2) {
  for (int i = 0; i < n; ++i)
    co_await next_turn{ctx};
}

/// What a waiter saw: how often it resumed, and with what.
struct outcome {
  int resumed = 0;
  std::error_code error{};
  event* finished = nullptr;  // set once it resumed, if given
};

task<> wait_event(event& ev, std::vector<int>& order, int id) {
  co_await ev.wait();
  order.push_back(id);
}

task<> acquire_one(semaphore& s, std::vector<int>& order, int id) {
  co_await s.acquire();
  order.push_back(id);
}

task<> lock_then_record(mutex& m, std::vector<int>& order, int id, event& go_on) {
  auto g = co_await m.lock();
  order.push_back(id);
  co_await go_on.wait();  // holds the lock across a co_await
}

template <class Op>
task<> record(Op op, outcome& out) {
  auto r = co_await as_result(std::move(op));
  ++out.resumed;
  out.error = r.error();
  if (out.finished) out.finished->set();
}

template <class Op>
task<> record_lock(Op op, outcome& out, bool& held) {
  auto r = co_await as_result(std::move(op));
  ++out.resumed;
  out.error = r.error();
  if (out.finished) out.finished->set();
  if (r) held = r->owns_lock();  // the guard unlocks at the end of this scope
}

template <class Op>
task<> record_receive(Op op, outcome& out, std::optional<int>& got) {
  auto r = co_await as_result(std::move(op));
  ++out.resumed;
  out.error = r.error();
  if (out.finished) out.finished->set();
  if (r) got = *r;
}

template <class Op, class T>
task<> receive_into(Op op, outcome& out, std::optional<T>& got) {
  auto r = co_await as_result(std::move(op));
  ++out.resumed;
  out.error = r.error();
  if (out.finished) out.finished->set();
  if (r) got = std::move(*r);
}

task<> wait_counted(event& ev, counted, int& resumed) {
  co_await ev.wait();
  ++resumed;
}
task<> acquire_counted(semaphore& s, counted, int& resumed) {
  co_await s.acquire().with_timeout(1h);
  ++resumed;
}
task<> lock_counted(mutex& m, counted, int& resumed) {
  auto g = co_await m.lock();
  ++resumed;
}
task<> group_counted(wait_group& wg, counted, int& resumed) {
  co_await wg.wait().with_timeout(1h);
  ++resumed;
}
task<> send_counted(channel<int>& ch, counted, int& resumed) {
  co_await ch.send(7);
  ++resumed;
}
task<> receive_counted(channel<int>& ch, counted, int& resumed) {
  auto v = co_await ch.receive().with_timeout(1h);
  ++resumed;
  (void)v;
}
/// Starts a thread that requests stop on s (the request reaches the ring from outside).
task<> start_stopper(std::jthread& t, std::stop_source& s) {
  t = std::jthread([&s] { s.request_stop(); });
  co_return;
}
/// Owns an event in its frame and waits on it, with others waiting on it too.
task<> owner_of_event(io_context& ctx, counted c, int& resumed) {
  event ev(ctx);
  ctx.spawn(wait_counted(ev, c, resumed));
  ctx.spawn(wait_counted(ev, c, resumed));
  co_await ev.wait().with_timeout(1h);
  ++resumed;
}

// README: a producer and two consumers on a bounded channel; a wait_group says when both ended.
coring::task<> produce(coring::channel<std::string>& lines, int n) {
  for (int i = 0; i < n; ++i) {
    std::string line = "line " + std::to_string(i);
    co_await lines.send(std::move(line));  // waits while the channel is full
  }
  lines.close();  // consumers get std::nullopt once the channel is drained
}

coring::task<> consume(coring::channel<std::string>& lines, coring::wait_group& done,
                       std::vector<std::string>& seen) {
  while (true) {
    std::optional<std::string> line = co_await lines.receive().with_timeout(5s);
    if (!line) break;
    seen.push_back(std::move(*line));
  }
  done.done();
}

coring::task<> pipeline(coring::io_context& ctx, std::vector<std::string>& seen) {
  coring::channel<std::string> lines(ctx, 16);
  coring::wait_group done(ctx, 2);
  ctx.spawn(produce(lines, 100));
  ctx.spawn(consume(lines, done, seen));
  ctx.spawn(consume(lines, done, seen));
  co_await done.wait();  // woken by the last done(), no polling
}

}  // namespace

TEST_SUITE("sync") {
  TEST_CASE("the README's pipeline delivers every line exactly once") {
    io_context ctx;
    std::vector<std::string> seen;
    test::run(ctx, pipeline(ctx, seen));
    REQUIRE(seen.size() == 100);
    // Each consumer sees its lines in order; the two interleave.
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> want;
    for (int i = 0; i < 100; ++i)
      want.push_back("line " + std::to_string(i));
    std::sort(want.begin(), want.end());
    CHECK(seen == want);
  }

  TEST_CASE("a manual-reset event wakes every waiter in FIFO order from a later loop turn") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      event ev(ctx);
      std::vector<int> order;
      for (int i = 0; i < 4; ++i)
        ctx.spawn(wait_event(ev, order, i));
      co_await turns(ctx);
      CHECK(order.empty());
      ev.set();
      CHECK(order.empty());  // never resumed inside set()
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0, 1, 2, 3});
      CHECK(ev.is_set());
      co_await ev.wait();  // set: passes at once
      ev.reset();
      CHECK_FALSE(ev.is_set());
      CHECK_FALSE(ev.try_wait());
    });
  }

  TEST_CASE("an auto-reset event lets one waiter pass per set(), in FIFO order") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      event ev(ctx, event::reset_mode::automatic);
      std::vector<int> order;
      for (int i = 0; i < 3; ++i)
        ctx.spawn(wait_event(ev, order, i));
      co_await turns(ctx);
      ev.set();
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0});
      CHECK_FALSE(ev.is_set());  // the waiter took it
      ev.set();
      ev.set();
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0, 1, 2});
      ev.set();  // nobody waits: stays set for one wait
      CHECK(ev.is_set());
      co_await ev.wait();
      CHECK_FALSE(ev.is_set());
    });
  }

  TEST_CASE("a semaphore hands released units to its waiters in FIFO order") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      semaphore sem(ctx, 1);
      CHECK(sem.try_acquire());
      CHECK_FALSE(sem.try_acquire());
      std::vector<int> order;
      for (int i = 0; i < 4; ++i)
        ctx.spawn(acquire_one(sem, order, i));
      co_await turns(ctx);
      sem.release(1);
      CHECK_FALSE(sem.try_acquire());  // the unit is the first waiter's already
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0});
      sem.release(5);  // three waiters get one each, two stay free
      CHECK(sem.available() == 2);
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0, 1, 2, 3});
      co_await sem.acquire();
      CHECK(sem.available() == 1);
    });
  }

  TEST_CASE("a mutex is handed over in FIFO order and its guard holds it across co_await") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      mutex m(ctx);
      event go_on(ctx);
      std::vector<int> order;
      {
        auto g = co_await m.lock();
        CHECK(m.is_locked());
        CHECK_FALSE(m.try_lock());
        for (int i = 0; i < 3; ++i)
          ctx.spawn(lock_then_record(m, order, i, go_on));
        co_await turns(ctx);
        CHECK(order.empty());
      }  // unlock: waiter 0 gets the lock
      CHECK(m.is_locked());
      CHECK_FALSE(m.try_lock());
      co_await turns(ctx);
      CHECK(order == std::vector<int>{0});  // 0 holds it while it waits on go_on
      go_on.set();
      co_await turns(ctx, 6);
      CHECK(order == std::vector<int>{0, 1, 2});
      CHECK_FALSE(m.is_locked());
      CHECK(m.try_lock());
      m.unlock();
      auto g = co_await m.lock();
      g.unlock();
      CHECK_FALSE(g.owns_lock());
      CHECK_FALSE(m.is_locked());
    });
  }

  TEST_CASE("a wait_group wakes every waiter when its count reaches zero") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      wait_group wg(ctx);
      co_await wg.wait();  // zero: passes at once
      wg.add(2);
      outcome a, b;
      ctx.spawn(record(wg.wait(), a));
      ctx.spawn(record(wg.wait(), b));
      co_await turns(ctx);
      wg.done();
      co_await turns(ctx);
      CHECK(a.resumed == 0);
      wg.done();
      CHECK(a.resumed == 0);
      co_await turns(ctx);
      CHECK(a.resumed == 1);
      CHECK(b.resumed == 1);
      CHECK_FALSE(a.error);
      CHECK(wg.count() == 0);
      CHECK_THROWS_AS(wg.done(), std::logic_error);
    });
  }

  TEST_CASE("a channel keeps FIFO order: send waits when full, receive when empty") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      channel<int> ch(ctx, 2);
      CHECK(ch.try_send(0));
      co_await ch.send(1);
      CHECK_FALSE(ch.try_send(9));
      outcome s2, s3;
      ctx.spawn(record(ch.send(2), s2));
      ctx.spawn(record(ch.send(3), s3));
      co_await turns(ctx);
      CHECK(s2.resumed == 0);
      for (int i = 0; i < 4; ++i) {
        auto v = co_await ch.receive();
        REQUIRE(v.has_value());
        CHECK(*v == i);
      }
      co_await turns(ctx);
      CHECK(s2.resumed == 1);
      CHECK(s3.resumed == 1);
      CHECK_FALSE(ch.try_receive().has_value());
      // Receivers wait when empty, served in order.
      outcome r1, r2;
      std::optional<int> g1, g2;
      ctx.spawn(record_receive(ch.receive(), r1, g1));
      ctx.spawn(record_receive(ch.receive(), r2, g2));
      co_await turns(ctx);
      CHECK(ch.try_send(10));  // handed to the first receiver, not queued
      CHECK(ch.size() == 0);
      co_await ch.send(11);
      co_await turns(ctx);
      CHECK(g1 == 10);
      CHECK(g2 == 11);
    });
  }

  TEST_CASE("a channel carries move-only items, handed over to a receiver with a deadline") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      channel<std::unique_ptr<int>> ch(ctx, 1);
      auto p = std::make_unique<int>(1);
      CHECK(ch.try_send(std::move(p)));
      auto q = std::make_unique<int>(2);
      CHECK_FALSE(ch.try_send(std::move(q)));
      CHECK(q != nullptr);  // not moved from when refused
      std::optional<std::unique_ptr<int>> a = ch.try_receive();
      REQUIRE(a.has_value());
      CHECK(**a == 1);
      event finished(ctx);
      outcome r{.finished = &finished};
      std::optional<std::unique_ptr<int>> got;
      ctx.spawn(receive_into(ch.receive().with_timeout(1h), r, got));
      co_await turns(ctx);
      co_await ch.send(std::move(q));
      co_await finished.wait().with_timeout(5s);  // its timer comes back from the kernel first
      CHECK(r.resumed == 1);
      CHECK_FALSE(r.error);
      REQUIRE(got.has_value());
      REQUIRE(*got != nullptr);
      CHECK(**got == 2);
      CHECK(ctx.in_flight() == 0);
    });
  }

  TEST_CASE("closing a channel wakes its waiters on both sides") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      // Receivers waiting on an empty channel get nullopt; later sends fail with broken_pipe.
      channel<int> empty(ctx, 1);
      outcome r1, r2;
      std::optional<int> g1 = 5, g2 = 5;
      ctx.spawn(record_receive(empty.receive(), r1, g1));
      ctx.spawn(record_receive(empty.receive(), r2, g2));
      co_await turns(ctx);
      empty.close();
      co_await turns(ctx);
      CHECK(r1.resumed == 1);
      CHECK(r2.resumed == 1);
      CHECK_FALSE(r1.error);
      CHECK_FALSE(g1.has_value());
      CHECK_FALSE(g2.has_value());
      auto late = co_await as_result(empty.send(1));
      CHECK(late.error() == std::errc::broken_pipe);
      CHECK_FALSE(empty.try_send(1));
      // Senders waiting on a full channel fail with broken_pipe; the queued item stays.
      channel<int> full(ctx, 1);
      CHECK(full.try_send(1));
      outcome s1, s2;
      ctx.spawn(record(full.send(2), s1));
      ctx.spawn(record(full.send(3), s2));
      co_await turns(ctx);
      full.close();
      full.close();  // idempotent
      co_await turns(ctx);
      CHECK(s1.error == std::errc::broken_pipe);
      CHECK(s2.error == std::errc::broken_pipe);
      CHECK(s1.resumed == 1);
      auto v = co_await full.receive();
      CHECK(v == 1);
      v = co_await full.receive();
      CHECK_FALSE(v.has_value());
      bool threw = false;
      try {
        co_await full.send(4);
      } catch (const std::system_error& e) {
        threw = e.code() == std::errc::broken_pipe;
      }
      CHECK(threw);
    });
  }

  TEST_CASE("a stop request ends a wait and the next waiter gets what it would have had") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      semaphore sem(ctx);
      std::stop_source stop;
      outcome a, b;
      ctx.spawn(record(sem.acquire().with_stop(stop.get_token()), a));
      ctx.spawn(record(sem.acquire(), b));
      co_await turns(ctx);
      stop.request_stop();
      CHECK(a.resumed == 0);  // from a later turn
      co_await turns(ctx);
      CHECK(a.resumed == 1);
      CHECK(a.error == std::errc::operation_canceled);
      sem.release();
      co_await turns(ctx, 4);
      CHECK(a.resumed == 1);  // never resumed again
      CHECK(b.resumed == 1);
      CHECK_FALSE(b.error);
      CHECK(sem.available() == 0);
      // A token stopped before the wait: cancelled without waiting.
      auto r = co_await as_result(sem.acquire().with_stop(stop.get_token()));
      CHECK(r.error() == std::errc::operation_canceled);
    });
  }

  TEST_CASE("a waiter woken then stopped in the same turn keeps its unit, lock or item") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      std::stop_source stop;
      // semaphore
      semaphore sem(ctx);
      outcome a;
      ctx.spawn(record(sem.acquire().with_stop(stop.get_token()), a));
      co_await turns(ctx);
      sem.release();
      stop.request_stop();
      co_await turns(ctx);
      CHECK(a.resumed == 1);
      CHECK_FALSE(a.error);
      CHECK(sem.available() == 0);
      // mutex
      std::stop_source stop2;
      mutex m(ctx);
      CHECK(m.try_lock());
      outcome l1, l2;
      bool held1 = false, held2 = false;
      ctx.spawn(record_lock(m.lock().with_stop(stop2.get_token()), l1, held1));
      ctx.spawn(record_lock(m.lock(), l2, held2));
      co_await turns(ctx);
      m.unlock();
      stop2.request_stop();
      co_await turns(ctx, 4);
      CHECK(l1.resumed == 1);
      CHECK_FALSE(l1.error);
      CHECK(held1);
      CHECK(l2.resumed == 1);  // l1's guard passed it on
      CHECK(held2);
      CHECK_FALSE(m.is_locked());
      // channel
      std::stop_source stop3;
      channel<int> ch(ctx, 1);
      outcome r;
      std::optional<int> got;
      ctx.spawn(record_receive(ch.receive().with_stop(stop3.get_token()), r, got));
      co_await turns(ctx);
      co_await ch.send(42);
      stop3.request_stop();
      co_await turns(ctx);
      CHECK(r.resumed == 1);
      CHECK_FALSE(r.error);
      CHECK(got == 42);
    });
  }

  TEST_CASE("a stop request from another thread ends a wait") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      event ev(ctx);
      std::stop_source stop;
      auto guard = ctx.make_work_guard();  // nothing in flight: keep the loop waiting
      std::jthread other;
      ctx.spawn(start_stopper(other, stop));  // runs next turn, once the wait below is queued
      auto r = co_await as_result(ev.wait().with_stop(stop.get_token()));
      CHECK(r.error() == std::errc::operation_canceled);
      other.join();
      guard.reset();
      ev.set();  // nobody waits any more
      co_await turns(ctx);
    });
  }

  TEST_CASE("every wait times out with timed_out, and a grant before the deadline wins") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      event ev(ctx);
      semaphore sem(ctx);
      mutex m(ctx);
      wait_group wg(ctx, 1);
      channel<int> empty(ctx, 1), full(ctx, 1);
      CHECK(m.try_lock());
      CHECK(full.try_send(0));
      auto r1 = co_await as_result(ev.wait().with_timeout(5ms));
      CHECK(r1.error() == std::errc::timed_out);
      auto r2 = co_await as_result(sem.acquire().with_timeout(5ms));
      CHECK(r2.error() == std::errc::timed_out);
      auto r3 = co_await as_result(m.lock().with_timeout(5ms));
      CHECK(r3.error() == std::errc::timed_out);
      auto r4 = co_await as_result(wg.wait().with_timeout(5ms));
      CHECK(r4.error() == std::errc::timed_out);
      auto r5 = co_await as_result(empty.receive().with_timeout(5ms));
      CHECK(r5.error() == std::errc::timed_out);
      auto r6 = co_await as_result(full.send(1).with_timeout(5ms));
      CHECK(r6.error() == std::errc::timed_out);
      bool threw = false;
      try {
        co_await ev.wait().with_timeout(1ms);
      } catch (const std::system_error& e) {
        threw = e.code() == std::errc::timed_out;
      }
      CHECK(threw);
      CHECK(ctx.in_flight() == 0);
      // Nothing was left on the lists: the next grants go to nobody stale.
      sem.release();
      CHECK(sem.available() == 1);
      m.unlock();
      CHECK_FALSE(m.is_locked());
      // A grant before the deadline: the wait succeeds, once its timer is back from the kernel.
      event finished(ctx);
      outcome a{.finished = &finished};
      ctx.spawn(record(ev.wait().with_timeout(1h), a));
      co_await turns(ctx);
      CHECK(ctx.in_flight() == 1);  // the timer
      ev.set();
      CHECK(a.resumed == 0);
      co_await finished.wait().with_timeout(5s);
      CHECK(a.resumed == 1);
      CHECK_FALSE(a.error);
      CHECK(ctx.in_flight() == 0);
      // A stop and a deadline on one wait: the stop ends it, after the timer came back.
      std::stop_source stop;
      finished.reset();
      outcome b{.finished = &finished};
      event never(ctx);
      ctx.spawn(record(never.wait().with_stop(stop.get_token()).with_timeout(1h), b));
      co_await turns(ctx);
      stop.request_stop();
      co_await finished.wait().with_timeout(5s);
      CHECK(b.resumed == 1);
      CHECK(b.error == std::errc::operation_canceled);
      CHECK(ctx.in_flight() == 0);
    });
  }

  TEST_CASE("destroying a primitive with waiters wakes them with operation_canceled") {
    io_context ctx;
    test::run_on(ctx, [](io_context& ctx) -> task<> {
      auto ev = std::make_unique<event>(ctx);
      auto sem = std::make_unique<semaphore>(ctx);
      auto m = std::make_unique<mutex>(ctx);
      auto wg = std::make_unique<wait_group>(ctx, 1);
      auto rx = std::make_unique<channel<int>>(ctx, 1);
      auto tx = std::make_unique<channel<int>>(ctx, 1);
      CHECK(m->try_lock());
      CHECK(tx->try_send(1));
      event finished(ctx);
      std::vector<outcome> out(7);
      out[1].finished = &finished;
      std::optional<int> got;
      ctx.spawn(record(ev->wait(), out[0]));
      ctx.spawn(record(sem->acquire().with_timeout(1h), out[1]));
      ctx.spawn(record(m->lock(), out[2]));
      ctx.spawn(record(wg->wait(), out[3]));
      ctx.spawn(record_receive(rx->receive(), out[4], got));
      ctx.spawn(record(tx->send(2), out[5]));
      ctx.spawn(record(ev->wait(), out[6]));
      co_await turns(ctx);
      ev.reset();
      sem.reset();
      m.reset();  // held, with a waiter: only the waiter is told (the holder's guard must go first)
      wg.reset();
      rx.reset();
      tx.reset();
      co_await finished.wait().with_timeout(5s);  // the semaphore's waiter has a timer to take back
      co_await turns(ctx);
      for (const outcome& o : out) {
        CHECK(o.resumed == 1);
        CHECK(o.error == std::errc::operation_canceled);
      }
      CHECK(ctx.in_flight() == 0);
    });
  }

  TEST_CASE("shutdown destroys the frames of waiters without resuming them") {
    counted::reset();
    int resumed = 0;
    {
      // These primitives outlive the context's frames; owner_of_event's lives in a frame.
      io_context ctx;
      event ev(ctx);
      semaphore sem(ctx);
      mutex m(ctx);
      wait_group wg(ctx, 1);
      channel<int> rx(ctx, 1), tx(ctx, 1);
      CHECK(m.try_lock());
      CHECK(tx.try_send(1));
      counted c;
      ctx.spawn(wait_counted(ev, c, resumed));
      ctx.spawn(acquire_counted(sem, c, resumed));
      ctx.spawn(lock_counted(m, c, resumed));
      ctx.spawn(group_counted(wg, c, resumed));
      ctx.spawn(receive_counted(rx, c, resumed));
      ctx.spawn(send_counted(tx, c, resumed));
      ctx.spawn(owner_of_event(ctx, c, resumed));
      for (int i = 0; i < 3; ++i)
        ctx.run_once(false);
      CHECK(ctx.spawned() == 7 + 2);
      CHECK(ctx.in_flight() == 4);  // the timers
      ctx.shutdown();
      CHECK(counted::live == 1);  // c
      CHECK(ctx.spawned() == 0);
      // The primitives are still usable, with nobody left on them.
      ev.set();
      sem.release();
      m.unlock();
    }
    CHECK(resumed == 0);
    CHECK(counted::live == 0);
  }
}
