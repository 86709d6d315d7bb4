// SPDX-License-Identifier: MIT
// Description: unit tests of example::escape_for_log (examples/log_escape.hpp): every class of
// byte a terminal must not see raw is escaped, valid text passes, and the length is bounded.
#include "log_escape.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace std::string_literals;
using example::escape_for_log;

namespace {

constexpr std::size_t unlimited = 1 << 20;

std::string esc(const std::string& s) { return escape_for_log(s, unlimited); }

// True if s holds no byte a terminal interprets: no C0, no DEL, nothing >= 0x80 that is not
// part of the printable UTF-8 we let through (checked by the callers with known inputs).
bool only_printable_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) return false;
  return true;
}

}  // namespace

TEST_CASE("escape_for_log: printable ASCII and valid UTF-8 pass through unchanged") {
  CHECK(esc("") == "");
  CHECK(esc("hello, world ~!@#$%^&*()_+{}|:\"<>?") == "hello, world ~!@#$%^&*()_+{}|:\"<>?");
  CHECK(esc("ünïcode ✓") == "ünïcode ✓");                    // 2- and 3-byte sequences
  CHECK(esc("emoji 😀 end") == "emoji 😀 end");                // 4 bytes (U+1F600)
  CHECK(esc("\u00A0\u00FF\u0100") == "\u00A0\u00FF\u0100");  // just past the C1 range
  CHECK(esc("\u202F\u2065\u206A") == "\u202F\u2065\u206A");  // neighbours of the bidi ranges
  CHECK(esc("\xF4\x8F\xBF\xBF"s) == "\xF4\x8F\xBF\xBF"s);    // U+10FFFF, the last code point
  CHECK(esc("\xEF\xBF\xBD"s) == "\xEF\xBF\xBD"s);            // U+FFFD
}

TEST_CASE("escape_for_log: C0 controls, DEL and the backslash are escaped") {
  CHECK(esc("a\nb") == "a\\nb");
  CHECK(esc("a\rb") == "a\\rb");
  CHECK(esc("a\tb") == "a\\tb");
  CHECK(esc("\\") == "\\\\");
  CHECK(esc("\\x41") == "\\\\x41");  // a literal "\x41" cannot be mistaken for an escape
  CHECK(esc("\0"s) == "\\x00");
  CHECK(esc("\x1B[31mred") == "\\x1B[31mred");  // ESC: no terminal escape sequence gets out
  CHECK(esc("\x07\x08\x0B\x0C\x1F") == "\\x07\\x08\\x0B\\x0C\\x1F");
  CHECK(esc("\x7F") == "\\x7F");
  std::string all_c0;
  for (int c = 0; c < 0x20; ++c)
    all_c0 += static_cast<char>(c);
  all_c0 += '\x7F';
  const std::string out = esc(all_c0);
  CHECK(only_printable_ascii(out));
  CHECK(out.size() == 4 * 30 + 2 * 3);  // \xNN for 30 of them, \n \r \t for the other 3
}

TEST_CASE("escape_for_log: C1 controls in their UTF-8 form are escaped, U+0085 and U+009B too") {
  CHECK(esc("a\xC2\x85z"s) == "a\\u0085z");  // NEL: a line break to some terminals
  CHECK(esc("\xC2\x9B"s
            "31m") == "\\u009B31m");  // CSI: starts an escape sequence
  CHECK(esc("\xC2\x80"s) == "\\u0080");
  CHECK(esc("\xC2\x9F"s) == "\\u009F");
  std::string all_c1, expected;
  for (unsigned c = 0x80; c <= 0x9F; ++c) {
    all_c1 += "\xC2"s + static_cast<char>(c);
    static constexpr char hex[] = "0123456789ABCDEF";
    expected += "\\u00"s + hex[c >> 4] + hex[c & 0xF];
  }
  CHECK(esc(all_c1) == expected);
}

TEST_CASE("escape_for_log: bidi overrides, isolates and direction marks are escaped") {
  CHECK(esc("user \xE2\x80\xAE"
            "txt.exe"s) == "user \\u202Etxt.exe");  // RLO
  CHECK(esc("\xE2\x80\xAA\xE2\x80\xAB\xE2\x80\xAC\xE2\x80\xAD"s) ==
        "\\u202A\\u202B\\u202C\\u202D");  // LRE RLE PDF LRO
  CHECK(esc("\xE2\x81\xA6\xE2\x81\xA7\xE2\x81\xA8\xE2\x81\xA9"s) ==
        "\\u2066\\u2067\\u2068\\u2069");                        // LRI RLI FSI PDI
  CHECK(esc("\xE2\x80\x8E\xE2\x80\x8F"s) == "\\u200E\\u200F");  // LRM RLM
  CHECK(esc("\xD8\x9C"s) == "\\u061C");                         // ALM
  CHECK(esc("\xE2\x80\xA8\xE2\x80\xA9"s) == "\\u2028\\u2029");  // LS PS
}

TEST_CASE("escape_for_log: each byte of invalid UTF-8 becomes \\xNN") {
  CHECK(esc("\x80"s) == "\\x80");  // a lone continuation byte
  CHECK(esc("a\xBFz"s) == "a\\xBFz");
  CHECK(esc("\xC3"s) == "\\xC3");  // a sequence cut off by the end
  CHECK(esc("\xE2\x82"s) == "\\xE2\\x82");
  CHECK(esc("\xC3(z"s) == "\\xC3(z");       // a lead byte followed by ASCII
  CHECK(esc("\xC0\xAF"s) == "\\xC0\\xAF");  // overlong '/'
  CHECK(esc("\xC1\xBF"s) == "\\xC1\\xBF");
  CHECK(esc("\xE0\x80\xAF"s) == "\\xE0\\x80\\xAF");           // overlong 3-byte
  CHECK(esc("\xF0\x80\x80\xAF"s) == "\\xF0\\x80\\x80\\xAF");  // overlong 4-byte
  CHECK(esc("\xED\xA0\x80"s) == "\\xED\\xA0\\x80");           // a UTF-16 surrogate (U+D800)
  CHECK(esc("\xF4\x90\x80\x80"s) == "\\xF4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(esc("\xF5\xFE\xFF"s) == "\\xF5\\xFE\\xFF");
  // A bad byte does not swallow the valid character after it.
  CHECK(esc("\xE2\xC3\xA9"s) == "\\xE2\xC3\xA9"s);
  // An overlong encoding of a C1 control or ESC cannot sneak past as text.
  CHECK(esc("\xC0\x9B"s) == "\\xC0\\x9B");
}

TEST_CASE("escape_for_log: every byte value alone gives printable output or valid UTF-8") {
  for (int b = 0; b < 256; ++b) {
    CAPTURE(b);
    const std::string out = esc(std::string(1, static_cast<char>(b)));
    CHECK(only_printable_ascii(out));  // a single byte is never valid multi-byte UTF-8
    CHECK(out.size() <= 4);
  }
}

TEST_CASE("escape_for_log: the output is bounded and cut between whole units, with a marker") {
  SUBCASE("short input: untouched, whatever fits exactly") {
    CHECK(escape_for_log("hello", 5) == "hello");
    CHECK(escape_for_log("a\nb", 4) == "a\\nb");
  }
  SUBCASE("long ASCII: cut with the count of bytes left out, marker included in max_out") {
    const std::string out = escape_for_log(std::string(1000, 'x'), 100);
    CHECK(out == std::string(85, 'x') + "...(+915 bytes)");  // 85 + 15 = 100
    CHECK(out.size() == 100);
  }
  SUBCASE("one byte too many: the marker replaces the tail") {
    CHECK(escape_for_log(std::string(40, 'y'), 40) == std::string(40, 'y'));
    CHECK(escape_for_log(std::string(41, 'y'), 40) == std::string(26, 'y') + "...(+15 bytes)");
  }
  SUBCASE("never cuts an escape in half") {
    // Every unit is a 4-byte \xNN: the kept text is a whole number of escapes.
    const std::string in(100, '\x01');
    for (std::size_t max = 16; max < 60; ++max) {
      CAPTURE(max);
      const std::string out = escape_for_log(in, max);
      CHECK(out.size() <= max);
      const std::size_t at = out.find("...(+");
      REQUIRE(at != std::string::npos);
      CHECK(at % 4 == 0);
      const std::size_t shown = at / 4;
      CHECK(out.substr(at) == "...(+" + std::to_string(100 - shown) + " bytes)");
      for (std::size_t k = 0; k < shown; ++k)
        CHECK(out.substr(4 * k, 4) == "\\x01");
    }
  }
  SUBCASE("never cuts a UTF-8 sequence in half") {
    std::string in;
    for (int k = 0; k < 50; ++k)
      in += "\xE2\x9C\x93";  // ✓, 3 bytes each
    for (std::size_t max = 16; max < 50; ++max) {
      CAPTURE(max);
      const std::string out = escape_for_log(in, max);
      CHECK(out.size() <= max);
      const std::size_t at = out.find("...(+");
      REQUIRE(at != std::string::npos);
      CHECK(at % 3 == 0);
      CHECK(out.substr(at) == "...(+" + std::to_string(150 - at) + " bytes)");
    }
  }
  SUBCASE("the count of bytes left out is in input bytes, not escaped bytes") {
    const std::string out = escape_for_log(std::string(10, '\n') + std::string(10, 'z'), 24);
    // Five escaped newlines (10 bytes) and "...(+15 bytes)" (14) make 24; a sixth does not fit.
    CHECK(out == "\\n\\n\\n\\n\\n...(+15 bytes)");
  }
  SUBCASE("max_out too small for the marker: the marker alone") {
    CHECK(escape_for_log("abc", 3) == "abc");  // fits: no marker needed
    CHECK(escape_for_log("abcdef", 3) == "...(+6 bytes)");
    CHECK(escape_for_log(std::string(1000, 'q'), 3) == "...(+1000 bytes)");
    CHECK(escape_for_log(std::string(1000, 'q'), 0) == "...(+1000 bytes)");
    CHECK(escape_for_log("", 0) == "");
  }
  SUBCASE("a large input is bounded whatever it holds") {
    std::string in;
    for (int k = 0; k < 100000; ++k)
      in += static_cast<char>(k * 37 % 256);
    const std::string out = escape_for_log(in, 4096);
    CHECK(out.size() <= 4096);
    CHECK(out.size() >= 4096 - 40);
    CHECK(out.find(" bytes)") == out.size() - 7);
  }
}
