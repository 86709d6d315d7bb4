// SPDX-License-Identifier: MIT
// Description: HTTP/1.1 request parser (RFC 9112) for the http_server example: no allocation,
// views into the caller's buffer, strict about what must be rejected.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace http {

/// Limits: a request line or a header block longer than these is rejected (414, 431).
inline constexpr std::size_t max_target_bytes = 8192;
inline constexpr std::size_t max_header_block_bytes = 8192;
inline constexpr std::size_t max_headers = 64;
/// Empty lines before a request line are skipped up to this many bytes (more: 400).
inline constexpr std::size_t max_leading_empty_bytes = 128;
/// A longer method is answered 501 without waiting for the rest of the line.
inline constexpr std::size_t max_method_bytes = 32;
/// parse_request decides (complete or error) within this many bytes: a receive buffer of this
/// size never has to grow for a request head.
inline constexpr std::size_t max_request_head_bytes =
    max_leading_empty_bytes + max_method_bytes + max_target_bytes + max_header_block_bytes + 64;

/// The methods the server knows; anything else that is a valid token is `unknown` (501).
enum class method { get, head, post, put, delete_, options, patch, trace, connect, unknown };

/// One header field; views into the parsed buffer (value without surrounding whitespace).
struct header {
  std::string_view name;
  std::string_view value;
};

/// How the request's body is framed (RFC 9112 section 6.3).
enum class body_framing { none, content_length, chunked };

/// A parsed request. Every view points into the buffer given to parse_request and is valid
/// only as long as that buffer's bytes are (until the caller consumes or moves them).
struct request {
  method verb = method::unknown;
  std::string_view method_text;
  std::string_view target;  // as sent (origin-form, absolute-form, ...), not decoded
  int minor_version = 1;    // HTTP/1.x
  std::array<header, max_headers> header_storage{};
  std::size_t header_count = 0;
  body_framing framing = body_framing::none;
  std::uint64_t content_length = 0;  // when framing == content_length
  bool keep_alive = true;        // HTTP/1.1 unless "Connection: close"; 1.0 only with keep-alive
  bool expect_continue = false;  // "Expect: 100-continue" in HTTP/1.1 (1.0: ignored)
  std::string_view host;         // the Host field's value, or empty
  std::string_view range;        // the Range field's value, or empty
  std::string_view if_modified_since;

  /// The header fields in order of arrival.
  std::span<const header> headers() const noexcept { return {header_storage.data(), header_count}; }
  /// The first field named `name` (ASCII case ignored), or nullptr.
  /// Note: points into header_storage (valid while this request is, and not re-parsed).
  const header* find_header(std::string_view name) const noexcept;
};

/// What parse_request found.
struct parse_result {
  enum class status { complete, incomplete, error };
  status state = status::incomplete;
  std::size_t consumed = 0;  // complete: bytes of request line + header block (incl. blank line)
  int error_status = 0;      // error: the response status (400, 414, 431, 501, 505)
  const char* reason = "";   // error: why, in a few words (for logs and tests)
};

/// Parses one request head (request line + header block) from the start of in.
/// Returns: complete (with consumed), incomplete (send more; nothing is kept between calls, the
/// caller calls again with the longer buffer), or error with the status to answer before closing:
/// 400 (bad syntax: bare CR, obs-fold, both Content-Length and Transfer-Encoding, differing
/// Content-Lengths, a Transfer-Encoding other than chunked last, missing Host in 1.1, ...),
/// 414 (target over max_target_bytes), 431 (header block over max_header_block_bytes or more than
/// max_headers fields), 501 (unknown method), 505 (HTTP version other than 1.0/1.1).
/// 414, 431 and 501 (a method over max_method_bytes) come as soon as the limit is passed, even
/// while the head is incomplete. A lone LF ends a line like CRLF; empty lines before the request
/// line are skipped (and counted in consumed). Feeding a request byte by byte gives the same
/// result. Note: out's views point into in; out is overwritten (partly) even when the result is not
/// complete.
parse_result parse_request(std::string_view in, request& out) noexcept;

/// Decodes a chunked body (RFC 9112 section 7.1) incrementally, trailers included (skipped).
/// Strict: every line ends in CRLF; whitespace only before a ";" extension; a chunk-size line
/// (extensions included) over 4096 bytes, trailers over max_header_block_bytes and control
/// bytes in either are errors. Keeps no pointer into the input between calls.
class chunked_decoder {
 public:
  /// One call's outcome: bytes of input used, the body bytes found (a view into the input),
  /// done after the last chunk and its trailers, error on a malformed chunk (answer 400, close).
  struct step {
    std::size_t consumed = 0;
    std::string_view data;
    bool done = false;
    bool error = false;
  };
  /// Feeds the next input bytes; returns at most one run of body data per call (call again with
  /// the rest of the input while consumed > 0 and not done). Chunk sizes over 2^60 are errors.
  step feed(std::string_view in) noexcept;

 private:
  static constexpr std::uint64_t max_chunk_size = std::uint64_t{1} << 60;
  static constexpr std::size_t max_chunk_line_bytes = 4096;  // chunk-size line with extensions
  enum class state {
    size,
    size_ws,
    size_ext,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer,
    trailer_lf,
    done,
    failed
  };
  state state_ = state::size;
  std::uint64_t remaining_ = 0;
  int size_digits_ = 0;
  std::size_t line_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;  // bounded by max_header_block_bytes
  bool trailer_line_empty_ = true;
};

}  // namespace http
