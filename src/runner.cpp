// SPDX-License-Identifier: MIT
// Description: runner: worker threads and their start handshake, stop, join, signal handling.
#include <coring/detail/ring_access.hpp>
#include <coring/error.hpp>
#include <coring/runner.hpp>
#include <coring/sync_wait.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace coring {

namespace {
// The process's signal eventfd: created once and never closed, so a handler running while a
// runner lets go of the signals never writes into a descriptor reused for something else.
std::atomic<int> signal_efd{-1};
std::atomic<bool> signals_owned{false};  // a runner handles signals

void on_signal(int) {
  const int saved = errno;
  const int fd = signal_efd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    std::uint64_t one = 1;
    ssize_t r = ::write(fd, &one, sizeof one);
    (void)r;
  }
  errno = saved;
}

int signal_eventfd() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  int fd = signal_efd.load();
  if (fd < 0) {
    fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw_errno(errno, "eventfd (runner signals)");
    signal_efd.store(fd);
  }
  return fd;
}

void no_op(detail::remote_node*, bool) noexcept {}
}  // namespace

struct runner::signal_state {
  std::vector<std::pair<int, struct sigaction>> previous;
  std::thread helper;
  std::atomic<bool> quit{false};
};

runner::runner(unsigned threads, io_context_options options)
    : threads_(threads ? threads : std::max(1u, std::thread::hardware_concurrency())),
      options_(options), slots_(std::make_unique<slot[]>(threads_)) {
  for (unsigned i = 0; i < threads_; ++i)
    slots_[i].wake.fn = &no_op;
}

runner::~runner() {
  request_stop();
  join_threads();
  stop_signals();
}

void runner::start_impl(function f) {
  if (started_) throw std::logic_error("runner::start called twice");
  started_ = true;
  f_ = std::move(f);
  std::exception_ptr failure;
  unsigned created = 0;
  try {
    for (; created < threads_; ++created)
      slots_[created].thread = std::thread([this, i = created] { worker_main(i); });
  } catch (...) {
    failure = std::current_exception();
  }
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return reported_ == created; });
    for (unsigned i = 0; i < created && !failure; ++i)
      if (slots_[i].error) failure = slots_[i].error;
    decided_ = true;
    go_ = !failure;
  }
  cv_.notify_all();
  if (!failure) return;
  stop_.request_stop();
  join_threads();
  stop_signals();
  std::rethrow_exception(failure);
}

void runner::worker_main(unsigned index) noexcept {
  slot& s = slots_[index];
  std::optional<io_context> ctx;
  bool go = false;
  {
    std::exception_ptr error;
    try {
      ctx.emplace(options_);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_lock lock(mu_);
    if (error)
      s.error = error;
    else
      s.ctx = &*ctx;
    ++reported_;
    cv_.notify_all();
    if (!error) {
      cv_.wait(lock, [&] { return decided_; });
      go = go_;
    }
  }
  if (go) {
    try {
      io_context::work_guard guard(*ctx);
      // LIFETIME: unregistered (waiting for a running callback) before the context goes.
      std::stop_callback wake(stop_.get_token(),
                              [&] { detail::ring_access::post_remote(*ctx, &s.wake); });
      sync_wait(*ctx, f_(*ctx, index, stop_.get_token()));
    } catch (...) {
      {
        std::lock_guard lock(mu_);
        s.error = std::current_exception();
        if (!first_error_) first_error_ = s.error;
      }
      request_stop();
    }
  }
  if (ctx) ctx->shutdown();  // on this thread: the ring belongs to it
  {
    std::lock_guard lock(mu_);
    s.ctx = nullptr;
  }
  ctx.reset();
}

void runner::request_stop() noexcept { stop_.request_stop(); }

void runner::join_threads() noexcept {
  for (unsigned i = 0; i < threads_; ++i)
    if (slots_[i].thread.joinable()) slots_[i].thread.join();
}

void runner::join() {
  join_threads();
  stop_signals();
  std::exception_ptr e;
  {
    std::lock_guard lock(mu_);
    e = std::exchange(first_error_, nullptr);
  }
  if (e) std::rethrow_exception(e);
}

void runner::stop_on_signals(std::initializer_list<int> signals) {
  if (signals_) throw std::logic_error("runner::stop_on_signals called twice");
  const int fd = signal_eventfd();
  bool expected = false;
  if (!signals_owned.compare_exchange_strong(expected, true))
    throw std::logic_error("runner::stop_on_signals: another runner handles signals");
  auto st = std::make_unique<signal_state>();
  std::uint64_t stale;
  while (::read(fd, &stale, sizeof stale) > 0) {}  // a signal a previous runner saw
  try {
    struct sigaction sa {};
    sa.sa_handler = &on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int sig : signals) {
      struct sigaction old {};
      if (::sigaction(sig, &sa, &old) != 0) throw_errno(errno, "sigaction");
      st->previous.emplace_back(sig, old);
    }
    st->helper = std::thread([this, fd, q = &st->quit] {
      while (!q->load(std::memory_order_acquire)) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, -1) <= 0) continue;  // EINTR: a signal, maybe ours
        std::uint64_t n;
        if (::read(fd, &n, sizeof n) > 0 && !q->load(std::memory_order_acquire)) request_stop();
      }
    });
  } catch (...) {
    for (auto& [sig, old] : st->previous)
      ::sigaction(sig, &old, nullptr);
    signals_owned.store(false);
    throw;
  }
  signals_ = std::move(st);
}

void runner::stop_signals() noexcept {
  if (!signals_) return;
  for (auto& [sig, old] : signals_->previous)
    ::sigaction(sig, &old, nullptr);
  signals_->quit.store(true, std::memory_order_release);
  std::uint64_t one = 1;
  ssize_t r = ::write(signal_efd.load(), &one, sizeof one);
  (void)r;
  signals_->helper.join();
  signals_.reset();
  signals_owned.store(false);
}

}  // namespace coring
