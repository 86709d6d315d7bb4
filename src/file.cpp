// SPDX-License-Identifier: MIT
// Description: file, pipe and send_file: synchronous calls, and the prep/complete halves of the
// file operations (open, openat2, statx, read, write) and of splice.
#include <coring/file.hpp>
#include <coring/when_all.hpp>

#include <liburing.h>

#include "detail/valgrind.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

namespace coring {

namespace detail {

path_copy::path_copy(std::string_view p) : size_(p.size()) {
  has_nul_ = p.find('\0') != std::string_view::npos;
  if (p.size() < small_.size()) {
    std::copy(p.begin(), p.end(), small_.begin());
    small_[p.size()] = '\0';
  } else {
    heap_.assign(p);
  }
}

path_copy::path_copy(path_copy&& o) noexcept
    : small_(o.small_), heap_(std::move(o.heap_)), size_(o.size_), has_nul_(o.has_nul_) {}

open_op::open_op(io_context& ctx, int dir_fd, std::string_view path, int flags, unsigned mode,
                 std::uint64_t resolve)
    : io_op(ctx), dir_fd_(dir_fd), openat2_(resolve != 0), path_(path) {
  how_.flags = static_cast<std::uint64_t>(static_cast<unsigned>(flags | O_CLOEXEC));
  // openat2 refuses a mode without O_CREAT/O_TMPFILE (EINVAL); openat ignores it.
  // (O_TMPFILE contains O_DIRECTORY's bit: test it whole.)
  const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
  how_.mode = creates ? mode : 0;
  how_.resolve = resolve;
}

void open_op::prep(io_uring_sqe& sqe) noexcept {
  // LIFETIME: path_ and how_ live in the op, which stays put until the final CQE; the kernel
  // copies both when it takes the SQE (later than here: at the loop's next submit).
  if (openat2_)
    io_uring_prep_openat2(&sqe, dir_fd_, path_.c_str(), &how_);
  else
    io_uring_prep_openat(&sqe, dir_fd_, path_.c_str(), static_cast<int>(how_.flags),
                         static_cast<mode_t>(how_.mode));
}

result<file> open_op::complete(int res, std::uint32_t) noexcept {
  if (path_.has_nul()) return errno_code(EINVAL);
  if (res < 0) return errno_code(-res);
  return file(context(), res);
}

void open_op::raise(std::error_code ec) const {
  throw_error(ec, "open " + std::string(path_.view().substr(0, path_.view().find('\0'))));
}

void statx_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_statx(&sqe, fd_, "", AT_EMPTY_PATH,
                      STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_MTIME, &stx_);
}

result<file_status> statx_op::complete(int res, std::uint32_t) noexcept {
  if (res < 0) return errno_code(-res);
  kernel_wrote(&stx_, sizeof stx_);
  file_status st;
  st.size = stx_.stx_size;
  st.mode = stx_.stx_mode;
  st.regular = S_ISREG(stx_.stx_mode);
  st.directory = S_ISDIR(stx_.stx_mode);
  st.mtime = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(stx_.stx_mtime.tv_sec) +
          std::chrono::nanoseconds(stx_.stx_mtime.tv_nsec)));
  return st;
}

void read_op::prep(io_uring_sqe& sqe) noexcept {
  const auto n = static_cast<unsigned>(std::min<std::size_t>(buf_.size(), 1U << 30));
  io_uring_prep_read(&sqe, fd_, buf_.data(), n, offset_);
}

void write_op::prep(io_uring_sqe& sqe) noexcept {
  const auto n = static_cast<unsigned>(std::min<std::size_t>(buf_.size(), 1U << 30));
  io_uring_prep_write(&sqe, fd_, buf_.data(), n, offset_);
}

result<std::size_t> splice_op::complete(int res, std::uint32_t flags) noexcept {
  // A splice cancelled while it waited in an io-wq worker can end with -ERESTARTSYS (512) and
  // its kin (seen on Linux 6.18 over a Unix socket): the signal interrupted it.
  if (res <= -512 && res >= -516) res = -ECANCELED;
  return io_op::complete(res, flags);
}

void splice_op::prep(io_uring_sqe& sqe) noexcept {
  io_uring_prep_splice(&sqe, fd_in_, off_in_, fd_out_, off_out_, len_, flags_);
}

}  // namespace detail

file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    ctx_ = o.ctx_;
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

file::~file() {
  if (fd_ >= 0) ::close(fd_);
}

pipe pipe::open(std::size_t capacity) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno(errno, "pipe2");
  pipe p;
  p.read_.reset(fds[0]);
  p.write_.reset(fds[1]);
  if (capacity > 0) {
    const int want = static_cast<int>(std::min<std::size_t>(capacity, 1U << 30));
    (void)::fcntl(fds[1], F_SETPIPE_SZ, want);  // best effort (pipe-max-size, user limits)
  }
  const int got = ::fcntl(fds[1], F_GETPIPE_SZ);
  p.capacity_ = got > 0 ? static_cast<std::size_t>(got) : 65536;
  return p;
}

void pipe::reset() noexcept {
  read_.reset();
  write_.reset();
  capacity_ = 0;
}

namespace {

// Closes the pipe unless the transfer finished: a failed one may leave unsent bytes in it.
struct reset_unless_done {
  pipe& p;
  bool done = false;
  ~reset_unless_done() {
    if (!done) p.reset();
  }
};

// The transfer, bounded by stop only. TRICKY: a kernel linked timeout does not interrupt a
// splice that blocks in an io-wq worker (Linux 6.18: the timeout never fires while the worker
// waits for socket space), but an explicit cancel does (it signals the worker): deadlines are
// stop requests made by cancel_after's timer.
task<std::size_t> transfer(socket& s, const file& f, std::uint64_t offset, std::uint64_t count,
                           pipe& p, std::stop_token stop) {
  reset_unless_done guard{p};
  io_context& ctx = s.context();
  std::uint64_t left = count;
  while (left > 0) {
    // File → pipe: at most what the pipe holds, so that this splice never waits for the socket.
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(left, p.capacity()));
    auto fill = coring::splice(ctx, f.fileno(), static_cast<std::int64_t>(offset), p.write_fd(), -1,
                               chunk, SPLICE_F_MOVE)
                    .with_stop(stop);
    const std::size_t in = co_await std::move(fill);
    if (in == 0) throw_error(make_error_code(errc::unexpected_eof), "send_file: file ended early");
    offset += in;
    left -= in;
    // Pipe → socket: everything that went in, before the next fill. A splice cancelled after it
    // sent some bytes returns their count; the next one then ends at once (the stop sticks).
    std::size_t pending = in;
    while (pending > 0) {
      const unsigned more = left > 0 ? SPLICE_F_MORE : 0;
      auto drain =
          coring::splice(ctx, p.read_fd(), -1, s.fileno(), -1, pending, SPLICE_F_MOVE | more)
              .with_stop(stop);
      const std::size_t out = co_await std::move(drain);
      if (out == 0) throw_errno(EPIPE, "send_file");
      pending -= out;
    }
  }
  guard.done = true;
  co_return static_cast<std::size_t>(count);
}

// Sets O_NONBLOCK on a descriptor for its lifetime, then restores the previous flags.
class nonblock_scope {
 public:
  explicit nonblock_scope(int fd) : fd_(fd), flags_(::fcntl(fd, F_GETFL)) {
    if (flags_ < 0) throw_errno(errno, "send_file: fcntl");
    if ((flags_ & O_NONBLOCK) == 0 && ::fcntl(fd_, F_SETFL, flags_ | O_NONBLOCK) < 0)
      throw_errno(errno, "send_file: fcntl");
  }
  nonblock_scope(const nonblock_scope&) = delete;
  nonblock_scope& operator=(const nonblock_scope&) = delete;
  ~nonblock_scope() {
    if ((flags_ & O_NONBLOCK) == 0) (void)::fcntl(fd_, F_SETFL, flags_);
  }

 private:
  int fd_;
  int flags_;
};

// True if the byte at offset can be read without waiting for the disk (RWF_NOWAIT: EAGAIN when
// the page is not in the page cache). End of file counts as cached: sendfile then says so. A
// file system without RWF_NOWAIT (EOPNOTSUPP) counts as cached only if it lives in memory
// (tmpfs, ramfs); any other (NFS, FUSE) goes by the ring.
bool cached(int fd, std::uint64_t offset) noexcept {
  std::byte b{};
  iovec v{&b, 1};
  const ssize_t r = ::preadv2(fd, &v, 1, static_cast<off_t>(offset), RWF_NOWAIT);
  if (r >= 0) return true;
  if (errno == EAGAIN) return false;
  if (errno != EOPNOTSUPP) return true;  // sendfile reports the error
  struct statfs fs {};
  if (::fstatfs(fd, &fs) < 0) return false;
  return fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
}

// sendfile(2) has no MSG_NOSIGNAL: a peer that went away raises SIGPIPE, which kills a process
// at the default disposition. So SIGPIPE is blocked in this thread around each call, and one
// that the call raised is taken back (sigtimedwait) before the mask is restored.
ssize_t sendfile_nosignal(int out_fd, int in_fd, off_t* pos, std::size_t n) noexcept {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  const bool masked = ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set) == 0;
  const bool was_pending = masked && ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  const ssize_t r = ::sendfile(out_fd, in_fd, pos, n);
  const int err = errno;
  if (masked) {
    if (r < 0 && err == EPIPE && !was_pending) {
      const timespec zero{0, 0};
      while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {}
    }
    ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  }
  errno = err;
  return r;
}

constexpr std::uint64_t sendfile_chunk = 1 << 20;  // bytes per probe and sendfile call
constexpr std::size_t cold_chunk = 128 * 1024;     // bytes per ring read of an uncached chunk

}  // namespace

task<std::size_t> send_file(socket& s, const file& f, std::uint64_t offset, std::uint64_t count,
                            send_file_options o) {
  using clock = std::chrono::steady_clock;
  const bool has_deadline = o.timeout.count() > 0;
  const clock::time_point deadline = clock::now() + o.timeout;
  // What is left of the time (at least 1 ms: with_timeout needs a positive one); throws
  // timed_out once it is over.
  auto left = [&] {
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (d.count() <= 0) throw_error(std::make_error_code(std::errc::timed_out), "send_file");
    return d;
  };
  auto check_stop = [&] {
    if (o.stop.stop_requested() || s.cancelled())
      throw_error(std::make_error_code(std::errc::operation_canceled), "send_file");
  };
  nonblock_scope nonblocking(s.fileno());
  std::vector<std::byte> cold;  // only for chunks that are not in the page cache
  std::uint64_t done = 0;
  while (done < count) {
    check_stop();
    const std::uint64_t at = offset + done;
    const std::uint64_t chunk = std::min(count - done, sendfile_chunk);
    if (!cached(f.fileno(), at) || !cached(f.fileno(), at + chunk - 1)) {
      // Cold: through the ring (the read goes async in the kernel), then one send_all.
      if (cold.empty()) cold.resize(cold_chunk);
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, cold.size()));
      std::span<std::byte> buf = std::span(cold).first(want);
      std::size_t n = 0;
      if (has_deadline) {
        auto rd = f.read(buf, at).with_timeout(left()).with_stop(o.stop);
        n = co_await std::move(rd);
      } else {
        auto rd = f.read(buf, at).with_stop(o.stop);
        n = co_await std::move(rd);
      }
      if (n == 0) throw_error(make_error_code(errc::unexpected_eof), "send_file: file ended early");
      std::span<const std::byte> out = buf.first(n);
      if (has_deadline) {
        auto snd = s.send_all(out).with_timeout(left()).with_stop(o.stop);
        co_await std::move(snd);
      } else {
        auto snd = s.send_all(out).with_stop(o.stop);
        co_await std::move(snd);
      }
      done += n;
      continue;
    }
    off_t pos = static_cast<off_t>(at);
    const ssize_t r =
        sendfile_nosignal(s.fileno(), f.fileno(), &pos, static_cast<std::size_t>(chunk));
    if (r > 0) {
      done += static_cast<std::uint64_t>(r);
      continue;
    }
    if (r == 0) throw_error(make_error_code(errc::unexpected_eof), "send_file: file ended early");
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN) throw_errno(err, "send_file: sendfile");
    // The socket is full: wait for room on the ring.
    unsigned ready = 0;
    if (has_deadline) {
      auto wait = s.poll(POLLOUT).with_timeout(left()).with_stop(o.stop);
      ready = co_await std::move(wait);
    } else {
      auto wait = s.poll(POLLOUT).with_stop(o.stop);
      ready = co_await std::move(wait);
    }
    (void)ready;  // POLLERR/POLLHUP: the next sendfile says which error
  }
  co_return static_cast<std::size_t>(count);
}

task<std::size_t> send_file(socket& s, const file& f, std::uint64_t offset, std::uint64_t count,
                            pipe& p, send_file_options o) {
  if (!p) throw_errno(EBADF, "send_file: no pipe");
  if (o.timeout.count() <= 0) co_return co_await transfer(s, f, offset, count, p, o.stop);
  auto run = [&](std::stop_token tok) { return transfer(s, f, offset, count, p, std::move(tok)); };
  auto bounded = cancel_after(s.context(), o.timeout, run, o.stop);
  co_return co_await std::move(bounded);
}

}  // namespace coring
