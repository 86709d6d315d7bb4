// SPDX-License-Identifier: MIT
// Description: buffer_ring: registration (liburing 2.3 has no io_uring_setup_buf_ring; plain or
// incremental), and handing buffers, or pieces of them, out and back.
#include <coring/buffer_ring.hpp>

#include <coring/detail/ring_access.hpp>
#include <coring/error.hpp>

#include "detail/ring.hpp"
#include "detail/uapi.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include <sys/mman.h>
#include <unistd.h>

namespace coring {

namespace {
// liburing 2.3 calls io_uring_buf_reg's flags field (Linux 6.12) "pad"; newer ones "flags".
void set_reg_flags(io_uring_buf_reg& reg, std::uint16_t flags) noexcept {
  static_assert(sizeof(io_uring_buf_reg) == 40 && offsetof(io_uring_buf_reg, bgid) == 12);
  std::memcpy(reinterpret_cast<unsigned char*>(&reg) + 14, &flags, sizeof flags);
}
}  // namespace

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
  try {
    state_ = std::make_unique<buffer_state[]>(count);
    slot_id_ = std::make_unique<std::uint16_t[]>(count);
  } catch (...) {
    std::free(ring_mem_);
    ::munmap(storage_, std::size_t(count) * size);
    throw;
  }
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem_);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(br);
  reg.ring_entries = count;
  reg.bgid = group_;
  int ret = -EINVAL;
  if (ctx.features().pbuf_inc) {
    set_reg_flags(reg, IOU_PBUF_RING_INC);
    ret = impl.register_buf_ring(reg);
    incremental_ = ret == 0;
    // Refused (a kernel that lacks it after all): plain buffers, here and in later rings.
    if (ret == -EINVAL) impl.features.pbuf_inc = false;
    set_reg_flags(reg, 0);
  }
  if (!incremental_) ret = impl.register_buf_ring(reg);
  if (ret < 0) {
    std::free(ring_mem_);
    ::munmap(storage_, std::size_t(count) * size);
    throw_errno(-ret, "io_uring_register_buf_ring");
  }
  for (unsigned i = 0; i < count; ++i)
    add(static_cast<std::uint16_t>(i), true);
}

buffer_ring::~buffer_ring() {
  // Issue 14: off the context's list of rings with returns to publish.
  auto& impl = detail::ring_access::native(*ctx_);
  for (buffer_ring** p = &impl.dirty_rings; *p; p = &(*p)->next_dirty_)
    if (*p == this) {
      *p = next_dirty_;
      break;
    }
  impl.unregister_buf_ring(group_);
  std::free(ring_mem_);
  ::munmap(storage_, std::size_t(count_) * size_);
}

buffer_ring::piece buffer_ring::next(cqe_cursor& c) noexcept {
  const std::uint16_t id = slot_id_[c.slot];
  buffer_state& st = state_[id];
  const std::uint32_t n = std::min(c.remaining, size_ - st.offset);
  if (n == 0) {  // never with a consistent kernel: stop rather than loop
    c.remaining = 0;
    return {id, st.offset, 0};
  }
  const piece p{id, st.offset, n};
  c.remaining -= n;
  c.slot = (c.slot + 1) & (count_ - 1);
  if (st.views++ == 0) --available_;
  if (incremental_) st.offset += n;
  // Every buffer but the last of a bundle is full; the last stays the kernel's only if it
  // said so (incremental: IORING_CQE_F_BUF_MORE).
  if (c.remaining != 0 || !(incremental_ && c.buf_more)) st.in_kernel = false;
  return p;
}

void buffer_ring::empty_completion(std::uint16_t id, bool bundle) noexcept {
  // Incremental: no bytes consumed, the kernel did not move past it (a kernel without
  // 3ecd3e03144b omits F_BUF_MORE here, but leaves the buffer at the head all the same).
  // Bundle: "no data is always zero segments" (io_bundle_nbufs), the head did not move.
  if (incremental_ || bundle || state_[id].views != 0) return;
  --available_;  // add() counts it again
  add(id);
}

buffer buffer_ring::take(piece p) noexcept {
  return buffer(&buffer_ring::release_fn, this, p.id,
                std::span(storage_ + std::size_t(p.id) * size_ + p.offset, p.len));
}

void buffer_ring::release(std::uint16_t id) noexcept {
  buffer_state& st = state_[id];
  if (--st.views != 0) return;
  if (st.in_kernel)
    ++available_;  // incremental: the kernel goes on filling it
  else
    add(id);
}

void buffer_ring::add(std::uint16_t id, bool now) noexcept {
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem_);
  auto& impl = detail::ring_access::native(*ctx_);
  // tail_ counts every add, published or not: the slot the kernel will find this one at.
  const std::uint32_t slot = tail_ & (count_ - 1);
  ++tail_;
  state_[id] = {0, 0, slot, true};
  slot_id_[slot] = id;
  ++available_;
  if (now || !impl.features.batched_buf_returns) {
    io_uring_buf_ring_add(br, storage_ + std::size_t(id) * size_, size_, id,
                          io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br, 1);
    return;
  }
  // Issue 14: behind the tail the kernel sees; the loop publishes them all before it enters.
  io_uring_buf_ring_add(br, storage_ + std::size_t(id) * size_, size_, id,
                        io_uring_buf_ring_mask(count_), static_cast<int>(unpublished_));
  if (unpublished_++ == 0) {
    next_dirty_ = impl.dirty_rings;
    impl.dirty_rings = this;
  }
}

void detail::buffer_returns::publish(io_context& ctx) noexcept {
  auto& impl = detail::ring_access::native(ctx);
  while (buffer_ring* r = impl.dirty_rings) {
    impl.dirty_rings = r->next_dirty_;
    r->next_dirty_ = nullptr;
    io_uring_buf_ring_advance(static_cast<io_uring_buf_ring*>(r->ring_mem_),
                              static_cast<int>(r->unpublished_));
    r->unpublished_ = 0;
  }
}

}  // namespace coring
