// SPDX-License-Identifier: MIT
// Description: test helpers (see test_support.hpp).
#include "test_support.hpp"

#include <atomic>
#include <cstdio>
#include <dirent.h>
#include <unistd.h>

namespace coring::test {

bool ring_supports(const char* what, bool (*has)(const ring_features&)) {
  try {
    io_context ctx;
    if (has(ctx.features())) return true;
    std::printf("SKIP reason: this kernel lacks %s: %s\n", what, ctx.features().describe().c_str());
  } catch (const std::exception& e) {
    std::printf("SKIP reason: %s\n", e.what());
  }
  return false;
}

watchdog::watchdog(std::chrono::milliseconds limit, std::string what) {
  thread_ = std::thread([this, limit, what = std::move(what)] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
      std::fprintf(stderr, "watchdog: %s did not finish within %lld ms; aborting\n", what.c_str(),
                   static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::abort();
    }
  });
}

watchdog::~watchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

task<tcp_pair> make_tcp_pair(io_context& ctx, const address& where) {
  socket listener = tcp_listen(ctx, where, 16);
  address to = listener.sock_name();
  socket client(ctx, to.family(), SOCK_STREAM);
  // The connect completes from the backlog, so no concurrency is needed.
  co_await client.connect(to);
  socket server = co_await listener.accept();
  co_return tcp_pair{std::move(client), std::move(server)};
}

task<std::string> read_all(socket& s, std::size_t max) {
  std::string out;
  std::array<std::byte, 65536> buf;
  while (out.size() < max) {
    std::size_t n = co_await s.recv(buf);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  co_return out;
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    --n;  // the DIR's own descriptor
  }
  return n;
}

std::string unique_abstract_name(std::string_view tag) {
  static std::atomic<int> seq{0};
  return "coring-test-" + std::string(tag) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(seq++);
}

}  // namespace coring::test
