// SPDX-License-Identifier: MIT
// Description: Issue 15: running programs under tests/deny_io_uring (a seccomp filter that makes
// io_uring_setup, io_uring_enter and io_uring_register fail, as container runtimes do).
#pragma once

#include "process.hpp"
#include "test_support.hpp"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace coring::test {

/// argv run under deny_io_uring (its path from the environment variable DENY_IO_URING), the
/// three io_uring system calls failing with err ("EPERM", what Docker and Podman answer, or
/// "ENOSYS"). CORING_BACKEND is removed from its environment: the program picks its backend
/// itself, so the automatic fallback is what runs.
inline std::vector<std::string> denied(std::vector<std::string> argv, const char* err = "EPERM") {
  std::vector<std::string> all{
      "/usr/bin/env", "-u", "CORING_BACKEND", example_path("DENY_IO_URING"), "--errno", err};
  for (std::string& a : argv)
    all.push_back(std::move(a));
  return all;
}

/// Whether deny_io_uring can install its filter here, as an environment requirement for
/// skip_unless (no seccomp, e.g. an old or a locked-down kernel: a skip naming what it said).
inline requirement seccomp_filter() {
  static const requirement r = [] {
    requirement q{requirement::kind::environment, "a seccomp filter (deny_io_uring)", ""};
    child c({example_path("DENY_IO_URING"), "/bin/true"}, child_options{.capture_stderr = true});
    const std::string err = c.read_stderr(std::chrono::seconds(10));
    auto st = c.wait(std::chrono::seconds(10));
    if (!st || *st != 0)
      q.missing = "deny_io_uring /bin/true exited " + (st ? std::to_string(*st) : "late") +
                  (err.empty() ? "" : ": " + err);
    return q;
  }();
  return r;
}

}  // namespace coring::test
