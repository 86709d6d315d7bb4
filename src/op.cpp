// SPDX-License-Identifier: MIT
// Description: pieces of the generic operation that need liburing: linked timeouts, deadlines.
#include <coring/detail/op.hpp>

#include "detail/ring.hpp"

#include <liburing.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define CORING_HAVE_VALGRIND 1
#endif

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace coring {
namespace {
void default_freed_buffer_handler(const char* op, const void* buffer, std::size_t size) {
  std::fprintf(stderr,
               "coring: the %zu-byte buffer at %p of a %s was freed while the kernel owned it; "
               "a buffer must outlive the co_await of its operation\n",
               size, buffer, op);
  std::abort();
}
std::atomic<freed_buffer_handler> freed_buffer_hook{&default_freed_buffer_handler};
}  // namespace

freed_buffer_handler set_freed_buffer_handler(freed_buffer_handler h) noexcept {
  return freed_buffer_hook.exchange(h ? h : &default_freed_buffer_handler);
}

}  // namespace coring

namespace coring::detail {

void link_timeout(io_context& ctx, io_uring_sqe& sqe, const kernel_timespec& deadline) noexcept {
  static_assert(sizeof(kernel_timespec) == sizeof(__kernel_timespec));
  sqe.flags |= IOSQE_IO_LINK;
  // acquire_sqe(2) reserved this one; it cannot fail.
  io_uring_sqe& t = ring_access::acquire_sqe(ctx);
  // LIFETIME: the kernel copies the timespec at prep time, but it lives in the op anyway.
  io_uring_prep_link_timeout(
      &t, const_cast<__kernel_timespec*>(reinterpret_cast<const __kernel_timespec*>(&deadline)),
      IORING_TIMEOUT_ABS);
  io_uring_sqe_set_data64(&t, 0);  // its CQE (-ETIME or -ECANCELED) is ignored
  // Issue 14: so skip it where the kernel can (a disarmed timeout then posts none).
  if (ring_access::native(ctx).features.cqe_skip_used) t.flags |= IOSQE_CQE_SKIP_SUCCESS;
  ++ring_access::native(ctx).timeouts_submitted;
}

void kernel_wrote(const void* p, std::size_t n) noexcept {
#ifdef CORING_HAVE_VALGRIND
  if (n > 0) (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
  (void)p;
  (void)n;
#endif
}

void report_freed_buffer(const char* op, const void* buffer, std::size_t size) noexcept {
  freed_buffer_hook.load()(op, buffer, size);
}

kernel_timespec deadline_after(std::chrono::nanoseconds d) noexcept {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (d.count() < 0) d = std::chrono::nanoseconds(0);
  long long ns = now.tv_nsec + d.count() % 1'000'000'000;
  std::int64_t s = now.tv_sec + d.count() / 1'000'000'000 + ns / 1'000'000'000;
  return {s, ns % 1'000'000'000};
}

}  // namespace coring::detail
