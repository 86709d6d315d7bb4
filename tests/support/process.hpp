// SPDX-License-Identifier: MIT
// Description: child processes for example tests: spawn with pipes, read lines, signal, wait.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace coring::test {

/// A child process with its stdin, stdout and stderr on pipes. The destructor kills it (SIGKILL)
/// if it is still running.
class child {
 public:
  /// Starts argv[0] (a path) with arguments. Throws: std::system_error.
  explicit child(std::vector<std::string> argv);
  ~child();
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  /// Reads one line of stdout (without '\n'), or nullopt on EOF or after timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// Everything left on stdout until EOF (bounded by timeout).
  std::string read_rest(std::chrono::milliseconds timeout);
  /// Writes to its stdin; close_stdin() sends EOF.
  void write(const std::string& s);
  void close_stdin();
  void signal(int sig);
  /// Waits for exit. Returns: exit status (128+signal if killed), or nullopt after timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buffered_;
  std::optional<int> status_;
};

/// Path of a built example, from the environment variable meson sets (e.g. ECHO_SERVER).
std::string example_path(const char* env_var);

/// Parses the port from a line ending in "host:PORT" (e.g. "listening on 127.0.0.1:4242").
int port_from_line(const std::string& line);

}  // namespace coring::test
