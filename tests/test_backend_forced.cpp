// SPDX-License-Identifier: MIT
// Description: Issue 15: CORING_BACKEND=io_uring where io_uring is denied (tests/deny_io_uring)
// does not fall back: the program stops with the clear message and a non-zero status.
#include "deny.hpp"
#include "process.hpp"
#include "test_support.hpp"

#include <string>

using namespace std::chrono_literals;

TEST_CASE("CORING_BACKEND=io_uring under a filter denying io_uring fails with the clear message" *
          coring::test::skip_unless(coring::test::seccomp_filter())) {
  struct denial {
    const char* err;
    const char* message;
  };
  for (const denial d :
       {denial{"EPERM", "io_uring_queue_init failed: Operation not permitted"},
        denial{"ENOSYS", "io_uring_queue_init failed: Function not implemented"}}) {
    CAPTURE(d.err);
    coring::test::child server(
        {"/usr/bin/env", "CORING_BACKEND=io_uring", coring::test::example_path("DENY_IO_URING"),
         "--errno", d.err, coring::test::example_path("ECHO_SERVER"), "--port", "0"},
        coring::test::child_options{.capture_stderr = true});
    const std::string err = server.read_stderr(10s);
    const std::string out = server.read_rest(1s);
    auto st = server.wait(5s);
    REQUIRE(st);
    CHECK(*st != 0);
    CHECK_MESSAGE(err.find(d.message) != std::string::npos, err);
    CHECK_MESSAGE(out.find("listening") == std::string::npos, out);
    CHECK(!coring::test::sanitizer_report(err));
  }
}
