// SPDX-License-Identifier: MIT
// Description: acceptor: how an accept is prepared and how its CQE becomes a connection, and
// the back-off on EMFILE and friends (one timer); the state machine is multishot_core's.
#include <coring/acceptor.hpp>

#include "detail/multishot.hpp"
#include "detail/ring.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <unistd.h>

namespace coring::detail {

class acceptor_state final : public multishot_core {
 public:
  acceptor_state(socket& listener, acceptor_options o)
      : multishot_core(listener.context(), listener.fileno(),
                       detail::ring_access::cancel_generation(listener), config(o)),
        back_off_(o.back_off), on_back_off_(std::move(o.on_back_off)) {
    // Room for max_queued plus what races the backpressure cancel: no allocation per accept.
    reserve_queue(config(o).max_queued + 16);
    timer_.fn_ = &acceptor_state::on_timer;
    timer_.owner = this;
  }

  acceptor_stats stats() const noexcept { return stats_; }

  /// The owner goes: a back-off timer in flight is cancelled (its CQE frees the state).
  void stop_back_off() noexcept {
    if (timer_armed_) ring_access::cancel(context(), &timer_);
  }

 private:
  static multishot_config config(const acceptor_options& o) noexcept {
    return {.max_queued = o.max_queued < 1 ? 1 : (o.max_queued > 256 ? 256 : o.max_queued),
            .multishot = o.multishot,
            .read_ahead = false,
            .sticky_end = false};  // EMFILE is reported once; the next accept() re-arms
  }

  static bool backs_off(int err) noexcept {
    return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS;
  }

  void prep(io_uring_sqe& sqe) noexcept override {
    ++stats_.submissions;
    if (multishot() && context().features().accept_multishot)
      io_uring_prep_multishot_accept(&sqe, fd(), nullptr, nullptr, SOCK_CLOEXEC);
    else
      io_uring_prep_accept(&sqe, fd(), nullptr, nullptr, SOCK_CLOEXEC);
  }

  cqe_kind convert(int res, std::uint32_t, multishot_item& it) noexcept override {
    if (res < 0) {
      if (back_off_.count() > 0 && backs_off(-res) && start_back_off(-res)) return cqe_kind::none;
      return cqe_kind::error;
    }
    reported_ = false;  // an accept succeeded: the next back-off is news again
    it.value = res;
    return cqe_kind::item;
  }

  void dispose(multishot_item it) noexcept override { ::close(it.value); }
  bool held() const noexcept override { return timer_armed_; }
  bool paused() const noexcept override { return timer_armed_; }

  // Arms the one back-off timer. Returns: false if it could not (orphaned, teardown, no SQE):
  // the error is then reported to the waiter as without back-off.
  bool start_back_off(int err) noexcept {
    if (orphaned() || context().stopping() || timer_armed_) return timer_armed_;
    try {
      io_uring_sqe& sqe = ring_access::acquire_sqe(context());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(back_off_).count();
      timer_at_ = {ns / 1'000'000'000, ns % 1'000'000'000};
      io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&timer_at_), 0, 0);
      ring_access::attach(context(), sqe, &timer_);
    } catch (...) {
      return false;
    }
    timer_armed_ = true;
    ++stats_.back_offs;
    if (!reported_) {
      reported_ = true;
      ++stats_.reported;
      report(err);
    }
    return true;
  }

  void report(int err) noexcept {
    try {
      if (on_back_off_) {
        on_back_off_(errno_code(err));
        return;
      }
    } catch (...) {
      return;  // the callback must not throw; what it threw is dropped
    }
    std::fprintf(stderr,
                 "coring: accept: %s; backing off %lld ms (reported once until an accept "
                 "succeeds)\n",
                 std::strerror(err), static_cast<long long>(back_off_.count()));
  }

  static void on_timer(completion* c, int, std::uint32_t) noexcept {
    acceptor_state* self = static_cast<timer_completion*>(c)->owner;
    self->timer_armed_ = false;
    // LIFETIME: may free the state (orphaned) or resume the waiter: nothing after this.
    self->released();
  }

  struct timer_completion : completion {
    acceptor_state* owner;
  } timer_{};
  kernel_timespec timer_at_{};  // LIFETIME: read by the kernel at submission; in the state
  std::chrono::milliseconds back_off_;
  std::function<void(std::error_code)> on_back_off_;
  acceptor_stats stats_{};
  bool timer_armed_ = false;
  bool reported_ = false;  // this back-off episode was reported
};

result<socket> accept_next_op::await_resume_result() noexcept {
  multishot_outcome o = st_->take(wait_);
  if (o.has_item) return socket::adopt(st_->context(), o.item.value);
  return errno_code(o.error != 0 ? o.error : ECANCELED);
}

}  // namespace coring::detail

namespace coring {

acceptor::acceptor(socket& listener, acceptor_options opts)
    : st_(new detail::acceptor_state(listener, std::move(opts))) {}

acceptor::~acceptor() {
  if (!st_) return;
  static_cast<detail::acceptor_state*>(st_)->stop_back_off();
  st_->orphan();
}

acceptor_stats acceptor::stats() const noexcept {
  return st_ ? static_cast<const detail::acceptor_state*>(st_)->stats() : acceptor_stats{};
}

}  // namespace coring
