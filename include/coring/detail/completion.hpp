// SPDX-License-Identifier: MIT
// Description: completion, the object whose address travels in sqe->user_data.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/intrusive_list.hpp>

#include <cstdint>

struct io_uring_sqe;  // from <liburing.h>; only ever used by reference in public headers

namespace coring::detail {

/// Anything whose address is put in sqe->user_data. Standard layout, no virtuals: the run loop
/// calls fn_ with the CQE's result and flags. A multishot completion gets one call per CQE and
/// its last call is the one without IORING_CQE_F_MORE (detail::cqe_more()).
struct completion {
  using cqe_fn = void (*)(completion*, int res, std::uint32_t flags) noexcept;
  cqe_fn fn_;
};

/// An operation whose cancel was requested and whose own final CQE has not arrived: the
/// io_context keeps these on a list and cancels again if a cancel found nothing (the operation
/// was between two kernel attempts), so a cancel is never lost. Lives in the operation.
struct cancel_node {
  list_links<cancel_node> links;
  completion* target = nullptr;  // null: not on the list
  std::uint32_t id = 0;
  std::uint32_t attempts = 0;
};

/// Layout-compatible with struct __kernel_timespec (linked timeouts, IORING_OP_TIMEOUT).
struct kernel_timespec {
  std::int64_t tv_sec;
  long long tv_nsec;
};

/// CQE flags, spelled here because public headers do not include <liburing.h> (src/io_context.cpp
/// checks them against it).
inline constexpr std::uint32_t cqe_f_buffer = 1U << 0;  ///< IORING_CQE_F_BUFFER
inline constexpr std::uint32_t cqe_f_more = 1U << 1;    ///< IORING_CQE_F_MORE
inline constexpr std::uint32_t cqe_f_notif = 1U << 3;   ///< IORING_CQE_F_NOTIF (send_zc)

/// True if a CQE's flags say more CQEs will follow for the same request (IORING_CQE_F_MORE).
constexpr bool cqe_more(std::uint32_t flags) noexcept { return (flags & cqe_f_more) != 0; }

}  // namespace coring::detail
