// SPDX-License-Identifier: MIT
// Description: the operation types behind file's awaitable methods and coring::splice (prep and
// complete in src/file.cpp).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/op.hpp>
#include <coring/detail/socket_ops.hpp>  // bytes, const_bytes, close_op

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <linux/openat2.h>  // struct open_how, RESOLVE_*
#include <sys/stat.h>       // struct statx

namespace coring {

class file;

/// What file::stat() returns (statx: STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_MTIME).
struct file_status {
  std::uint64_t size = 0;                         ///< bytes
  std::chrono::system_clock::time_point mtime{};  ///< last modification (nanoseconds)
  std::uint32_t mode = 0;                         ///< st_mode: type and permission bits
  bool regular = false;                           ///< S_ISREG(mode)
  bool directory = false;                         ///< S_ISDIR(mode)
};

namespace detail {

/// A NUL-terminated copy of a path, kept in the operation until its final CQE (the kernel reads
/// it when the SQE is submitted, which is later than prep). Paths up to 127 bytes stay inline;
/// longer ones take one allocation (in the constructor, before anything is submitted).
class path_copy {
 public:
  /// Copies p. Throws: std::bad_alloc for a long path.
  explicit path_copy(std::string_view p);
  path_copy(path_copy&& o) noexcept;
  path_copy& operator=(path_copy&&) = delete;
  ~path_copy() = default;
  /// The NUL-terminated path (valid while this object lives and is not moved).
  const char* c_str() const noexcept { return heap_.empty() ? small_.data() : heap_.c_str(); }
  /// The path as given.
  std::string_view view() const noexcept { return {c_str(), size_}; }
  /// True if the path had a NUL byte in it (the kernel would silently cut it there).
  bool has_nul() const noexcept { return has_nul_; }

 private:
  std::array<char, 128> small_{};
  std::string heap_;
  std::size_t size_ = 0;
  bool has_nul_ = false;
};

/// co_await file::open(...) / file::open_beneath(...): IORING_OP_OPENAT or IORING_OP_OPENAT2
/// (with open_how.resolve), O_CLOEXEC always added.
class open_op : public io_op<open_op, file> {
 public:
  static constexpr const char* name = "open";
  /// resolve == 0: IORING_OP_OPENAT; otherwise IORING_OP_OPENAT2 with these RESOLVE_* flags.
  open_op(io_context& ctx, int dir_fd, std::string_view path, int flags, unsigned mode,
          std::uint64_t resolve);
  /// A path with a NUL byte completes at once with EINVAL; nothing is submitted.
  bool await_ready() const noexcept { return path_.has_nul(); }
  void prep(io_uring_sqe& sqe) noexcept;
  result<file> complete(int res, std::uint32_t flags) noexcept;
  /// Throws std::system_error(ec, "open PATH").
  [[noreturn]] void raise(std::error_code ec) const;

 private:
  int dir_fd_;
  open_how how_{};  // LIFETIME: read by the kernel at submission; lives in the op
  bool openat2_;
  path_copy path_;
};

/// co_await f.stat(): IORING_OP_STATX on the descriptor (AT_EMPTY_PATH).
class statx_op : public io_op<statx_op, file_status> {
 public:
  static constexpr const char* name = "statx";
  statx_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  void prep(io_uring_sqe& sqe) noexcept;
  result<file_status> complete(int res, std::uint32_t flags) noexcept;

 private:
  int fd_;
  struct statx stx_ {};  // LIFETIME: written by the kernel until the final CQE; lives in the op
};

/// co_await f.read(buf, offset): IORING_OP_READ; 0 at end of file.
class read_op : public fd_buffer_op<read_op, std::size_t, bytes> {
 public:
  static constexpr const char* name = "read";
  read_op(io_context& ctx, int fd, bytes buf, std::uint64_t offset) noexcept
      : fd_buffer_op(ctx, fd, buf, 0), offset_(offset) {}
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  std::uint64_t offset_;
};

/// co_await f.write(buf, offset): IORING_OP_WRITE; may be short.
class write_op : public fd_buffer_op<write_op, std::size_t, const_bytes> {
 public:
  static constexpr const char* name = "write";
  write_op(io_context& ctx, int fd, const_bytes buf, std::uint64_t offset) noexcept
      : fd_buffer_op(ctx, fd, buf, 0), offset_(offset) {}
  void prep(io_uring_sqe& sqe) noexcept;

 private:
  std::uint64_t offset_;
};

/// co_await coring::splice(...): IORING_OP_SPLICE (always run by an io-wq worker thread).
class splice_op : public io_op<splice_op, std::size_t> {
 public:
  static constexpr const char* name = "splice";
  splice_op(io_context& ctx, int fd_in, std::int64_t off_in, int fd_out, std::int64_t off_out,
            std::size_t len, unsigned flags) noexcept
      : io_op(ctx), fd_in_(fd_in), fd_out_(fd_out), off_in_(off_in), off_out_(off_out),
        len_(len > max_len ? max_len : static_cast<unsigned>(len)), flags_(flags) {}
  /// A zero length completes at once with 0.
  bool await_ready() const noexcept { return len_ == 0; }
  void prep(io_uring_sqe& sqe) noexcept;
  /// As io_op::complete; an interrupted splice (-ERESTARTSYS and kin) reads as cancelled.
  result<std::size_t> complete(int res, std::uint32_t flags) noexcept;

  /// The most one splice moves (the SQE's length is 32 bits).
  static constexpr unsigned max_len = 1U << 30;

 private:
  int fd_in_, fd_out_;
  std::int64_t off_in_, off_out_;
  unsigned len_;
  unsigned flags_;
};

}  // namespace detail
}  // namespace coring
