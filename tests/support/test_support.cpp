// SPDX-License-Identifier: MIT
// Description: test helpers (see test_support.hpp).
#include "test_support.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>
#include <dirent.h>
#include <unistd.h>

namespace coring::test {

namespace {

// The test case doctest is running, for the body that replaces a case whose kernel requirement
// is missing under CORING_REQUIRE_FEATURES=1.
const doctest::TestCaseData* current_case = nullptr;

struct current_case_listener : doctest::IReporter {
  explicit current_case_listener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData& tc) override { current_case = &tc; }
  void test_case_reenter(const doctest::TestCaseData& tc) override { current_case = &tc; }
  void test_case_end(const doctest::CurrentTestCaseStats&) override { current_case = nullptr; }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
DOCTEST_REGISTER_LISTENER("coring_current_case", 1, current_case_listener);

std::vector<std::string>& missing_required() {
  static std::vector<std::string> v;
  return v;
}

// Why each test case replaced by fail_missing_requirement fails, by "file:line".
std::map<std::string, std::string>& failure_reasons() {
  static std::map<std::string, std::string> m;
  return m;
}

std::string case_key(const doctest::TestCaseData& tc) {
  return std::string(tc.m_file.c_str()) + ":" + std::to_string(tc.m_line);
}

void fail_missing_requirement() {
  std::string why = "a kernel feature this test case needs is missing";
  if (current_case) {
    auto it = failure_reasons().find(case_key(*current_case));
    if (it != failure_reasons().end()) why = it->second;
  }
  FAIL(why);
}

std::string describe(const requirement& r) {
  return "needs " + r.what + ": " + r.missing;
}

}  // namespace

bool features_required() {
  const char* v = std::getenv("CORING_REQUIRE_FEATURES");
  return v != nullptr && std::string_view(v) == "1";
}

const std::vector<std::string>& missing_required_features() { return missing_required(); }

requirement ring_feature(const char* what, bool (*has)(const ring_features&)) {
  requirement r{requirement::kind::kernel, what, ""};
  // Lets a run check what a missing feature does (skip, or fail under CORING_REQUIRE_FEATURES=1)
  // on a kernel that has it.
  if (const char* p = std::getenv("CORING_TEST_PRETEND_LACKING"); p && r.what == p) {
    r.missing = "CORING_TEST_PRETEND_LACKING says this kernel lacks it";
    return r;
  }
  try {
    io_context ctx;
    if (!has(ctx.features()))
      r.missing = "this kernel lacks it (" + ctx.features().describe() + ")";
  } catch (const std::exception& e) {
    r.missing = e.what();
  }
  return r;
}

void skip_unless::fill(doctest::detail::TestCase& tc) const {
  if (r_.met()) return;
  const std::string line = std::string(tc.m_name) + ": " + describe(r_);
  if (r_.of == requirement::kind::kernel && features_required()) {
    std::printf("REQUIRED (CORING_REQUIRE_FEATURES=1), so this case fails: %s\n", line.c_str());
    missing_required().push_back(line);
    failure_reasons()[case_key(tc)] = "CORING_REQUIRE_FEATURES=1 and " + line;
    tc.m_test = &fail_missing_requirement;
    tc.m_skip = false;
    return;
  }
  std::printf("SKIP reason: %s\n", line.c_str());
  tc.m_skip = true;
}

bool ring_supports(const char* what, bool (*has)(const ring_features&)) {
  requirement r = ring_feature(what, has);
  if (r.met()) return true;
  std::printf("SKIP reason: %s\n", describe(r).c_str());
  if (features_required()) missing_required().push_back(describe(r));
  return false;
}

watchdog::watchdog(std::chrono::milliseconds limit, std::string what) {
  thread_ = std::thread([this, limit, what = std::move(what)] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
      std::fprintf(stderr, "watchdog: %s did not finish within %lld ms; aborting\n", what.c_str(),
                   static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::abort();
    }
  });
}

watchdog::~watchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

task<tcp_pair> make_tcp_pair(io_context& ctx, const address& where) {
  socket listener = tcp_listen(ctx, where, 16);
  address to = listener.sock_name();
  socket client(ctx, to.family(), SOCK_STREAM);
  // The connect completes from the backlog, so no concurrency is needed.
  co_await client.connect(to);
  socket server = co_await listener.accept();
  co_return tcp_pair{std::move(client), std::move(server)};
}

task<std::string> read_all(socket& s, std::size_t max) {
  std::string out;
  std::array<std::byte, 65536> buf;
  while (out.size() < max) {
    std::size_t n = co_await s.recv(buf);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  co_return out;
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    --n;  // the DIR's own descriptor
  }
  return n;
}

std::string unique_abstract_name(std::string_view tag) {
  static std::atomic<int> seq{0};
  return "coring-test-" + std::string(tag) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(seq++);
}

}  // namespace coring::test
