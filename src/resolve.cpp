// SPDX-License-Identifier: MIT
// Description: resolve: getaddrinfo on a bounded process-wide pool of lookup threads; results
// reach each io_context through one eventfd per context that its ring reads.
#include <coring/resolve.hpp>

#include "detail/ring.hpp"

#include <coring/detail/ring_access.hpp>
#include <coring/detail/timer_op.hpp>
#include <coring/error.hpp>

#include <liburing.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include <netdb.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace coring {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto no_deadline = clock::time_point::max();
// A pool thread with nothing to do for this long ends (the next lookup starts another).
constexpr auto idle_exit = std::chrono::seconds(30);

class resolve_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "resolve"; }
  std::string message(int ev) const override { return ::gai_strerror(ev); }
};

std::atomic<detail::resolve_hook> test_hook{nullptr};

struct hub;
struct job;
class lookup_awaiter;

// How a wait ended.
enum class outcome : unsigned char { none, result, canceled, timed_out, failed };

// A completion (its address is the SQE's user_data) that leads back to its owner.
template <class Owner>
struct slot : detail::completion {
  Owner* owner = nullptr;
};

// The process-wide lookup pool: a FIFO of jobs and at most resolver_max_threads threads, started
// when a job finds no idle thread, ended after idle_exit without work. It is never destroyed
// (the_pool leaks it on purpose), so a thread still in getaddrinfo at exit touches nothing that
// static destruction freed, and exit() never waits for a slow name server. A child of fork()
// gets a new pool (pool()): its parent's threads do not exist there, and their mutex may have
// been held at the fork.
struct pool_state {
  const pid_t pid = ::getpid();
  std::mutex mu;
  std::condition_variable cv;
  std::list<std::shared_ptr<job>> queue;           // under mu
  std::size_t threads = 0, idle = 0, running = 0;  // under mu
  // The hub of each io_context that has lookups in progress (see hub).
  std::mutex hubs_mu;
  std::unordered_map<const io_context*, std::shared_ptr<hub>> hubs;  // under hubs_mu

  void submit(const std::shared_ptr<job>& j);
  void abandon(job& j) noexcept;
  void work() noexcept;
};

std::atomic<pool_state*> the_pool{nullptr};

pool_state& pool() {
  pool_state* p = the_pool.load(std::memory_order_acquire);
  if (p && p->pid == ::getpid()) return *p;
  auto* fresh = new pool_state;  // first use, or the first one in a child of fork()
  if (the_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread was first: p is its pool
  return *p;
}

// One lookup, shared by the awaiting coroutine (lookup_awaiter), the pool while the job is
// queued or running, the hub's list once it has news for the ring, and its own timeout while
// the kernel holds it. Each group of fields has one guard, named on it.
struct job {
  // Set before the job is queued, then read-only.
  std::string host, service;
  int family = AF_UNSPEC, type = SOCK_STREAM;
  pool_state* pool = nullptr;

  // Under pool_state::mu.
  enum class stage : unsigned char { created, queued, running, finished, dropped };
  stage at = stage::created;
  std::list<std::shared_ptr<job>>::iterator where{};
  bool abandoned = false;   // the waiter left while getaddrinfo ran: discard the result
  std::shared_ptr<hub> to;  // where the result goes (the pool thread takes it when it starts)

  // Written by the pool thread before it sets done; read by the ring's thread after it saw done.
  int gai = 0, sys_errno = 0;
  std::vector<address> addrs;

  // Under hub::mu: news for the ring (done, stop) and the hub's intrusive list.
  bool done = false, stop = false, listed = false;
  job* next = nullptr;
  std::shared_ptr<job> listed_ref;  // keeps the job alive while it is on the list

  // The ring's thread only.
  lookup_awaiter* waiter = nullptr;
  io_context* ctx = nullptr;  // set with the timeout
  slot<job> timer;
  detail::kernel_timespec when{};  // LIFETIME: read by the kernel; lives in the job
  detail::cancel_node timer_cancel{};
  bool timer_armed = false, timer_cancelling = false;
  std::shared_ptr<job> timer_ref;  // keeps the job alive while the kernel holds the timeout

  job() {
    timer.fn_ = &on_timer;
    timer.owner = this;
  }
  void run() noexcept;
  void arm_timer(io_context& c, const std::shared_ptr<job>& self, clock::time_point deadline);
  void cancel_timer() noexcept;
  static void on_timer(detail::completion* c, int res, std::uint32_t flags) noexcept;
};

// LIFETIME: why the pool never touches an io_context, and how a context's lookups wake it.
//
// A pool thread may finish a lookup after the io_context that asked for it was destroyed:
// getaddrinfo cannot be interrupted, and teardown must not wait for a slow name server. So the
// pool never calls into the context (io_context::execute or ring_access::post_remote on a
// destroyed context is undefined, and nothing could revoke a call already under way). It only
// posts the job on the hub, a heap object the pool's job keeps alive, and writes the hub's
// eventfd, which the hub owns: a write that nobody reads any more is harmless. One hub per
// context (pool_state::hubs), created by its first lookup: 10,000 lookups waiting on one context
// cost one descriptor, not 10,000.
//
// On the ring's side the hub keeps one IORING_OP_READ of its eventfd in the kernel while any
// lookup waits (armed). That read does three things: it wakes the ring, it keeps run() from
// returning while lookups wait, and it is how the hub learns that its context is going away:
// io_context::shutdown() cancels every operation and reaps each one's final CQE before it
// frees anything, so on_read runs with ctx->stopping() before the context is gone, and there
// the hub is revoked: ctx = null, off the map, and later posts are dropped. Everything that
// touches the context (arming, cancels, resuming a waiter) runs on the ring's thread, in a CQE
// handler or in a waiting coroutine's awaiter, and checks ctx first. A frame that outlives its
// context (a task destroyed after it) finds the hub revoked when its awaiter leaves.
// The map's key includes the ring's descriptor: a context whose shutdown leaked its ring (after
// 5 s) keeps that descriptor open, so a new context at the same address never takes the old hub.
// (Before Linux 5.19 shutdown cannot cancel the read: it completes when the next lookup of the
// context finishes, as the per-lookup eventfd read it replaces did.)
struct hub : std::enable_shared_from_this<hub> {
  hub(io_context& c, pool_state& p, int fd, int ring) noexcept
      : pool(&p), efd(fd), ctx(&c), ring_fd(ring) {
    read.fn_ = &on_read;
    read.owner = this;
  }
  ~hub();
  hub(const hub&) = delete;
  hub& operator=(const hub&) = delete;

  static std::shared_ptr<hub> for_context(io_context& c, pool_state& p);
  // Any thread: tells the ring that j is done (or that a stop was requested for it).
  void post(const std::shared_ptr<job>& j, bool is_done) noexcept;

  // The ring's thread.
  void add_waiter(lookup_awaiter& w);
  void remove_waiter(lookup_awaiter& w) noexcept;
  void arm();
  void drain() noexcept;
  void revoke() noexcept;
  void detach_if_idle() noexcept;
  void fail_waiters(std::error_code ec) noexcept;
  static void on_read(detail::completion* c, int res, std::uint32_t flags) noexcept;

  pool_state* const pool;
  const int efd;

  std::mutex mu;
  job* head = nullptr;  // under mu: jobs with news, oldest first
  job* tail = nullptr;
  bool revoked = false;  // under mu: the context is gone; posts are dropped

  // The ring's thread only.
  io_context* ctx;  // null once revoked
  const int ring_fd;
  slot<hub> read;
  std::uint64_t value = 0;  // LIFETIME: the kernel writes it; lives in the hub
  detail::cancel_node cancel{};
  bool armed = false, cancelling = false;
  std::shared_ptr<hub> self;  // keeps the hub alive while the kernel holds the read
  lookup_awaiter* waiters = nullptr;
  std::size_t waiter_count = 0;
};

// The co_await of one lookup: a named local in resolve_bounded's frame (never a temporary in
// the co_await expression). It owns the job's side of the ring's thread; see hub.
class lookup_awaiter {
 public:
  lookup_awaiter(io_context& c, std::shared_ptr<job> j, clock::time_point deadline,
                 std::stop_token stop) noexcept
      : ctx_(&c), job_(std::move(j)), deadline_(deadline), stop_(std::move(stop)) {}
  lookup_awaiter(const lookup_awaiter&) = delete;
  lookup_awaiter& operator=(const lookup_awaiter&) = delete;
  // The frame destroyed while waiting (teardown, or its owner): leave without resuming.
  ~lookup_awaiter() {
    if (registered_) leave();
  }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  // Throws for every outcome but result; then the job holds getaddrinfo's answer.
  void await_resume() const;

  // The ring's thread: ends the wait with o and resumes the coroutine. The caller must not touch
  // this awaiter afterwards (the coroutine may have destroyed it).
  void wake(outcome o, std::error_code ec = {}) noexcept {
    if (!registered_) return;
    outcome_ = o;
    error_ = ec;
    leave();
    waiter_.resume();
  }
  // The ring's thread: the deadline passed. A result that arrived meanwhile still wins.
  void on_deadline() noexcept {
    bool done;
    {
      std::lock_guard lock(hub_->mu);
      done = job_->done;
    }
    wake(done ? outcome::result : outcome::timed_out);
  }

  lookup_awaiter* prev = nullptr;  // the hub's list of waiters (ring's thread)
  lookup_awaiter* next = nullptr;

 private:
  // Any thread (std::stop_callback): only posts to the hub, which the awaiter keeps alive while
  // the callback is registered; the ring's thread resumes the waiter.
  struct stop_fn {
    lookup_awaiter* self;
    void operator()() const noexcept { self->hub_->post(self->job_, false); }
  };
  void leave() noexcept;

  io_context* ctx_;
  std::shared_ptr<hub> hub_;
  std::shared_ptr<job> job_;
  clock::time_point deadline_;
  std::stop_token stop_;
  std::coroutine_handle<> waiter_{};
  outcome outcome_ = outcome::none;
  std::error_code error_;
  bool registered_ = false;
  // Last: destroyed first, so a callback running on another thread finishes before the rest.
  std::optional<std::stop_callback<stop_fn>> cb_;
};

// ---- job ----

void job::run() noexcept {
  if (detail::resolve_hook h = test_hook.load(std::memory_order_acquire)) h(host);
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = type;
  addrinfo* res = nullptr;
  gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                      service.empty() ? "0" : service.c_str(), &hints, &res);
  if (gai == EAI_SYSTEM) sys_errno = errno;
  try {
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
      address a(ai->ai_addr, ai->ai_addrlen);
      bool seen = false;
      for (const address& b : addrs)
        seen = seen || b == a;
      if (!seen) addrs.push_back(a);
    }
  } catch (...) {
    gai = EAI_MEMORY;
    addrs.clear();
  }
  if (res) ::freeaddrinfo(res);
}

void job::arm_timer(io_context& c, const std::shared_ptr<job>& self, clock::time_point deadline) {
  io_uring_sqe& sqe = detail::ring_access::acquire_sqe(c);  // may throw: nothing armed yet
  ctx = &c;
  when = detail::to_kernel_timespec(deadline);  // steady_clock is CLOCK_MONOTONIC
  io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&when), 0, IORING_TIMEOUT_ABS);
  detail::ring_access::attach(c, sqe, &timer);
  timer_ref = self;
  timer_armed = true;
}

void job::cancel_timer() noexcept {
  if (!timer_armed || timer_cancelling) return;
  timer_cancelling = true;
  detail::ring_access::cancel(*ctx, timer_cancel, &timer);
}

void job::on_timer(detail::completion* c, int res, std::uint32_t) noexcept {
  job& j = *static_cast<slot<job>*>(c)->owner;
  std::shared_ptr<job> keep = std::move(j.timer_ref);
  j.timer_armed = j.timer_cancelling = false;
  detail::ring_access::cancel_done(*j.ctx, j.timer_cancel);
  // -ECANCELED: the wait ended otherwise (or teardown). While stopping, nobody is resumed.
  if (res != -ETIME || j.ctx->stopping() || !j.waiter) return;
  j.waiter->on_deadline();
}

// ---- pool ----

void pool_state::submit(const std::shared_ptr<job>& j) {
  std::unique_lock lock(mu);
  queue.push_back(j);  // may throw: nothing changed
  j->where = std::prev(queue.end());
  j->at = job::stage::queued;
  if (threads < detail::resolver_max_threads && queue.size() > idle) {
    try {
      std::thread([this] { work(); }).detach();
      ++threads;
    } catch (const std::system_error& e) {
      if (threads == 0) {  // nobody would ever run it
        queue.erase(j->where);
        j->at = job::stage::dropped;
        std::shared_ptr<hub> to = std::move(j->to);
        lock.unlock();
        throw_error(e.code(), "resolve: starting a lookup thread");
      }
      // Otherwise the threads already running will get to it.
    }
  }
  if (idle > 0) cv.notify_one();
}

void pool_state::abandon(job& j) noexcept {
  if (pid != ::getpid()) return;  // a child of fork(): the parent's pool is not ours to lock
  std::shared_ptr<job> dropped;
  std::shared_ptr<hub> to;
  std::lock_guard lock(mu);
  if (j.at == job::stage::queued) {
    dropped = std::move(*j.where);  // freed after the unlock, with to
    queue.erase(j.where);
    j.at = job::stage::dropped;
    to = std::move(j.to);
  } else if (j.at == job::stage::running) {
    j.abandoned = true;
  }
}

void pool_state::work() noexcept {
  std::unique_lock lock(mu);
  for (;;) {
    ++idle;
    const bool got =
        cv.wait_until(lock, clock::now() + idle_exit, [this] { return !queue.empty(); });
    --idle;
    if (!got) {
      --threads;
      return;
    }
    std::shared_ptr<job> j = std::move(queue.front());
    queue.pop_front();
    j->at = job::stage::running;
    std::shared_ptr<hub> to = std::move(j->to);
    ++running;
    lock.unlock();
    j->run();
    lock.lock();
    j->at = job::stage::finished;
    --running;
    const bool deliver = !j->abandoned;
    lock.unlock();
    if (deliver) to->post(j, true);
    j.reset();  // may free the job, and the hub with its eventfd: outside the lock
    to.reset();
    lock.lock();
  }
}

// ---- hub ----

hub::~hub() {
  // Jobs still listed (posted after the last drain) hold themselves through listed_ref.
  for (job* j = head; j;) {
    job* n = j->next;
    j->next = nullptr;
    std::shared_ptr<job> drop = std::move(j->listed_ref);
    j = n;
  }
  ::close(efd);
}

std::shared_ptr<hub> hub::for_context(io_context& c, pool_state& p) {
  const int ring = detail::ring_access::native(c).ring.ring_fd;
  std::shared_ptr<hub> old;  // a hub left by a context whose ring leaked: freed after the unlock
  std::lock_guard lock(p.hubs_mu);
  auto it = p.hubs.find(&c);
  if (it != p.hubs.end()) {
    if (it->second->ring_fd == ring) return it->second;
    old = std::move(it->second);
    p.hubs.erase(it);
  }
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) throw_errno(errno, "resolve: eventfd");
  std::shared_ptr<hub> h;
  try {
    h = std::make_shared<hub>(c, p, fd, ring);
  } catch (...) {
    ::close(fd);
    throw;
  }
  p.hubs.emplace(&c, h);  // may throw: h (and fd) is then freed
  return h;
}

void hub::post(const std::shared_ptr<job>& j, bool is_done) noexcept {
  bool first = false;
  {
    std::lock_guard lock(mu);
    if (is_done)
      j->done = true;
    else
      j->stop = true;
    if (revoked || j->listed) return;  // listed: the ring reads both flags when it gets to it
    j->listed = true;
    j->listed_ref = j;
    j->next = nullptr;
    if (tail)
      tail->next = j.get();
    else
      head = j.get();
    tail = j.get();
    first = head == j.get();
  }
  // One write per batch: a post to a non-empty list is drained with the entries before it.
  if (first) {
    std::uint64_t one = 1;
    while (::write(efd, &one, sizeof one) < 0 && errno == EINTR) {}
  }
}

void hub::arm() {
  io_uring_sqe& sqe = detail::ring_access::acquire_sqe(*ctx);  // may throw: nothing armed yet
  io_uring_prep_read(&sqe, efd, &value, sizeof value, 0);
  detail::ring_access::attach(*ctx, sqe, &read);
  self = shared_from_this();
  armed = true;
}

void hub::add_waiter(lookup_awaiter& w) {
  if (!ctx) throw_error(errc::context_stopping, "resolve");
  if (!armed) {
    try {
      arm();
    } catch (...) {
      detach_if_idle();
      throw;
    }
  }
  w.prev = nullptr;
  w.next = waiters;
  if (waiters) waiters->prev = &w;
  waiters = &w;
  ++waiter_count;
}

void hub::remove_waiter(lookup_awaiter& w) noexcept {
  if (w.prev)
    w.prev->next = w.next;
  else
    waiters = w.next;
  if (w.next) w.next->prev = w.prev;
  w.prev = w.next = nullptr;
  --waiter_count;
  if (waiter_count > 0 || !ctx) return;
  // Nobody waits: let the read go so that run() may return; on_read then detaches the hub.
  if (armed) {
    if (!cancelling) {
      cancelling = true;
      detail::ring_access::cancel(*ctx, cancel, &read);
    }
  } else {
    detach_if_idle();
  }
}

void hub::detach_if_idle() noexcept {
  if (armed || waiter_count > 0) return;
  std::shared_ptr<hub> me;  // the map's reference, released after the unlock
  std::lock_guard lock(pool->hubs_mu);
  auto it = pool->hubs.find(ctx);
  if (it != pool->hubs.end() && it->second.get() == this) {
    me = std::move(it->second);
    pool->hubs.erase(it);
  }
}

void hub::drain() noexcept {
  // Only what is listed now: lookups finished while the resumed coroutines run wait for the
  // next read, so that a coroutine resolving in a loop cannot hold the ring here.
  job* batch;
  {
    std::lock_guard lock(mu);
    batch = head;
    head = tail = nullptr;
  }
  // TRICKY: entries of the batch stay listed until taken below, so a post meanwhile only sets
  // a flag (read under the lock here) and never relinks them.
  while (batch) {
    std::shared_ptr<job> j;
    outcome o = outcome::none;
    {
      std::lock_guard lock(mu);
      j = std::move(batch->listed_ref);
      batch = batch->next;
      j->next = nullptr;
      j->listed = false;
      o = j->done ? outcome::result : j->stop ? outcome::canceled : outcome::none;
    }
    if (o != outcome::none && j->waiter) j->waiter->wake(o);
  }
}

void hub::revoke() noexcept {
  job* batch;
  {
    std::lock_guard lock(mu);
    revoked = true;
    batch = head;
    head = tail = nullptr;
  }
  while (batch) {
    std::shared_ptr<job> j = std::move(batch->listed_ref);
    batch = batch->next;
    j->next = nullptr;
  }
  {  // off the map even with waiters left (their frames are destroyed later, or never)
    std::shared_ptr<hub> me;
    std::lock_guard lock(pool->hubs_mu);
    auto it = pool->hubs.find(ctx);
    if (it != pool->hubs.end() && it->second.get() == this) {
      me = std::move(it->second);
      pool->hubs.erase(it);
    }
  }
  ctx = nullptr;
}

void hub::fail_waiters(std::error_code ec) noexcept {
  // Each wake removes its waiter. A resumed coroutine that starts a lookup may arm the read
  // again: then the others wait for it.
  for (std::size_t n = waiter_count; n > 0 && waiters && !armed; --n)
    waiters->wake(outcome::failed, ec);
}

void hub::on_read(detail::completion* c, int res, std::uint32_t) noexcept {
  hub& h = *static_cast<slot<hub>*>(c)->owner;
  std::shared_ptr<hub> keep = std::move(h.self);
  h.armed = h.cancelling = false;
  detail::ring_access::cancel_done(*h.ctx, h.cancel);
  if (h.ctx->stopping()) {  // LIFETIME: the context is being destroyed (see hub)
    h.revoke();
    return;
  }
  h.drain();  // may resume coroutines, which may add and remove waiters
  if (!h.ctx || h.armed) return;
  if (h.waiter_count == 0) {
    h.detach_if_idle();
    return;
  }
  if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    h.fail_waiters(errno_code(-res));  // the eventfd cannot be read: nothing would wake them
    h.detach_if_idle();
    return;
  }
  try {
    h.arm();
  } catch (const std::system_error& e) {
    h.fail_waiters(e.code());
    h.detach_if_idle();
  }
}

// ---- lookup_awaiter ----

void lookup_awaiter::await_suspend(std::coroutine_handle<> h) {
  waiter_ = h;
  pool_state& p = *job_->pool;
  hub_ = hub::for_context(*ctx_, p);
  hub_->add_waiter(*this);  // may throw: then nothing is registered
  registered_ = true;
  job_->waiter = this;
  job_->to = hub_;
  try {
    if (deadline_ != no_deadline) job_->arm_timer(*ctx_, job_, deadline_);
    p.submit(job_);
  } catch (...) {
    outcome_ = outcome::failed;
    leave();
    throw;
  }
  // Registered last: it may run at once (stop already requested), and only posts to the hub.
  cb_.emplace(stop_, stop_fn{this});
}

void lookup_awaiter::leave() noexcept {
  registered_ = false;
  cb_.reset();  // waits for a callback running on another thread
  job& j = *job_;
  j.waiter = nullptr;
  if (hub_->ctx) j.cancel_timer();  // null: revoked, the context is gone (no timer is left)
  if (outcome_ != outcome::result) j.pool->abandon(j);  // drop it from the queue, or discard
  hub_->remove_waiter(*this);
}

void lookup_awaiter::await_resume() const {
  const job& j = *job_;
  switch (outcome_) {
    case outcome::result:
      return;
    case outcome::canceled:
      throw_error(std::make_error_code(std::errc::operation_canceled),
                  "resolve " + j.host + ":" + j.service);
    case outcome::timed_out:
      throw_error(std::make_error_code(std::errc::timed_out),
                  "resolve " + j.host + ":" + j.service);
    case outcome::failed:
    case outcome::none:
      break;
  }
  throw_error(error_ ? error_ : std::make_error_code(std::errc::io_error),
              "resolve " + j.host + ":" + j.service);
}

}  // namespace

const std::error_category& resolve_category() noexcept {
  static const resolve_category_impl cat;
  return cat;
}

task<std::vector<address>> resolve(io_context& ctx, std::string host, std::string service,
                                   int family, int type) {
  return detail::resolve_bounded(ctx, std::move(host), std::move(service), family, type,
                                 no_deadline, {});
}

task<std::vector<address>> resolve(io_context& ctx, std::string host, std::string service,
                                   resolve_options opts) {
  const auto deadline = opts.timeout.count() > 0 ? clock::now() + opts.timeout : no_deadline;
  return detail::resolve_bounded(ctx, std::move(host), std::move(service), opts.family, opts.type,
                                 deadline, std::move(opts.stop));
}

task<std::vector<address>> detail::resolve_bounded(io_context& ctx, std::string host,
                                                   std::string service, int family, int type,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   std::stop_token stop) {
  if (ctx.stopping()) throw_error(errc::context_stopping, "resolve");
  if (stop.stop_requested())
    throw_error(std::make_error_code(std::errc::operation_canceled),
                "resolve " + host + ":" + service);
  if (deadline != no_deadline && deadline <= clock::now())
    throw_error(std::make_error_code(std::errc::timed_out), "resolve " + host + ":" + service);
  auto j = std::make_shared<job>();
  j->host = std::move(host);
  j->service = std::move(service);
  j->family = family;
  j->type = type;
  j->pool = &pool();
  lookup_awaiter wait(ctx, j, deadline, std::move(stop));
  co_await wait;
  // The pool's writes are published by hub::mu: the ring took the job off the hub's list (or
  // read done) under it before resuming us.
  if (j->gai == EAI_SYSTEM)
    throw_errno(j->sys_errno, ("resolve " + j->host + ":" + j->service).c_str());
  if (j->gai != 0)
    throw_error(std::error_code(j->gai, resolve_category()),
                "resolve " + j->host + ":" + j->service);
  co_return std::move(j->addrs);
}

detail::resolver_stats detail::resolver_pool_stats() noexcept {
  pool_state* p = the_pool.load(std::memory_order_acquire);
  if (!p || p->pid != ::getpid()) return {};
  std::lock_guard lock(p->mu);
  return {p->threads, p->queue.size(), p->running};
}

detail::resolve_hook detail::set_resolve_hook(resolve_hook hook) noexcept {
  return test_hook.exchange(hook, std::memory_order_acq_rel);
}

}  // namespace coring
