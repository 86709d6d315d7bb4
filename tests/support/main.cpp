// SPDX-License-Identifier: MIT
// Description: doctest main: exits 77 (meson SKIP) when io_uring cannot be used at all, or fails
// when CORING_REQUIRE_FEATURES=1 and this kernel lacks io_uring or a feature a test case needs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "test_support.hpp"

#include <coring/error.hpp>
#include <coring/io_context.hpp>

#include <csignal>
#include <cstdio>

int main(int argc, char** argv) {
  try {
    coring::io_context probe;
  } catch (const std::system_error& e) {
    if (e.code() == coring::errc::io_uring_unavailable) {
      if (coring::test::features_required()) {
        std::printf("FAIL: CORING_REQUIRE_FEATURES=1 but io_uring is unavailable: %s\n", e.what());
        return 1;
      }
      std::printf("SKIP: io_uring unavailable: %s\n", e.what());
      return 77;
    }
    throw;
  }
  // Sends to closed peers must give EPIPE, never kill us: keep SIGPIPE at its default
  // disposition so that a missing MSG_NOSIGNAL fails the test loudly.
  std::signal(SIGPIPE, SIG_DFL);
  doctest::Context context(argc, argv);
  int status = context.run();
  // A kernel feature a case needed was missing although CORING_REQUIRE_FEATURES=1: fail, even
  // if that case was filtered out of this run.
  const auto& missing = coring::test::missing_required_features();
  if (!missing.empty() && !context.shouldExit()) {
    std::printf(
        "FAIL: CORING_REQUIRE_FEATURES=1 but this kernel lacks what %zu test case(s) "
        "need:\n",
        missing.size());
    for (const auto& m : missing)
      std::printf("  %s\n", m.c_str());
    if (status == 0) status = 1;
  }
  return status;
}
