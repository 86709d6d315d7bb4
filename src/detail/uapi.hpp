// SPDX-License-Identifier: MIT
// Description: private: io_uring uapi constants and structures newer than liburing 2.3's
// headers, each under a guard so that a newer liburing's own definition wins.
#pragma once

#include <liburing.h>

#include <cstdint>

// Issue 14: the minimum wait time of Linux 6.12 (io_context's batched_wait, min_wait policy).
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

namespace coring::detail {
/// Issue 14: struct io_uring_getevents_arg as of Linux 6.12, where liburing 2.3's `pad` became
/// min_wait_usec (the enter's IORING_ENTER_EXT_ARG argument).
struct getevents_arg_v612 {
  std::uint64_t sigmask;
  std::uint32_t sigmask_sz;
  std::uint32_t min_wait_usec;
  std::uint64_t ts;
};
static_assert(sizeof(getevents_arg_v612) == sizeof(io_uring_getevents_arg));
}  // namespace coring::detail

// ---- Issue 14: recv bundles and incremental buffer consumption ----

/// Linux 6.10: params.features bit saying that recv/send take IORING_RECVSEND_BUNDLE.
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

/// Linux 6.10: sqe->ioprio flag of a buffer-select recv: one completion may fill several
/// consecutive ring buffers (res: the total; the buffer id: the first).
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif

/// Linux 6.12: io_uring_buf_reg flag: buffers are consumed incrementally (many receptions
/// share one buffer, each one continuing where the last stopped).
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif

/// Linux 6.12: CQE flag of an incremental ring: the kernel goes on using the buffer.
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
