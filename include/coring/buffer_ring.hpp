// SPDX-License-Identifier: MIT
// Description: provided-buffer ring (io_uring buf ring) and buffer, the handle that returns
// a received buffer to its ring.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

namespace coring {

class buffer_ring;
namespace detail {
class recv_stream_state;
struct buffer_returns;
}  // namespace detail

/// A received buffer. Move-only; gives its storage back (to its buffer_ring, or to the
/// recv_stream's private fallback buffer) when destroyed or reset(). An empty buffer
/// (`!b`) means end of stream.
/// Note: the bytes stay valid until the handle is destroyed or reset; the owner (ring or
/// stream) must outlive the handle.
class buffer {
 public:
  /// Gives buffer id back to owner.
  using release_fn = void (*)(void* owner, std::uint16_t id) noexcept;

  /// An empty buffer (end of stream).
  buffer() noexcept = default;
  /// Wraps data, which fn(owner, id) gives back (for coring's receivers).
  buffer(release_fn fn, void* owner, std::uint16_t id, std::span<std::byte> data) noexcept
      : fn_(fn), owner_(owner), id_(id), data_(data) {}
  buffer(buffer&& o) noexcept
      : fn_(std::exchange(o.fn_, nullptr)), owner_(o.owner_), id_(o.id_),
        data_(std::exchange(o.data_, {})) {}
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      reset();
      fn_ = std::exchange(o.fn_, nullptr);
      owner_ = o.owner_;
      id_ = o.id_;
      data_ = std::exchange(o.data_, {});
    }
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  /// The received bytes.
  std::span<std::byte> data() const noexcept { return data_; }
  /// The number of received bytes.
  std::size_t size() const noexcept { return data_.size(); }
  /// True for the end-of-stream marker (no bytes).
  bool empty() const noexcept { return data_.empty(); }
  /// False for the end-of-stream marker.
  explicit operator bool() const noexcept { return !data_.empty(); }
  /// Gives the storage back now (like unique_ptr::reset); the handle becomes empty.
  void reset() noexcept {
    if (fn_) std::exchange(fn_, nullptr)(owner_, id_);
    data_ = {};
  }

 private:
  release_fn fn_ = nullptr;
  void* owner_ = nullptr;
  std::uint16_t id_ = 0;
  std::span<std::byte> data_{};
};

/// A ring of `count` buffers of `size` bytes registered with the kernel (IORING_REGISTER_PBUF_RING,
/// Linux 5.19+) from which multishot receives pick a buffer only when data arrives: an idle
/// connection holds no buffer at all.
/// Issue 14: where the kernel has them (ring_features::pbuf_inc, Linux 6.12+), the buffers are
/// consumed incrementally: a reception takes only the bytes it needs from the buffer at the
/// ring's head, and the next reception (of any stream sharing the ring) goes on where it
/// stopped, so many small messages share one buffer instead of taking one each.
/// Note (who owns which bytes until when): the kernel owns a buffer from the moment it is
/// added to the ring until it moves past it (for an incremental ring: a completion without
/// IORING_CQE_F_BUF_MORE; otherwise the completion that filled it). Each received piece is then
/// the consumer's, through its buffer handle (or the recv_stream queue holding it), until that
/// handle is reset or destroyed. A buffer goes back to the ring only when the kernel moved past
/// it and every handle into it was released; so with an incremental ring, a handle held long
/// keeps the whole buffer (shared with other connections' pieces) out of the ring.
/// Note: must outlive every recv_stream and buffer that uses it, including the final completion
/// of a stream destroyed while receiving (let the io_context drain first, or destroy the ring
/// after it); not thread-safe (ring thread).
class buffer_ring {
 public:
  /// Registers count (a power of two, at most 32768) buffers of size bytes, for incremental
  /// consumption if ring_features::pbuf_inc (falling back to plain buffers if refused).
  /// Throws: std::system_error(errc::not_supported) before Linux 5.19; errno of the
  /// registration; std::invalid_argument for a bad count or size; std::bad_alloc.
  buffer_ring(io_context& ctx, unsigned count = 1024, unsigned size = 4096);
  ~buffer_ring();
  buffer_ring(const buffer_ring&) = delete;
  buffer_ring& operator=(const buffer_ring&) = delete;

  /// The context the ring is registered with.
  io_context& context() const noexcept { return *ctx_; }
  /// The buffer group id to put in SQEs (IOSQE_BUFFER_SELECT).
  std::uint16_t group() const noexcept { return group_; }
  /// The number of buffers.
  unsigned count() const noexcept { return count_; }
  /// The size of each buffer in bytes.
  unsigned buffer_size() const noexcept { return size_; }
  /// Buffers in the kernel's hands that no handle or queued piece refers to (free for the next
  /// reception; with an incremental ring, possibly partly filled already).
  unsigned available() const noexcept { return available_; }
  /// True if the buffers are consumed incrementally (IOU_PBUF_RING_INC in effect).
  bool incremental() const noexcept { return incremental_; }
  /// Completions so far that filled more than one buffer (recv bundles), for tests and tuning.
  std::uint64_t bundled_completions() const noexcept { return bundled_; }

 private:
  friend class detail::recv_stream_state;  // the ring-facing calls below
  friend struct detail::buffer_returns;    // issue 14: publishes batched returns

  /// Bytes [offset, offset + len) of buffer id: what one reception put there.
  struct piece {
    std::uint16_t id = 0;
    std::uint32_t offset = 0, len = 0;
  };
  /// Walks the buffers one completion filled (several for a bundle).
  struct cqe_cursor {
    std::uint32_t slot = 0;       // ring slot of the next buffer
    std::uint32_t remaining = 0;  // bytes not yet walked
    bool buf_more = false;        // IORING_CQE_F_BUF_MORE: the kernel keeps the last buffer
  };
  /// Per buffer id: where its next bytes go, who refers to it, where it sits in the ring.
  struct buffer_state {
    std::uint32_t offset = 0;  // bytes of it the kernel has filled (incremental)
    std::uint32_t views = 0;   // pieces of it handed out or queued
    std::uint32_t slot = 0;    // ring slot it was last added at
    bool in_kernel = false;    // the kernel has not moved past it yet
  };

  /// Starts walking a completion that carried buffer id and res > 0 bytes.
  cqe_cursor begin(std::uint16_t id, std::uint32_t res, bool buf_more) noexcept {
    if (res > size_ - state_[id].offset) ++bundled_;
    return {state_[id].slot, res, buf_more};
  }
  /// The next piece of c (c.remaining > 0); counts it as a view of its buffer and records
  /// the buffers the kernel is done with. A zero-length piece ends c (the kernel's count
  /// disagrees).
  piece next(cqe_cursor& c) noexcept;
  /// A completion carried buffer id but no data (res <= 0, axboe/liburing#359): the buffer
  /// goes back unless the kernel kept it (incremental ring, or a bundle: no data, no buffer).
  void empty_completion(std::uint16_t id, bool bundle) noexcept;
  /// Wraps piece p (after next()) in a handle that releases it.
  buffer take(piece p) noexcept;
  /// Drops one view of buffer id (a handle or a disposed piece); the last one of a buffer the
  /// kernel is done with gives it back.
  void release(std::uint16_t id) noexcept;
  static void release_fn(void* self, std::uint16_t id) noexcept {
    static_cast<buffer_ring*>(self)->release(id);
  }
  /// Gives buffer id (whole) to the kernel: now, or (batched returns) at the loop's next
  /// publish.
  void add(std::uint16_t id, bool now = false) noexcept;

  io_context* ctx_;
  void* ring_mem_ = nullptr;  // struct io_uring_buf_ring, page aligned
  // count x size bytes, an anonymous mapping: pages are taken from the system only when the
  // kernel first fills a buffer there (not touched by malloc debugging either).
  std::byte* storage_ = nullptr;
  std::unique_ptr<buffer_state[]> state_;     // count entries
  std::unique_ptr<std::uint16_t[]> slot_id_;  // ring slot -> the buffer id added there
  std::uint64_t bundled_ = 0;
  unsigned count_, size_;
  unsigned available_ = 0;
  std::uint16_t tail_ = 0;  // the ring's tail as we advanced it (published or not)
  std::uint16_t group_;
  // Issue 14: batched returns. Buffers given back since the last publish (added behind the
  // tail the kernel sees), and the next ring on the context's list of rings that have some.
  unsigned unpublished_ = 0;
  buffer_ring* next_dirty_ = nullptr;
  bool incremental_ = false;
};

}  // namespace coring
