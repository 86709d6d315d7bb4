// SPDX-License-Identifier: MIT
// Description: buffer_ring: registration (liburing 2.3 has no io_uring_setup_buf_ring), and
// handing buffers out and back.
#include <coring/buffer_ring.hpp>

#include <coring/detail/ring_access.hpp>
#include <coring/error.hpp>

#include "detail/ring.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <stdexcept>

#include <sys/mman.h>
#include <unistd.h>

namespace coring {

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
  if (int ret = impl.register_buf_ring(reg); ret < 0) {
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
  detail::ring_access::native(*ctx_).unregister_buf_ring(group_);
  std::free(ring_mem_);
  ::munmap(storage_, std::size_t(count_) * size_);
}

buffer buffer_ring::take(std::uint16_t id, std::size_t len) noexcept {
  return buffer(&buffer_ring::give_back_fn, this, id,
                std::span(storage_ + std::size_t(id) * size_, len));
}

void buffer_ring::give_back(std::uint16_t id) noexcept {
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem_);
  io_uring_buf_ring_add(br, storage_ + std::size_t(id) * size_, size_, id,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br, 1);
  ++available_;
}

}  // namespace coring
