// SPDX-License-Identifier: MIT
// Description: buffer lifetimes against the kernel. A buffer handed to an operation is never
// touched once its co_await resumed (cancel race, 10,000 rounds, guarded page), and in ASan
// builds a buffer freed while the kernel owns it is reported at completion (neither
// ASan nor valgrind sees the kernel's write by itself).
#include "test_support.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

#ifdef CORING_CHECK_BUFFERS
constexpr bool asan_build = true;
#else
constexpr bool asan_build = false;
#endif

test::requirement need_asan() {
  return {test::requirement::kind::build, "an AddressSanitizer build",
          asan_build ? "" : "the freed-buffer check exists in AddressSanitizer builds only"};
}

struct freed_report {
  std::string op;
  const void* buffer;
  std::size_t size;
};
std::vector<freed_report> reports;
void record(const char* op, const void* buffer, std::size_t size) {
  reports.push_back({op, buffer, size});
}

// Installs record() for one test and restores the previous handler after it.
struct record_reports {
  freed_buffer_handler prev = set_freed_buffer_handler(&record);
  record_reports() { reports.clear(); }
  ~record_reports() { set_freed_buffer_handler(prev); }
};

struct unix_pair {
  coring::socket mine;
  int peer;
  unix_pair(io_context& ctx, int type = SOCK_STREAM) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
    mine = coring::socket::from_fd(ctx, sv[0]);
    peer = sv[1];
  }
  ~unix_pair() { ::close(peer); }
};

task<> recv_into(coring::socket& s, std::span<std::byte> buf, std::size_t& got, int& done) {
  got = co_await s.recv(buf);
  ++done;
}

task<> recv_msg_into(coring::socket& s, std::span<std::byte> buf, std::size_t& got, int& done) {
  std::array<std::span<std::byte>, 1> bufs{buf};
  control_buffer control;
  auto info = co_await s.recv_msg(bufs, control);
  got = info.size;
  ++done;
}

// Runs ctx until done or 2,000 loop turns (each test bounds its time with a watchdog).
void run_until(io_context& ctx, const int& done) {
  for (int i = 0; i < 2000 && done == 0; ++i)
    ctx.run_once(true);
}

}  // namespace

namespace {
struct freed_run {
  std::size_t got = 0;
  int done = 0;
  const void* where = nullptr;  // the freed buffer
};

// Starts receive(socket, buffer, got, done) into a heap buffer of N bytes, frees the buffer once
// the receive is in the kernel (the bug under test; ASan's quarantine keeps it mapped), then
// sends payload so that the kernel writes into it, and runs until the receive completed.
template <std::size_t N>
freed_run receive_into_freed_buffer(task<> (*receive)(coring::socket&, std::span<std::byte>,
                                                      std::size_t&, int&),
                                    std::string_view payload) {
  test::watchdog w(20s, "freed-buffer report");
  io_context ctx;
  unix_pair p(ctx);
  auto* buf = new std::array<std::byte, N>{};
  freed_run r;
  r.where = buf->data();
  ctx.spawn(receive(p.mine, *buf, r.got, r.done));
  for (int i = 0; i < 100 && ctx.in_flight() == 0; ++i)
    ctx.run_once(false);
  REQUIRE(ctx.in_flight() == 1);
  delete buf;
  REQUIRE(::send(p.peer, payload.data(), payload.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(payload.size()));
  run_until(ctx, r.done);
  return r;
}
}  // namespace

TEST_CASE("ASan builds report a recv whose buffer was freed while the kernel owned it" *
          test::skip_unless(need_asan())) {
  record_reports guard;
  freed_run r = receive_into_freed_buffer<64>(&recv_into, "late!");
  CHECK(r.done == 1);
  CHECK(r.got == 5);  // the kernel did write into the freed buffer: that is the point
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].op == "recv");
  CHECK(reports[0].buffer == r.where);
  CHECK(reports[0].size == 64);
}

TEST_CASE("ASan builds report a recv_msg whose iovec buffer was freed while in flight" *
          test::skip_unless(need_asan())) {
  record_reports guard;
  freed_run r = receive_into_freed_buffer<32>(&recv_msg_into, "xy");
  CHECK(r.done == 1);
  CHECK(r.got == 2);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].op == "recv_msg");
  CHECK(reports[0].buffer == r.where);
}

TEST_CASE("correct programs get no report: every buffer-carrying operation, live buffers" *
          test::skip_unless(need_asan())) {
  record_reports guard;
  io_context ctx;
  std::size_t received = test::run_on(ctx, [](io_context& ctx) -> task<std::size_t> {
    auto tcp = co_await test::make_tcp_pair(ctx);
    std::array<std::byte, 16> out{}, in{};
    co_await tcp.client.send(out);
    co_await tcp.server.recv(in);
    co_await tcp.client.send_all(out);
    std::array<std::span<const std::byte>, 2> outs{std::span(out).first(8), std::span(out).last(8)};
    ancillary none;
    co_await tcp.client.send_msg(outs, none);
    std::array<std::span<std::byte>, 1> ins{in};
    control_buffer control;
    std::size_t n = 0;
    while (n < 32)
      n += (co_await tcp.server.recv_msg(ins, control)).size;
    auto a = coring::socket(ctx, AF_INET, SOCK_DGRAM);
    a.bind(address::loopback_v4());
    auto b = coring::socket(ctx, AF_INET, SOCK_DGRAM);
    co_await b.send_to(out, a.sock_name());
    auto d = co_await a.recv_from(in);
    co_return n + d.size;
  });
  CHECK(received == 48);
  CHECK(reports.empty());
}

// The cancel race of liburing's test suite, at its scale: a recv into a buffer on its own page
// is stopped 10,000 times: before it is submitted, while it waits, just after data came (either
// may win; data that completed is delivered, never dropped), and after the data was delivered
// (a late stop is harmless). Each op completes exactly once; once it resumed, the page is made
// inaccessible and a probe byte is sent: no recv may still be pending to take it. Every byte sent
// is received exactly once and in order, by coring or by a plain recv(2) after the round.
TEST_CASE(
    "cancel race: 10,000 cancelled recvs each complete once and never touch their buffer "
    "after resuming; no byte is lost or duplicated") {
  test::watchdog w(120s, "cancel race");
  io_context ctx;
  unix_pair p(ctx);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  std::span<std::byte> buf(static_cast<std::byte*>(mem), 64);

  auto one = [](coring::socket& s, std::span<std::byte> buf, std::stop_token tok,
                std::vector<unsigned char>& got, int& done, int& cancelled) -> task<> {
    auto r = co_await as_result(s.recv(buf).with_stop(std::move(tok)));
    if (r) {
      for (std::size_t i = 0; i < *r; ++i)
        got.push_back(static_cast<unsigned char>(buf[i]));
    } else {
      CHECK(r.error() == std::errc::operation_canceled);
      ++cancelled;
    }
    ++done;
  };

  // When the stop comes, relative to the recv and its data; the rounds take each in turn.
  struct stop_timing {
    const char* name;
    bool stop_first;      // stopped before the recv is spawned
    bool data_races;      // a byte is sent just before the stop
    bool data_completes;  // ... and the ring turns once, so the data usually completes first
    bool always_cancelled;
  };
  constexpr std::array<stop_timing, 4> timings{{
      {"stopped before it was ever submitted", true, false, false, true},
      {"stopped while it waits on an empty socket", false, false, false, true},
      {"stopped just as data arrives (either may win)", false, true, false, false},
      {"stopped after its data was delivered (a late stop is harmless)", false, true, true, false},
  }};
  struct tally {
    int rounds = 0, cancelled = 0, bad_done = 0, stray = 0;
  };
  std::array<tally, timings.size()> tallies{};

  std::vector<unsigned char> got;
  unsigned char seq = 0;
  std::size_t sent = 0;
  auto send_byte = [&] {
    REQUIRE(::send(p.peer, &seq, 1, MSG_NOSIGNAL) == 1);
    ++seq;
    ++sent;
  };
  constexpr int rounds = 10'000;
  static_assert(rounds % timings.size() == 0);
  for (int round = 0; round < rounds / static_cast<int>(timings.size()); ++round) {
    for (std::size_t k = 0; k < timings.size(); ++k) {
      const stop_timing& when = timings[k];
      tally& t = tallies[k];
      INFO("round " << round << ": a recv " << when.name);
      ++t.rounds;
      std::stop_source src;
      int done = 0;
      if (when.stop_first) src.request_stop();
      ctx.spawn(one(p.mine, buf, src.get_token(), got, done, t.cancelled));
      for (int i = 0; i < 10 && ctx.in_flight() == 0 && done == 0; ++i)
        ctx.run_once(false);
      if (when.data_races) send_byte();
      if (when.data_completes) ctx.run_once(false);
      src.request_stop();
      run_until(ctx, done);
      if (done != 1 || ctx.in_flight() != 0) ++t.bad_done;
      // After resuming, the buffer is the program's again: lock it and send a probe byte. No
      // recv may still be pending to take it: it must be waiting in the socket.
      REQUIRE(::mprotect(mem, page, PROT_NONE) == 0);
      send_byte();
      ctx.run_once(false);
      if (done != 1 || ctx.in_flight() != 0) ++t.bad_done;
      REQUIRE(::mprotect(mem, page, PROT_READ | PROT_WRITE) == 0);
      // Read what waits (a byte that lost the race, then the probe) so the next round starts
      // empty.
      std::array<unsigned char, 8> waiting{};
      ssize_t n = ::recv(p.mine.fileno(), waiting.data(), waiting.size(), MSG_DONTWAIT);
      if (n > 0) got.insert(got.end(), waiting.begin(), waiting.begin() + n);
      if (n <= 0 || waiting[static_cast<std::size_t>(n - 1)] != static_cast<unsigned char>(seq - 1))
        ++t.stray;
    }
  }
  int cancelled = 0, raced = 0;
  for (std::size_t k = 0; k < timings.size(); ++k) {
    const stop_timing& when = timings[k];
    const tally& t = tallies[k];
    INFO("recvs " << when.name);
    CHECK(t.bad_done == 0);  // each completed exactly once, with nothing left in flight
    CHECK(t.stray == 0);     // and none was still pending to take the probe byte
    if (when.always_cancelled) CHECK(t.cancelled == t.rounds);
    if (when.data_races) raced += t.rounds - t.cancelled;
    cancelled += t.cancelled;
  }
  REQUIRE(got.size() == sent);
  bool in_order = true;
  for (std::size_t i = 0; i < got.size(); ++i)
    in_order = in_order && got[i] == (i & 0xff);
  CHECK(in_order);
  MESSAGE("cancel race: " << rounds << " rounds, " << cancelled << " cancelled, " << raced
                          << " where the data won the race, " << sent << " bytes all accounted");
  ::munmap(mem, page);
}
