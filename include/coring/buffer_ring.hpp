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
/// Note: must outlive every recv_stream and buffer that uses it, including the final completion
/// of a stream destroyed while receiving (let the io_context drain first, or destroy the ring
/// after it); not thread-safe (ring thread).
class buffer_ring {
 public:
  /// Registers count (a power of two, at most 32768) buffers of size bytes.
  /// Throws: std::system_error(errc::not_supported) before Linux 5.19; errno of the
  /// registration; std::invalid_argument for a bad count or size.
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
  /// Buffers currently in the kernel's hands (free for the next reception).
  unsigned available() const noexcept { return available_; }

 private:
  friend class detail::recv_stream_state;  // the ring-facing calls below
  friend struct detail::buffer_returns;    // issue 14: publishes batched returns

  /// Records that the kernel filled a buffer (a CQE carried IORING_CQE_F_BUFFER).
  void consumed() noexcept { --available_; }
  /// Wraps buffer id holding len bytes (after consumed()) in a handle that gives it back.
  buffer take(std::uint16_t id, std::size_t len) noexcept;
  /// Returns buffer id to the kernel.
  void give_back(std::uint16_t id) noexcept;
  static void give_back_fn(void* self, std::uint16_t id) noexcept {
    static_cast<buffer_ring*>(self)->give_back(id);
  }

  io_context* ctx_;
  void* ring_mem_ = nullptr;  // struct io_uring_buf_ring, page aligned
  // count x size bytes, an anonymous mapping: pages are taken from the system only when the
  // kernel first fills a buffer there (not touched by malloc debugging either).
  std::byte* storage_ = nullptr;
  unsigned count_, size_;
  unsigned available_ = 0;
  std::uint16_t group_;
  // Issue 14: batched returns. Buffers given back since the last publish (added behind the
  // tail the kernel sees), and the next ring on the context's list of rings that have some.
  unsigned unpublished_ = 0;
  buffer_ring* next_dirty_ = nullptr;
};

}  // namespace coring
