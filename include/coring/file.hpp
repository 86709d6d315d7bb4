// SPDX-License-Identifier: MIT
// Description: file, pipe, splice and send_file: files through the ring (open, statx, read,
// write, close) and moving file bytes to a socket without copying them through user space.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/file_ops.hpp>
#include <coring/io_context.hpp>
#include <coring/socket.hpp>
#include <coring/task.hpp>
#include <coring/unique_fd.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stop_token>
#include <string_view>
#include <utility>

#include <fcntl.h>

namespace coring {

/// A file descriptor bound to an io_context, whose operations run on the ring: a cold disk or a
/// slow open never blocks the loop. Every awaitable takes `.with_timeout(d)` and
/// `.with_stop(token)`, and `coring::as_result(op)` gives its non-throwing form, as for sockets.
/// Note: move-only; owns its descriptor. Operations hold the descriptor number, so the file must
/// outlive every operation awaited on it. Buffers are the caller's until the co_await completes.
class file {
 public:
  /// read/write at the file's current position instead of an offset (pipes, terminals).
  static constexpr std::uint64_t current_position = ~std::uint64_t{0};

  /// An empty file (fileno() == -1).
  file() noexcept = default;
  /// Adopts an open descriptor of any kind (a pipe end, a regular file); takes ownership.
  static file adopt(io_context& ctx, int fd) noexcept { return file(ctx, fd); }
  file(file&& o) noexcept : ctx_(o.ctx_), fd_(std::exchange(o.fd_, -1)) {}
  file& operator=(file&& o) noexcept;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  /// Closes the descriptor synchronously if still open (errors ignored: co_await close()).
  ~file();

  /// Opens path (relative to the working directory) with open(2) flags, O_CLOEXEC added; mode
  /// is used with O_CREAT/O_TMPFILE (IORING_OP_OPENAT). Returns: the open file.
  /// Throws: std::system_error (errno, "open PATH"; EINVAL for a path with a NUL byte).
  /// Note: the path is copied into the operation (no allocation up to 127 bytes); the caller's
  /// string may go as soon as this returns.
  [[nodiscard]] static detail::open_op open(io_context& ctx, std::string_view path, int flags,
                                            unsigned mode = 0) {
    return {ctx, AT_FDCWD, path, flags, mode, 0};
  }
  /// Opens path relative to the directory dir, and only beneath it (IORING_OP_OPENAT2 with
  /// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): an absolute path, a `..` that climbs out of dir,
  /// or a symlink that leads out of it fail with EXDEV; a symlink that stays inside is followed.
  /// O_CLOEXEC is added. Returns: the open file. Throws: std::system_error (errno, "open PATH").
  /// Note: path is copied as for open(); dir must stay open until the co_await completes.
  [[nodiscard]] static detail::open_op open_beneath(io_context& ctx, const file& dir,
                                                    std::string_view path, int flags,
                                                    unsigned mode = 0) {
    return {ctx, dir.fd_, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
  }

  /// The file's size, modification time and type (IORING_OP_STATX, AT_EMPTY_PATH).
  /// Returns: file_status. Throws: std::system_error (errno, "statx").
  [[nodiscard]] detail::statx_op stat() const noexcept { return {*ctx_, fd_}; }
  /// Reads up to buf.size() bytes at offset (current_position: at the file position).
  /// Returns: bytes read; 0 at end of file. Throws: std::system_error (errno, "read").
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::read_op read(std::span<std::byte> buf,
                                     std::uint64_t offset) const noexcept {
    return {*ctx_, fd_, buf, offset};
  }
  /// Writes up to buf.size() bytes at offset (current_position: at the file position).
  /// Returns: bytes written (may be short). Throws: std::system_error (errno, "write").
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::write_op write(std::span<const std::byte> buf,
                                       std::uint64_t offset) noexcept {
    return {*ctx_, fd_, buf, offset};
  }
  /// Closes the descriptor on the ring; the file is empty at once. Idempotent. Closed even if
  /// the operation is never awaited (synchronously, when it is destroyed).
  /// Throws: std::system_error (errno, "close").
  [[nodiscard]] detail::close_op close() noexcept { return {*ctx_, std::exchange(fd_, -1)}; }

  /// Releases ownership of the descriptor and returns it; the file becomes empty.
  [[nodiscard]] int detach() noexcept { return std::exchange(fd_, -1); }
  /// The descriptor, or -1 if empty.
  int fileno() const noexcept { return fd_; }
  /// True if the file holds a descriptor.
  bool is_open() const noexcept { return fd_ >= 0; }
  /// As is_open().
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// The context the file's operations run on (null for an empty default-constructed file).
  io_context* context() const noexcept { return ctx_; }

 private:
  friend class detail::open_op;
  file(io_context& ctx, int fd) noexcept : ctx_(&ctx), fd_(fd) {}

  io_context* ctx_ = nullptr;
  int fd_ = -1;
};

/// A pipe (pipe2, O_CLOEXEC, blocking ends: io_uring polls or punts them itself), the buffer
/// of a splice between a file and a socket. Move-only; owns both ends.
class pipe {
 public:
  /// An empty pipe (no descriptors).
  pipe() noexcept = default;
  /// Opens a pipe; a nonzero capacity asks F_SETPIPE_SZ for that many bytes (the kernel rounds
  /// up to a power of two pages; a refusal, e.g. over /proc/sys/fs/pipe-max-size, is ignored).
  /// Returns: the pipe. Throws: std::system_error (errno, "pipe2").
  static pipe open(std::size_t capacity = 0);
  /// The end to read from, or -1.
  int read_fd() const noexcept { return read_.get(); }
  /// The end to write to, or -1.
  int write_fd() const noexcept { return write_.get(); }
  /// The pipe's capacity in bytes (F_GETPIPE_SZ when opened; 0 when empty).
  std::size_t capacity() const noexcept { return capacity_; }
  /// True if both ends are open.
  explicit operator bool() const noexcept { return read_ && write_; }
  /// Closes both ends.
  void reset() noexcept;

 private:
  unique_fd read_, write_;
  std::size_t capacity_ = 0;
};

/// Moves up to len bytes from fd_in to fd_out, one of which must be a pipe (IORING_OP_SPLICE;
/// flags SPLICE_F_MOVE, SPLICE_F_MORE, ...). An offset of -1 means the descriptor's own position
/// (and must be -1 for a pipe or a socket); otherwise the data is read or written there.
/// Returns: bytes moved (0: end of input). Throws: std::system_error (errno, "splice").
/// Note: the kernel runs every splice in an io-wq worker thread, which blocks while the output
/// is full (a peer that does not read). Bound it with `.with_stop(tok)` (or coring::cancel_after):
/// the cancel signals the worker. `.with_timeout(d)` (a kernel linked timeout) does not interrupt
/// a splice already blocked in a worker (Linux 6.18: it never fires then); it only bounds one
/// that has not started.
[[nodiscard]] inline detail::splice_op splice(io_context& ctx, int fd_in, std::int64_t off_in,
                                              int fd_out, std::int64_t off_out, std::size_t len,
                                              unsigned flags = 0) noexcept {
  return {ctx, fd_in, off_in, fd_out, off_out, len, flags};
}

/// Bounds for send_file.
struct send_file_options {
  /// The whole transfer must end within this time from the call (zero: no deadline).
  std::chrono::milliseconds timeout{0};
  /// A stop request ends the transfer with operation_canceled.
  std::stop_token stop{};
};

/// Sends count bytes of f from offset to s with sendfile(2): the socket takes references to the
/// page-cache pages, no byte is copied through user space. sendfile runs in the loop's thread
/// with s made O_NONBLOCK for the duration of the call (its previous flags are restored when the
/// task ends, also on failure; the ring's own socket operations ignore O_NONBLOCK); while the
/// socket is full the task waits on the ring (s.poll(POLLOUT)), so a slow reader holds neither
/// the loop nor a thread. A cold disk does not block the loop either: before each chunk (up to
/// 1 MiB) a non-blocking 1-byte read (preadv2 RWF_NOWAIT) probes the chunk's first and last
/// page; if one is not cached, that chunk is read through the ring (file::read) into a 128 KiB
/// buffer made on that path only, and sent with send_all. A peer that went away gives EPIPE,
/// never SIGPIPE (blocked in the thread around each sendfile call, and taken back).
/// Returns: count. Throws: std::system_error: errc::timed_out after o.timeout,
/// operation_canceled on o.stop or after s.cancel(), errc::unexpected_eof if the file ends before
/// offset + count, or sendfile's/send's errno (EPIPE, ECONNRESET when the peer went away).
/// Note: s and f must stay valid until the task completes; synchronous calls on s from other
/// code see O_NONBLOCK meanwhile (ring operations do not care). A page evicted between the probe
/// and sendfile, or a cold page inside a chunk whose ends are cached, is read synchronously by
/// sendfile (rare).
[[nodiscard]] task<std::size_t> send_file(socket& s, const file& f, std::uint64_t offset,
                                          std::uint64_t count, send_file_options o = {});

/// As send_file above, by splice through the pipe p (file → pipe → socket, IORING_OP_SPLICE,
/// repeated): kept to compare (bench/README.md, "Sending files": every splice is a hand-off to
/// an io-wq worker thread). While the peer does not read, one worker thread stays blocked in
/// the kernel for this transfer, until o.timeout or o.stop.
/// Returns: count. Throws: as send_file, with the splice's errno.
/// Note: s, f and p must stay valid until the task completes. p must be empty when called; after
/// a failure it may hold bytes that were not sent, so send_file closes it (p.reset()): open a
/// new one before the next call.
[[nodiscard]] task<std::size_t> send_file(socket& s, const file& f, std::uint64_t offset,
                                          std::uint64_t count, pipe& p, send_file_options o = {});

}  // namespace coring
