// SPDX-License-Identifier: MIT
// Description: signal_wait_op, the operation behind signal_set::wait (src/signal.cpp).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>

#include <array>
#include <cstdint>

namespace coring {

namespace detail {
/// co_await set.wait(): IORING_OP_READ of one signalfd_siginfo.
class signal_wait_op : public io_op<signal_wait_op, int> {
 public:
  static constexpr const char* name = "wait_signal";
  signal_wait_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  void prep(io_uring_sqe& sqe) noexcept;
  result<int> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  alignas(8) std::array<unsigned char, 128> info_{};  // struct signalfd_siginfo
};
}  // namespace detail

}  // namespace coring
