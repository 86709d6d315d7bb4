// SPDX-License-Identifier: MIT
// Description: sending a file over loopback TCP: sendfile(2) (send_file), splice through a pipe
// (send_file with a pipe) vs read into a buffer + send_all, for 4 KiB, 64 KiB, 256 KiB and 1 MiB
// files: the sender's CPU per MiB (process CPU, io-wq workers included), alternating rounds,
// medians. Also what a reader that never reads costs a splicing and a sendfile sender (io-wq worker
// threads).
#include <coring/coring.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

double cpu_seconds() {  // this process, all threads (io-wq workers are threads of it)
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

int count_threads() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

// The reader: a child process that connects and reads everything until EOF (not counted).
pid_t start_reader(const coring::address& to, int connections, bool read) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  std::vector<int> fds;
  for (int i = 0; i < connections; ++i) {
    int fd = ::socket(to.family(), SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, to.data(), to.size()) < 0) _exit(2);
    fds.push_back(fd);
  }
  if (!read) {  // a peer that never reads: wait until the parent closes
    char c;
    for (int fd : fds)
      while (::recv(fd, &c, 0, 0) > 0) {}
    ::pause();
    _exit(0);
  }
  std::vector<char> buf(1 << 20);
  while (::recv(fds[0], buf.data(), buf.size(), 0) > 0) {}
  _exit(0);
}

enum class method {
  sendfile,
  splice_64k,
  splice_1m,
  splice_overlap,
  read_send,
  read_send_128k,
  read_send_64k
};
const char* name_of(method m) {
  switch (m) {
    case method::sendfile:
      return "sendfile (send_file)";
    case method::splice_64k:
      return "splice, 64 KiB pipe";
    case method::splice_1m:
      return "splice, 1 MiB pipe";
    case method::splice_overlap:
      return "splice, pipe kept full";
    case method::read_send:
      return "read + send_all, 256 KiB";
    case method::read_send_128k:
      return "read + send_all, 128 KiB";
    case method::read_send_64k:
      return "read + send_all, 64 KiB";
  }
  return "?";
}

// Keeps the pipe full: the file → pipe splices run ahead of the pipe → socket ones.
coring::task<> fill(coring::io_context& ctx, const coring::file& f, std::uint64_t size,
                    coring::pipe& p) {
  std::uint64_t off = 0;
  while (off < size) {
    std::size_t n = co_await coring::splice(ctx, f.fileno(), static_cast<std::int64_t>(off),
                                            p.write_fd(), -1, size - off, SPLICE_F_MOVE);
    if (n == 0) throw std::runtime_error("file ended early");
    off += n;
  }
}
coring::task<> drain(coring::io_context& ctx, coring::socket& s, std::uint64_t size,
                     coring::pipe& p) {
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t n = co_await coring::splice(ctx, p.read_fd(), -1, s.fileno(), -1, size - done,
                                            SPLICE_F_MOVE | SPLICE_F_MORE);
    if (n == 0) throw std::runtime_error("socket closed");
    done += n;
  }
}

struct cost {
  double cpu = 0;   // sender CPU seconds
  double wall = 0;  // seconds
};

// Sends the file `times` times with method m. Returns: sender CPU and wall seconds.
coring::task<cost> run(coring::io_context& ctx, coring::socket& s, const coring::file& f,
                       std::uint64_t size, int times, method m) {
  coring::pipe p = coring::pipe::open(m == method::splice_64k ? 0 : 1 << 20);
  const std::uint64_t chunk = m == method::read_send_64k    ? 64 << 10
                              : m == method::read_send_128k ? 128 << 10
                                                            : 256 << 10;
  std::vector<std::byte> buf(std::min<std::uint64_t>(size, chunk));
  const double t0 = cpu_seconds();
  const auto w0 = std::chrono::steady_clock::now();
  for (int i = 0; i < times; ++i) {
    if (m == method::read_send || m == method::read_send_128k || m == method::read_send_64k) {
      for (std::uint64_t off = 0; off < size;) {
        const std::size_t want = std::min<std::uint64_t>(buf.size(), size - off);
        std::size_t n = co_await f.read(std::span(buf).first(want), off);
        co_await s.send_all(std::span(buf).first(n));
        off += n;
      }
    } else if (m == method::splice_overlap) {
      auto both = co_await coring::when_all(fill(ctx, f, size, p), drain(ctx, s, size, p));
      (void)both;
    } else if (m == method::sendfile) {
      co_await coring::send_file(s, f, 0, size);
    } else {
      co_await coring::send_file(s, f, 0, size, p);
    }
  }
  const double cpu = cpu_seconds() - t0;
  co_return cost{cpu, std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count()};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

coring::task<> bench(coring::io_context& ctx, const std::string& dir, int rounds) {
  const method methods[] = {method::read_send,  method::read_send_128k, method::read_send_64k,
                            method::splice_64k, method::splice_1m,      method::splice_overlap,
                            method::sendfile};
  for (std::uint64_t size : {std::uint64_t{4} << 10, std::uint64_t{64} << 10,
                             std::uint64_t{256} << 10, std::uint64_t{1} << 20}) {
    const std::string path = dir + "/f" + std::to_string(size);
    {
      std::string content(size, 'x');
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ::write(fd, content.data(), size) != static_cast<ssize_t>(size)) std::abort();
      ::close(fd);
    }
    coring::file f = co_await coring::file::open(ctx, path, O_RDONLY);
    // Same total bytes per run for each size: 128 MiB (32,768 4 KiB files, 128 1 MiB files).
    const int times = static_cast<int>((std::uint64_t{128} << 20) / size);
    std::vector<std::vector<double>> cpu(std::size(methods)), rate(std::size(methods));
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t k = 0; k < std::size(methods); ++k) {
        const std::size_t mi = (k + static_cast<std::size_t>(r)) % std::size(methods);
        coring::socket listener = coring::tcp_listen(ctx, "127.0.0.1:0");
        pid_t child = start_reader(listener.sock_name(), 1, true);
        coring::socket s = co_await listener.accept();
        const cost c = co_await run(ctx, s, f, size, times, methods[mi]);
        s.shutdown(SHUT_WR);
        co_await s.close();
        ::waitpid(child, nullptr, 0);
        const double mib = static_cast<double>(size) * times / (1 << 20);
        cpu[mi].push_back(c.cpu / mib);
        rate[mi].push_back(mib * 1.048576 / c.wall);
      }
    }
    std::printf(
        "%7llu B file, %d rounds, medians: sender CPU per MiB, per file, vs the first; MB/s\n",
        static_cast<unsigned long long>(size), rounds);
    const double base = median(cpu[0]);
    for (std::size_t k = 0; k < std::size(methods); ++k) {
      const double m = median(cpu[k]);
      std::printf("  %-26s %8.1f us/MiB %8.2f us/file %5.2fx %7.0f MB/s\n", name_of(methods[k]),
                  m * 1e6, m * 1e6 * static_cast<double>(size) / (1 << 20), m / base,
                  median(rate[k]));
    }
    std::fflush(stdout);
  }
}

// What readers that never read cost a splicing sender: one io-wq worker blocked per transfer.
coring::task<> slow_readers(coring::io_context& ctx, const std::string& dir, int n) {
  const std::string path = dir + "/big";
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 64 << 20) < 0) std::abort();
    ::close(fd);
  }
  coring::file f = co_await coring::file::open(ctx, path, O_RDONLY);
  coring::socket listener = coring::tcp_listen(ctx, "127.0.0.1:0");
  pid_t child = start_reader(listener.sock_name(), n, false);
  std::vector<coring::socket> socks;
  std::vector<coring::pipe> pipes;
  for (int i = 0; i < n; ++i) {
    socks.push_back(co_await listener.accept());
    pipes.push_back(coring::pipe::open());
  }
  // By sendfile first (io-wq workers outlive their work for a while): POLLOUT polls, no thread.
  const int before = count_threads();
  coring::task_group g2(ctx);
  for (int i = 0; i < n; ++i) {
    auto t = [](coring::socket& s, const coring::file& f) -> coring::task<> {
      auto t = coring::send_file(s, f, 0, 64 << 20, {.timeout = 1s});
      auto r = co_await coring::as_result(std::move(t));
      (void)r;
    };
    g2.spawn(t(socks[static_cast<std::size_t>(i)], f));
  }
  co_await coring::sleep_for(ctx, 500ms);
  const int during2 = count_threads();
  co_await g2.join();
  std::printf(
      "%d readers that never read: %d threads before, %d while the sendfile transfers wait\n", n,
      before, during2);
  // Then by splice: one blocked io-wq worker per transfer.
  coring::task_group g(ctx);
  for (int i = 0; i < n; ++i) {
    auto t = [](coring::socket& s, const coring::file& f, coring::pipe& p) -> coring::task<> {
      auto r = co_await coring::as_result(coring::send_file(s, f, 0, 64 << 20, p, {.timeout = 1s}));
      (void)r;
    };
    g.spawn(t(socks[static_cast<std::size_t>(i)], f, pipes[static_cast<std::size_t>(i)]));
  }
  co_await coring::sleep_for(ctx, 500ms);
  const int during = count_threads();
  co_await g.join();
  std::printf(
      "%d readers that never read: %d threads while the splice transfers wait (one blocked io-wq "
      "worker each)\n",
      n, during);
  ::kill(child, SIGTERM);
  ::waitpid(child, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int slow = argc > 2 ? std::atoi(argv[2]) : 100;
  char tmpl[] = "/tmp/coring-bench-sendfile-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  coring::io_context ctx;
  int rc = 0;
  try {
    coring::sync_wait(ctx, bench(ctx, dir, rounds));
    if (slow > 0) coring::sync_wait(ctx, slow_readers(ctx, dir, slow));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sendfile: %s\n", e.what());
    rc = 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
