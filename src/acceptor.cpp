// SPDX-License-Identifier: MIT
// Description: acceptor: how an accept is prepared and how its CQE becomes a connection; the
// state machine is multishot_core's.
#include <coring/acceptor.hpp>

#include "detail/multishot.hpp"
#include "detail/ring.hpp"

#include <cerrno>

#include <unistd.h>

namespace coring::detail {

class acceptor_state final : public multishot_core {
 public:
  acceptor_state(socket& listener, const acceptor_options& o)
      : multishot_core(listener.context(), listener.fileno(),
                       detail::ring_access::cancel_generation(listener), config(o)) {
    // Room for max_queued plus what races the backpressure cancel: no allocation per accept.
    reserve_queue(config(o).max_queued + 16);
  }

 private:
  static multishot_config config(const acceptor_options& o) noexcept {
    return {.max_queued = o.max_queued < 1 ? 1 : (o.max_queued > 256 ? 256 : o.max_queued),
            .multishot = o.multishot,
            .read_ahead = false,
            .sticky_end = false};  // EMFILE is reported once; the next accept() re-arms
  }

  void prep(io_uring_sqe& sqe) noexcept override {
    if (multishot() && context().features().accept_multishot)
      io_uring_prep_multishot_accept(&sqe, fd(), nullptr, nullptr, SOCK_CLOEXEC);
    else
      io_uring_prep_accept(&sqe, fd(), nullptr, nullptr, SOCK_CLOEXEC);
  }

  cqe_kind convert(int res, std::uint32_t, multishot_item& it) noexcept override {
    if (res < 0) return cqe_kind::error;
    it.value = res;
    return cqe_kind::item;
  }

  void dispose(multishot_item it) noexcept override { ::close(it.value); }
};

result<socket> accept_next_op::await_resume_result() noexcept {
  multishot_outcome o = st_->take(wait_);
  if (o.has_item) return socket::adopt(st_->context(), o.item.value);
  return errno_code(o.error != 0 ? o.error : ECANCELED);
}

}  // namespace coring::detail

namespace coring {

acceptor::acceptor(socket& listener, acceptor_options opts)
    : st_(new detail::acceptor_state(listener, opts)) {}

acceptor::~acceptor() {
  if (st_) st_->orphan();
}

}  // namespace coring
