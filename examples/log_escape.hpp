// SPDX-License-Identifier: MIT
// Description: escape_for_log: makes arbitrary bytes (what a peer sent) safe to print on a
// terminal and bounded in length, for the examples' logs.
//
// What a terminal must never receive from a peer, and what it becomes here:
// - C0 controls and DEL (0x00-0x1F, 0x7F): \n, \r, \t, or \xNN (an ESC would start a terminal
//   escape sequence; a CR or LF would forge a log line);
// - C1 controls (U+0080-U+009F, e.g. U+0085 NEL, a line break, and U+009B CSI, which starts an
//   escape sequence on terminals that take 8-bit controls): \u0085;
// - text-direction controls, which reorder what follows them on the line (a peer could make
//   its message appear to be the server's words): the bidi embeddings and overrides
//   U+202A-U+202E, the isolates U+2066-U+2069, the marks U+200E, U+200F and U+061C, and the
//   line and paragraph separators U+2028, U+2029: \u202E;
// - invalid UTF-8 (a stray continuation byte, a truncated or overlong sequence, a surrogate,
//   anything above U+10FFFF): each byte that is not part of a valid sequence as \xNN;
// - the backslash itself: \\ (so that every escape above is unambiguous).
// Everything else (printable ASCII and valid printable UTF-8) passes through unchanged.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace example {

namespace log_escape_detail {

/// Length (2 to 4) of the valid UTF-8 sequence starting at s[i] with a byte >= 0x80, storing
/// its code point in cp; 0 if the bytes there are not a valid sequence (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong below U+0800
    if (b0 == 0xED) hi = 0x9F;  // surrogates U+D800-U+DFFF
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong below U+10000
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;  // a continuation byte, C0/C1 (overlong 2-byte) or F5-FF
  }
  if (s.size() - i < len) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  cp = len == 2 ? b0 & 0x1F : len == 3 ? b0 & 0x0F : b0 & 0x07;
  for (std::size_t k = 1; k < len; ++k)
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  return len;
}

/// True for the code points above U+007F that must not reach a terminal raw (see the top).
inline bool must_escape(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

inline void append_hex(std::string& out, const char* prefix, unsigned value, int digits) {
  static constexpr char hex[] = "0123456789ABCDEF";
  out += prefix;
  for (int d = digits - 1; d >= 0; --d)
    out += hex[(value >> (4 * d)) & 0xF];
}

/// "...(+N bytes)": the marker for N input bytes left out.
inline std::string marker(std::size_t left_out) {
  return "...(+" + std::to_string(left_out) + " bytes)";
}

}  // namespace log_escape_detail

/// Makes bytes safe to print on a terminal (see the top of this file for what is escaped and
/// how) and bounded: the result is at most max_out bytes. When the escaped text does not fit,
/// it is cut between two characters or escapes (never inside an escape or a UTF-8 sequence)
/// and ends with the marker "...(+N bytes)", N being the number of input bytes not shown; the
/// marker is counted in max_out. Only when max_out is too small for the marker alone (below
/// about 20 bytes) is the result that marker, whole, and longer than max_out.
/// Cost: linear in the part of the input that is shown (the rest is not scanned).
inline std::string escape_for_log(std::string_view bytes, std::size_t max_out) {
  namespace d = log_escape_detail;
  std::string out;
  // The cut, if one is needed, is made after a whole unit (a character or an escape). A unit
  // boundary is (input offset, output size). Any boundary with room for the longest marker
  // fits, so only the last such one (safe) and those after it (tail) are kept.
  constexpr std::size_t longest_marker = 32;  // "...(+" 20 digits " bytes)"
  using boundary = std::pair<std::size_t, std::size_t>;
  boundary safe{0, 0};
  std::vector<boundary> tail;
  std::size_t i = 0;
  while (i < bytes.size() && out.size() <= max_out) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    std::size_t len = 1;
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      d::append_hex(out, "\\x", b, 2);
    } else if (b < 0x80) {
      out += static_cast<char>(b);
    } else {
      char32_t cp = 0;
      len = d::utf8_sequence(bytes, i, cp);
      if (len == 0) {
        len = 1;
        d::append_hex(out, "\\x", b, 2);  // one bad byte; the next one is looked at afresh
      } else if (d::must_escape(cp)) {
        d::append_hex(out, "\\u", static_cast<unsigned>(cp), 4);
      } else {
        out.append(bytes.substr(i, len));
      }
    }
    i += len;
    if (max_out >= longest_marker && out.size() <= max_out - longest_marker)
      safe = {i, out.size()};
    else
      tail.emplace_back(i, out.size());
  }
  if (i == bytes.size() && out.size() <= max_out) return out;  // everything fits
  // Too long: keep the longest prefix of whole units that leaves room for the marker.
  tail.insert(tail.begin(), safe);
  for (std::size_t k = tail.size(); k-- > 0;) {
    std::string m = d::marker(bytes.size() - tail[k].first);
    if (tail[k].second + m.size() <= max_out) {
      out.resize(tail[k].second);
      return out + m;
    }
  }
  return d::marker(bytes.size());  // max_out cannot hold even the marker alone
}

}  // namespace example
