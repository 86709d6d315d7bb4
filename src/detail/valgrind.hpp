// SPDX-License-Identifier: MIT
// Description: private: tells valgrind what the kernel wrote through io_uring, which it cannot see
// (docs/design.md, "Sanitizers and the kernel's writes"). Without valgrind headers at build time,
// or outside valgrind, it costs a few instructions.
#pragma once

#include <algorithm>
#include <cstddef>

#include <sys/uio.h>

#include <coring/detail/op.hpp>  // kernel_wrote(p, n), defined in src/op.cpp

namespace coring::detail {

/// The kernel scattered bytes over the first iovecs of iov (recvmsg).
inline void kernel_wrote(const iovec* iov, std::size_t count, std::size_t bytes) noexcept {
  for (std::size_t i = 0; i < count && bytes > 0; ++i) {
    std::size_t n = std::min(bytes, iov[i].iov_len);
    kernel_wrote(iov[i].iov_base, n);
    bytes -= n;
  }
}

}  // namespace coring::detail
