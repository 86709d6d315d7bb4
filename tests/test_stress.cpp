// SPDX-License-Identifier: MIT
// Description: load: 10,000 concurrent echo connections through examples/echo_server with every
// byte verified (clients in a separate process, examples/echo_client), 0 leaked descriptors after
// they leave, and the server's RSS per idle connection while 10,000 are held.
// CORING_STRESS_CONNECTIONS (default 10000) sets the number of connections.
#include "process.hpp"
#include "test_support.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/resource.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

std::size_t connections() {
  const char* v = std::getenv("CORING_STRESS_CONNECTIONS");
  long n = v && *v ? std::strtol(v, nullptr, 10) : 10000;
  return n > 0 ? static_cast<std::size_t>(n) : 10000;
}

// Open descriptors of another process (/proc/<pid>/fd), or -1.
int fds_of(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

// Resident set size of a process in KiB (VmRSS), or -1.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kb = -1;
      in >> kb;
      return kb;
    }
    std::getline(in, key);
  }
  return -1;
}

// Polls until fds_of(pid) == want or the limit passes. Returns: the last count seen.
int wait_for_fds(pid_t pid, int want, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  int n = fds_of(pid);
  while (n != want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    n = fds_of(pid);
  }
  return n;
}

int start_server(test::child& server) {
  auto line = server.read_line(10s);
  REQUIRE(line);
  int port = test::port_from_line(*line);
  REQUIRE(port > 0);
  return port;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void stop_server(test::child& server) {
  server.signal(SIGTERM);
  auto st = server.wait(30s);
  REQUIRE(st);
  CHECK(*st == 0);
}

// ---- the idle holder: N connections from this process, no data until all are accepted ----

task<> connect_one(io_context& ctx, address to, coring::socket& out, std::size_t& done,
                   std::size_t& failed) {
  try {
    out = co_await tcp_connect(ctx, to);
  } catch (const std::system_error& e) {
    if (failed++ < 5) MESSAGE("connect: " << e.what());
  }
  ++done;
}

// Connects every socket in batches of at most 1,000 (the listen backlog is capped at 4,096).
task<> connect_all(io_context& ctx, address to, std::vector<coring::socket>& socks,
                   std::size_t& failed) {
  std::size_t done = 0;
  for (std::size_t first = 0; first < socks.size(); first += 1000) {
    std::size_t last = std::min(socks.size(), first + 1000);
    std::vector<task<>> batch;
    for (std::size_t i = first; i < last; ++i)
      batch.push_back(connect_one(ctx, to, socks[i], done, failed));
    auto all = coring::when_all(std::move(batch));  // named first (g++ 12)
    co_await std::move(all);
  }
  CHECK(done == socks.size());
}

task<> ping_one(coring::socket& s, std::size_t id, std::size_t& ok, std::size_t& done) {
  try {
    std::array<std::byte, 2> out{static_cast<std::byte>(id), static_cast<std::byte>(id >> 8)};
    std::array<std::byte, 2> in{};
    co_await s.send_all(out);
    std::size_t got = 0;
    while (got < in.size()) {
      std::size_t n = co_await s.recv(std::span(in).subspan(got)).with_timeout(30s);
      if (n == 0) break;
      got += n;
    }
    if (got == in.size() && in == out) ++ok;
  } catch (const std::system_error& e) {
    MESSAGE("ping: " << e.what());
  }
  ++done;
}

task<> ping_all(std::vector<coring::socket>& socks, std::size_t& ok) {
  std::size_t done = 0;
  std::vector<task<>> pings;
  for (std::size_t i = 0; i < socks.size(); ++i)
    pings.push_back(ping_one(socks[i], i, ok, done));
  auto all = coring::when_all(std::move(pings));  // named first (g++ 12)
  co_await std::move(all);
  CHECK(done == socks.size());
}

}  // namespace

TEST_CASE(
    "echo_server: 10,000 concurrent connections from echo_client, every byte verified, "
    "0 descriptors leaked") {
  const std::size_t n = connections();
  test::watchdog w(500s, "stress echo");
  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  std::this_thread::sleep_for(50ms);
  const int base_fds = fds_of(server.pid());
  REQUIRE(base_fds > 0);

  auto t0 = std::chrono::steady_clock::now();
  test::child client({test::example_path("ECHO_CLIENT"), "--port", std::to_string(port),
                      "--connections", std::to_string(n), "--count", "10", "--size", "100"});
  auto status = client.wait(400s);
  std::string out = client.read_rest(1s);
  double secs = seconds_since(t0);
  MESSAGE(out);
  REQUIRE(status);
  CHECK(*status == 0);
  const std::string want = std::to_string(n) + " ok, 0 failed, " + std::to_string(n * 1000) +
                           " bytes echoed and verified, 0 mismatches";
  CHECK(out.find(want) != std::string::npos);

  // Every client has left: the server is back to the descriptors it started with.
  int after = wait_for_fds(server.pid(), base_fds, 10s);
  MESSAGE("stress: " << n << " connections x 10 x 100 B in " << secs << " s; server fds "
                     << base_fds << " before, " << after << " after (" << after - base_fds
                     << " leaked)");
  CHECK(after == base_fds);
  stop_server(server);
}

TEST_CASE(
    "echo_server holds 10,000 idle connections: RSS per connection, every one answers, "
    "0 descriptors leaked") {
  const std::size_t n = connections();
  test::watchdog w(300s, "stress idle");
  rlimit rl{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  const rlimit old = rl;
  if (rl.rlim_cur < n + 100 && rl.rlim_max >= n + 100) {
    rl.rlim_cur = rl.rlim_max;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  }
  REQUIRE(rl.rlim_cur >= n + 100);

  test::child server({test::example_path("ECHO_SERVER"), "--port", "0"});
  int port = start_server(server);
  std::this_thread::sleep_for(50ms);
  const int base_fds = fds_of(server.pid());
  const long base_rss = rss_kib(server.pid());
  REQUIRE(base_fds > 0);
  REQUIRE(base_rss > 0);

  auto t0 = std::chrono::steady_clock::now();
  {
    io_context ctx;
    std::vector<coring::socket> socks(n);
    std::size_t failed = 0;
    sync_wait(ctx, connect_all(ctx, address::ip("127.0.0.1", static_cast<std::uint16_t>(port)),
                               socks, failed));
    CHECK(failed == 0);
    // The server has accepted every one of them (one descriptor each) before we measure.
    int held = wait_for_fds(server.pid(), base_fds + static_cast<int>(n), 60s);
    CHECK(held == base_fds + static_cast<int>(n));
    const long idle_rss = rss_kib(server.pid());
    const double per_conn =
        static_cast<double>(idle_rss - base_rss) * 1024.0 / static_cast<double>(n);
    MESSAGE("idle: " << n << " connections held in " << seconds_since(t0) << " s; server RSS "
                     << base_rss << " KiB -> " << idle_rss << " KiB: " << per_conn
                     << " bytes per idle connection");
    // Generous bound that still catches a per-connection buffer (4 KiB) being allocated.
    CHECK(per_conn < 4096.0);

    // Each held connection is live: one round trip on every one of them.
    std::size_t ok = 0;
    sync_wait(ctx, ping_all(socks, ok));
    CHECK(ok == n);
    MESSAGE("idle: all " << ok << " of " << n << " answered; server RSS after one echo each "
                         << rss_kib(server.pid()) << " KiB; total " << seconds_since(t0) << " s");
  }  // every client closes

  int after = wait_for_fds(server.pid(), base_fds, 30s);
  MESSAGE("idle: server fds " << base_fds << " before, " << after << " after the clients left");
  CHECK(after == base_fds);
  stop_server(server);
  setrlimit(RLIMIT_NOFILE, &old);
}
