// SPDX-License-Identifier: MIT
// Description: doctest main: exits 77 (meson SKIP) when io_uring cannot be used at all.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <csignal>
#include <cstdio>

int main(int argc, char** argv) {
  try {
    coring::io_context probe;
  } catch (const std::system_error& e) {
    if (e.code() == coring::errc::io_uring_unavailable) {
      std::printf("SKIP: io_uring unavailable: %s\n", e.what());
      return 77;
    }
    throw;
  }
  // Sends to closed peers must give EPIPE, never kill us: keep SIGPIPE at its default
  // disposition so that a missing MSG_NOSIGNAL fails the test loudly.
  std::signal(SIGPIPE, SIG_DFL);
  doctest::Context context(argc, argv);
  return context.run();
}
