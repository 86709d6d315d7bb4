// SPDX-License-Identifier: MIT
// Description: the examples' log: lines are written by a background thread from a bounded
// queue, so a slow or dead stdout/stderr never blocks (or kills) the thread serving clients.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <unistd.h>

namespace example {

/// A log on one descriptor (stdout or stderr). line() never blocks on the descriptor: it
/// queues the line (cut at max_line bytes) and a writer thread writes it. At most max_queued
/// bytes wait; lines beyond that are dropped and counted, and "[N log lines dropped]" is
/// written once there is room again, so a flood of clients is rate-limited to what the reader
/// of the log takes. A dead reader (EPIPE; SIGPIPE must be ignored, see ignore_sigpipe()) ends
/// the writing, never the process.
/// LIFETIME: the state is never freed (the writer thread may be blocked in write() when main
/// returns; the process exit ends it), and reachable from a static pointer, so no leak report.
class log {
 public:
  static constexpr std::size_t max_line = 1024;
  static constexpr std::size_t max_queued = std::size_t(1) << 20;

  /// The log on stdout / stderr.
  static log& out() {
    static log* l = new log(STDOUT_FILENO);
    return *l;
  }
  static log& err() {
    static log* l = new log(STDERR_FILENO);
    return *l;
  }

  /// Queues text plus '\n' (text cut at max_line bytes, marked "..."). Never blocks on the fd.
  void line(std::string_view text) {
    std::string s;
    if (text.size() > max_line) {
      s.assign(text.substr(0, max_line));
      s += "...";
    } else {
      s.assign(text);
    }
    s += '\n';
    {
      std::lock_guard lock(mu_);
      if (dead_) return;
      if (queued_ + s.size() > max_queued) {
        ++dropped_;
        return;
      }
      queued_ += s.size();
      lines_.push_back(std::move(s));
    }
    cv_.notify_one();
  }

  /// Waits until everything queued was written, at most limit (a stuck reader must not keep
  /// the process from exiting). Returns: true if all was written.
  bool flush(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return idle_.wait_for(lock, limit, [&] { return dead_ || (lines_.empty() && !writing_); });
  }
  /// At exit: flushes stdout's and stderr's logs within one budget (default 250 ms), so that a
  /// log nobody reads delays the exit by at most that, on top of a server's --grace.
  static void flush_all(std::chrono::milliseconds budget = std::chrono::milliseconds(250)) {
    const auto end = std::chrono::steady_clock::now() + budget;
    auto left = [&] {
      return std::max(std::chrono::milliseconds(0),
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          end - std::chrono::steady_clock::now()));
    };
    out().flush(left());
    err().flush(left());
  }

 private:
  explicit log(int fd) : fd_(fd) {
    std::thread([this] { write_loop(); }).detach();
  }

  void write_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !lines_.empty() || dropped_ > 0; });
      std::string batch;
      if (dropped_ > 0 && queued_ < max_queued / 2) {
        // Appended, not "[" + ...: g++ 12 -O3 warns (-Wrestrict, a false positive) on that.
        batch = '[';
        batch += std::to_string(dropped_);
        batch += " log lines dropped]\n";
        dropped_ = 0;
      }
      while (!lines_.empty() && batch.size() < 65536) {
        batch += lines_.front();
        queued_ -= lines_.front().size();
        lines_.pop_front();
      }
      if (batch.empty()) {  // drops pending but the queue is still full: wait for lines
        cv_.wait(lock, [&] { return !lines_.empty(); });
        continue;
      }
      writing_ = true;
      lock.unlock();
      const bool ok = write_all(batch);
      lock.lock();
      writing_ = false;
      if (!ok) {
        dead_ = true;
        lines_.clear();
        queued_ = 0;
      }
      idle_.notify_all();
      if (dead_) return;
    }
  }

  bool write_all(std::string_view s) const {
    while (!s.empty()) {
      ssize_t n = ::write(fd_, s.data(), s.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // EPIPE (reader gone), EIO, ...: stop logging
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  int fd_;
  std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<std::string> lines_;
  std::size_t queued_ = 0, dropped_ = 0;
  bool writing_ = false, dead_ = false;
};

}  // namespace example
