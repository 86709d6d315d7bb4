// SPDX-License-Identifier: MIT
// Description: test helpers (see test_support.hpp).
#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string_view>

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

std::string describe(const requirement& r) { return "needs " + r.what + ": " + r.missing; }

}  // namespace

bool features_required() {
  const char* v = std::getenv("CORING_REQUIRE_FEATURES");
  return v != nullptr && std::string_view(v) == "1";
}

const std::vector<std::string>& missing_required_features() { return missing_required(); }

const requirement& ring_supports(feature f) {
  struct named_feature {
    const char* what;
    bool (*has)(const ring_features&);
  };
  // In the order of enum class feature.
  static constexpr std::array<named_feature, 4> named{{
      {"provided-buffer rings", [](const ring_features& r) { return r.buf_ring; }},
      {"multishot accept", [](const ring_features& r) { return r.accept_multishot; }},
      {"multishot recv", [](const ring_features& r) { return r.recv_multishot; }},
      {"SINGLE_ISSUER or a registered ring fd (they tie a ring to its thread)",
       [](const ring_features& r) { return r.single_issuer || r.registered_ring_fd; }},
  }};
  static const std::vector<requirement> probed = [] {
    ring_features have;
    std::string unavailable;
    try {
      io_context ctx;
      have = ctx.features();
    } catch (const std::exception& e) {
      unavailable = e.what();
    }
    const requirement on_io_uring = io_uring_backend();
    // Lets a run check what a missing feature does (skip, or fail under
    // CORING_REQUIRE_FEATURES=1) on a kernel that has it.
    const char* pretend = std::getenv("CORING_TEST_PRETEND_LACKING");
    std::vector<requirement> all;
    for (const named_feature& n : named) {
      requirement r{requirement::kind::kernel, n.what, ""};
      if (pretend && r.what == pretend) {
        r.missing = "CORING_TEST_PRETEND_LACKING says this kernel lacks it";
      } else if (!unavailable.empty()) {
        r.missing = unavailable;
      } else if (!n.has(have) && !on_io_uring.met()) {
        // Issue 15: absent by design on another backend (epoll), whatever the kernel has: a
        // skip even under CORING_REQUIRE_FEATURES=1. What that backend emulates (buffer rings)
        // it reports present, and those cases run.
        r.of = requirement::kind::environment;
        r.missing = on_io_uring.missing;
      } else if (!n.has(have)) {
        r.missing = "this kernel lacks it (" + have.describe() + ")";
      }
      all.push_back(std::move(r));
    }
    return all;
  }();
  return probed.at(static_cast<std::size_t>(f));
}

const std::string& backend_name() {
  static const std::string name = []() -> std::string {
    try {
      io_context ctx;
      return ctx.features().backend == backend_kind::io_uring ? "io_uring" : "epoll";
    } catch (const std::exception&) {
      return "";
    }
  }();
  return name;
}

requirement io_uring_backend() {
  static const requirement r = [] {
    requirement q{requirement::kind::environment, "the io_uring backend", ""};
    try {
      io_context ctx;
      if (ctx.features().backend != backend_kind::io_uring)
        q.missing =
            "this process runs on the epoll backend (" + ctx.features().backend_reason + ")";
    } catch (const std::exception& e) {
      q.missing = std::string("no io_context can be made here: ") + e.what();
    }
    return q;
  }();
  return r;
}

namespace {
// "" if this process may open socket(AF_INET, type, IPPROTO_ICMP), else what socket(2) said.
std::string icmp_error(int type) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  return "";
}
}  // namespace

requirement can_open(icmp_socket kind) {
  const std::string raw = kind == icmp_socket::datagram ? "" : icmp_error(SOCK_RAW);
  const std::string dgram = kind == icmp_socket::raw ? "" : icmp_error(SOCK_DGRAM);
  switch (kind) {
    case icmp_socket::raw:
      return {requirement::kind::environment, "a raw ICMP socket (CAP_NET_RAW)",
              raw.empty() ? "" : "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP): " + raw};
    case icmp_socket::datagram:
      return {requirement::kind::environment,
              "an ICMP datagram socket (our gid in net.ipv4.ping_group_range)",
              dgram.empty() ? "" : "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP): " + dgram};
    case icmp_socket::raw_or_datagram:
      break;
  }
  return {requirement::kind::environment,
          "a raw ICMP socket (CAP_NET_RAW) or an ICMP datagram socket (net.ipv4.ping_group_range)",
          raw.empty() || dgram.empty() ? "" : "SOCK_RAW: " + raw + "; SOCK_DGRAM: " + dgram};
}

const char* python3() {
  const char* p = std::getenv("PYTHON3");
  return p && *p ? p : nullptr;
}

requirement has_python3() {
  return {requirement::kind::environment, "python3",
          python3() ? "" : "PYTHON3 is empty: meson found no python3 at configure time"};
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

task<bool> kernel_idle(io_context& ctx, std::chrono::milliseconds limit) {
  for (auto waited = std::chrono::milliseconds(0); ctx.in_flight() > 0 && waited < limit; ++waited)
    co_await sleep_for(ctx, std::chrono::milliseconds(1));
  co_return ctx.in_flight() == 0;
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

temp_dir::temp_dir(std::string_view tag) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / ("coring-test-" + std::string(tag) + "-XXXXXX"))
          .string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  path_ = std::move(tmpl);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, std::string_view content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    REQUIRE(n > 0);
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

}  // namespace coring::test
