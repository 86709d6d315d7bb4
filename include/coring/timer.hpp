// SPDX-License-Identifier: MIT
// Description: sleep_for / sleep_until on the ring (IORING_OP_TIMEOUT, CLOCK_MONOTONIC).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/timer_op.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <cstdint>

namespace coring {

/// Suspends the caller for d (steady clock). Throws: std::system_error(operation_canceled) if
/// cancelled through .with_stop(token) or by io_context teardown.
template <class Rep, class Period>
[[nodiscard]] detail::sleep_op sleep_for(io_context& ctx,
                                         std::chrono::duration<Rep, Period> d) noexcept {
  return {ctx, detail::deadline_after(std::chrono::duration_cast<std::chrono::nanoseconds>(d))};
}

/// Suspends the caller until t (steady clock). Throws: as sleep_for.
[[nodiscard]] inline detail::sleep_op sleep_until(
    io_context& ctx, std::chrono::steady_clock::time_point t) noexcept {
  return {ctx, detail::to_kernel_timespec(t)};
}

}  // namespace coring
