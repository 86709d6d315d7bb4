// SPDX-License-Identifier: MIT
// Description: libFuzzer target: parse_control (received cmsg bytes) never reads out of bounds
// or misbehaves, whatever cmsg_len, level and type claim.
//
// Build by hand (clang only; only the ancillary-data part of socket.cpp is compiled in):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//     fuzz/fuzz_cmsg.cpp src/ancillary.cpp src/address.cpp \
//     src/error.cpp -o /tmp/fuzz_cmsg
//   mkdir -p /tmp/corpus-cmsg && /tmp/fuzz_cmsg -max_total_time=60 /tmp/corpus-cmsg
#include <coring/socket.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The kernel writes control data into a cmsghdr-aligned buffer (parse_control's
  // precondition); operator new[] aligns to 16 and ASan poisons everything past size, so any
  // read beyond the input is caught.
  auto block = std::make_unique<std::byte[]>(size);
  if (size) std::memcpy(block.get(), data, size);
  coring::parsed_control p = coring::parse_control(size ? block.get() : nullptr, size);
  // Each SCM_RIGHTS int takes 4 bytes of input; anything more would be invented.
  if (p.fds.size() * sizeof(int) > size) std::abort();
  if (p.pktinfo) (void)p.pktinfo->destination.to_string();
  return 0;
}
