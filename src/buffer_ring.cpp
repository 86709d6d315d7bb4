// SPDX-License-Identifier: MIT
// Description: buffer_ring registration (liburing 2.3 has no io_uring_setup_buf_ring) and
// recv_stream's multishot state machine.
#include <coring/buffer_ring.hpp>
#include <coring/recv_stream.hpp>
#include <coring/socket.hpp>

#include "detail/ring.hpp"
#include "detail/valgrind.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace coring {

// ---- buffer_ring ----

buffer_ring::buffer_ring(io_context& ctx, unsigned count, unsigned size)
    : ctx_(&ctx), count_(count), size_(size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0)
    throw std::invalid_argument("buffer_ring: count must be a power of two from 1 to 32768");
  if (size == 0) throw std::invalid_argument("buffer_ring: size must not be 0");
  if (!ctx.features().buf_ring)
    throw_error(errc::not_supported, "buffer_ring needs Linux 5.19 (IORING_REGISTER_PBUF_RING)");
  auto& impl = detail::ring_access::native(ctx);
  group_ = impl.next_buffer_group++;
  const std::size_t bytes = count * sizeof(io_uring_buf);
  const long page = sysconf(_SC_PAGESIZE);
  if (posix_memalign(&ring_mem_, static_cast<std::size_t>(page), bytes) != 0)
    throw std::bad_alloc();
  // An anonymous mapping, not value-initialised memory: untouched pages stay unallocated until
  // the kernel first fills a buffer there, so a ring costs the memory its load uses
  // (echo_server --threads N).
  void* mem = ::mmap(nullptr, std::size_t(count) * size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    int e = errno;
    std::free(ring_mem_);
    throw_errno(e, "mmap (buffer_ring)");
  }
  storage_ = static_cast<std::byte*>(mem);
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem_);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(br);
  reg.ring_entries = count;
  reg.bgid = group_;
  if (int ret = io_uring_register_buf_ring(&impl.ring, &reg, 0); ret < 0) {
    std::free(ring_mem_);
    ::munmap(storage_, std::size_t(count) * size);
    throw_errno(-ret, "io_uring_register_buf_ring");
  }
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i)
    io_uring_buf_ring_add(br, storage_ + std::size_t(i) * size, size,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  io_uring_buf_ring_advance(br, static_cast<int>(count));
  available_ = count;
}

buffer_ring::~buffer_ring() {
  io_uring_unregister_buf_ring(&detail::ring_access::native(*ctx_).ring, group_);
  std::free(ring_mem_);
  ::munmap(storage_, std::size_t(count_) * size_);
}

buffer buffer_ring::take(std::uint16_t id, std::size_t len) noexcept {
  return buffer(&buffer_ring::release, this, id,
                std::span(storage_ + std::size_t(id) * size_, len));
}

void buffer_ring::give_back(std::uint16_t id) noexcept {
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem_);
  io_uring_buf_ring_add(br, storage_ + std::size_t(id) * size_, size_, id,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br, 1);
  ++available_;
}

// ---- recv_stream ----

namespace detail {

struct recv_stream_state : completion {
  struct item {
    std::uint16_t id;
    bool fallback;
    std::uint32_t len;
  };

  recv_stream_state(io_context& c, int f, std::uint32_t gen, buffer_ring& r,
                    const recv_stream_options& o) noexcept
      : completion{&recv_stream_state::on_cqe}, ctx(&c), fd(f), generation(gen), ring(&r),
        max_queued(o.max_queued < 1 ? 1 : (o.max_queued > 16 ? 16 : o.max_queued)),
        multishot(o.multishot), idle(o.idle_timeout) {
    timer.fn_ = &recv_stream_state::on_timer;
    timer.owner = this;
  }

  // Idle timeout: one lazily re-armed timer per stream (no SQE per reception). When it fires
  // it checks the time of the last reception and either ends the stream with ETIMEDOUT or
  // sleeps again until last reception + idle.
  void arm_timer(std::chrono::steady_clock::time_point when) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
    deadline = {ns / 1'000'000'000, ns % 1'000'000'000};
    io_uring_sqe& sqe = detail::ring_access::acquire_sqe(*ctx);
    io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&deadline), 0,
                          IORING_TIMEOUT_ABS);
    detail::ring_access::attach(*ctx, sqe, &timer);
    timer_armed = true;
  }

  static void on_timer(completion* c, int res, std::uint32_t) noexcept {
    auto* st = static_cast<timer_completion*>(c)->owner;
    st->timer_armed = false;
    if (st->orphaned) {
      if (st->can_delete()) delete st;
      return;
    }
    if (res != -ETIME || st->eof || st->error || st->ctx->stopping()) return;
    auto due = st->last_activity + st->idle;
    if (std::chrono::steady_clock::now() < due) {
      try {
        st->arm_timer(due);
        return;
      } catch (...) {
        // No SQE (context stopping): let the stream end as timed out.
      }
    }
    st->error = ETIMEDOUT;
    if (st->armed) detail::ring_access::cancel(*st->ctx, st);
    if (st->waiter) st->resume_waiter();
  }

  bool ready() const noexcept { return size > 0 || eof || error != 0; }
  // socket::cancel() sticks: once the queued data is consumed, next() ends with
  // operation_canceled instead of receiving again.
  bool socket_cancelled() const noexcept { return detail::ring_access::cancel_generation(*ctx, fd) != generation; }
  // LIFETIME: the state may go once the stream is gone and neither the kernel (reception,
  // idle timer) nor a fallback buffer handle refers to it.
  bool can_delete() const noexcept { return orphaned && !armed && !timer_armed && !fallback_busy; }

  void push(item it) {
    if (size == queue.size()) {
      // TRICKY: completions that were already on their way when the backpressure cancel was
      // submitted; rare and bounded, but they must not be dropped (the kernel consumed them).
      spill.push_back(it);
      return;
    }
    queue[(head + size) % queue.size()] = it;
    ++size;
  }

  item pop() noexcept {
    item it = queue[head];
    head = (head + 1) % queue.size();
    --size;
    if (!spill.empty()) {
      queue[(head + size) % queue.size()] = spill.front();
      ++size;
      spill.erase(spill.begin());
    }
    return it;
  }

  // Submits the next reception. May throw (no SQE: context stopping).
  void arm() {
    const ring_features& f = ctx->features();
    const bool ring_ok = f.buf_ring && (ring->available() > ring->count() / 16 || fallback_busy);
    io_uring_sqe& sqe = detail::ring_access::acquire_sqe(*ctx);
    if (ring_ok) {
      if (multishot && f.recv_multishot)
        io_uring_prep_recv_multishot(&sqe, fd, nullptr, 0, 0);
      else
        io_uring_prep_recv(&sqe, fd, nullptr, 0, 0);
      sqe.flags |= IOSQE_BUFFER_SELECT;
      sqe.buf_group = ring->group();
      oneshot_fallback = false;
    } else {
      if (!fallback) fallback = std::make_unique_for_overwrite<std::byte[]>(ring->buffer_size());
      io_uring_prep_recv(&sqe, fd, fallback.get(), ring->buffer_size(), 0);
      oneshot_fallback = true;
    }
    detail::ring_access::attach(*ctx, sqe, this);
    armed = true;
  }

  buffer take(item it) noexcept {
    buffer b = it.fallback ? buffer(&recv_stream_state::release_fallback, this, 0,
                                    std::span(fallback.get(), it.len))
                           : ring->take(it.id, it.len);
    kernel_wrote(b.data().data(), b.size());
    return b;
  }

  static void release_fallback(void* self, std::uint16_t) noexcept {
    auto* st = static_cast<recv_stream_state*>(self);
    st->fallback_busy = false;
    if (st->orphaned) {
      if (st->can_delete()) delete st;
      return;
    }
    if (st->ctx->stopping()) return;
    if (st->waiter && !st->armed && !st->ready()) {
      st->rearm_or_fail();
      if (st->ready()) st->resume_waiter();
    }
  }

  void rearm_or_fail() noexcept {
    if (socket_cancelled()) {
      error = ECANCELED;
      return;
    }
    try {
      arm();
    } catch (const std::system_error& e) {
      error = e.code() == errc::context_stopping ? ECANCELED : e.code().value();
      if (error == 0) error = ECANCELED;
    }
  }

  void resume_waiter() noexcept {
    if (auto h = std::exchange(waiter, {})) h.resume();
  }

  static void on_cqe(completion* c, int res, std::uint32_t flags) noexcept {
    auto* st = static_cast<recv_stream_state*>(c);
    const bool more = cqe_more(flags);
    const bool was_backpressure = st->cancel_pending;
    if (!more) {
      st->armed = false;
      st->cancel_pending = false;
    }
    bool data = false;
    if (flags & IORING_CQE_F_BUFFER) {
      auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      st->ring->consumed();
      // A buffer comes with the CQE even when res <= 0 (axboe/liburing#359): give it back.
      if (res > 0 && !st->orphaned) {
        st->push({id, false, static_cast<std::uint32_t>(res)});
        data = true;
      } else {
        st->ring->give_back(id);
      }
    } else if (st->oneshot_fallback && res > 0 && !st->orphaned) {
      st->fallback_busy = true;
      st->push({0, true, static_cast<std::uint32_t>(res)});
      data = true;
    }
    if (st->orphaned) {
      if (st->can_delete()) delete st;
      return;
    }
    if (st->ctx->stopping()) return;  // shutdown: resume nobody, arm nothing (io_op::on_cqe)
    if (data) st->last_activity = std::chrono::steady_clock::now();
    if (!data) {
      if (res == 0) {
        st->eof = true;
      } else if (res < 0 && res != -ENOBUFS && !(res == -ECANCELED && was_backpressure)) {
        st->error = -res;
      }
    }
    if (st->armed && !st->cancel_pending && st->size >= st->max_queued) {
      st->cancel_pending = true;  // backpressure: leave further data in the socket buffer
      detail::ring_access::cancel(*st->ctx, st);
    }
    if (!st->armed && !st->eof && !st->error && st->size < st->max_queued &&
        (data || st->waiter)) {
      // Read ahead: receive the next buffer while the consumer handles this one (one-shot
      // mode), or go on after the multishot ended (ENOBUFS, our backpressure cancel).
      st->rearm_or_fail();
    }
    if (st->waiter && st->ready()) st->resume_waiter();
  }

  io_context* ctx;
  int fd;
  std::uint32_t generation;  // the socket's cancel generation (socket::cancel_generation)
  buffer_ring* ring;
  unsigned max_queued;
  bool multishot;
  std::chrono::nanoseconds idle;
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  struct timer_completion : completion {
    recv_stream_state* owner;
  } timer{};
  kernel_timespec deadline{};  // LIFETIME: read by the kernel; lives as long as the state
  bool timer_armed = false;
  std::coroutine_handle<> waiter{};
  std::array<item, 16> queue{};
  unsigned head = 0, size = 0;
  std::vector<item> spill;
  std::unique_ptr<std::byte[]> fallback;
  int error = 0;
  bool eof = false, armed = false, cancel_pending = false, orphaned = false;
  bool oneshot_fallback = false, fallback_busy = false;
};

bool recv_next_op::await_ready() const noexcept {
  if (!st_->ready() && !st_->armed && st_->socket_cancelled()) st_->error = ECANCELED;
  return st_->ready();
}

void recv_next_op::await_suspend(std::coroutine_handle<> h) {
  if (!st_->armed) st_->arm();  // may throw: nothing is registered yet
  if (st_->idle.count() > 0 && !st_->timer_armed) st_->arm_timer(st_->last_activity + st_->idle);
  st_->waiter = h;
}

result<buffer> recv_next_op::await_resume_result() noexcept {
  if (st_->size > 0) return st_->take(st_->pop());
  if (st_->error) return errno_code(st_->error);
  return buffer{};  // EOF
}

buffer recv_next_op::await_resume() {
  result<buffer> r = await_resume_result();
  if (!r) throw_error(r.error(), "recv_stream");
  return std::move(*r);
}

}  // namespace detail

recv_stream::recv_stream(socket& s, buffer_ring& ring, recv_stream_options o)
    : st_(new detail::recv_stream_state(s.context(), s.fileno(), detail::ring_access::cancel_generation(s), ring,
                                        o)) {}

recv_stream::~recv_stream() {
  if (!st_) return;
  // Queued ring buffers go back now; the state itself lives on while the kernel or a
  // fallback buffer handle still refers to it.
  while (st_->size > 0) {
    auto it = st_->pop();
    if (!it.fallback) st_->ring->give_back(it.id);
    else st_->fallback_busy = false;
  }
  st_->orphaned = true;
  if (st_->armed) detail::ring_access::cancel(*st_->ctx, st_);
  if (st_->timer_armed) detail::ring_access::cancel(*st_->ctx, &st_->timer);
  if (st_->can_delete()) delete st_;
}

}  // namespace coring
