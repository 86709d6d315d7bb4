// SPDX-License-Identifier: MIT
// Description: libFuzzer target: address::parse never misbehaves, and accepted text round-trips.
//
// Build by hand (clang only):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//     fuzz/fuzz_address.cpp src/address.cpp src/error.cpp -o /tmp/fuzz_address
//   cp -r fuzz/corpus/address /tmp/corpus && /tmp/fuzz_address -max_total_time=60 /tmp/corpus
// (Copy the corpus first: libFuzzer adds new inputs to the first corpus directory.)
#include <coring/address.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/socket.h>

namespace {

/// Parses text; on success, the canonical form must reparse to an equal address and print the
/// same text again (to_string is a fixed point).
void check_parse(std::string_view text) {
  coring::address a;
  try {
    a = coring::address::parse(text);
  } catch (const std::system_error&) {
    return;  // rejecting is fine; what matters is that nothing else happens
  }
  std::string canonical = a.to_string();
  (void)a.host();
  (void)a.port();
  (void)a.is_abstract();
  coring::address b;
  try {
    b = coring::address::parse(canonical);
  } catch (const std::system_error&) {
    std::abort();  // to_string produced text that parse rejects
  }
  if (!(b == a) || b.to_string() != canonical || b.size() != a.size()) std::abort();
}

/// Treats the same bytes as a kernel sockaddr of `size` bytes: the constructor and the
/// formatters must stay in bounds whatever the family and length. libFuzzer's buffer is a heap
/// block of exactly `size` bytes, so ASan reports any read past len. (No round-trip claim here:
/// not every sockaddr has a text form, e.g. a 107-byte abstract name.)
void check_sockaddr(const std::uint8_t* data, std::size_t size) {
  try {
    coring::address a(reinterpret_cast<const sockaddr*>(data), static_cast<socklen_t>(size));
    (void)a.to_string();
    (void)a.host();
    (void)a.port();
    (void)a.is_abstract();
    if (!(a == a)) std::abort();
  } catch (const std::system_error&) {}
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_parse(std::string_view(reinterpret_cast<const char*>(data), size));
  check_sockaddr(data, size);
  return 0;
}
