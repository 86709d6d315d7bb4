// SPDX-License-Identifier: MIT
// Description: recv_stream: how a reception is prepared (ring buffer or private fallback) and
// how its CQE becomes a buffer; the state machine is multishot_core's.
#include <coring/recv_stream.hpp>
#include <coring/socket.hpp>

#include "detail/multishot.hpp"
#include "detail/ring.hpp"
#include "detail/uapi.hpp"
#include "detail/valgrind.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <span>

namespace coring::detail {

class recv_stream_state final : public multishot_core {
 public:
  recv_stream_state(socket& s, buffer_ring& r, const recv_stream_options& o)
      : multishot_core(s.context(), s.fileno(), detail::ring_access::cancel_generation(s),
                       config(o)),
        ring_(&r) {
    reserve_queue(config(o).max_queued);
  }

  /// Wraps an item in a handle that gives the buffer back.
  buffer to_buffer(multishot_item it) noexcept {
    buffer b = it.value < 0
                   ? buffer(&recv_stream_state::release_fallback, this, 0,
                            std::span(fallback_.get(), it.len))
                   : ring_->take({static_cast<std::uint16_t>(it.value), it.offset, it.len});
    kernel_wrote(b.data().data(), b.size());
    return b;
  }

 private:
  static multishot_config config(const recv_stream_options& o) noexcept {
    return {.max_queued = o.max_queued < 1 ? 1 : (o.max_queued > 16 ? 16 : o.max_queued),
            .multishot = o.multishot,
            .read_ahead = true,  // one-shot mode: receive the next buffer while this one is used
            .sticky_end = true,  // EOF and errors end the stream
            .idle = o.idle_timeout};
  }

  // The ring runs low (fewer than count/16 free) or the kernel has no buffer rings: receive
  // into the private buffer instead, unless the consumer still holds it.
  bool use_ring() const noexcept {
    return context().features().buf_ring &&
           (ring_->available() > ring_->count() / 16 || fallback_busy_);
  }

  void prepare() override {
    const bool fallback = !use_ring();
    if (fallback && !fallback_)
      fallback_ = std::make_unique_for_overwrite<std::byte[]>(ring_->buffer_size());
    oneshot_fallback_ = fallback;  // nothing is in flight: free to change
    bundle_ = !fallback && multishot() && context().features().recv_multishot &&
              context().features().recv_bundle;
  }

  void prep(io_uring_sqe& sqe) noexcept override {
    if (oneshot_fallback_) {
      io_uring_prep_recv(&sqe, fd(), fallback_.get(), ring_->buffer_size(), 0);
      return;
    }
    if (bundle_) {
      // A multishot bundle whose len caps each completion at what the queue has room for
      // (Linux 6.15+; EINVAL before: convert() turns bundles off). Only multishot: a one-shot
      // bundle retries once with all the socket holds, which no len caps.
      const std::uint64_t room = queued() < max_queued() ? max_queued() - queued() : 1;
      const auto cap = static_cast<std::size_t>(
          std::min<std::uint64_t>(room * ring_->buffer_size(), std::uint64_t(1) << 30));
      io_uring_prep_recv_multishot(&sqe, fd(), nullptr, cap, 0);
      sqe.ioprio |= IORING_RECVSEND_BUNDLE;
    } else if (multishot() && context().features().recv_multishot) {
      io_uring_prep_recv_multishot(&sqe, fd(), nullptr, 0, 0);
    } else {
      io_uring_prep_recv(&sqe, fd(), nullptr, 0, 0);
    }
    sqe.flags |= IOSQE_BUFFER_SELECT;
    sqe.buf_group = ring_->group();
  }

  cqe_kind convert(int res, std::uint32_t flags, multishot_item& it) noexcept override {
    if (flags & IORING_CQE_F_BUFFER) {
      const auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      if (res > 0) {
        bundle_worked_ = bundle_worked_ || bundle_;
        // One buffer, or (bundle) several consecutive ones in ring order; for an incremental
        // ring the first goes on where the last reception from it stopped.
        cursor_ =
            ring_->begin(id, static_cast<std::uint32_t>(res), (flags & IORING_CQE_F_BUF_MORE) != 0);
        if (next_item(it)) return cqe_kind::item;
        return cqe_kind::none;
      }
      // A buffer comes with the CQE even when res <= 0 (axboe/liburing#359): give it back
      // if the kernel let go of it.
      ring_->empty_completion(id, bundle_);
    } else if (oneshot_fallback_ && res > 0) {
      fallback_busy_ = true;
      it = {-1, static_cast<std::uint32_t>(res)};
      return cqe_kind::item;
    }
    if (res == -EINVAL && bundle_ && !bundle_worked_) {
      // A kernel (6.10 to 6.14) that takes bundles but no cap on a multishot receive: no
      // bundles on this context from now on (uncapped, they would break the backpressure
      // bound); the next arm is a plain multishot.
      detail::ring_access::native(context()).features.recv_bundle = false;
      return cqe_kind::none;
    }
    if (res == 0) return cqe_kind::end;
    if (res == -ENOBUFS) return cqe_kind::none;  // the ring was empty: the next arm falls back
    return res < 0 ? cqe_kind::error : cqe_kind::none;
  }

  bool next_item(multishot_item& it) noexcept override {
    if (cursor_.remaining == 0) return false;
    const buffer_ring::piece p = ring_->next(cursor_);
    if (p.len == 0) return false;  // the kernel's count disagrees with ours: never seen
    it = {p.id, p.len, p.offset};
    return true;
  }

  void dispose(multishot_item it) noexcept override {
    if (it.value < 0)
      fallback_busy_ = false;
    else
      ring_->release(static_cast<std::uint16_t>(it.value));
  }

  // LIFETIME: a handed-out fallback buffer points into the state, which waits for it.
  bool held() const noexcept override { return fallback_busy_; }

  static void release_fallback(void* self, std::uint16_t) noexcept {
    auto* st = static_cast<recv_stream_state*>(self);
    st->fallback_busy_ = false;
    st->released();
  }

  buffer_ring* ring_;
  std::unique_ptr<std::byte[]> fallback_;  // allocated once, on first need
  bool oneshot_fallback_ = false;          // the reception in flight uses fallback_
  bool fallback_busy_ = false;             // fallback_ holds data (queued or handed out)
  bool bundle_ = false;                    // the reception in flight is a bundle
  bool bundle_worked_ = false;             // a bundle of this stream received data
  buffer_ring::cqe_cursor cursor_{};       // the pieces of the CQE being read
};

result<buffer> recv_next_op::await_resume_result() noexcept {
  multishot_outcome o = st_->take(wait_);
  if (o.has_item) return static_cast<recv_stream_state*>(st_)->to_buffer(o.item);
  if (o.error != 0) return errno_code(o.error);
  return buffer{};  // end of stream
}

}  // namespace coring::detail

namespace coring {

recv_stream::recv_stream(socket& s, buffer_ring& ring, recv_stream_options o)
    : st_(new detail::recv_stream_state(s, ring, o)) {}

recv_stream::~recv_stream() {
  // Queued ring buffers go back now; the state itself lives on while the kernel or a fallback
  // buffer handle still refers to it.
  if (st_) st_->orphan();
}

}  // namespace coring
