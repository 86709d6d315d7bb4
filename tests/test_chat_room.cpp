// SPDX-License-Identifier: MIT
// Description: end to end: chat_room started as a real process, driven by many coring clients:
// every line reaches every other client once, a client that never reads is disconnected while
// the room goes on and the server's memory stays bounded, long lines, SIGTERM.
#include "process.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <sys/resource.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool under_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool under_asan = true;
#else
constexpr bool under_asan = false;
#endif
#else
constexpr bool under_asan = false;
#endif

constexpr auto read_limit = 30s;  // one read of a client: generous for the sanitizer builds

// The running server and its address.
struct room_server {
  test::child proc;
  address at;
  room_server() : proc({test::example_path("CHAT_ROOM"), "--port", "0"}) {
    auto line = proc.read_line(10s);
    REQUIRE(line);
    REQUIRE(line->rfind("chat_room listening on ", 0) == 0);
    at = address::ip("127.0.0.1", static_cast<std::uint16_t>(test::port_from_line(*line)));
  }
  // SIGTERM: the server must exit 0 promptly.
  void stop() {
    proc.signal(SIGTERM);
    auto st = proc.wait(10s);
    REQUIRE(st);
    CHECK(*st == 0);
  }
};

// The server's resident memory (VmRSS), in KiB; 0 if unreadable.
long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      long kib = 0;
      f >> kib;
      return kib;
    }
    f.ignore(4096, '\n');
  }
  return 0;
}

// The test process holds a socket per client.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// One client of the room, with what it has received.
struct client {
  explicit client(coring::socket sock)
      : s(std::move(sock)), in(s, 8192), name(s.sock_name().to_string()), progress(s.context()) {}
  coring::socket s;
  coring::reader in;
  std::string name;                  // host:port: the server sees the same
  std::vector<int> next;             // per sender index: the next line number expected
  std::vector<std::size_t> reached;  // [k]: how many senders' line k-1 arrived (pacing)
  std::size_t data_lines = 0;        // lines from other clients
  std::size_t errors = 0;            // lines that were not what was expected
  std::vector<std::string> notes;    // the room's own lines ("* ...")
  event progress;                    // set on every data line (for the senders' pacing)
  client(const client&) = delete;
};

// Connects and waits for the welcome (then the client is in the room).
task<std::unique_ptr<client>> join(io_context& ctx, address at, bool small_buffer = false) {
  coring::socket s(ctx, AF_INET, SOCK_STREAM);
  if (small_buffer) s.set_option(sockopt::recv_buffer_size{4096});  // fills soon
  co_await s.connect(at);
  auto c = std::make_unique<client>(std::move(s));
  auto line = co_await c->in.read_line().with_timeout(read_limit);
  REQUIRE(line);
  CHECK(line->rfind("* welcome " + c->name + ", ", 0) == 0);
  co_return c;
}

// The body of line k of sender i (pad: extra bytes to make it longer).
std::string body(std::size_t i, int k, std::size_t pad) {
  std::string b = "line " + std::to_string(k) + " of " + std::to_string(i) + " ";
  b.append(pad, static_cast<char>('a' + (i + static_cast<std::size_t>(k)) % 26));
  return b;
}

// Reads until it has `want` data lines, checking each: "<sender>: <body>" in each sender's
// order (so every line arrives exactly once). stop_note: also wait for a "* " line that holds it.
task<> receive(client& c, const std::unordered_map<std::string, std::size_t>& index,
               std::size_t want, std::size_t pad, std::string stop_note = {}) {
  bool noted = stop_note.empty();
  while (c.data_lines < want || !noted) {
    auto r = co_await as_result(c.in.read_line().with_timeout(read_limit));
    if (!r || !*r) {
      std::string seen;
      for (auto& n : c.notes)
        seen += "\n  " + n;
      FAIL_CHECK(c.name << ": " << (r ? "EOF" : r.error().message()) << " after " << c.data_lines
                        << " of " << want << (noted ? "" : " (and no '" + stop_note + "')")
                        << "; notes:" << seen);
      co_return;
    }
    auto& line = *r;
    if (line->rfind("* ", 0) == 0) {
      if (!noted && line->find(stop_note) != std::string_view::npos) noted = true;
      if (c.notes.size() < 10000) c.notes.emplace_back(*line);
      continue;
    }
    ++c.data_lines;
    c.progress.set();
    const auto colon = line->find(": ");
    auto it = colon == std::string_view::npos ? index.end()
                                              : index.find(std::string(line->substr(0, colon)));
    if (it == index.end() || c.name == it->first) {
      ++c.errors;
      continue;
    }
    int& k = c.next[it->second];
    if (line->substr(colon + 2) != body(it->second, k, pad)) ++c.errors;
    ++k;
    if (static_cast<std::size_t>(k) < c.reached.size()) ++c.reached[static_cast<std::size_t>(k)];
  }
}

// Sends `lines` lines. window >= 0: line k waits until this client received the first
// k - window lines of each of the others, as people in a conversation do (then no reader is
// more than about 2 x (window + 1) lines per sender behind the room, and readers that read
// keep up; a burst of a line per sender per reader of 20 lines from 100 senders at once could
// fill a reader's queue before the test process reads it, and disconnect it, rightly).
// window < 0: no waiting. sample: called after each line.
task<> send(client& c, std::size_t i, int lines, std::size_t pad, std::size_t others, int window,
            std::function<void()> sample) {
  for (int k = 0; k < lines; ++k) {
    if (window >= 0 && k - window > 0) {
      const auto need = static_cast<std::size_t>(k - window);
      for (int turns = 0; c.reached[need] < others; ++turns) {  // bounded by the read timeout
        REQUIRE(turns < 100000000);
        c.progress.reset();
        co_await c.progress.wait().with_timeout(read_limit);
      }
    }
    std::string line = body(i, k, pad) + "\n";
    co_await c.s.send_all(test::bytes(line));
    if (sample) sample();
  }
}

// What a room run did.
struct room_result {
  std::size_t clients = 0;
  long rss_start_kib = 0, rss_peak_kib = 0;
  std::size_t slow_received = 0;  // bytes the never-reading client got before the end
  bool slow_closed = false;       // it saw EOF or a reset
};

// n clients (plus, with slow, one that never reads), each sends `lines` lines of about
// pad + 20 bytes; every client checks it received every line of every other exactly once.
// expect_kick: the never-reading one must be disconnected (the readers wait for the "left" note).
room_result run_room(std::size_t n, int lines, std::size_t pad, int window, bool slow,
                     bool expect_kick, std::chrono::milliseconds limit) {
  raise_fd_limit();
  room_server server;
  room_result res;
  io_context ctx;
  test::run_on(
      ctx,
      [&](io_context& ctx) -> task<> {
        std::vector<std::unique_ptr<client>> cs;
        std::unordered_map<std::string, std::size_t> index;
        for (std::size_t i = 0; i < n; ++i) {
          cs.push_back(co_await join(ctx, server.at));
          index.emplace(cs.back()->name, i);
          cs.back()->next.assign(n, 0);
          cs.back()->reached.assign(static_cast<std::size_t>(lines) + 1, 0);
        }
        std::unique_ptr<client> quiet;
        std::string stop_note;
        if (slow) {
          quiet = co_await join(ctx, server.at, true);
          if (expect_kick) stop_note = quiet->name + " left (not reading)";
        }
        const pid_t pid = server.proc.pid();
        res.rss_start_kib = res.rss_peak_kib = rss_kib(pid);
        long& peak = res.rss_peak_kib;
        std::vector<task<>> work;
        const std::size_t want = (n - 1) * static_cast<std::size_t>(lines);
        for (std::size_t i = 0; i < n; ++i)
          work.push_back(receive(*cs[i], index, want, pad, stop_note));
        for (std::size_t i = 0; i < n; ++i) {
          std::function<void()> sample;
          if (i == 0) sample = [&peak, pid] { peak = std::max(peak, rss_kib(pid)); };
          work.push_back(send(*cs[i], i, lines, pad, n - 1, window, std::move(sample)));
        }
        co_await when_all(std::move(work));
        res.rss_peak_kib = std::max(res.rss_peak_kib, rss_kib(pid));
        for (std::size_t i = 0; i < n; ++i) {
          CAPTURE(i);
          CHECK(cs[i]->errors == 0);
          CHECK(cs[i]->data_lines == want);
          for (std::size_t j = 0; j < n; ++j)
            if (cs[i]->next[j] != (j == i ? 0 : lines)) {
              CAPTURE(j);
              CHECK(cs[i]->next[j] == (j == i ? 0 : lines));
            }
        }
        if (quiet && expect_kick) {
          // Disconnected: what it can still read ends in EOF (or a reset), well short of all.
          std::array<std::byte, 65536> buf;
          for (int turns = 0; turns < 100000; ++turns) {
            auto r = co_await as_result(quiet->s.recv(buf).with_timeout(read_limit));
            if (!r || *r == 0) {
              res.slow_closed = !r ? r.error() == std::errc::connection_reset : true;
              break;
            }
            res.slow_received += *r;
          }
        }
        res.clients = cs.size();
      },
      limit);
  server.stop();
  return res;
}

}  // namespace

TEST_CASE("100 clients each send 20 lines, and every other client receives each once") {
  auto res = run_room(100, 20, 0, 1, false, false, 60s);
  CHECK(res.clients == 100);
}

TEST_CASE("a client that never reads is disconnected while the others get all of 10 MiB") {
  // 100 clients x 100 lines x ~1 KiB = 10 MiB sent; each reader receives ~9.9 MiB.
  const std::size_t pad = 1024;
  auto res = run_room(100, 100, pad, 1, true, true, under_asan ? 300s : 120s);
  CHECK(res.slow_closed);
  // It would have got ~10 MiB; the kernel's buffers (up to 4 MiB of send buffer here) plus
  // its queue (1 MiB at most) is all it got.
  CHECK(res.slow_received < 6u * 1024 * 1024);
  // The bound: the server's resident memory grows by less than 32 MiB over the run (10 MiB
  // through it, ~1 GB out; ~4 MiB measured). It holds at most 1 MiB of lines per client,
  // shared between recipients (readers' queues stay short: the senders pace themselves).
  // Under ASan, whose quarantine keeps freed memory resident, 128 MiB (~25 MiB measured).
  MESSAGE("chat_room VmRSS: " << res.rss_start_kib << " KiB after the joins, peak "
                              << res.rss_peak_kib << " KiB; the quiet client got "
                              << res.slow_received << " bytes before it was disconnected");
  CHECK(res.rss_peak_kib - res.rss_start_kib < (under_asan ? 128 : 32) * 1024);
}

TEST_CASE("1,000 clients each send 2 lines while one more never reads: every reader gets all") {
  // The done-when: 1,000 x 999 x 2 lines of ~60 bytes (~120 MB out of the server).
  // Second lines wait until all first lines arrived: a backlog of a line from every member
  // fits a queue (a reader of 2,000 lines in one burst could be disconnected, rightly).
  auto res = run_room(1000, 2, 32, 0, true, false, under_asan ? 600s : 180s);
  CHECK(res.clients == 1000);
  MESSAGE("chat_room VmRSS: " << res.rss_start_kib << " KiB after the joins, peak "
                              << res.rss_peak_kib << " KiB");
}

TEST_CASE("a line over 4,096 bytes gets '* line too long' and the connection closes") {
  room_server server;
  io_context ctx;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    auto a = co_await join(ctx, server.at);
    auto b = co_await join(ctx, server.at);
    // Exactly 4,096 bytes is a line: it reaches the other client.
    const std::string longest(4096, 'x');
    const std::string longest_line = longest + "\n";  // named: no temporary in the co_await
    co_await b->s.send_all(test::bytes(longest_line));
    for (int i = 0; i < 10; ++i) {  // a's notes: b joined, then the line
      auto line = co_await a->in.read_line().with_timeout(read_limit);
      REQUIRE(line);
      if (line->rfind("* ", 0) == 0) continue;
      CHECK(*line == b->name + ": " + longest);
      break;
    }
    const std::string too_long(4097, 'y');
    const std::string too_long_line = too_long + "\n";
    co_await b->s.send_all(test::bytes(too_long_line));
    auto err = co_await b->in.read_line().with_timeout(read_limit);
    REQUIRE(err);
    CHECK(*err == "* line too long");
    auto end = co_await b->in.read_line().with_timeout(read_limit);
    CHECK(!end);  // EOF: the server closed it
    auto left = co_await a->in.read_line().with_timeout(read_limit);
    REQUIRE(left);
    CHECK(*left == "* " + b->name + " left (line too long)");
  });
  server.stop();
}

TEST_CASE("SIGTERM: clients are told, the connections close, and the server exits 0") {
  room_server server;
  io_context ctx;
  test::run_on(ctx, [&](io_context& ctx) -> task<> {
    auto a = co_await join(ctx, server.at);
    server.proc.signal(SIGTERM);
    auto line = co_await a->in.read_line().with_timeout(read_limit);
    REQUIRE(line);
    CHECK(*line == "* server shutting down");
    auto end = co_await a->in.read_line().with_timeout(read_limit);
    CHECK(!end);
  });
  auto st = server.proc.wait(10s);
  REQUIRE(st);
  CHECK(*st == 0);
}

TEST_CASE("chat_room --help exits 0, a bad argument exits 2") {
  const std::string exe = test::example_path("CHAT_ROOM");
  CHECK(test::exit_status_of({exe, "--help"}) == 0);
  CHECK(test::exit_status_of({exe, "--bogus"}) == 2);
  CHECK(test::exit_status_of({exe, "--port", "70000"}) == 2);
}
