// SPDX-License-Identifier: MIT
// Description: child processes for example tests (see process.hpp).
#include "process.hpp"

#include <coring/error.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace coring::test {

child::child(std::vector<std::string> argv, child_options opts) {
  int in[2], out[2], err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) throw_errno(errno, "pipe2");
  if (opts.capture_stderr && pipe2(err, O_CLOEXEC) < 0) throw_errno(errno, "pipe2");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  if (opts.capture_stderr) posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  int e = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (opts.capture_stderr) ::close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  if (e != 0) throw_errno(e, ("posix_spawn " + argv[0]).c_str());
}

child::~child() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (in_ >= 0) ::close(in_);
  if (out_ >= 0) ::close(out_);
  if (err_ >= 0) ::close(err_);
}

namespace {
// Waits (until deadline) for fd to be readable and appends what one read returns to into.
// Returns: false at the deadline, at EOF or on an error.
bool read_more(int fd, std::chrono::steady_clock::time_point deadline, std::string& into) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    into.append(buf, static_cast<std::size_t>(n));
    return true;
  }
}
}  // namespace

std::optional<std::string> child::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    if (!read_more(out_, deadline, buffered_)) return std::nullopt;
  }
}

std::string child::read_rest(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string all = std::exchange(buffered_, {});
  while (read_more(out_, deadline, all)) {}
  return all;
}

std::string child::read_stderr(std::chrono::milliseconds timeout) {
  std::string all;
  if (err_ < 0) return all;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (read_more(err_, deadline, all)) {}
  return all;
}

bool child::wait_stderr_for(const std::string& what, std::chrono::milliseconds timeout) {
  if (err_ < 0) return false;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (err_seen_.find(what) == std::string::npos)
    if (!read_more(err_, deadline, err_seen_)) return false;
  return true;
}

void child::close_stdout() {
  if (out_ >= 0) ::close(out_);
  out_ = -1;
}

void child::write(const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(in_, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno(errno, "write to child");
    off += static_cast<std::size_t>(n);
  }
}

void child::close_stdin() {
  if (in_ >= 0) ::close(in_);
  in_ = -1;
}

void child::signal(int sig) { ::kill(pid_, sig); }

std::optional<int> child::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    // Bounded poll on a child without a pidfd: 1 ms granularity is plenty for a test.
    pollfd none{-1, 0, 0};
    ::poll(&none, 0, 1);
  }
}

bool sanitizer_report(const std::string& text) {
  for (const char* mark : {"runtime error:", "AddressSanitizer", "LeakSanitizer",
                           "UndefinedBehaviorSanitizer", "ThreadSanitizer"})
    if (text.find(mark) != std::string::npos) return true;
  return false;
}

int exit_status_of(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  const std::string name = argv.empty() ? "" : argv[0];
  child c(std::move(argv), child_options{.capture_stderr = true});
  const auto t0 = std::chrono::steady_clock::now();
  // Read stderr to EOF first, so that a long report cannot block the child on a full pipe.
  const std::string err = c.read_stderr(timeout);
  if (!err.empty()) std::fprintf(stderr, "%s", err.c_str());
  const auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - t0);
  auto st = c.wait(std::max(left, std::chrono::milliseconds(100)));
  CHECK_MESSAGE(!sanitizer_report(err), name << " died of a sanitizer report:\n" << err);
  return st ? *st : -1;
}

std::string example_path(const char* env_var) {
  const char* p = std::getenv(env_var);
  if (!p) throw std::runtime_error(std::string("environment variable not set: ") + env_var);
  return p;
}

int port_from_line(const std::string& line) {
  auto colon = line.rfind(':');
  if (colon == std::string::npos) return -1;
  return std::atoi(line.c_str() + colon + 1);
}

std::optional<load_summary> parse_summary(const std::string& out) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    load_summary s;
    if (std::sscanf(line.c_str(),
                    "%zu connections x %zu messages x %zu bytes: %zu ok, %zu failed, %zu bytes "
                    "echoed and verified, %zu mismatches",
                    &s.connections, &s.count, &s.size, &s.ok, &s.failed, &s.bytes,
                    &s.mismatches) == 7)
      return s;
  }
  return std::nullopt;
}

}  // namespace coring::test
