// SPDX-License-Identifier: MIT
// Description: ring_access, the door from coring's operation types to io_context's ring.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/completion.hpp>
#include <coring/io_context.hpp>

#include <cstdint>

namespace coring {
class socket;
}  // namespace coring

namespace coring::detail {

/// What an operation needs from its io_context, kept off io_context's public surface: SQEs,
/// user_data, cancels and the per-descriptor bookkeeping of sticky cancels. For coring's own
/// operation types (include/coring/detail/) and sources (src/); users never need it.
/// docs/design.md, "Operation lifetime" and "Cancellation", explain the rules behind each call.
struct ring_access {
  /// A free SQE, submitting first if the SQ is full; with n > 1, n consecutive SQEs (for linked
  /// operations: call again n - 1 times). Throws: std::system_error (errc::context_stopping
  /// once shutdown() started, or the io_uring_enter error).
  static io_uring_sqe& acquire_sqe(io_context& ctx, unsigned n = 1) { return ctx.acquire_sqe(n); }
  /// Puts c's address in sqe's user_data and counts c in flight until its final CQE.
  static void attach(io_context& ctx, io_uring_sqe& sqe, completion* c) noexcept {
    ctx.attach(sqe, c);
  }
  /// Best effort: asks the kernel to cancel the request whose user_data is c (multishot
  /// states; a cancel that finds nothing is not repeated).
  static void cancel(io_context& ctx, completion* c) noexcept { ctx.cancel(c); }
  /// Cancels the one-shot operation c until it ends: a cancel that finds nothing (-ENOENT)
  /// while c is in flight is repeated. Call cancel_done(n) at c's final CQE.
  static void cancel(io_context& ctx, cancel_node& n, completion* c) noexcept { ctx.cancel(n, c); }
  static void cancel_done(io_context& ctx, cancel_node& n) noexcept { ctx.cancel_done(n); }
  /// Cancels every operation on fd, for good (socket::cancel): cancel_generation(fd) changes.
  static void cancel_fd(io_context& ctx, int fd) noexcept { ctx.cancel_fd(fd); }
  /// How many times cancel_fd(fd) was called; socket operations snapshot it.
  static std::uint32_t cancel_generation(const io_context& ctx, int fd) noexcept {
    return ctx.cancel_generation(fd);
  }
  /// cancel_generation(s.context(), s.fileno()) when s was opened: s.cancel() was called since
  /// if the two differ.
  static std::uint32_t cancel_generation(const socket& s) noexcept;  // in socket.hpp
  /// A socket operation on fd was submitted / got its final CQE (for cancel_fd's retries).
  static void socket_op_started(io_context& ctx, int fd) noexcept { ctx.socket_op_started(fd); }
  static void socket_op_finished(io_context& ctx, int fd, std::uint32_t generation) noexcept {
    ctx.socket_op_finished(fd, generation);
  }
  /// Issue 15: fd is about to be closed, or was just opened, outside an operation (socket):
  /// the epoll backend forgets its registration. Never throws.
  static void fd_closing(io_context& ctx, int fd) noexcept { ctx.fd_closing(fd); }
  /// Queues n to run on ctx's thread (any thread; never allocates).
  static void post_remote(io_context& ctx, remote_node* n) noexcept { ctx.post_remote(n); }
  /// Hands e to ctx's exception handler.
  static void report_exception(io_context& ctx, std::exception_ptr e) noexcept {
    ctx.report_exception(std::move(e));
  }
  /// The private ring state (src/detail/ring.hpp), for coring's sources.
  static io_context::impl& native(io_context& ctx) noexcept { return ctx.native(); }
};

}  // namespace coring::detail
