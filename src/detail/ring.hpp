// SPDX-License-Identifier: MIT
// Description: private: the liburing ring inside io_context, and the test-only fault seam.
#pragma once

#include <coring/io_context.hpp>

#include <liburing.h>

namespace coring {

struct io_context::impl {
  io_uring ring{};
  ring_features features{};
  bool ring_ok = false;
  std::uint16_t next_buffer_group = 0;  // buffer_ring group ids handed out so far
  int wake_fd = -1;                     // eventfd other threads write to wake the loop
  bool wake_armed = false;              // a poll on wake_fd is in the ring
  bool wake_multishot = true;           // false after the kernel refused multishot poll
  /// Test seam: timer SQEs submitted (IORING_OP_TIMEOUT and linked timeouts), so that a test
  /// can tell a wait woken by an event from one that polls a timer (tests/test_scope.cpp).
  std::uint64_t timeouts_submitted = 0;
};

namespace detail {
/// Test seam: when non-zero, the next io_context construction fails as if io_uring_queue_init
/// returned -errno_value (ENOSYS, EPERM, ENOMEM). Costs one load at ring setup only.
void inject_ring_init_failure(int errno_value) noexcept;
/// Explains a ring setup failure: the cause and the fix, for errc::io_uring_unavailable.
std::string explain_ring_failure(int errno_value);
}  // namespace detail

}  // namespace coring
