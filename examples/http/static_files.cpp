// SPDX-License-Identifier: MIT
// Description: the static-file module of http_server: target decoding, openat2 beneath the root,
// statx, conditional and range requests, and the body by sendfile (or read + send, or splice).
#include "static_files.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <span>
#include <system_error>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace http {

namespace {

using namespace std::chrono_literals;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

bool parse_u64(std::string_view s, std::uint64_t& out) noexcept {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::string_view reason_of(int status) noexcept {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 416:
      return "Range Not Satisfiable";
    default:
      return "Internal Server Error";
  }
}

std::string_view header_value(const request& r, std::string_view name) noexcept {
  for (const header& h : r.headers())
    if (iequals(h.name, name)) return h.value;
  return {};
}

}  // namespace

std::string_view content_type_for(std::string_view name) noexcept {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 14> types{{
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
  }};
  const auto slash = name.rfind('/');
  const auto dot = name.rfind('.');
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
    const std::string_view ext = name.substr(dot + 1);
    for (const auto& [e, type] : types)
      if (iequals(ext, e)) return type;
  }
  return "application/octet-stream";
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::array<char, 40> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                              days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                              tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return std::string(buf.data(), static_cast<std::size_t>(std::max(n, 0)));
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view text) noexcept {
  // "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, fixed positions.
  static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT") return {};
  auto num = [&](std::size_t at, std::size_t len, int& out) {
    std::uint64_t v = 0;
    if (!parse_u64(text.substr(at, len), v)) return false;
    out = static_cast<int>(v);
    return true;
  };
  int day = 0, year = 0, hour = 0, min = 0, sec = 0;
  if (!num(5, 2, day) || !num(12, 4, year) || !num(17, 2, hour) || !num(20, 2, min) ||
      !num(23, 2, sec) || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' ||
      text[22] != ':')
    return {};
  const auto m = months.find(text.substr(8, 3));
  if (m == std::string_view::npos || m % 3 != 0) return {};
  using namespace std::chrono;
  const year_month_day ymd{std::chrono::year(year), month(static_cast<unsigned>(m / 3 + 1)),
                           std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok() || hour > 23 || min > 59 || sec > 60) return {};
  return sys_days(ymd) + hours(hour) + minutes(min) + seconds(sec);
}

bool decode_target_path(std::string_view target, std::string& out) {
  // absolute-form (RFC 9112 3.2.2): drop "scheme://authority".
  if (const auto scheme = target.find("://");
      scheme != std::string_view::npos && target.front() != '/') {
    const auto path = target.find('/', scheme + 3);
    target = path == std::string_view::npos ? std::string_view("/") : target.substr(path);
  }
  if (target.empty() || target.front() != '/') return false;
  target = target.substr(0, target.find_first_of("?#"));
  out.clear();
  for (std::size_t i = 0; i < target.size(); ++i) {
    char c = target[i];
    if (c == '%') {
      if (i + 2 >= target.size()) return false;  // "%" or "%x" at the end
      const int hi = hex_value(target[i + 1]), lo = hex_value(target[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out.push_back(c);
  }
  return true;
}

range_kind parse_range(std::string_view value, std::uint64_t size, byte_range& out) noexcept {
  constexpr std::string_view unit = "bytes=";
  if (value.size() < unit.size() || !iequals(value.substr(0, unit.size()), unit))
    return range_kind::none;
  std::string_view spec = value.substr(unit.size());
  while (!spec.empty() && (spec.front() == ' ' || spec.front() == '\t'))
    spec.remove_prefix(1);
  while (!spec.empty() && (spec.back() == ' ' || spec.back() == '\t'))
    spec.remove_suffix(1);
  if (spec.find(',') != std::string_view::npos) return range_kind::none;  // several: send all
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return range_kind::none;
  const std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  std::uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last n bytes
    if (!parse_u64(b, last)) return range_kind::none;
    if (last == 0 || size == 0) return range_kind::unsatisfiable;
    out = {size - std::min(last, size), size - 1};
    return range_kind::single;
  }
  if (!parse_u64(a, first)) return range_kind::none;
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else {
    if (!parse_u64(b, last) || last < first) return range_kind::none;
    last = std::min(last, size == 0 ? 0 : size - 1);
  }
  if (first >= size) return range_kind::unsatisfiable;
  out = {first, last};
  return range_kind::single;
}

static_files::static_files(coring::io_context& ctx, const std::string& root) {
  const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) coring::throw_errno(errno, ("open " + root).c_str());
  root_ = coring::file::adopt(ctx, fd);
}

namespace {

// Appends the status line, the common headers and the framing headers of a response.
void start_head(std::string& h, int status, std::string_view common, const request& r) {
  h.clear();
  h.append("HTTP/1.1 ");
  h.append(std::to_string(status));
  h.push_back(' ');
  h.append(reason_of(status));
  h.append("\r\n");
  h.append(common);
  if (!r.keep_alive)
    h.append("Connection: close\r\n");
  else if (r.minor_version == 0)
    h.append("Connection: keep-alive\r\n");
}

void add_length(std::string& h, std::uint64_t n) {
  h.append("Content-Length: ");
  h.append(std::to_string(n));
  h.append("\r\n");
}

// The socket under a transport (a plain socket is its own).
coring::socket& socket_of(coring::socket& s) noexcept { return s; }
#if CORING_HAS_TLS
coring::socket& socket_of(coring::tls::stream& s) noexcept { return s.next_layer(); }
#endif

// Sends all of data within the options' bounds. Returns: false if it failed or timed out.
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<bool> send_bounded(Stream& s, std::string_view data,
                                                            const static_files::options& o) {
  auto op = s.send_all(data).with_timeout(o.send_timeout).with_stop(o.stop);
  auto r = co_await coring::as_result(std::move(op));
  co_return static_cast<bool>(r);
}

// A short text response (errors, redirects). Returns: whether the connection may stay open.
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<bool> send_simple(
    Stream& s, const request& r, std::string_view common, std::string& h, int status,
    const static_files::options& o, std::string_view extra_headers = {}, bool close = false) {
  start_head(h, status, common, r);
  if (close && r.keep_alive) h.append("Connection: close\r\n");
  h.append(extra_headers);
  const bool body = status != 304 && r.verb != method::head;
  std::string_view text = reason_of(status);
  if (status == 304) {
    h.append("\r\n");
  } else {
    h.append("Content-Type: text/plain; charset=utf-8\r\n");
    add_length(h, text.size() + 1);
    h.append("\r\n");
    if (body) {
      h.append(text);
      h.push_back('\n');
    }
  }
  const bool sent = co_await send_bounded(s, h, o);
  co_return sent&& r.keep_alive && !close;
}

}  // namespace

// serve() for a plain socket or a TLS stream (whose bodies are read and sent: sendfile and
// splice cannot encrypt).
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<bool> static_files::serve_on(
    Stream& s, const request& r, std::string_view common_headers, connection& c, const options& o) {
  constexpr bool plain = std::is_same_v<Stream, coring::socket>;
  std::string& h = c.head_;
  if (r.verb != method::get && r.verb != method::head)
    co_return co_await send_simple(s, r, common_headers, h, 405, o, "Allow: GET, HEAD\r\n");
  std::string& path = c.path_;
  if (!decode_target_path(r.target, path))
    co_return co_await send_simple(s, r, common_headers, h, 400, o, {}, true);
  const bool dir_target = path.back() == '/';
  // Relative to the root: "/" is ".", "/a/b" is "a/b"; a directory target gets its index.html.
  const auto first = path.find_first_not_of('/');
  path.erase(0, first == std::string::npos ? path.size() : first);
  if (dir_target) path.append("index.html");
  if (path.empty()) path = ".";

  coring::io_context& ctx = socket_of(s).context();
  // O_NONBLOCK: opening a FIFO must not wait for a writer (only regular files are served).
  auto opened = co_await coring::as_result(
      coring::file::open_beneath(ctx, root_, path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  if (!opened) {
    // EXDEV (outside the root), ENOENT, ENOTDIR, ELOOP, EACCES: all look the same to the client.
    co_return co_await send_simple(s, r, common_headers, h, 404, o);
  }
  coring::file f = std::move(*opened);
  auto st = co_await coring::as_result(f.stat());
  if (!st) co_return co_await send_simple(s, r, common_headers, h, 404, o);
  if (st->directory && !dir_target) {
    // Redirect to the directory's URL with its slash (the target's own bytes, query kept).
    std::string_view target = r.target;
    const auto q = target.find('?');
    std::string location = "Location: ";
    location.append(target.substr(0, q));
    location.push_back('/');
    if (q != std::string_view::npos) location.append(target.substr(q));
    location.append("\r\n");
    co_return co_await send_simple(s, r, common_headers, h, 301, o, location);
  }
  if (!st->regular) co_return co_await send_simple(s, r, common_headers, h, 404, o);
  // Back to blocking reads: io_uring then never answers EAGAIN for a cold page.
  const int fl = ::fcntl(f.fileno(), F_GETFL);
  if (fl >= 0) (void)::fcntl(f.fileno(), F_SETFL, fl & ~O_NONBLOCK);

  const std::uint64_t size = st->size;
  const auto mtime = std::chrono::floor<std::chrono::seconds>(st->mtime);
  const std::string last_modified = http_date(mtime);
  if (!r.if_modified_since.empty() && r.range.empty()) {
    const auto since = parse_http_date(r.if_modified_since);
    if (since && mtime <= *since) {
      std::string lm = "Last-Modified: " + last_modified + "\r\n";
      co_return co_await send_simple(s, r, common_headers, h, 304, o, lm);
    }
  }
  byte_range range{0, size == 0 ? 0 : size - 1};
  range_kind kind = range_kind::none;
  if (!r.range.empty()) {
    const std::string_view if_range = header_value(r, "If-Range");
    if (if_range.empty() || if_range == last_modified) kind = parse_range(r.range, size, range);
  }
  if (kind == range_kind::unsatisfiable) {
    std::string cr = "Content-Range: bytes */" + std::to_string(size) + "\r\n";
    co_return co_await send_simple(s, r, common_headers, h, 416, o, cr);
  }
  const std::uint64_t offset = kind == range_kind::single ? range.first : 0;
  const std::uint64_t count = kind == range_kind::single ? range.last - range.first + 1 : size;

  start_head(h, kind == range_kind::single ? 206 : 200, common_headers, r);
  h.append("Content-Type: ");
  h.append(content_type_for(path));
  h.append("\r\n");
  add_length(h, count);
  h.append("Last-Modified: ");
  h.append(last_modified);
  h.append("\r\nAccept-Ranges: bytes\r\n");
  if (kind == range_kind::single) {
    h.append("Content-Range: bytes ");
    h.append(std::to_string(range.first));
    h.push_back('-');
    h.append(std::to_string(range.last));
    h.push_back('/');
    h.append(std::to_string(size));
    h.append("\r\n");
  }
  h.append("\r\n");
  if (r.verb == method::head || count == 0) {
    const bool sent = co_await send_bounded(s, h, o);
    co_return sent&& r.keep_alive;
  }

  const auto deadline = std::chrono::steady_clock::now() + o.send_timeout;
  auto left = [deadline] {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()),
                    std::chrono::milliseconds(0));
  };
  if constexpr (plain) {
    if (o.body == body_method::sendfile && count > small_file_bytes) {
      // The head (MSG_MORE: it leaves with the body's first bytes), then the body by sendfile
      // within what is left of the time; no buffer, no copy, no thread.
      auto head = s.send_all(h, MSG_MORE).with_timeout(o.send_timeout).with_stop(o.stop);
      auto head_sent = co_await coring::as_result(std::move(head));
      if (!head_sent) co_return false;
      auto body = coring::send_file(
          s, f, offset, count,
          {.timeout = std::max(left(), std::chrono::milliseconds(1)), .stop = o.stop});
      auto sent = co_await coring::as_result(std::move(body));
      co_return static_cast<bool>(sent) && r.keep_alive;
    }
    if (o.body == body_method::splice && count > small_file_bytes) {
      // The head, then the body by splice (file → pipe → socket) within what is left of the time.
      const bool head_sent = co_await send_bounded(s, h, o);
      if (!head_sent) co_return false;
      if (!c.pipe_) {
        try {
          c.pipe_ = coring::pipe::open();
        } catch (const std::system_error&) {
          co_return false;  // out of descriptors: the response is cut, the connection closed
        }
      }
      auto body = coring::send_file(
          s, f, offset, count, c.pipe_,
          {.timeout = std::max(left(), std::chrono::milliseconds(1)), .stop = o.stop});
      auto sent = co_await coring::as_result(std::move(body));
      co_return static_cast<bool>(sent) && r.keep_alive;
    }
  }
  // Read + send (and small files whatever the method). A small file joins the head in the
  // connection's buffer, one read and one send; a larger one goes through a buffer of
  // read_chunk_bytes made for this response (the head fills its start), so a slow reader holds at
  // most that much memory and no thread.
  const std::size_t head_size = h.size();
  std::vector<std::byte> chunk;
  std::span<std::byte> buf;
  if (count <= small_file_bytes) {
    h.resize(head_size + static_cast<std::size_t>(count));
    buf = std::as_writable_bytes(std::span(h));
  } else {
    chunk.resize(std::max<std::size_t>(read_chunk_bytes, head_size * 2));
    std::memcpy(chunk.data(), h.data(), head_size);
    buf = chunk;
  }
  std::size_t filled = head_size;
  std::uint64_t done = 0;
  while (done < count) {
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - filled, count - done));
    auto n = co_await coring::as_result(f.read(buf.subspan(filled, want), offset + done));
    // A read error or a file cut short: nothing more can be framed right; close.
    if (!n || *n == 0) co_return false;
    filled += *n;
    done += *n;
    if (filled == buf.size() || done == count) {
      auto op = s.send_all(buf.first(filled)).with_timeout(left()).with_stop(o.stop);
      auto sent = co_await coring::as_result(std::move(op));
      if (!sent) co_return false;
      filled = 0;
    }
  }
  co_return r.keep_alive;
}

coring::task<bool> static_files::serve(coring::socket& s, const request& r,
                                       std::string_view common_headers, connection& c,
                                       const options& o) {
  return serve_on(s, r, common_headers, c, o);
}

#if CORING_HAS_TLS
coring::task<bool> static_files::serve(coring::tls::stream& s, const request& r,
                                       std::string_view common_headers, connection& c,
                                       const options& o) {
  return serve_on(s, r, common_headers, c, o);
}
#endif

}  // namespace http
