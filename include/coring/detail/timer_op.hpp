// SPDX-License-Identifier: MIT
// Description: sleep_op, the operation behind sleep_for / sleep_until (prep in src/timer.cpp).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <cstdint>

namespace coring {

namespace detail {
/// co_await sleep_for(ctx, d): IORING_OP_TIMEOUT with an absolute CLOCK_MONOTONIC deadline.
class sleep_op : public io_op<sleep_op, void> {
 public:
  static constexpr const char* name = "sleep";
  sleep_op(io_context& ctx, kernel_timespec when) noexcept : io_op(ctx), when_(when) {}
  void prep(io_uring_sqe& sqe) noexcept;
  result<void> complete(int res, std::uint32_t flags) noexcept;

 private:
  kernel_timespec when_;  // LIFETIME: read by the kernel; lives in the op until completion
};
kernel_timespec to_kernel_timespec(std::chrono::steady_clock::time_point t) noexcept;
}  // namespace detail

}  // namespace coring
