// SPDX-License-Identifier: MIT
// Description: acceptor's multishot accept state machine.
#include <coring/acceptor.hpp>

#include "detail/ring.hpp"

#include <array>
#include <cerrno>
#include <vector>

#include <unistd.h>

namespace coring::detail {

struct acceptor_state : completion {
  acceptor_state(socket& l, acceptor_options o) noexcept
      : completion{&acceptor_state::on_cqe}, ctx(&l.context()), fd(l.fileno()),
        generation(detail::ring_access::cancel_generation(l)), max_queued(o.max_queued < 1 ? 1 : (o.max_queued > 256 ? 256 : o.max_queued)),
        multishot(o.multishot) {}

  bool ready() const noexcept { return !fds.empty() || error != 0; }
  // listener.cancel() sticks: once nothing is queued, accept() ends with operation_canceled.
  bool listener_cancelled() const noexcept { return detail::ring_access::cancel_generation(*ctx, fd) != generation; }

  void arm() {  // may throw (no SQE): nothing registered yet
    io_uring_sqe& sqe = detail::ring_access::acquire_sqe(*ctx);
    if (multishot && ctx->features().accept_multishot)
      io_uring_prep_multishot_accept(&sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
    else
      io_uring_prep_accept(&sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
    detail::ring_access::attach(*ctx, sqe, this);
    armed = true;
  }

  static void on_cqe(completion* c, int res, std::uint32_t flags) noexcept {
    auto* st = static_cast<acceptor_state*>(c);
    const bool more = cqe_more(flags);
    const bool was_backpressure = st->cancel_pending;
    if (!more) {
      st->armed = false;
      st->cancel_pending = false;
    }
    if (st->orphaned) {
      if (res >= 0) ::close(res);
      if (!more) delete st;
      return;
    }
    if (st->ctx->stopping()) {  // shutdown: keep what came, resume nobody (io_op::on_cqe)
      if (res >= 0) st->fds.push_back(res);
      return;
    }
    if (res >= 0) {
      // Bounded by max_queued plus what raced the cancel; the vector keeps its capacity.
      st->fds.push_back(res);
    } else if (!(res == -ECANCELED && was_backpressure)) {
      st->error = -res;
    }
    if (st->armed && !st->cancel_pending && st->fds.size() >= st->max_queued) {
      st->cancel_pending = true;  // backpressure: the backlog holds the rest
      detail::ring_access::cancel(*st->ctx, st);
    }
    // The multishot ended (the backpressure cancel's final CQE, say) while a caller waits with
    // nothing queued: whoever waits needs an accept in flight, so arm a new one.
    if (st->waiter && !st->ready() && !st->armed) {
      if (st->listener_cancelled()) {
        st->error = ECANCELED;
      } else {
        try {
          st->arm();
        } catch (...) {
          st->error = ECANCELED;  // no SQE: end the wait
        }
      }
    }
    if (st->waiter && st->ready()) std::exchange(st->waiter, {}).resume();
  }

  io_context* ctx;
  int fd;
  std::uint32_t generation;  // the listener's cancel generation (socket::cancel_generation)
  unsigned max_queued;
  bool multishot;
  std::coroutine_handle<> waiter{};
  std::vector<int> fds;  // FIFO; front popped by shifting (small)
  std::size_t head = 0;
  int error = 0;
  bool armed = false, cancel_pending = false, orphaned = false;
};

bool accept_next_op::await_ready() const noexcept {
  if (!st_->ready() && st_->listener_cancelled()) st_->error = ECANCELED;
  return st_->ready();
}

void accept_next_op::await_suspend(std::coroutine_handle<> h) {
  if (!st_->armed) st_->arm();
  st_->waiter = h;
}

result<socket> accept_next_op::await_resume_result() noexcept {
  if (!st_->fds.empty()) {
    int fd = st_->fds.front();
    st_->fds.erase(st_->fds.begin());
    return socket::adopt(*st_->ctx, fd);
  }
  // An error is reported once; the next accept() re-arms.
  return errno_code(std::exchange(st_->error, 0));
}

socket accept_next_op::await_resume() {
  result<socket> r = await_resume_result();
  if (!r) throw_error(r.error(), "accept");
  return std::move(*r);
}

}  // namespace coring::detail

namespace coring {

acceptor::acceptor(socket& listener, acceptor_options opts)
    : st_(new detail::acceptor_state(listener, opts)) {
  st_->fds.reserve(st_->max_queued + 16);
}

acceptor::~acceptor() {
  if (!st_) return;
  for (int fd : st_->fds) ::close(fd);
  st_->fds.clear();
  st_->orphaned = true;
  if (st_->armed) {
    detail::ring_access::cancel(*st_->ctx, st_);  // the final CQE frees the state
    return;
  }
  delete st_;
}

}  // namespace coring
