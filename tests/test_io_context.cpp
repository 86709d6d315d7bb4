// SPDX-License-Identifier: MIT
// Description: io_context: setup and probe, batching limits (SQ full, CQ overflow), EINTR,
// stop, and teardown with operations in flight.
#include "test_support.hpp"

#include "detail/ring.hpp"  // private: the ring-init fault seam

#include <liburing.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <sys/time.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// A NOP on the ring, defined the way every coring operation is: the core needs no change for a
// new op type.
class nop_op : public detail::io_op<nop_op, int> {
 public:
  static constexpr const char* name = "nop";
  explicit nop_op(io_context& ctx) noexcept : io_op(ctx) {}
  void prep(io_uring_sqe& sqe) noexcept { io_uring_prep_nop(&sqe); }
  result<int> complete(int res, std::uint32_t) noexcept {
    if (res < 0) return errno_code(-res);
    return res;
  }
};

// A recv forced onto an io-wq worker (IOSQE_ASYNC): the path where the kernel was seen writing
// into a buffer after io_uring_queue_exit returned.
class async_recv_op : public detail::io_op<async_recv_op, std::size_t> {
 public:
  [[maybe_unused]] static constexpr const char* name = "async_recv";
  async_recv_op(io_context& ctx, int fd, std::span<std::byte> buf) noexcept
      : io_op(ctx), fd_(fd), buf_(buf) {}
  void prep(io_uring_sqe& sqe) noexcept {
    io_uring_prep_recv(&sqe, fd_, buf_.data(), buf_.size(), 0);
    sqe.flags |= IOSQE_ASYNC;
  }
  result<std::size_t> complete(int res, std::uint32_t) noexcept {
    if (res < 0) return errno_code(-res);
    return static_cast<std::size_t>(res);
  }

 private:
  int fd_;
  std::span<std::byte> buf_;
};

task<> nops(io_context& ctx, int count, int& done) {
  for (int i = 0; i < count; ++i) {
    co_await nop_op(ctx);
    ++done;
  }
}

}  // namespace

TEST_CASE("the ring is set up with the fast flags this kernel grants, and says so") {
  io_context ctx;
  const ring_features& f = ctx.features();
  MESSAGE("features: " << f.describe());
  CHECK(f.sq_entries >= 256);
  CHECK(f.cq_entries >= f.sq_entries);
  CHECK(f.nodrop);
  // The kernel accepts DEFER_TASKRUN only together with SINGLE_ISSUER.
  if (f.defer_taskrun) CHECK(f.single_issuer);
  // On older kernels the io_context falls back silently; a kernel with every feature the tests
  // probe (CORING_REQUIRE_FEATURES=1, Linux 6.1+) grants all of them (on io_uring: the epoll
  // backend, CORING_BACKEND=epoll, has none of these ring flags).
  if (test::features_required() && f.backend == backend_kind::io_uring) {
    CHECK(f.single_issuer);
    CHECK(f.defer_taskrun);
    CHECK(f.registered_ring_fd);
  }
  io_context plain(io_context_options{.sq_entries = 8,
                                      .cq_entries = 0,
                                      .single_issuer = false,
                                      .defer_taskrun = false,
                                      .register_ring_fd = false});
  CHECK_FALSE(plain.features().single_issuer);
  CHECK_FALSE(plain.features().registered_ring_fd);
  int done = 0;
  sync_wait(plain, nops(plain, 100, done));
  CHECK(done == 100);
}

TEST_CASE("io_uring being unavailable gives a clear error naming cause and fix") {
  // Issue 15: only with io_uring required (the default falls back to epoll: test_backend.cpp);
  // the option must win, so CORING_BACKEND is set aside meanwhile.
  const char* env = std::getenv("CORING_BACKEND");
  const std::string saved = env ? env : "";
  ::unsetenv("CORING_BACKEND");
  io_context_options required;
  required.backend = backend_kind::io_uring;
  struct expect {
    int err;
    const char* words;
  };
  for (expect e : {expect{ENOSYS, "kernel"}, expect{EPERM, "io_uring_disabled"},
                   expect{ENOMEM, "ulimit -l"}}) {
    CAPTURE(e.err);
    detail::inject_ring_init_failure(e.err);
    try {
      io_context ctx(required);
      FAIL("io_context constructed despite the injected failure");
    } catch (const std::system_error& ex) {
      CHECK(ex.code() == errc::io_uring_unavailable);
      CHECK(std::string(ex.what()).find(e.words) != std::string::npos);
      CHECK(std::string(ex.what()).find(std::strerror(e.err)) != std::string::npos);
    }
  }
  if (env) ::setenv("CORING_BACKEND", saved.c_str(), 1);
  io_context fine;  // the seam fires once
  CHECK(fine.features().sq_entries > 0);
}

TEST_CASE("a denied io_uring (EPERM, ENOSYS) falls back to epoll with the default options") {
  const char* env = std::getenv("CORING_BACKEND");
  const std::string saved = env ? env : "";
  ::unsetenv("CORING_BACKEND");
  for (int e : {ENOSYS, EPERM}) {
    CAPTURE(e);
    detail::inject_ring_init_failure(e);
    io_context ctx;
    CHECK(ctx.features().backend == backend_kind::epoll);
    CHECK(ctx.features().backend_reason.find(std::strerror(e)) != std::string::npos);
  }
  if (env) ::setenv("CORING_BACKEND", saved.c_str(), 1);
}

TEST_CASE("a full submission queue is flushed, not reported: SQ of 4, 1,000 concurrent ops") {
  test::watchdog w(20s);  // before the io_context: it outlives the context's teardown
  io_context ctx(io_context_options{.sq_entries = 4, .cq_entries = 8});
  int done = 0;
  for (int i = 0; i < 1000; ++i)
    ctx.spawn(nops(ctx, 1, done));
  ctx.run();
  CHECK(done == 1000);
  CHECK(ctx.in_flight() == 0);
}

TEST_CASE("completion queue overflow loses nothing: CQ of 8, 10,000 ops") {
  test::watchdog w(20s);  // before the io_context: it outlives the context's teardown
  io_context ctx(io_context_options{.sq_entries = 4, .cq_entries = 8});
  REQUIRE(ctx.features().cq_entries == 8);
  int done = 0;
  for (int i = 0; i < 100; ++i)
    ctx.spawn(nops(ctx, 100, done));
  ctx.run();
  CHECK(done == 10'000);
}

TEST_CASE("a signal interrupting the wait (EINTR) is retried, not reported") {
  io_context ctx;
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sa.sa_flags = SA_RESTART;  // io_uring_enter is interrupted even so
  struct sigaction old {};
  sigaction(SIGALRM, &sa, &old);
  itimerval every_ms{{0, 1000}, {0, 1000}};
  setitimer(ITIMER_REAL, &every_ms, nullptr);
  int slept = test::run_on(ctx, [](io_context& ctx) -> task<int> {
    int slept = 0;
    for (int i = 0; i < 50; ++i) {
      co_await sleep_for(ctx, 2ms);
      ++slept;
    }
    co_return slept;
  });
  itimerval off{};
  setitimer(ITIMER_REAL, &off, nullptr);
  sigaction(SIGALRM, &old, nullptr);
  CHECK(slept == 50);
}

TEST_CASE("stop makes run return; run can be called again") {
  test::watchdog w(20s);  // before the io_context: it outlives the context's teardown
  io_context ctx;
  int ticks = 0;
  auto ticker = [](io_context& ctx, int& t) -> task<> {
    for (int i = 0; i < 3; ++i) {
      co_await sleep_for(ctx, 1ms);
      ++t;
    }
    ctx.stop();
    for (int i = 0; i < 3; ++i) {
      co_await sleep_for(ctx, 1ms);
      ++t;
    }
  };
  ctx.spawn(ticker(ctx, ticks));
  ctx.run();
  CHECK(ticks == 3);
  ctx.run();
  CHECK(ticks == 6);
}

TEST_CASE("sleep_for waits at least its duration on the steady clock") {
  io_context ctx;
  auto slept = test::run_on(ctx, [](io_context& ctx) -> task<std::chrono::steady_clock::duration> {
    auto t0 = std::chrono::steady_clock::now();
    co_await sleep_for(ctx, 15ms);
    co_return std::chrono::steady_clock::now() - t0;
  });
  CHECK(slept >= 15ms);
}

namespace {
// Teardown destroys suspended coroutines, never resumes them: the code after the co_await
// must not run (it could touch objects already gone).
task<> pending_recv(coring::socket s, int& resumed, test::counted) {
  std::array<std::byte, 64> buf;
  try {
    co_await s.recv(buf);
  } catch (...) {}
  ++resumed;
}
}  // namespace

TEST_CASE("destroying an io_context with 1,000 recvs in flight drains them and resumes nobody") {
  test::counted::reset();
  int resumed = 0;
  int fds_before = test::open_fds();
  std::vector<int> peers;
  {
    // Declared before the io_context: it bounds the teardown this test is about.
    test::watchdog w(20s, "io_context teardown");
    io_context ctx;
    for (int i = 0; i < 1000; ++i) {
      int sv[2];
      REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
      peers.push_back(sv[1]);
      ctx.spawn(pending_recv(coring::socket::from_fd(ctx, sv[0]), resumed, test::counted{}));
    }
    // Let every task start and submit its recv (bounded: 1,000 recvs take 1,000 turns at most).
    for (int i = 0; i < 10'000 && ctx.in_flight() < 1000; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 1000);
    CHECK(ctx.spawned() == 1000);
    CHECK(test::counted::live == 1000);
  }
  CHECK(resumed == 0);
  CHECK(test::counted::live == 0);
  for (int fd : peers)
    ::close(fd);
  CHECK(test::open_fds() == fds_before);
}

TEST_CASE("destroying an io_context frees spawned tasks that never started") {
  test::counted::reset();
  {
    io_context ctx;
    auto t = [](test::counted) -> task<> { co_return; };
    for (int i = 0; i < 10; ++i)
      ctx.spawn(t(test::counted{}));
    CHECK(test::counted::live == 10);
  }
  CHECK(test::counted::live == 0);
}

namespace {
task<> pending_async_recv(coring::socket s, int& resumed, test::counted) {
  std::array<std::byte, 64> buf;
  // The frame (and buf) is only ever freed after the op's own CQE arrived; the coroutine is
  // destroyed then, not resumed.
  auto r = co_await as_result(async_recv_op(s.context(), s.fileno(), buf));
  (void)r;
  ++resumed;
}
}  // namespace

TEST_CASE("destroying an io_context with 1,000 io-wq (IOSQE_ASYNC) recvs in flight drains them") {
  test::counted::reset();
  int resumed = 0;
  int fds_before = test::open_fds();
  std::vector<int> peers;
  auto t0 = std::chrono::steady_clock::now();
  {
    // Declared before the io_context: it bounds the teardown this test is about.
    test::watchdog w(20s, "io_context teardown (IOSQE_ASYNC)");
    io_context ctx;
    for (int i = 0; i < 1000; ++i) {
      int sv[2];
      REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
      peers.push_back(sv[1]);
      ctx.spawn(pending_async_recv(coring::socket::from_fd(ctx, sv[0]), resumed, test::counted{}));
    }
    for (int i = 0; i < 10'000 && ctx.in_flight() < 1000; ++i)
      REQUIRE(ctx.run_once(false));
    REQUIRE(ctx.in_flight() == 1000);
  }
  CHECK(resumed == 0);
  CHECK(test::counted::live == 0);
  // Data written now must stay in the sockets: no worker is left to consume it.
  for (int fd : peers)
    CHECK(::send(fd, "late", 4, MSG_NOSIGNAL) == -1);  // peer closed: EPIPE
  for (int fd : peers)
    ::close(fd);
  CHECK(test::open_fds() == fds_before);
  MESSAGE("teardown took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - t0)
                                  .count()
                           << " ms");
}
