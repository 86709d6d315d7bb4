// SPDX-License-Identifier: MIT
// Description: issue 14, direct descriptors: an io_context's registered file table, a socket's
// slot in it (slot number = descriptor number), and the slot's release from any thread.
#include <coring/socket.hpp>

#include "detail/ring.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace coring {

namespace {

// Table size when io_context_options::direct_files_max is 0: the RLIMIT_NOFILE soft limit, at
// most this (the kernel's table costs 8 bytes a slot; it refuses more than the limit anyway).
constexpr unsigned default_max_slots = 65536;

// Contexts with a registered file table. A socket whose slot is released on another thread
// than its context's (or after its context) looks the context up here first.
// LIFETIME: a context leaves the list at the start of its destructor, under the lock, so no
// release is ever posted to a context being destroyed.
std::mutex live_mutex;
std::vector<io_context*>& live_contexts() {
  static std::vector<io_context*> v;
  return v;
}
// The same, for the contexts of this thread only: the usual case needs no lock.
thread_local std::vector<io_context*> local_contexts;

bool contains(const std::vector<io_context*>& v, const io_context* c) noexcept {
  return std::find(v.begin(), v.end(), c) != v.end();
}

// A slot released on another thread: emptied on the context's thread, and the descriptor closed
// there afterwards (so that its number cannot be reused, and put in the same slot, before).
struct release_node final : detail::remote_node {
  release_node(io_context& c, int f, bool cl) noexcept : ctx(&c), fd(f), close_fd(cl) {
    this->fn = &run;
  }
  static void run(detail::remote_node* n, bool cancelled) noexcept {
    std::unique_ptr<release_node> self(static_cast<release_node*>(n));
    // Cancelled: the context is being destroyed; its ring's exit empties every slot.
    if (!cancelled) detail::ring_access::release_direct(*self->ctx, self->fd);
    if (self->close_fd) ::close(self->fd);
  }
  io_context* ctx;
  int fd;
  bool close_fd;
};

}  // namespace

void detail::ring_access::use_direct(io_uring_sqe& sqe, int fd) noexcept {
  if (sqe.fd == fd) sqe.flags |= IOSQE_FIXED_FILE;
}

void io_context::setup_direct_files(const io_context_options& o) noexcept {
  bool on = o.direct_files;
  if (const char* env = std::getenv("CORING_DIRECT_FILES"); env && (*env == '0' || *env == '1'))
    on = *env == '1';
  if (!on) return;
  rlimit rl{};
  const unsigned limit = ::getrlimit(RLIMIT_NOFILE, &rl) == 0
                             ? static_cast<unsigned>(std::min<rlim_t>(rl.rlim_cur, 1u << 20))
                             : 1024;
  unsigned n = o.direct_files_max ? o.direct_files_max : std::min(limit, default_max_slots);
  n = std::min(n, limit);
  if (n == 0 || io_uring_register_files_sparse(&impl_->ring, n) != 0) return;  // plain fds
  try {
    local_contexts.push_back(this);
    try {
      std::lock_guard lock(live_mutex);
      live_contexts().push_back(this);
    } catch (...) {
      local_contexts.pop_back();
      throw;
    }
  } catch (...) {
    io_uring_unregister_files(&impl_->ring);
    return;
  }
  impl_->features.direct_files = n;
}

void io_context::forget_direct_files(bool table) noexcept {
  if (!impl_ || impl_->features.direct_files == 0) return;
  if (!table) {
    std::lock_guard lock(live_mutex);
    std::erase(live_contexts(), this);
    return;
  }
  // Sockets the shutdown destroyed released their slots on this thread (still listed here).
  // The table goes now, synchronously: a socket that outlives the context keeps its descriptor
  // alone, and the ring's exit (asynchronous in the kernel) holds no file any more.
  std::erase(local_contexts, this);
  if (impl_->ring_ok) io_uring_unregister_files(&impl_->ring);
  impl_->features.direct_files = 0;
}

bool io_context::install_direct(int fd) noexcept {
  const auto i = static_cast<std::size_t>(fd);
  if (fd < 0 || i >= impl_->features.direct_files || stopping_ || !running_in_this_thread())
    return false;
  if (i >= fds_.size()) grow_fds(i);
  if (i >= fds_.size()) return false;
  int v = fd;
  // A slot left full (a failed release) is simply replaced.
  if (io_uring_register_files_update(&impl_->ring, static_cast<unsigned>(fd), &v, 1) != 1)
    return false;
  fds_[i].direct = true;
  return true;
}

void io_context::release_direct(int fd) noexcept {
  if (!is_direct(fd)) return;
  fds_[static_cast<std::size_t>(fd)].direct = false;
  int v = -1;
  // Operations in flight keep the file until they end (the kernel's node reference). Should
  // this fail, the next install on the same number replaces the file, or the ring's exit drops it.
  io_uring_register_files_update(&impl_->ring, static_cast<unsigned>(fd), &v, 1);
}

void socket::drop_direct(bool close_fd) noexcept {
  direct_ = false;
  io_context* ctx = ctx_;
  const int fd = fd_;
  if (contains(local_contexts, ctx)) {  // the context's own thread, the context alive
    detail::ring_access::release_direct(*ctx, fd);
  } else {
    std::lock_guard lock(live_mutex);
    if (contains(live_contexts(), ctx)) {
      // Another thread: the context's thread empties the slot, then closes. Out of memory: the
      // descriptor is closed here and the slot keeps the file until the number is reused.
      if (auto* n = new (std::nothrow) release_node(*ctx, fd, close_fd)) {
        detail::ring_access::post_remote(*ctx, n);
        return;
      }
    }
  }
  if (close_fd) ::close(fd);
}

}  // namespace coring
