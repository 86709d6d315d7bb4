// SPDX-License-Identifier: MIT
// Description: private: tells valgrind what the kernel wrote through io_uring, which it cannot see
// (docs/design.md, "Sanitizers and the kernel's writes"). Without valgrind headers at build time, or outside valgrind, it costs a
// few instructions.
#pragma once

#include <algorithm>
#include <cstddef>

#include <sys/uio.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define CORING_HAVE_VALGRIND 1
#endif

namespace coring::detail {

/// The kernel filled n bytes at p (a completed receive): valgrind must treat them as defined.
inline void kernel_wrote(const void* p, std::size_t n) noexcept {
#ifdef CORING_HAVE_VALGRIND
  if (n > 0) (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
  (void)p;
  (void)n;
#endif
}

/// The kernel scattered bytes over the first iovecs of iov (recvmsg).
inline void kernel_wrote(const iovec* iov, std::size_t count, std::size_t bytes) noexcept {
  for (std::size_t i = 0; i < count && bytes > 0; ++i) {
    std::size_t n = std::min(bytes, iov[i].iov_len);
    kernel_wrote(iov[i].iov_base, n);
    bytes -= n;
  }
}

}  // namespace coring::detail
