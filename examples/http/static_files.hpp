// SPDX-License-Identifier: MIT
// Description: the static-file module of http_server (--root): answers GET and HEAD from a
// directory, never from outside it (openat2 RESOLVE_BENEATH), with ranges and Last-Modified.
#pragma once

#include "parser.hpp"

#include <coring/coring.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

namespace http {

/// Serves the files under one root directory. Paths are percent-decoded and opened with
/// coring::file::open_beneath from the root, so `..`, `%2e%2e`, absolute paths and symlinks that
/// leave the root are refused by the kernel (404), and only regular files are sent. A directory
/// target ending in `/` serves its index.html (404 without one); without the `/` it answers 301
/// to the same path plus `/`, as nginx does.
/// Note: holds only the root's descriptor and reads it from the socket's context, so one instance
/// may serve connections of several threads (io_contexts); it must outlive every serve() call.
class static_files {
 public:
  /// Opens root (must be a directory; synchronous, at startup). Throws: std::system_error.
  static_files(coring::io_context& ctx, const std::string& root);

  /// How a body over small_file_bytes goes out: sendfile(2) (coring::send_file, the default),
  /// read into a buffer + send, or splice through a pipe (send_file with a pipe); the last two
  /// are kept for comparison.
  enum class body_method { sendfile, read_send, splice };

  /// Bounds of one response.
  struct options {
    /// The whole response (headers and body) must be sent within this time.
    std::chrono::milliseconds send_timeout{30000};
    /// A stop request ends a response being sent (the connection is then closed).
    std::stop_token stop;
    /// How bodies over small_file_bytes are sent (bench/README.md, "Sending files").
    body_method body = body_method::sendfile;
  };

  /// Per-connection state: reused buffers, and the pipe for splice (opened on first use).
  /// Note: one per connection, used by one serve() at a time.
  class connection {
   public:
    /// Empty: no pipe, no buffers yet.
    connection() = default;

   private:
    friend class static_files;
    coring::pipe pipe_;
    std::string path_;  // the decoded path, relative to the root
    std::string head_;  // the response head (and a small body)
  };

  /// Answers r (GET or HEAD; anything else gets 405) from the root and writes the whole response
  /// to s. common_headers are extra header lines ("Date: ...\r\nServer: coring\r\n") added to
  /// every response. Returns: true if the connection may stay open (r.keep_alive and nothing
  /// failed: a 400 or a failed or timed-out send returns false). Never throws for a client's
  /// error or a failed send; throws std::bad_alloc.
  /// Note: s, r (and the buffer its views point into), common_headers and c must stay valid until
  /// the task completes.
  coring::task<bool> serve(coring::socket& s, const request& r, std::string_view common_headers,
                           connection& c, const options& o);
#if CORING_HAS_TLS
  /// As serve() on a socket, over TLS: every body is read into a buffer and sent through s
  /// (o.body does not apply: sendfile and splice cannot encrypt), at most read_chunk_bytes at a
  /// time. Returns/Note: as above.
  coring::task<bool> serve(coring::tls::stream& s, const request& r,
                           std::string_view common_headers, connection& c, const options& o);
#endif

  /// Bodies up to this size are read into the connection's buffer after the head and sent with
  /// it in one send (the buffer keeps its capacity for the next request).
  static constexpr std::uint64_t small_file_bytes = 16 * 1024;
  /// With body_method::read_send, larger bodies are read and sent in pieces of this size (one
  /// buffer per response, freed after it): the memory a slow reader of a large file holds.
  static constexpr std::size_t read_chunk_bytes = 128 * 1024;

 private:
  template <class Stream>
  coring::task<bool> serve_on(Stream& s, const request& r, std::string_view common_headers,
                              connection& c, const options& o);
  coring::file root_;
};

/// The Content-Type for a file name, by extension (html, css, js, json, txt, png, jpg, gif, svg,
/// ico, wasm, pdf; application/octet-stream otherwise).
std::string_view content_type_for(std::string_view name) noexcept;

/// Formats t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 section 5.6.7).
std::string http_date(std::chrono::system_clock::time_point t);

/// Parses an IMF-fixdate. Returns: the time, or nothing if text is not one.
std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view text) noexcept;

/// Percent-decodes the path of a request target (origin-form or absolute-form; the query and
/// fragment are dropped) into out. Returns: false for an invalid escape, an encoded or raw NUL
/// byte, or a target that is not a path (then out is unspecified).
bool decode_target_path(std::string_view target, std::string& out);

/// A single byte range resolved against a size: [first, last], both inclusive.
struct byte_range {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};
/// What a Range header asks for.
enum class range_kind {
  none,           ///< no Range, or one to ignore (not bytes, invalid, several ranges): send all
  single,         ///< one satisfiable range: 206
  unsatisfiable,  ///< one range that starts past the end: 416
};
/// Parses a Range field value ("bytes=a-b", "bytes=a-", "bytes=-n") against size.
range_kind parse_range(std::string_view value, std::uint64_t size, byte_range& out) noexcept;

}  // namespace http
