// SPDX-License-Identifier: MIT
// Description: cross-thread execute() between two rings: round-trip latency (ping-pong) and
// throughput (one ring posting to another), MSG_RING wake-ups against the eventfd path.
// Usage: bench/cross_thread [runs=11] [round_trips=20000] [posts=200000] [coop]
// (coop: COOP_TASKRUN rings instead of the default DEFER_TASKRUN)
// Runs alternate between the two paths; prints each path's median.
#include <coring/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <string_view>
#include <thread>
#include <vector>

namespace {

bool defer_taskrun = true;  // the rings' task-run mode (the io_context default unless "coop")
using clock_type = std::chrono::steady_clock;

// A thread that creates, runs (held by a work guard) and destroys its own io_context.
class ring_thread {
 public:
  explicit ring_thread(coring::io_context_options o) {
    std::latch up(1);
    thread_ = std::thread([this, o, &up] {
      coring::io_context ctx(o);
      coring::io_context::work_guard guard(ctx);
      ctx_ = &ctx;
      up.count_down();
      ctx.run();
    });
    up.wait();
  }
  ~ring_thread() {
    ctx_->stop();
    thread_.join();
  }
  coring::io_context& ctx() { return *ctx_; }

 private:
  coring::io_context* ctx_ = nullptr;
  std::thread thread_;
};

// Ping-pong: a function executed on one ring executes the next one on the other.
struct hop {
  coring::io_context* here;
  coring::io_context* there;
  long left;  // hops still to make
  std::latch* done;
  void operator()() const {
    if (left == 0)
      done->count_down();
    else
      there->execute(hop{there, here, left - 1, done});
  }
};

// Returns: microseconds per round trip (two hops).
double latency(bool msg_ring, long round_trips) {
  coring::io_context_options o;
  o.msg_ring_wake = msg_ring;
  o.defer_taskrun = defer_taskrun;
  ring_thread a(o), b(o);
  std::latch warm(1), done(1);
  a.ctx().execute(hop{&a.ctx(), &b.ctx(), 200, &warm});
  warm.wait();
  const auto t0 = clock_type::now();
  a.ctx().execute(hop{&a.ctx(), &b.ctx(), 2 * round_trips, &done});
  done.wait();
  const std::chrono::duration<double, std::micro> d = clock_type::now() - t0;
  return d.count() / static_cast<double>(round_trips);
}

// The poster: on ring a, posts one function to ring b per loop turn (re-posting itself on a).
struct poster {
  coring::io_context* a;
  coring::io_context* b;
  long left;
  std::atomic<long>* received;
  std::latch* done;
  long total;
  void operator()() const {
    std::atomic<long>* r = received;
    std::latch* d = done;
    const long n = total;
    b->execute([r, d, n] {
      if (r->fetch_add(1, std::memory_order_relaxed) + 1 == n) d->count_down();
    });
    if (left > 1) a->execute(poster{a, b, left - 1, received, done, total});
  }
};

// Returns: millions of functions run on b per second.
double throughput(bool msg_ring, long posts) {
  coring::io_context_options o;
  o.msg_ring_wake = msg_ring;
  o.defer_taskrun = defer_taskrun;
  ring_thread a(o), b(o);
  std::atomic<long> received{0};
  std::latch done(1);
  const auto t0 = clock_type::now();
  a.ctx().execute(poster{&a.ctx(), &b.ctx(), posts, &received, &done, posts});
  done.wait();
  const std::chrono::duration<double> d = clock_type::now() - t0;
  return static_cast<double>(posts) / d.count() / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 11;
  const long round_trips = argc > 2 ? std::atol(argv[2]) : 20000;
  const long posts = argc > 3 ? std::atol(argv[3]) : 200000;
  defer_taskrun = !(argc > 4 && std::string_view(argv[4]) == "coop");
  if (runs < 1 || round_trips < 1 || posts < 1) {
    std::fprintf(stderr, "usage: cross_thread [runs] [round_trips] [posts] [coop]\n");
    return 2;
  }
  {
    coring::io_context_options o;
    o.defer_taskrun = defer_taskrun;
    coring::io_context probe(o);
    std::printf("kernel features: %s\n", probe.features().describe().c_str());
    if (!probe.features().msg_ring) std::printf("no IORING_OP_MSG_RING: both runs use eventfd\n");
  }
  std::vector<double> lat[2], thr[2];  // [0]: eventfd, [1]: MSG_RING
  for (int i = 0; i < runs; ++i)
    for (int path : {1, 0}) {
      lat[path].push_back(latency(path == 1, round_trips));
      thr[path].push_back(throughput(path == 1, posts));
    }
  std::printf("%d runs (alternating), medians:\n", runs);
  std::printf("  round trip (ping-pong): MSG_RING %.2f us, eventfd %.2f us\n", median(lat[1]),
              median(lat[0]));
  std::printf("  throughput (one ring posting to another): MSG_RING %.2f M/s, eventfd %.2f M/s\n",
              median(thr[1]), median(thr[0]));
  return 0;
}
