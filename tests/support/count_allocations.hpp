// SPDX-License-Identifier: MIT
// Description: replaces the global operator new of the test program that includes it (once, in
// one source file) with one that counts calls: `test::allocations()`.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace coring::test {
/// Calls of operator new (and new[]) since the program started.
inline std::atomic<long> allocation_count{0};
inline long allocations() noexcept { return allocation_count.load(std::memory_order_relaxed); }
}  // namespace coring::test

// Replacement functions must not be inline: this header is for one source file per program.
void* operator new(std::size_t n) {
  coring::test::allocation_count.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// The nothrow forms too: a replaced delete must free what every new allocated (ASan checks that
// new and free match, and coring uses new (std::nothrow) on a few cold paths).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  coring::test::allocation_count.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
