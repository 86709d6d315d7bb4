// SPDX-License-Identifier: MIT
// Description: the epoll backend: runs coring's SQEs with non-blocking system calls and epoll.
#include "detail/epoll_backend.hpp"

#include <coring/error.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <new>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace coring::detail {

namespace {
constexpr int blocked = INT_MIN;  // attempt(): the operation would block
constexpr std::size_t no_heap = static_cast<std::size_t>(-1);
constexpr unsigned chunk_nodes = 64;
constexpr int max_events = 128;

std::int64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t to_ns(const __kernel_timespec& ts) noexcept {
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// An absolute CLOCK_MONOTONIC deadline for a TIMEOUT / LINK_TIMEOUT SQE.
std::int64_t deadline_of(const io_uring_sqe& sqe) noexcept {
  const auto* ts =
      reinterpret_cast<const __kernel_timespec*>(static_cast<std::uintptr_t>(sqe.addr));
  const std::int64_t t = to_ns(*ts);
  if (!(sqe.timeout_flags & IORING_TIMEOUT_ABS)) return now_ns() + t;
  if (sqe.timeout_flags & IORING_TIMEOUT_REALTIME) {
    timespec rt{};
    ::clock_gettime(CLOCK_REALTIME, &rt);
    return now_ns() + (t - (std::int64_t{rt.tv_sec} * 1'000'000'000 + rt.tv_nsec));
  }
  return t;  // CLOCK_MONOTONIC (BOOTTIME is taken as monotonic: coring uses neither)
}

void set_nonblocking(int fd) noexcept {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int result_of(ssize_t r) noexcept { return r >= 0 ? static_cast<int>(r) : -errno; }

// -EAGAIN (and EWOULDBLOCK, EINPROGRESS for connect) means: wait for readiness.
bool would_block(int res) noexcept { return res == -EAGAIN || res == -EWOULDBLOCK; }

// The CQE flags of a provided-buffer recv that got data: IORING_CQE_F_BUFFER and the buffer id
// (attempt() keeps them in node::done).
template <class Node>
std::uint32_t cqe_flags(const Node& n, int res) noexcept {
  const bool buffer = n.sqe().opcode == IORING_OP_RECV && (n.sqe().flags & IOSQE_BUFFER_SELECT);
  return buffer && res > 0 ? static_cast<std::uint32_t>(n.done) : 0;
}

// The operations whose sqe->fd is a descriptor they wait on (not a directory, not a close).

// The CQE of a cancelled operation: -ECANCELED, or the bytes a MSG_WAITALL transfer had moved
// (as the kernel reports a partial transfer it interrupts).
template <class Node>
int cancelled_result(const Node& n) noexcept {
  const std::uint8_t op = n.sqe().opcode;
  const bool partial = (op == IORING_OP_SEND || op == IORING_OP_RECV || op == IORING_OP_RECVMSG) &&
                       !(n.sqe().flags & IOSQE_BUFFER_SELECT) && n.done > 0;
  return partial ? static_cast<int>(n.done) : -ECANCELED;
}

void* ptr(std::uint64_t v) noexcept {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(v));
}
}  // namespace

// One SQE waiting: on its descriptor's list (io) or in the timer heap (TIMEOUT, or an io SQE
// with a linked timeout: both).
struct epoll_backend::node {
  // The SQE, copied (raw storage: io_uring_sqe ends in a flexible array member).
  alignas(io_uring_sqe) unsigned char sqe_raw[sizeof(io_uring_sqe)];
  io_uring_sqe& sqe() noexcept { return *std::launder(reinterpret_cast<io_uring_sqe*>(sqe_raw)); }
  const io_uring_sqe& sqe() const noexcept {
    return *std::launder(reinterpret_cast<const io_uring_sqe*>(sqe_raw));
  }
  node* prev = nullptr;  // on the descriptor's list, or free list (next only)
  node* next = nullptr;
  node* aprev = nullptr;  // on active_
  node* anext = nullptr;
  std::int64_t deadline = 0;
  std::size_t heap_at = no_heap;
  std::uint64_t link_user_data = 0;  // the linked timeout SQE's
  std::size_t done = 0;              // MSG_WAITALL progress; CONNECT: 1 once in progress
  int fd = -1;
  list_kind list = no_list;
  bool linked = false;  // a LINK_TIMEOUT follows
  bool timer = false;   // IORING_OP_TIMEOUT
};

struct epoll_backend::fd_entry {
  node* head[4] = {};
  node* tail[4] = {};
  bool registered = false;
};

epoll_backend::epoll_backend(unsigned sq_entries) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw_errno(errno, "epoll_create1");
  try {
    sq_.resize(std::max(sq_entries, 8U));
    cq_.reserve(std::size_t{sq_entries} * 2);
    heap_.reserve(64);
  } catch (...) {
    ::close(epfd_);
    throw;
  }
}

epoll_backend::~epoll_backend() {
  if (epfd_ >= 0) ::close(epfd_);
}

io_uring_sqe* epoll_backend::get_sqe() noexcept {
  if (sq_count_ == sq_.size()) return nullptr;
  io_uring_sqe* s = &sq_[sq_count_++];
  std::memset(s, 0, sizeof *s);
  return s;
}

int epoll_backend::submit() noexcept {
  const unsigned n = sq_count_;
  // TRICKY: execute() never calls back into the application (it only posts CQEs), so the SQ
  // cannot grow while it is being run.
  for (unsigned i = 0; i < n; ++i) {
    const io_uring_sqe& s = sq_[i];
    const io_uring_sqe* link = nullptr;
    if ((s.flags & IOSQE_IO_LINK) && i + 1 < n && sq_[i + 1].opcode == IORING_OP_LINK_TIMEOUT)
      link = &sq_[++i];
    execute(s, link);
  }
  sq_count_ = 0;
  return static_cast<int>(n);
}

unsigned epoll_backend::peek_batch(io_uring_cqe** out, unsigned n) noexcept {
  const unsigned k = std::min(n, cq_ready());
  for (unsigned i = 0; i < k; ++i)
    out[i] = &cq_[cq_head_ + i];
  return k;
}

void epoll_backend::cq_advance(unsigned n) noexcept {
  cq_head_ += n;
  if (cq_head_ >= cq_.size()) {
    cq_.clear();
    cq_head_ = 0;
  }
}

void epoll_backend::post(std::uint64_t user_data, int res, std::uint32_t flags,
                         std::uint8_t sqe_flags) noexcept {
  if ((sqe_flags & IOSQE_CQE_SKIP_SUCCESS) && res >= 0) return;
  io_uring_cqe c{};
  c.user_data = user_data;
  c.res = res;
  c.flags = flags;
  try {
    cq_.push_back(c);
  } catch (...) {
    // Out of memory: the completion is lost (as on a ring without IORING_FEAT_NODROP).
  }
}

epoll_backend::node* epoll_backend::alloc_node() noexcept {
  if (!free_) {
    try {
      chunks_.push_back(std::make_unique<node[]>(chunk_nodes));
    } catch (...) {
      return nullptr;
    }
    node* c = chunks_.back().get();
    for (unsigned i = 0; i < chunk_nodes; ++i) {
      c[i].next = free_;
      free_ = &c[i];
    }
  }
  node* n = free_;
  free_ = n->next;
  *n = node{};
  // Every waiting node is on active_ (cancels look there).
  n->anext = active_;
  if (active_) active_->aprev = n;
  active_ = n;
  return n;
}

void epoll_backend::release(node& n) noexcept {
  unlink(n);
  if (n.heap_at != no_heap) heap_remove(n);
  if (n.aprev)
    n.aprev->anext = n.anext;
  else
    active_ = n.anext;
  if (n.anext) n.anext->aprev = n.aprev;
  n.next = free_;
  free_ = &n;
}

epoll_backend::fd_entry* epoll_backend::entry(int fd) noexcept {
  if (fd < 0) return nullptr;
  const auto i = static_cast<std::size_t>(fd);
  if (i >= fds_.size()) {
    try {
      fds_.resize(i + 1 + i / 2);
    } catch (...) {
      return nullptr;
    }
  }
  return &fds_[i];
}

void epoll_backend::unlink(node& n) noexcept {
  if (n.list == no_list) return;
  fd_entry& e = fds_[static_cast<std::size_t>(n.fd)];
  if (n.prev)
    n.prev->next = n.next;
  else
    e.head[n.list] = n.next;
  if (n.next)
    n.next->prev = n.prev;
  else
    e.tail[n.list] = n.prev;
  n.prev = n.next = nullptr;
  n.list = no_list;
}

bool epoll_backend::watch(int fd, bool always) noexcept {
  fd_entry* e = entry(fd);
  if (!e) return false;
  if (e->registered && !always) return true;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST) return false;
  e->registered = true;
  return true;
}

void unname_fd(io_uring_sqe& q, int fd) noexcept {
  if (q.flags & IOSQE_FIXED_FILE) return;  // a slot, not a descriptor number
  switch (q.opcode) {
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_SEND_ZC:
    case IORING_OP_SENDMSG:
    case IORING_OP_RECVMSG:
    case IORING_OP_ACCEPT:
    case IORING_OP_CONNECT:
    case IORING_OP_POLL_ADD:
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_SPLICE:
      if (q.fd == fd) q.fd = -1;
      if (q.opcode == IORING_OP_SPLICE && q.splice_fd_in == fd) q.splice_fd_in = -1;
      break;
    default:
      break;
  }
}

void epoll_backend::forget_fd(int fd) noexcept {
  if (fd < 0) return;
  // TRICKY: SQEs still queued for this number were prepared for the descriptor being closed (or
  // for one closed before the number was handed out again, by an accept in this very submit):
  // the kernel would find no file there, so they fail with EBADF instead of reaching the new
  // descriptor (a recv re-armed by a stream whose socket then closed would steal its data).
  for (unsigned i = 0; i < sq_count_; ++i)
    unname_fd(sq_[i], fd);
  if (static_cast<std::size_t>(fd) >= fds_.size()) return;
  fd_entry& e = fds_[static_cast<std::size_t>(fd)];
  // What still waits on it would wait for ever (no more events): it ends cancelled.
  for (int l = read_list; l <= poll_list; ++l)
    while (node* n = fds_[static_cast<std::size_t>(fd)].head[l])
      finish(*n, cancelled_result(*n));
  if (e.registered) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  e.registered = false;
}

void epoll_backend::park(node& n, list_kind list) noexcept {
  fd_entry* e = entry(n.fd);
  // Sockets (the numbers forget_fd() hears about) are registered once; other descriptors
  // (pipes, eventfds, signalfds) whenever they start waiting, in case the number was reused.
  const bool socket_op = list != poll_list && n.sqe().opcode != IORING_OP_READ &&
                         n.sqe().opcode != IORING_OP_WRITE && n.sqe().opcode != IORING_OP_SPLICE;
  const bool idle = e && !e->head[read_list] && !e->head[write_list] && !e->head[poll_list];
  if (!e || !watch(n.fd, !socket_op && idle)) {
    const int err = errno;
    finish(n, err != 0 ? -err : -ENOMEM);
    return;
  }
  n.list = list;
  n.prev = e->tail[list];
  n.next = nullptr;
  if (e->tail[list])
    e->tail[list]->next = &n;
  else
    e->head[list] = &n;
  e->tail[list] = &n;
}

void epoll_backend::finish(node& n, int res, std::uint32_t flags) noexcept {
  post(n.sqe().user_data, res, flags, n.sqe().flags);
  if (n.linked && n.link_user_data != 0) post(n.link_user_data, -ECANCELED, 0, 0);
  release(n);
}

epoll_backend::buf_group* epoll_backend::group(unsigned id) noexcept {
  for (buf_group& g : groups_)
    if (g.group == id) return &g;
  return nullptr;
}

int epoll_backend::register_buf_ring(void* br, unsigned entries, unsigned id) noexcept {
  if (group(id)) return -EEXIST;
  try {
    groups_.push_back(buf_group{static_cast<io_uring_buf_ring*>(br), entries - 1, id, 0});
  } catch (...) {
    return -ENOMEM;
  }
  return 0;
}

int epoll_backend::unregister_buf_ring(unsigned id) noexcept {
  for (std::size_t i = 0; i < groups_.size(); ++i)
    if (groups_[i].group == id) {
      groups_.erase(groups_.begin() + static_cast<std::ptrdiff_t>(i));
      return 0;
    }
  return -ENOENT;
}

// One try of n's operation. Returns: the CQE's res, or `blocked`. Multishot polls post their
// intermediate CQEs themselves.
int epoll_backend::attempt(node& n) noexcept {
  const int r = try_once(n);
  if (r != blocked) return r;
  // The caller's own MSG_DONTWAIT: the kernel answers EAGAIN rather than wait.
  const io_uring_sqe& s = n.sqe();
  const bool msg_op = s.opcode == IORING_OP_RECV || s.opcode == IORING_OP_SEND ||
                      s.opcode == IORING_OP_RECVMSG || s.opcode == IORING_OP_SENDMSG;
  return msg_op && (s.msg_flags & MSG_DONTWAIT) ? -EAGAIN : blocked;
}

int epoll_backend::try_once(node& n) noexcept {
  io_uring_sqe& s = n.sqe();
  switch (s.opcode) {
    case IORING_OP_RECV: {
      const int flags = static_cast<int>(s.msg_flags) | MSG_DONTWAIT;
      if (s.flags & IOSQE_BUFFER_SELECT) {
        buf_group* g = group(s.buf_group);
        if (!g) return -ENOBUFS;
        const std::uint16_t tail = __atomic_load_n(&g->br->tail, __ATOMIC_ACQUIRE);
        if (tail == g->head) return -ENOBUFS;
        const io_uring_buf& b = g->br->bufs[g->head & g->mask];
        const int r = result_of(::recv(n.fd, ptr(b.addr), b.len, flags & ~MSG_WAITALL));
        if (would_block(r)) return blocked;
        if (r <= 0) return r;
        ++g->head;
        // The buffer id travels in the CQE flags, as the kernel puts it.
        n.done = (std::size_t{b.bid} << IORING_CQE_BUFFER_SHIFT) | IORING_CQE_F_BUFFER;
        return r;
      }
      auto* buf = static_cast<char*>(ptr(s.addr));
      for (;;) {
        const int r = result_of(::recv(n.fd, buf + n.done, s.len - n.done, flags & ~MSG_WAITALL));
        if (would_block(r)) return blocked;
        if (r <= 0) return n.done > 0 ? static_cast<int>(n.done) : r;  // EOF or error: the part
        if (!(s.msg_flags & MSG_WAITALL)) return r;
        n.done += static_cast<std::size_t>(r);
        if (n.done >= s.len) return static_cast<int>(n.done);
      }
    }
    case IORING_OP_SEND: {
      const auto* buf = static_cast<const char*>(ptr(s.addr));
      const int flags = (static_cast<int>(s.msg_flags) & ~MSG_WAITALL) | MSG_DONTWAIT;
      for (;;) {
        const int r = result_of(::send(n.fd, buf + n.done, s.len - n.done, flags));
        if (would_block(r)) return blocked;
        if (r < 0) return n.done > 0 ? static_cast<int>(n.done) : r;
        n.done += static_cast<std::size_t>(r);
        if (!(s.msg_flags & MSG_WAITALL) || n.done >= s.len || r == 0)
          return static_cast<int>(n.done);
      }
    }
    case IORING_OP_SENDMSG: {
      const int r = result_of(::sendmsg(n.fd, static_cast<const msghdr*>(ptr(s.addr)),
                                        static_cast<int>(s.msg_flags) | MSG_DONTWAIT));
      return would_block(r) ? blocked : r;
    }
    case IORING_OP_RECVMSG: {
      auto* msg = static_cast<msghdr*>(ptr(s.addr));
      const int flags = (static_cast<int>(s.msg_flags) & ~MSG_WAITALL) | MSG_DONTWAIT;
      if (!(s.msg_flags & MSG_WAITALL)) {
        const int r = result_of(::recvmsg(n.fd, msg, flags));
        return would_block(r) ? blocked : r;
      }
      // MSG_WAITALL: fill every buffer, going on after a short receive (as the kernel does).
      std::size_t total = 0;
      for (std::size_t i = 0; i < msg->msg_iovlen; ++i)
        total += msg->msg_iov[i].iov_len;
      for (;;) {
        int r;
        if (n.done == 0) {
          r = result_of(::recvmsg(n.fd, msg, flags));
        } else {  // the rest: the iovecs past what came, without name or control
          iovec rest[16];
          std::size_t k = 0, skip = n.done;
          for (std::size_t i = 0; i < msg->msg_iovlen && k < 16; ++i) {
            const iovec& v = msg->msg_iov[i];
            if (skip >= v.iov_len) {
              skip -= v.iov_len;
              continue;
            }
            rest[k++] = iovec{static_cast<char*>(v.iov_base) + skip, v.iov_len - skip};
            skip = 0;
          }
          msghdr m{};
          m.msg_iov = rest;
          m.msg_iovlen = k;
          r = result_of(::recvmsg(n.fd, &m, flags));
        }
        if (would_block(r)) return blocked;
        if (r <= 0) return n.done > 0 ? static_cast<int>(n.done) : r;
        n.done += static_cast<std::size_t>(r);
        if (n.done >= total) return static_cast<int>(n.done);
      }
    }
    case IORING_OP_ACCEPT: {
      set_nonblocking(n.fd);
      const int r = result_of(::accept4(n.fd, static_cast<sockaddr*>(ptr(s.addr)),
                                        static_cast<socklen_t*>(ptr(s.off)),
                                        static_cast<int>(s.accept_flags)));
      if (would_block(r)) return blocked;
      if (r >= 0) forget_fd(r);  // a new descriptor: nothing known about its number holds
      return r;
    }
    case IORING_OP_CONNECT: {
      if (n.done == 0) {
        set_nonblocking(n.fd);
        const int r = result_of(::connect(n.fd, static_cast<const sockaddr*>(ptr(s.addr)),
                                          static_cast<socklen_t>(s.off)));
        if (r == -EINPROGRESS) {
          n.done = 1;
          return blocked;
        }
        return would_block(r) ? blocked : r;  // AF_UNIX: backlog full, try again when writable
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(n.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
      return -err;
    }
    case IORING_OP_POLL_ADD: {
      pollfd p{n.fd, static_cast<short>(s.poll32_events), 0};
      const int r = ::poll(&p, 1, 0);
      if (r < 0) return -errno;
      if (r == 0) return blocked;
      return p.revents & static_cast<short>(s.poll32_events | POLLERR | POLLHUP | POLLNVAL);
    }
    case IORING_OP_READ:
    case IORING_OP_WRITE: {
      const bool rd = s.opcode == IORING_OP_READ;
      void* buf = ptr(s.addr);
      int r = -ESPIPE;
      if (s.off != ~std::uint64_t{0})
        r = result_of(rd ? ::pread(n.fd, buf, s.len, static_cast<off_t>(s.off))
                         : ::pwrite(n.fd, buf, s.len, static_cast<off_t>(s.off)));
      if (r != -ESPIPE) return r;
      // A stream (pipe, eventfd, signalfd, socket): non-blocking, waits for readiness.
      set_nonblocking(n.fd);
      r = result_of(rd ? ::read(n.fd, buf, s.len) : ::write(n.fd, buf, s.len));
      return would_block(r) ? blocked : r;
    }
    case IORING_OP_SPLICE: {
      const auto off_in = static_cast<loff_t>(s.splice_off_in);
      const auto off_out = static_cast<loff_t>(s.off);
      loff_t in = off_in, out = off_out;
      set_nonblocking(s.fd);  // a socket end would block whatever the splice flags say
      set_nonblocking(s.splice_fd_in);
      const int r = result_of(::splice(s.splice_fd_in, off_in == -1 ? nullptr : &in, s.fd,
                                       off_out == -1 ? nullptr : &out, s.len,
                                       s.splice_flags | SPLICE_F_NONBLOCK));
      return would_block(r) ? blocked : r;
    }
    default:
      return -EINVAL;
  }
}

void epoll_backend::execute(const io_uring_sqe& sqe, const io_uring_sqe* link) noexcept {
  switch (sqe.opcode) {
    case IORING_OP_NOP:
      post(sqe.user_data, 0, 0, sqe.flags);
      return;
    case IORING_OP_ASYNC_CANCEL:
      post(sqe.user_data, cancel(sqe), 0, sqe.flags);
      return;
    case IORING_OP_CLOSE:
      forget_fd(sqe.fd);
      post(sqe.user_data, result_of(::close(sqe.fd)), 0, sqe.flags);
      return;
    case IORING_OP_OPENAT: {
      const int r = result_of(::openat(sqe.fd, static_cast<const char*>(ptr(sqe.addr)),
                                       static_cast<int>(sqe.open_flags), sqe.len));
      if (r >= 0) forget_fd(r);
      post(sqe.user_data, r, 0, sqe.flags);
      return;
    }
    case IORING_OP_OPENAT2: {
      const int r = result_of(::syscall(SYS_openat2, sqe.fd, ptr(sqe.addr), ptr(sqe.off),
                                        static_cast<std::size_t>(sqe.len)));
      if (r >= 0) forget_fd(r);
      post(sqe.user_data, r, 0, sqe.flags);
      return;
    }
    case IORING_OP_STATX:
      post(sqe.user_data,
           result_of(::statx(sqe.fd, static_cast<const char*>(ptr(sqe.addr)),
                             static_cast<int>(sqe.statx_flags), sqe.len,
                             static_cast<struct statx*>(ptr(sqe.off)))),
           0, sqe.flags);
      return;
    case IORING_OP_TIMEOUT: {
      node* n = alloc_node();
      if (!n) {
        post(sqe.user_data, -ENOMEM, 0, sqe.flags);
        return;
      }
      std::memcpy(n->sqe_raw, &sqe, sizeof sqe);
      n->timer = true;
      n->deadline = deadline_of(sqe);
      if (!heap_push(*n)) {
        release(*n);
        post(sqe.user_data, -ENOMEM, 0, sqe.flags);
      }
      return;
    }
    case IORING_OP_LINK_TIMEOUT:  // without an operation before it
      post(sqe.user_data, -EINVAL, 0, sqe.flags);
      return;
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
    case IORING_OP_RECVMSG:
    case IORING_OP_ACCEPT:
    case IORING_OP_CONNECT:
    case IORING_OP_POLL_ADD:
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_SPLICE:
      break;
    default:  // MSG_RING, SEND_ZC, SOCKET, ...: features() says they are not there
      post(sqe.user_data, -EINVAL, 0, sqe.flags);
      if (link && link->user_data != 0) post(link->user_data, -ECANCELED, 0, 0);
      return;
  }
  node* n = alloc_node();
  if (!n) {
    post(sqe.user_data, -ENOMEM, 0, sqe.flags);
    if (link && link->user_data != 0) post(link->user_data, -ECANCELED, 0, 0);
    return;
  }
  std::memcpy(n->sqe_raw, &sqe, sizeof sqe);
  n->fd = sqe.fd;
  if (link) {
    n->linked = true;
    n->link_user_data = link->user_data;
  }
  list_kind list = read_list;
  switch (sqe.opcode) {
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
    case IORING_OP_CONNECT:
    case IORING_OP_WRITE:
      list = write_list;
      break;
    case IORING_OP_SPLICE: {
      struct stat st {};
      // Waits on the side that is not a regular file (send_file: the socket, or the pipe).
      if (::fstat(sqe.fd, &st) == 0 && S_ISREG(st.st_mode)) {
        n->fd = sqe.splice_fd_in;
      } else {
        list = write_list;
      }
      break;
    }
    case IORING_OP_POLL_ADD:
      list = poll_list;
      break;
    default:
      break;
  }
  // Operations queued on the same list go first (a recv does not overtake an earlier one).
  fd_entry* e = entry(n->fd);
  const bool queued = e && e->head[list] && list != poll_list;
  if (!queued) {
    const int r = attempt(*n);
    if (r != blocked) {
      if (sqe.opcode == IORING_OP_POLL_ADD && (sqe.len & IORING_POLL_ADD_MULTI) && r > 0) {
        post(sqe.user_data, r, IORING_CQE_F_MORE, sqe.flags);
      } else {
        finish(*n, r, cqe_flags(*n, r));
        return;
      }
    }
  }
  if (link) {
    n->deadline = deadline_of(*link);
    if (!heap_push(*n)) {
      finish(*n, -ENOMEM);
      return;
    }
  }
  park(*n, list);
}

void epoll_backend::run_list(int fd, list_kind list) noexcept {
  for (;;) {
    fd_entry& e = fds_[static_cast<std::size_t>(fd)];
    node* n = e.head[list];
    if (!n) return;
    const int r = attempt(*n);
    if (r == blocked) return;
    finish(*n, r, cqe_flags(*n, r));
  }
}

void epoll_backend::ready(int fd, std::uint32_t events) noexcept {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) run_list(fd, read_list);
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) run_list(fd, write_list);
  for (node* n = fds_[static_cast<std::size_t>(fd)].head[poll_list]; n;) {
    node* next = n->next;  // LIFETIME: finish() frees n
    const auto want = n->sqe().poll32_events | POLLERR | POLLHUP;
    const auto revents = static_cast<int>(events & want);
    if (revents != 0) {
      if (n->sqe().len & IORING_POLL_ADD_MULTI)
        post(n->sqe().user_data, revents, IORING_CQE_F_MORE, n->sqe().flags);
      else
        finish(*n, revents);
    }
    n = next;
  }
}

int epoll_backend::cancel(const io_uring_sqe& sqe) noexcept {
  const std::uint32_t f = sqe.cancel_flags;
  const bool all = f & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY);
  int count = 0;
  for (node* n = active_; n;) {
    node* next = n->anext;  // LIFETIME: finish() frees n
    bool match;
    if (f & IORING_ASYNC_CANCEL_ANY)
      match = true;
    else if (f & IORING_ASYNC_CANCEL_FD)
      match = !n->timer && n->sqe().fd == sqe.fd;
    else
      match = n->sqe().user_data == sqe.addr;
    if (match) {
      finish(*n, cancelled_result(*n));
      ++count;
      if (!all) break;
    }
    n = next;
  }
  if (count == 0) return -ENOENT;
  return all ? count : 0;
}

void epoll_backend::expire(std::int64_t now) noexcept {
  while (!heap_.empty() && heap_.front()->deadline <= now) {
    node& n = *heap_.front();
    heap_remove(n);
    if (n.timer) {
      post(n.sqe().user_data, -ETIME, 0, n.sqe().flags);
      release(n);
    } else {  // a linked timeout fired: its operation ends cancelled
      post(n.sqe().user_data, cancelled_result(n), 0, n.sqe().flags);
      if (n.link_user_data != 0) post(n.link_user_data, -ETIME, 0, 0);
      release(n);
    }
  }
}

int epoll_backend::enter(unsigned wait_nr, const __kernel_timespec* ts) noexcept {
  const int submitted = submit();
  const std::int64_t end = ts ? now_ns() + to_ns(*ts) : -1;
  epoll_event events[max_events];
  for (bool first = true;; first = false) {
    const std::int64_t t = now_ns();
    expire(t);
    const bool enough = cq_ready() >= wait_nr;
    if (enough && !first) return submitted;
    std::int64_t wait_ns = -1;  // for ever
    if (enough) {
      wait_ns = 0;
    } else {
      if (end >= 0) {
        if (t >= end) return -ETIME;
        wait_ns = end - t;
      }
      if (!heap_.empty()) {
        const std::int64_t to_timer = std::max<std::int64_t>(heap_.front()->deadline - t, 0);
        wait_ns = wait_ns < 0 ? to_timer : std::min(wait_ns, to_timer);
      }
    }
    int n = -1;
    if (pwait2_) {
      timespec w{static_cast<time_t>(wait_ns / 1'000'000'000),
                 static_cast<long>(wait_ns % 1'000'000'000)};
      n = ::epoll_pwait2(epfd_, events, max_events, wait_ns < 0 ? nullptr : &w, nullptr);
      if (n < 0 && (errno == ENOSYS || errno == EPERM)) pwait2_ = false;  // old kernel or seccomp
    }
    if (!pwait2_) {
      const int ms =
          wait_ns < 0
              ? -1
              : static_cast<int>(std::min<std::int64_t>((wait_ns + 999'999) / 1'000'000, INT_MAX));
      n = ::epoll_wait(epfd_, events, max_events, ms);
    }
    if (n < 0) {
      if (errno == EINTR) {
        expire(now_ns());
        return -EINTR;
      }
      return -errno;
    }
    for (int i = 0; i < n; ++i)
      ready(static_cast<int>(events[i].data.u64), events[i].events);
    if (enough) {
      expire(now_ns());
      return submitted;
    }
  }
}

bool epoll_backend::heap_push(node& n) noexcept {
  try {
    heap_.push_back(&n);
  } catch (...) {
    return false;
  }
  n.heap_at = heap_.size() - 1;
  heap_up(n.heap_at);
  return true;
}

void epoll_backend::heap_remove(node& n) noexcept {
  const std::size_t i = n.heap_at;
  n.heap_at = no_heap;
  node* last = heap_.back();
  heap_.pop_back();
  if (last == &n) return;
  heap_[i] = last;
  last->heap_at = i;
  heap_up(i);
  heap_down(last->heap_at);
}

void epoll_backend::heap_up(std::size_t i) noexcept {
  while (i > 0) {
    const std::size_t p = (i - 1) / 2;
    if (heap_[p]->deadline <= heap_[i]->deadline) return;
    std::swap(heap_[p], heap_[i]);
    heap_[p]->heap_at = p;
    heap_[i]->heap_at = i;
    i = p;
  }
}

void epoll_backend::heap_down(std::size_t i) noexcept {
  for (;;) {
    std::size_t m = i;
    const std::size_t l = 2 * i + 1, r = l + 1;
    if (l < heap_.size() && heap_[l]->deadline < heap_[m]->deadline) m = l;
    if (r < heap_.size() && heap_[r]->deadline < heap_[m]->deadline) m = r;
    if (m == i) return;
    std::swap(heap_[m], heap_[i]);
    heap_[m]->heap_at = m;
    heap_[i]->heap_at = i;
    i = m;
  }
}

}  // namespace coring::detail
