// SPDX-License-Identifier: MIT
// Description: unique_fd, an owned file descriptor of any kind.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <utility>

namespace coring {

/// An owned file descriptor (of any kind): closes it on destruction. Move-only.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  /// Takes ownership of fd (-1: empty).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  /// The descriptor, or -1.
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership. Returns: the descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the held descriptor (errors ignored) and takes fd.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

}  // namespace coring
