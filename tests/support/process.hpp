// SPDX-License-Identifier: MIT
// Description: child processes for example tests: spawn with pipes, read lines, signal, wait.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace coring::test {

/// How a child is started.
struct child_options {
  /// Its stderr on a pipe too (read_stderr), instead of sharing the test's. Only for children
  /// that write little to it or whose stderr is read: a full pipe blocks the child.
  bool capture_stderr = false;
};

/// A child process with its stdin and stdout on pipes (stderr too with capture_stderr). The
/// environment is inherited, so a sanitizer's options reach it. The destructor kills it
/// (SIGKILL) if it is still running.
class child {
 public:
  /// Starts argv[0] (a path) with arguments. Throws: std::system_error.
  explicit child(std::vector<std::string> argv, child_options opts = {});
  ~child();
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  /// Reads one line of stdout (without '\n'), or nullopt on EOF or after timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// Everything left on stdout until EOF (bounded by timeout).
  std::string read_rest(std::chrono::milliseconds timeout);
  /// Everything on stderr until EOF (bounded by timeout); "" without capture_stderr.
  std::string read_stderr(std::chrono::milliseconds timeout);
  /// Reads stderr (capture_stderr) until it holds `what`, at most timeout. Returns: true if it
  /// appeared; everything read so far is kept in stderr_seen().
  bool wait_stderr_for(const std::string& what, std::chrono::milliseconds timeout);
  const std::string& stderr_seen() const { return err_seen_; }
  /// Closes our end of its stdout: its next writes there fail with EPIPE (or SIGPIPE).
  void close_stdout();
  /// Writes to its stdin; close_stdin() sends EOF.
  void write(const std::string& s);
  void close_stdin();
  void signal(int sig);
  /// Waits for exit. Returns: exit status (128+signal if killed), or nullopt after timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string buffered_;
  std::string err_seen_;
  std::optional<int> status_;
};

/// True if text holds a sanitizer's report (ASan, UBSan, LSan, TSan): a child that exited with
/// the status a test expects may still have died of one (scripts/test makes such deaths exit 86,
/// but a run with other options may not).
bool sanitizer_report(const std::string& text);

/// Runs argv to completion with stderr captured and checks (doctest CHECK) that its stderr holds
/// no sanitizer report; its stderr is passed on to the test's. Returns: its exit status (128 +
/// signal if killed), or -1 if it did not exit within timeout (then it is killed).
int exit_status_of(std::vector<std::string> argv,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Path of a built example, from the environment variable meson sets (e.g. ECHO_SERVER).
std::string example_path(const char* env_var);

/// Parses the port from a line ending in "host:PORT" (e.g. "listening on 127.0.0.1:4242").
int port_from_line(const std::string& line);

/// echo_client's summary line: "N connections x M messages x S bytes: A ok, F failed,
/// B bytes echoed and verified, X mismatches, ...".
struct load_summary {
  std::size_t connections = 0, count = 0, size = 0, ok = 0, failed = 0, bytes = 0, mismatches = 0;
};

/// The summary line in out, or nullopt if there is none.
std::optional<load_summary> parse_summary(const std::string& out);

}  // namespace coring::test
