// SPDX-License-Identifier: MIT
// Description: sleep_for / sleep_until: IORING_OP_TIMEOUT on an absolute CLOCK_MONOTONIC time.
#include <coring/timer.hpp>

#include <liburing.h>

#include <cerrno>

namespace coring::detail {

void sleep_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_timeout(&sqe, reinterpret_cast<__kernel_timespec*>(&when_), 0, IORING_TIMEOUT_ABS);
}

result<void> sleep_op::complete(int res, std::uint32_t) noexcept {
  if (res == -ETIME || res >= 0) return {};
  return errno_code(-res);
}

kernel_timespec to_kernel_timespec(std::chrono::steady_clock::time_point t) noexcept {
  // steady_clock is CLOCK_MONOTONIC on Linux (libstdc++ and libc++).
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  if (ns < 0) ns = 0;
  return {ns / 1'000'000'000, ns % 1'000'000'000};
}

}  // namespace coring::detail
