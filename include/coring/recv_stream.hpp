// SPDX-License-Identifier: MIT
// Description: recv_stream: multishot recv into a provided-buffer ring, consumed one buffer at
// a time, with backpressure and a fallback that never loses data.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/buffer_ring.hpp>
#include <coring/detail/stream_ops.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <chrono>
#include <utility>

namespace coring {

class socket;

/// How a recv_stream receives.
struct recv_stream_options {
  /// Buffers received ahead of the consumer (1 to 16). Together with the buffers the consumer
  /// holds, this bounds what one connection takes from the shared ring (docs/design.md,
  /// "Buffer rings and backpressure").
  unsigned max_queued = 2;
  /// Keep one multishot recv (Linux 6.0+) armed instead of one recv per buffer. Saves an SQE
  /// per reception, but the kernel fills buffers in bursts while data is queued in the socket
  /// (one slow consumer can empty the ring before its backpressure cancel lands): for peers
  /// that do not send far ahead of what they read.
  bool multishot = false;
  /// If non-zero: a stream that receives nothing for this long ends with ETIMEDOUT
  /// (std::errc::timed_out) from next(). One timer per stream, re-armed lazily.
  std::chrono::nanoseconds idle_timeout{0};
};

/// The receptions of one connected socket as a stream of buffers picked from a provided-buffer
/// ring: the kernel takes a buffer only when data arrives, so an idle connection holds none.
/// Usage (C++20 has no `for co_await`):
/// ```
/// coring::recv_stream rx(sock, ring);
/// while (coring::buffer b = co_await rx.next()) co_await sock.send_all(b.data());
/// ```
/// Backpressure: at most max_queued received buffers wait in the stream; then receiving stops
/// (a multishot is cancelled) and data waits in the kernel's socket buffer, not in the ring,
/// until the consumer catches up. When the ring runs low (fewer than count/16 free) or is empty
/// (ENOBUFS), or the kernel lacks buffer rings, the stream falls back to a plain recv into a
/// private buffer of the ring's buffer size, allocated once on first need: no data is lost and
/// every connection keeps making progress.
/// Issue 14: where the kernel has them (ring_features::recv_bundle, pbuf_inc), one reception
/// may fill several ring buffers (a bundle: next() hands them out one by one, in order), and
/// an incremental ring gives each reception only the bytes it needs, so a buffer handed out
/// may be a piece of a ring buffer whose other pieces belong to other receptions or streams.
/// Neither changes what next() returns: a view of received bytes, in order.
/// Note (who owns which bytes until when): a buffer handed out owns its bytes until it is reset
/// or destroyed; nothing else writes them meanwhile (the kernel writes into a ring buffer only
/// before it hands out the bytes, and only after them). A queued buffer the stream owns until
/// next() hands it out, or the stream's destruction gives it back. With a bundle in flight,
/// backpressure may overshoot max_queued by the buffers of that one completion (a one-shot
/// receive is capped to the queue's room; a multishot one by what the socket had queued).
/// Note: the socket and the ring must outlive the stream, and the stream every next() awaited
/// on it. Buffers from the ring may outlive the stream; the private fallback buffer stays
/// allocated until both the stream and the buffer handle using it are gone. Only one coroutine
/// may await next() at a time.
class recv_stream {
 public:
  /// Starts nothing yet: the first next() arms the first reception.
  recv_stream(socket& s, buffer_ring& ring, recv_stream_options opts = {});
  /// Cancels the armed multishot (if any); its final completion frees the state later.
  ~recv_stream();
  recv_stream(recv_stream&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  recv_stream& operator=(recv_stream&&) = delete;
  recv_stream(const recv_stream&) = delete;

  /// Waits for the next received data. `.with_timeout(d)` and `.with_stop(tok)` bound this
  /// wait only: the stream goes on, and data received after the wait ended is handed to the
  /// next next().
  /// Returns: a buffer holding at least one byte; an empty buffer once the peer has shut down
  /// and everything was read. Throws: std::system_error (errno, e.g. ECONNRESET;
  /// operation_canceled after socket::cancel() or a stop request; timed_out after the idle
  /// timeout, which ends the stream, or after this wait's deadline, which does not).
  [[nodiscard]] detail::recv_next_op next() noexcept { return detail::recv_next_op(st_); }

 private:
  detail::multishot_core* st_;
};

}  // namespace coring
