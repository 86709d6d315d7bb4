// SPDX-License-Identifier: MIT
// Description: send_all vs send_all_zc (IORING_OP_SEND_ZC) over loopback: CPU per GiB, as a
// ratio in the same run, alternating rounds.
#include <coring/coring.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

coring::task<> drain(coring::socket& s, std::size_t total) {
  std::vector<std::byte> buf(1 << 20);
  std::size_t got = 0;
  while (got < total) {
    std::size_t n = co_await s.recv(buf);
    if (n == 0) break;
    got += n;
  }
}

coring::task<> pump(coring::socket& s, std::span<const std::byte> chunk, std::size_t total,
                    bool zc) {
  for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
    if (zc)
      co_await s.send_all_zc(chunk);
    else
      co_await s.send_all(chunk);
  }
}

// Moves total bytes in chunks of chunk_size from one socket to another (both ends in this
// process, as everything runs on one ring). Returns: CPU seconds per GiB.
coring::task<double> one_run(coring::io_context& ctx, std::size_t chunk_size, std::size_t total,
                             bool zc) {
  coring::socket listener = coring::tcp_listen(ctx, "127.0.0.1:0");
  coring::socket a = co_await coring::tcp_connect(ctx, listener.sock_name());
  coring::socket b = co_await listener.accept();
  std::vector<std::byte> chunk(chunk_size, std::byte{42});
  double t0 = cpu_seconds();
  auto both = co_await coring::when_all(pump(a, chunk, total, zc), drain(b, total));
  (void)both;
  double t1 = cpu_seconds();
  co_return (t1 - t0) / (static_cast<double>(total) / (1 << 30));
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  std::size_t total = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024) << 20;
  coring::io_context ctx;
  if (!ctx.features().op_send_zc) std::puts("note: no IORING_OP_SEND_ZC: both runs use send");
  std::printf(
      "| chunk | send_all CPU s/GiB | send_all_zc CPU s/GiB | zc / copy |\n|---|---:|---:|---:|\n");
  for (std::size_t chunk : {std::size_t(4096), std::size_t(65536), std::size_t(1) << 20}) {
    std::vector<double> copy, zc;
    for (int r = 0; r < rounds; ++r) {  // alternate so drift hits both alike
      copy.push_back(coring::sync_wait(ctx, one_run(ctx, chunk, total, false)));
      zc.push_back(coring::sync_wait(ctx, one_run(ctx, chunk, total, true)));
    }
    std::sort(copy.begin(), copy.end());
    std::sort(zc.begin(), zc.end());
    double mc = copy[copy.size() / 2], mz = zc[zc.size() / 2];
    std::printf("| %zu | %.3f | %.3f | %.2f |\n", chunk, mc, mz, mz / mc);
  }
  return 0;
}
