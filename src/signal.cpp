// SPDX-License-Identifier: MIT
// Description: signal_set: signalfd read on the ring.
#include <coring/signal.hpp>

#include <liburing.h>

#include "detail/valgrind.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <cerrno>

namespace coring {

namespace detail {
void signal_wait_op::prep(io_uring_sqe& sqe) noexcept {
  static_assert(sizeof(signalfd_siginfo) == 128);
  io_uring_prep_read(&sqe, fd_, info_.data(), static_cast<unsigned>(info_.size()), 0);
}

result<int> signal_wait_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  kernel_wrote(info_.data(), static_cast<std::size_t>(res));
  signalfd_siginfo si;
  static_assert(sizeof si == 128);
  __builtin_memcpy(&si, info_.data(), sizeof si);
  return static_cast<int>(si.ssi_signo);
}
}  // namespace detail

signal_set::signal_set(io_context& ctx, std::initializer_list<int> signals) : ctx_(&ctx) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : signals)
    sigaddset(&mask, s);
  if (int e = pthread_sigmask(SIG_BLOCK, &mask, &old_mask_)) throw_errno(e, "pthread_sigmask");
  fd_ = ::signalfd(-1, &mask, SFD_CLOEXEC);
  if (fd_ < 0) {
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    throw_errno(e, "signalfd");
  }
}

signal_set::~signal_set() {
  if (fd_ < 0) return;  // moved from
  ::close(fd_);
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

namespace {
task<int> wait_on(signal_set set) {
  int signo = co_await set.wait();
  co_return signo;
}
}  // namespace

task<int> wait_signal(io_context& ctx, std::initializer_list<int> signals) {
  // LIFETIME: not a coroutine: the list's array dies with the caller's full expression, so it
  // is consumed here; the set (signals blocked now) moves into the waiting task's frame.
  return wait_on(signal_set(ctx, signals));
}

}  // namespace coring
