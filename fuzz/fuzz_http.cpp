// SPDX-License-Identifier: MIT
// Description: libFuzzer target: the http_server example's request parser and chunked decoder
// (examples/http/parser.hpp) never misbehave, whatever the bytes and however they are split.
//
// Build by hand (clang only):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iexamples/http \
//     fuzz/fuzz_http.cpp examples/http/parser.cpp -o /tmp/fuzz_http
//   cp -r fuzz/corpus/http /tmp/corpus && /tmp/fuzz_http -max_total_time=60 /tmp/corpus
// (Copy the corpus first: libFuzzer adds new inputs to the first corpus directory.)
//
// Invariants checked (std::abort on a violation, so libFuzzer saves the input):
// - consumed <= size; incomplete only under max_request_head_bytes; an error's status is one
//   of 400, 414, 431, 501, 505;
// - every view of a complete request lies inside the input; header_count <= max_headers;
// - a prefix of the input gives "incomplete" or exactly the whole input's result (the parser
//   keeps no state, so nothing it decides may depend on bytes it has not seen);
// - the chunked decoder gives the same body, end and error for the bytes after the head fed
//   whole and fed in pieces whose sizes are taken from the input, and the same as a plain
//   second reading of the grammar (reference_decode) on the whole input;
// - a complete request's fields are well formed and its framing matches its fields.
#include "parser.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool inside(std::string_view v, std::string_view in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

enum class header_name { other, host, content_length, transfer_encoding, connection, expect };

std::string lowercase(std::string_view s) {
  std::string lower(s);
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return lower;
}

header_name classify(std::string_view name) {
  const std::string lower = lowercase(name);
  if (lower == "host") return header_name::host;
  if (lower == "content-length") return header_name::content_length;
  if (lower == "transfer-encoding") return header_name::transfer_encoding;
  if (lower == "connection") return header_name::connection;
  if (lower == "expect") return header_name::expect;
  return header_name::other;
}

/// The elements of a comma-separated list, trimmed of SP and HTAB, empty ones dropped.
std::vector<std::string> elements(std::string_view list) {
  std::vector<std::string> out;
  std::string cur;
  const auto flush = [&] {
    const std::size_t b = cur.find_first_not_of(" \t");
    if (b != std::string::npos) out.push_back(cur.substr(b, cur.find_last_not_of(" \t") - b + 1));
    cur.clear();
  };
  for (char c : list) {
    if (c == ',')
      flush();
    else
      cur += c;
  }
  flush();
  return out;
}

/// What an accepted request's fields say, read again the slow way: the parser's framing,
/// length, keep_alive and expect_continue must match it.
void check_semantics(const http::request& r) {
  std::vector<std::string> codings;
  std::vector<unsigned __int128> lengths;
  bool close = false, keep_alive = false, expect = false;
  for (const http::header& h : r.headers()) {
    switch (classify(h.name)) {
      case header_name::content_length: {
        const std::vector<std::string> list = elements(h.value);
        check(!list.empty() &&
              list.size() ==
                  static_cast<std::size_t>(std::count(h.value.begin(), h.value.end(), ',')) + 1);
        for (const std::string& e : list) {
          constexpr unsigned __int128 over = static_cast<unsigned __int128>(1) << 65;
          unsigned __int128 v = 0;
          check(!e.empty());
          for (char c : e) {
            check(c >= '0' && c <= '9');
            v = v > over ? v : v * 10 + static_cast<unsigned>(c - '0');  // saturates above 2^65
          }
          lengths.push_back(v);
        }
        break;
      }
      case header_name::transfer_encoding:
        for (const std::string& e : elements(h.value))
          codings.push_back(lowercase(e.substr(0, e.find_first_of("; \t"))));
        break;
      case header_name::connection:
        for (const std::string& e : elements(h.value)) {
          close = close || lowercase(e) == "close";
          keep_alive = keep_alive || lowercase(e) == "keep-alive";
        }
        break;
      case header_name::expect:
        for (const std::string& e : elements(h.value))
          expect = expect || lowercase(e) == "100-continue";
        break;
      default:
        break;
    }
  }
  for (unsigned __int128 v : lengths)
    check(v == r.content_length);  // all equal, none over 2^64 - 1
  if (r.framing == http::body_framing::chunked) {
    check(!codings.empty() && codings.back() == "chunked");
    check(std::count(codings.begin(), codings.end(), "chunked") == 1);
  }
  check(r.keep_alive == (!close && (r.minor_version == 1 || keep_alive)));
  check(r.expect_continue == (expect && r.minor_version == 1));
}

bool same(const http::parse_result& a, const http::parse_result& b) {
  return a.state == b.state && a.consumed == b.consumed && a.error_status == b.error_status;
}

void check_request(std::string_view in, const http::parse_result& res, const http::request& r) {
  check(res.consumed <= in.size());
  switch (res.state) {
    case http::parse_result::status::incomplete:
      check(res.consumed == 0 && in.size() < http::max_request_head_bytes);
      break;
    case http::parse_result::status::error: {
      const int s = res.error_status;
      check(s == 400 || s == 414 || s == 431 || s == 501 || s == 505);
      check(res.reason != nullptr && res.reason[0] != '\0');
      break;
    }
    case http::parse_result::status::complete: {
      check(res.consumed >= 2 && in[res.consumed - 1] == '\n');
      check(in[res.consumed - 2] == '\n' ||
            (in[res.consumed - 2] == '\r' && res.consumed >= 3 && in[res.consumed - 3] == '\n'));
      for (char c : r.target)
        check(c > ' ' && c < 0x7F);
      bool has_length = false, has_te = false;
      int hosts = 0;
      for (const http::header& h : r.headers()) {
        for (char c : h.name)
          check(c > ' ' && c < 0x7F && c != ':');
        for (char c : h.value)
          check(c == '\t' || (static_cast<unsigned char>(c) >= ' ' && c != 0x7F));
        check(h.value.empty() || (h.value.front() != ' ' && h.value.front() != '\t' &&
                                  h.value.back() != ' ' && h.value.back() != '\t'));
        const header_name name = classify(h.name);
        has_length = has_length || name == header_name::content_length;
        has_te = has_te || name == header_name::transfer_encoding;
        if (name == header_name::host) {
          ++hosts;
          check(r.host.data() == h.value.data() && r.host.size() == h.value.size());
        }
      }
      check(hosts <= 1 && (hosts == 1 || r.minor_version == 0));
      check(!(has_length && has_te));
      check((r.framing == http::body_framing::chunked) == has_te);
      check((r.framing == http::body_framing::content_length) == has_length);
      check(r.verb != http::method::unknown);
      check(!r.target.empty() && r.target.size() <= http::max_target_bytes);
      check(r.minor_version == 0 || r.minor_version == 1);
      check(r.header_count <= http::max_headers);
      check(inside(r.method_text, in) && inside(r.target, in) && inside(r.host, in));
      check(inside(r.range, in) && inside(r.if_modified_since, in));
      for (const http::header& h : r.headers())
        check(!h.name.empty() && inside(h.name, in) && inside(h.value, in));
      check(r.framing != http::body_framing::chunked || r.minor_version == 1);
      check_semantics(r);
      break;
    }
  }
}

/// A copy of a prefix in a heap block of its exact size (ASan sees reads past it).
http::parse_result parse_prefix(std::string_view in, std::size_t k) {
  char* copy = static_cast<char*>(std::malloc(k == 0 ? 1 : k));
  if (copy == nullptr) std::abort();
  if (k != 0) std::memcpy(copy, in.data(), k);
  http::request r;
  const std::string_view prefix(copy, k);
  const http::parse_result res = http::parse_request(prefix, r);
  check_request(prefix, res, r);
  std::free(copy);
  return res;
}

struct decoded {
  std::string body;
  bool done = false;
  bool error = false;
  std::size_t consumed = 0;
};

/// Feeds body to a decoder in pieces of sizes taken from `sizes` (empty: all at once).
decoded decode(std::string_view body, std::string_view sizes) {
  http::chunked_decoder dec;
  decoded out;
  std::size_t pos = 0, next_size = 0;
  while (pos < body.size()) {
    std::size_t len = body.size() - pos;
    if (!sizes.empty()) {
      const auto byte = static_cast<unsigned char>(sizes[next_size++ % sizes.size()]);
      len = std::min<std::size_t>(len, byte % 64 + 1);
    }
    std::string_view piece = body.substr(pos, len);
    // Bounded: every call but the last of a piece consumes at least one byte.
    for (std::size_t calls = 0; !piece.empty(); ++calls) {
      check(calls <= len);
      const http::chunked_decoder::step s = dec.feed(piece);
      check(s.consumed <= piece.size());
      check(s.data.empty() || (s.data.data() >= piece.data() &&
                               s.data.data() + s.data.size() <= piece.data() + s.consumed));
      check(!(s.done && s.error));
      out.body += s.data;
      piece.remove_prefix(s.consumed);
      pos += s.consumed;
      if (s.done || s.error) {
        out.done = s.done;
        out.error = s.error;
        out.consumed = pos;
        // A finished decoder stays finished.
        const http::chunked_decoder::step again = dec.feed(body.substr(pos));
        check(again.consumed == 0 && again.data.empty() && again.done == s.done &&
              again.error == s.error);
        return out;
      }
      check(s.consumed > 0);
    }
  }
  out.consumed = pos;
  return out;
}

/// A second, plain reading of RFC 9112 section 7.1 with the decoder's limits, on the whole
/// input at once: what the incremental decoder must agree with.
decoded reference_decode(std::string_view in) {
  decoded out;
  std::size_t p = 0;
  const auto fail = [&] {
    out.error = true;
    out.consumed = 0;  // not compared: the decoders may stop at different bytes
    return out;
  };
  const auto more = [&] {
    out.consumed = in.size();
    return out;
  };
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const auto ctl = [](char c) {
    return (static_cast<unsigned char>(c) < ' ' && c != '\t') || c == 0x7F;
  };
  for (;;) {
    // chunk-size [ BWS ";" ext ] CR LF, at most 4096 bytes up to and including the CR.
    const std::size_t line = p;
    unsigned __int128 size = 0;
    std::size_t digits = 0;
    while (p < in.size() && hex(in[p]) >= 0) {
      size = size * 16 + static_cast<unsigned>(hex(in[p]));
      if (size > (std::uint64_t{1} << 60)) return fail();
      ++digits;
      ++p;
      if (p - line > 4096) return fail();
    }
    if (p == in.size()) return more();
    if (digits == 0) return fail();
    while (p < in.size() && (in[p] == ' ' || in[p] == '\t')) {
      ++p;
      if (p - line > 4096) return fail();
    }
    if (p == in.size()) return more();
    if (in[p] == ';') {
      while (p < in.size() && in[p] != '\r') {
        if (in[p] != ';' && ctl(in[p])) return fail();
        ++p;
        if (p - line > 4096) return fail();
      }
      if (p == in.size()) return more();
    } else if (in[p] != '\r' || p > line + digits) {  // whitespace must lead to ';'
      return fail();
    }
    if (++p - line > 4096) return fail();  // the CR
    if (p == in.size()) return more();
    if (in[p++] != '\n') return fail();
    if (size == 0) break;
    const std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(size), in.size() - p);
    out.body.append(in.substr(p, take));
    p += take;
    if (take < size) return more();
    if (p == in.size()) return more();
    if (in[p++] != '\r') return fail();
    if (p == in.size()) return more();
    if (in[p++] != '\n') return fail();
  }
  // Trailer lines, each CR LF, up to an empty one; at most 8192 bytes in all.
  const std::size_t trailers = p;
  bool empty_line = true;
  for (;;) {
    if (p == in.size()) return more();
    if (p - trailers >= http::max_header_block_bytes) return fail();
    const char c = in[p++];
    if (c == '\r') {
      if (p == in.size()) return more();
      if (p - trailers >= http::max_header_block_bytes) return fail();
      if (in[p++] != '\n') return fail();
      if (empty_line) break;
      empty_line = true;
    } else if (ctl(c)) {
      return fail();
    } else {
      empty_line = false;
    }
  }
  out.done = true;
  out.consumed = p;
  return out;
}

void check_decoder(std::string_view body, std::string_view sizes) {
  const decoded whole = decode(body, {});
  const decoded pieces = decode(body, sizes);
  check(whole.body == pieces.body && whole.done == pieces.done && whole.error == pieces.error &&
        whole.consumed == pieces.consumed);
  check(whole.body.size() <= body.size());
  const decoded ref = reference_decode(body);
  check(ref.done == whole.done && ref.error == whole.error);
  if (!ref.error) check(ref.body == whole.body && ref.consumed == whole.consumed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  http::request r;
  const http::parse_result res = http::parse_request(in, r);
  check_request(in, res, r);

  // Prefixes: incomplete, or the whole input's result (which then cannot be incomplete).
  const std::size_t cuts[] = {size / 2, size == 0 ? 0 : size - 1, res.consumed,
                              res.consumed == 0 ? 0 : res.consumed - 1,
                              size == 0 ? 0 : data[0] % size};
  for (std::size_t k : cuts) {
    const http::parse_result p = parse_prefix(in, k);
    check(p.state == http::parse_result::status::incomplete || same(p, res));
  }

  // The rest after a complete chunked head is its body; otherwise fuzz the decoder with all
  // of the input, so that it sees every kind of byte sequence too.
  if (res.state == http::parse_result::status::complete &&
      r.framing == http::body_framing::chunked) {
    check_decoder(in.substr(res.consumed), in);
  } else {
    check_decoder(in, in.substr(size / 2));
  }
  return 0;
}
