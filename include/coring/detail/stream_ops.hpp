// SPDX-License-Identifier: MIT
// Description: the waits behind acceptor::accept() and recv_stream::next() (src/acceptor.cpp,
// src/recv_stream.cpp), on the shared multishot core.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/buffer_ring.hpp>
#include <coring/detail/multishot.hpp>
#include <coring/error.hpp>
#include <coring/socket.hpp>

namespace coring::detail {

/// co_await acceptor.accept(); takes .with_timeout(d) and .with_stop(tok).
class accept_next_op : public multishot_op<accept_next_op, socket> {
 public:
  static constexpr const char* name = "accept";
  using multishot_op::multishot_op;
  /// The non-throwing form of await_resume (used by coring::as_result).
  result<socket> await_resume_result() noexcept;
};

/// co_await stream.next(); takes .with_timeout(d) and .with_stop(tok).
class recv_next_op : public multishot_op<recv_next_op, buffer> {
 public:
  static constexpr const char* name = "recv_stream";
  using multishot_op::multishot_op;
  /// The non-throwing form of await_resume (used by coring::as_result).
  result<buffer> await_resume_result() noexcept;
};

}  // namespace coring::detail
