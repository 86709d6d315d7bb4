// SPDX-License-Identifier: MIT
// Description: ring setup and probe, the submit/reap loop, spawn's list, and draining teardown.
#include <coring/detail/ring_access.hpp>
#include <coring/io_context.hpp>

#include "detail/ring.hpp"

#include <coring/error.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "detail/uapi.hpp"  // issue 14: IORING_FEAT_MIN_TIMEOUT, min_wait_usec

static_assert(coring::detail::cqe_f_buffer == IORING_CQE_F_BUFFER);
static_assert(coring::detail::cqe_f_more == IORING_CQE_F_MORE);
static_assert(coring::detail::cqe_f_notif == IORING_CQE_F_NOTIF);

namespace coring {

namespace detail {
namespace {
std::atomic<int> injected_init_failure{0};  // atomic: contexts may start on several threads
}

void inject_ring_init_failure(int errno_value) noexcept { injected_init_failure = errno_value; }

backend_kind backend_from_env(backend_kind fallback) noexcept {
  const char* env = std::getenv("CORING_BACKEND");
  if (!env) return fallback;
  const std::string_view v(env);
  if (v == "epoll") return backend_kind::epoll;
  if (v == "io_uring") return backend_kind::io_uring;
  if (v == "auto" || v == "automatic") return backend_kind::automatic;
  return fallback;
}

void wake_channel::unref() noexcept {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (int fd = ring_fd.load(std::memory_order_acquire); fd >= 0) ::close(fd);
  if (event_fd >= 0) ::close(event_fd);
  delete this;
}

std::string explain_ring_failure(int e) {
  std::string msg = "io_uring_queue_init failed: ";
  msg += std::strerror(e);
  switch (e) {
    case ENOSYS:
      msg += ". The kernel has no io_uring (needs Linux 5.10 or later built with CONFIG_IO_URING)";
      break;
    case EPERM:
      msg +=
          ". io_uring is disabled for this process: check the sysctl kernel.io_uring_disabled "
          "(set it to 0, or 1 and add the user to kernel.io_uring_group) or the container's "
          "seccomp profile (allow io_uring_setup/io_uring_enter/io_uring_register)";
      break;
    case ENOMEM:
      msg +=
          ". The ring could not be allocated: raise the locked-memory limit (ulimit -l; "
          "kernels before 5.12 charge rings to RLIMIT_MEMLOCK) or ask for fewer sq_entries";
      break;
    case EINVAL:
      msg += ". The kernel refused the ring parameters (sq_entries/cq_entries too large?)";
      break;
    default:
      break;
  }
  return msg;
}

namespace {
// A task ended by the teardown's cancellation is not news.
bool is_cancellation(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& se) {
    return se.code() == std::errc::operation_canceled;
  } catch (...) {}
  return false;
}
}  // namespace

void spawn_list::report(std::exception_ptr e) noexcept {
  if (!(ctx_->stopping() && is_cancellation(e)))
    detail::ring_access::report_exception(*ctx_, std::move(e));
}

void spawn_list::destroy_all() noexcept {
  // A frame's destructors may spawn (destroyed at once: nothing runs any more) or end others.
  while (spawn_promise* first = frames_.front()) {
    spawn_promise& p = *first;
    unlink(p);
    std::coroutine_handle<spawn_promise>::from_promise(p).destroy();
  }
}
}  // namespace detail

namespace {

void default_exception_handler(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "coring: exception escaped a spawned task: %s\n", ex.what());
  } catch (...) {
    std::fputs("coring: a non-std exception escaped a spawned task\n", stderr);
  }
}

bool has_op(io_uring_probe* p, int op) { return p && io_uring_opcode_supported(p, op); }

// Issue 14: an option's value, unless the environment variable name says 0 (off) or 1 (on).
bool env_switch(const char* name, bool value) noexcept {
  if (const char* env = std::getenv(name); env && (*env == '0' || *env == '1') && !env[1])
    return *env == '1';
  return value;
}

// user_data values that are not completions: ours (0: cancels, linked timeouts) and
// liburing's own timeout SQE for waits with a timeout on kernels without EXT_ARG.
inline bool ignored_user_data(std::uint64_t ud) { return ud == 0 || ud == LIBURING_UDATA_TIMEOUT; }
// user_data of the poll on the wake eventfd (never a completion's address: those are aligned).
constexpr std::uint64_t wake_user_data = 1;
// user_data of the CQE another ring's MSG_RING wake-up posts in this one.
constexpr std::uint64_t msg_wake_user_data = 5;
// user_data of a MSG_RING wake-up this ring sent: the wake_channel's address | msg_sent_tag.
constexpr std::uint64_t msg_sent_tag = 4;
// The context whose loop turn (run_once) this thread is in, if any: it sends the wake-ups.
thread_local io_context* current_context = nullptr;
// user_data of a cancel_fd request: (fd << 16) | (attempt << 3) | fd_cancel_tag. Completion
// addresses are 8-byte aligned, so the low bits tell them apart.
constexpr std::uint64_t fd_cancel_tag = 2;
// user_data of a cancel of one operation: (cancel id << 3) | op_cancel_tag.
constexpr std::uint64_t op_cancel_tag = 3;
constexpr unsigned max_cancel_attempts = 1000;
// Task-work items a busy loop turn asks the kernel to run (see run_once).
constexpr unsigned task_work_budget = 512;
// A turn that reaped this many completions counts as busy.
constexpr unsigned busy_turn = 64;
// Issue 14: the most completions a batched wait asks for before its budget ends
// (max_batch_delay): at this many the turn is busy anyway (busy_turn).
constexpr unsigned batch_wait_nr = busy_turn;

// TLS (issue 13): whether the kernel offers the TLS ULP (kTLS), read once per process. The
// file lists the ULPs available ("mptcp tls"); the tls module may also load on first use, which
// this does not try.
bool kernel_has_tls_ulp() noexcept {
  static const bool has = [] {
    std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
    if (!f) return false;
    char buf[256] = {};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    std::string_view list(buf, n);
    for (std::size_t at = list.find("tls"); at != std::string_view::npos;
         at = list.find("tls", at + 1)) {
      const bool starts = at == 0 || list[at - 1] == ' ';
      const bool ends = at + 3 == list.size() || list[at + 3] == ' ' || list[at + 3] == '\n';
      if (starts && ends) return true;
    }
    return false;
  }();
  return has;
}

}  // namespace

std::string ring_features::describe() const {
  std::ostringstream os;
  os << "backend=" << (backend == backend_kind::epoll ? "epoll" : "io_uring")
     << " backend_reason=\"" << backend_reason << "\" sq_entries=" << sq_entries
     << " cq_entries=" << cq_entries << " single_issuer=" << single_issuer
     << " defer_taskrun=" << defer_taskrun << " coop_taskrun=" << coop_taskrun
     << " registered_ring_fd=" << registered_ring_fd << " nodrop=" << nodrop
     << " ext_arg=" << ext_arg << " cqe_skip=" << cqe_skip << " fast_poll=" << fast_poll
     << " op_socket=" << op_socket << " op_send_zc=" << op_send_zc
     << " op_link_timeout=" << op_link_timeout << " accept_multishot=" << accept_multishot
     << " recv_multishot=" << recv_multishot << " buf_ring=" << buf_ring
     << " cancel_any=" << cancel_any << " msg_ring=" << msg_ring << " tls_ulp=" << tls_ulp
     << " min_wait=" << min_wait << " taskrun_flag=" << taskrun_flag << " skip_enter=" << skip_enter
     << " cqe_skip_used=" << cqe_skip_used << " batched_buf_returns=" << batched_buf_returns
     << " batch_wait="
     << (batch_wait == batch_policy::rate       ? "rate"
         : batch_wait == batch_policy::min_wait ? "min_wait"
                                                : "gathered")
     << " recv_bundle=" << recv_bundle << " pbuf_inc=" << pbuf_inc;
  os << " direct_files=" << direct_files;  // issue 14
  return os.str();
}

io_context::io_context(io_context_options o)
    : impl_(std::make_unique<impl>()), on_exception_(&default_exception_handler) {
  // Issue 15: which backend (docs/design.md, "Backends").
  const backend_kind asked = detail::backend_from_env(o.backend);
  std::string reason = asked == o.backend ? "default" : "forced by CORING_BACKEND";
  // The seam fires once whichever backend: it stands for the ring's setup only.
  const int injected = detail::injected_init_failure.exchange(0, std::memory_order_relaxed);
  if (asked == backend_kind::epoll) {
    if (asked == o.backend) reason = "forced by io_context_options::backend";
    start_epoll(o, std::move(reason));
    return;
  }
  if (asked == backend_kind::io_uring && asked == o.backend)
    reason = "forced by io_context_options::backend";
  if (int e = injected) {
    if (asked == backend_kind::automatic && falls_back(e)) {
      start_epoll(o, fallback_reason(e));
      return;
    }
    throw_error(errc::io_uring_unavailable, detail::explain_ring_failure(e));
  }

  const unsigned cq = o.cq_entries ? o.cq_entries : o.sq_entries * 16;
  // Ask for the most useful setup first and fall back on -EINVAL (older kernels):
  // SINGLE_ISSUER (6.0) + DEFER_TASKRUN (6.1); COOP_TASKRUN (5.19); SUBMIT_ALL (5.18).
  // Issue 14: COOP_TASKRUN with TASKRUN_FLAG (5.19) first, then without.
  const bool taskrun_flag = env_switch("CORING_TASKRUN_FLAG", o.taskrun_flag);
  unsigned attempts[8];
  unsigned n = 0;
  const unsigned base = IORING_SETUP_CQSIZE;
  if (o.single_issuer && o.defer_taskrun)
    attempts[n++] =
        base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  for (const unsigned coop : {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                              unsigned{IORING_SETUP_COOP_TASKRUN}}) {
    if (!taskrun_flag && (coop & IORING_SETUP_TASKRUN_FLAG)) continue;
    if (o.single_issuer)
      attempts[n++] = base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | coop;
    attempts[n++] = base | IORING_SETUP_SUBMIT_ALL | coop;
  }
  attempts[n++] = base;
  int ret = -EINVAL;
  unsigned used = 0;
  io_uring_params params{};
  for (unsigned i = 0; i < n; ++i) {
    params = io_uring_params{};
    params.flags = attempts[i];
    params.cq_entries = cq;
    ret = io_uring_queue_init_params(o.sq_entries, &impl_->ring, &params);
    if (ret == 0) {
      used = attempts[i];
      break;
    }
    if (ret != -EINVAL) break;
  }
  if (ret < 0) {
    if (asked == backend_kind::automatic && falls_back(-ret)) {
      start_epoll(o, fallback_reason(-ret));
      return;
    }
    throw_error(errc::io_uring_unavailable, detail::explain_ring_failure(-ret));
  }
  impl_->ring_ok = true;

  ring_features& f = impl_->features;
  f.backend = backend_kind::io_uring;
  f.backend_reason = std::move(reason);
  f.sq_entries = params.sq_entries;
  f.cq_entries = params.cq_entries;
  f.single_issuer = used & IORING_SETUP_SINGLE_ISSUER;
  f.defer_taskrun = used & IORING_SETUP_DEFER_TASKRUN;
  f.coop_taskrun = used & IORING_SETUP_COOP_TASKRUN;
  f.taskrun_flag = used & IORING_SETUP_TASKRUN_FLAG;
  f.nodrop = params.features & IORING_FEAT_NODROP;
  f.ext_arg = params.features & IORING_FEAT_EXT_ARG;
  f.cqe_skip = params.features & IORING_FEAT_CQE_SKIP;
  f.fast_poll = params.features & IORING_FEAT_FAST_POLL;
  f.min_wait = params.features & IORING_FEAT_MIN_TIMEOUT;
  if (io_uring_probe* p = io_uring_get_probe_ring(&impl_->ring)) {
    f.op_socket = has_op(p, IORING_OP_SOCKET);
    f.op_send_zc = has_op(p, IORING_OP_SEND_ZC);
    f.op_link_timeout = has_op(p, IORING_OP_LINK_TIMEOUT);
    f.msg_ring = has_op(p, IORING_OP_MSG_RING);
    io_uring_free_probe(p);
  }
  // No opcode tells these apart; they arrived together with the opcodes above:
  // IORING_OP_SOCKET with 5.19 (multishot accept, buffer rings, cancel ANY/FD),
  // IORING_OP_SEND_ZC with 6.0 (multishot recv).
  f.accept_multishot = f.buf_ring = f.cancel_any = f.op_socket;
  f.recv_multishot = f.op_send_zc;
  if (o.register_ring_fd) f.registered_ring_fd = io_uring_register_ring_fd(&impl_->ring) == 1;
  f.tls_ulp = kernel_has_tls_ulp();
  f.skip_enter = env_switch("CORING_SKIP_ENTER", o.skip_idle_enter);
  f.cqe_skip_used = f.cqe_skip && env_switch("CORING_CQE_SKIP", o.cqe_skip_success);
  f.batched_buf_returns = env_switch("CORING_BATCH_BUF_RETURNS", o.batch_buffer_returns);
  f.batch_wait = o.batch_wait;
  if (const char* env = std::getenv("CORING_BATCH_POLICY"); env && *env) {
    const std::string_view v(env);
    f.batch_wait = v == "rate"       ? batch_policy::rate
                   : v == "min_wait" ? batch_policy::min_wait
                                     : batch_policy::gathered;
  }
  if (f.batch_wait == batch_policy::min_wait && !f.min_wait) f.batch_wait = batch_policy::gathered;

  owner_only_ = f.single_issuer || f.registered_ring_fd;
  bool msg_wake = o.msg_ring_wake;
  if (const char* env = std::getenv("CORING_MSG_RING"); env && (*env == '0' || *env == '1'))
    msg_wake = *env == '1';
  impl_->msg_wake = msg_wake && f.msg_ring;
  // Issue 14: recv bundles (6.10, a feature bit) and incremental buffer rings (6.12, no bit of
  // their own: they came with IORING_FEAT_MIN_TIMEOUT; buffer_ring falls back if refused).
  f.recv_bundle = env_switch("CORING_RECV_BUNDLE", o.recv_bundle) &&
                  (params.features & IORING_FEAT_RECVSEND_BUNDLE) != 0 && f.buf_ring;
  f.pbuf_inc = env_switch("CORING_PBUF_INC", o.pbuf_inc) && f.min_wait && f.buf_ring;
  // Issue 14: the budget, capped at 1 s (the wait's timeouts assume less).
  long long delay_us = o.max_batch_delay.count();
  if (const char* env = std::getenv("CORING_MAX_BATCH_DELAY_US"); env && *env)
    delay_us = std::strtoll(env, nullptr, 10);
  if (delay_us > 0)
    impl_->batch_delay_us = static_cast<std::uint32_t>(std::min(delay_us, 1000000LL));
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int e = errno;
  if (impl_->wake_fd >= 0) {
    impl_->channel = new (std::nothrow) detail::wake_channel;
    e = ENOMEM;
  }
  if (!impl_->channel) {
    if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
    io_uring_queue_exit(&impl_->ring);
    impl_->ring_ok = false;
    throw_errno(e, "eventfd (io_context wakeup)");
  }
  impl_->channel->event_fd = impl_->wake_fd;
  arm_wake();
  setup_direct_files(o);  // issue 14: the registered file table (src/direct_files.cpp); last
}

// Issue 15: the epoll backend: the same loop, wake-up eventfd and teardown; what the kernel
// offers only on io_uring is reported absent, so that operations take their plain forms.
void io_context::start_epoll(const io_context_options& o, std::string reason) {
  impl_->epoll = std::make_unique<detail::epoll_backend>(o.sq_entries);
  impl_->ring.ring_fd = impl_->epoll->fd();  // identifies the context (resolve's hub)
  impl_->ring_ok = true;
  ring_features& f = impl_->features;
  f.backend = backend_kind::epoll;
  f.backend_reason = std::move(reason);
  f.sq_entries = std::max(o.sq_entries, 8U);
  f.cq_entries = o.cq_entries ? o.cq_entries : f.sq_entries * 16;
  f.nodrop = true;  // the completion queue grows
  f.ext_arg = true;
  f.cqe_skip = true;
  f.op_link_timeout = true;
  f.buf_ring = true;    // consumed in user space
  f.cancel_any = true;  // by descriptor and all
  f.tls_ulp = kernel_has_tls_ulp();
  long long delay_us = o.max_batch_delay.count();
  if (const char* env = std::getenv("CORING_MAX_BATCH_DELAY_US"); env && *env)
    delay_us = std::strtoll(env, nullptr, 10);
  if (delay_us > 0)
    impl_->batch_delay_us = static_cast<std::uint32_t>(std::min(delay_us, 1000000LL));
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int e = errno;
  if (impl_->wake_fd >= 0) {
    impl_->channel = new (std::nothrow) detail::wake_channel;
    e = ENOMEM;
  }
  if (!impl_->channel) {
    if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
    impl_->epoll.reset();
    impl_->ring_ok = false;
    throw_errno(e, "eventfd (io_context wakeup)");
  }
  impl_->channel->event_fd = impl_->wake_fd;
  arm_wake();
}

bool io_context::falls_back(int e) noexcept { return e == EPERM || e == EACCES || e == ENOSYS; }

std::string io_context::fallback_reason(int e) {
  std::string r = "io_uring_setup: ";
  r += std::strerror(e);
  if (std::FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "re")) {
    int v = 0;
    if (std::fscanf(f, "%d", &v) == 1 && v != 0)
      r += " (kernel.io_uring_disabled=" + std::to_string(v) + ")";
    else if (e != ENOSYS)
      r += " (seccomp?)";
    std::fclose(f);
  } else if (e != ENOSYS) {
    r += " (seccomp?)";
  }
  r += "; using epoll";
  return r;
}

void io_context::fd_closing(int fd) noexcept {
  if (fd < 0 || !impl_ || !impl_->ring_ok) return;
  if (impl_->epoll) [[unlikely]] {
    impl_->epoll->forget_fd(fd);
    return;
  }
  // TRICKY: an SQE prepared this turn for the socket being closed (a recv_stream's re-arm, a
  // send) would otherwise reach whatever socket gets the number next, before the submit (an
  // accept reaped in the same turn): it would take that socket's data. Made to name -1, it
  // fails with EBADF. Without SQPOLL the kernel reads SQEs only inside io_uring_enter, so the
  // ones from its head to liburing's local tail are still ours to change.
  io_uring_sq& sq = impl_->ring.sq;
  for (unsigned i = *sq.khead; i != sq.sqe_tail; ++i)
    detail::unname_fd(sq.sqes[i & *sq.kring_mask], fd);
}

io_context::~io_context() {
  forget_direct_files(false);  // issue 14: first, so that no slot release is posted any more
  // A thread whose request let run() return may still be inside wake(): let it leave first.
  while (remote_callers_.load(std::memory_order_acquire) != 0)
    std::this_thread::yield();
  shutdown();
  forget_direct_files(true);  // issue 14: the table goes (sockets destroyed above released theirs)
  exit_ring();
}

const ring_features& io_context::features() const noexcept { return impl_->features; }

void io_context::set_exception_handler(std::function<void(std::exception_ptr)> handler) {
  on_exception_ = handler ? std::move(handler) : &default_exception_handler;
}

// LIFETIME: held by another thread for as long as it touches the context in stop(),
// post_remote() or drop_work(); ~io_context waits until none is left.
struct io_context::remote_call {
  explicit remote_call(io_context& c) noexcept : ctx(c) { ctx.remote_callers_.fetch_add(1); }
  ~remote_call() { ctx.remote_callers_.fetch_sub(1, std::memory_order_release); }
  io_context& ctx;
};

void io_context::stop() noexcept {
  remote_call guard(*this);
  stop_.store(true, std::memory_order_release);
  wake();  // another thread may have called it while run() waits in the kernel
}

void io_context::report_exception(std::exception_ptr e) noexcept {
  try {
    if (on_exception_) on_exception_(e);
  } catch (...) {
    std::fputs("coring: the exception handler itself threw; ignored\n", stderr);
  }
}

void io_context::post_remote(detail::remote_node* n) noexcept {
  remote_call guard(*this);
  n->next = remote_head_.load(std::memory_order_relaxed);
  while (!remote_head_.compare_exchange_weak(n->next, n, std::memory_order_release,
                                             std::memory_order_relaxed)) {}
  // LIFETIME: n may already have run (and be gone) here; only the context is touched below.
  wake();
}

void io_context::drop_work() noexcept {
  remote_call guard(*this);
  if (work_.fetch_sub(1, std::memory_order_acq_rel) == 1) wake();  // run() may return now
}

void io_context::wake() noexcept {
  io_context* from = current_context;
  if (from == this) return;  // our own loop turn: it looks at the queue before it waits
  // One wake-up per batch of requests: the flag is cleared by the loop before it drains.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  // From another ring's loop turn: a MSG_RING in that ring's coming submission.
  if (from && from->send_wake(*this)) return;
  std::uint64_t one = 1;
  ssize_t r = ::write(impl_->wake_fd, &one, sizeof one);
  (void)r;  // cannot fail short of a counter overflow, which still leaves it readable
}

bool io_context::send_wake(io_context& target) noexcept {
  // LIFETIME: target is alive here (its remote_call guard is held); the SQE names a dup of its
  // ring fd that the channel reference below keeps open until the CQE (on_wake_sent).
  if (!impl_->msg_wake || stopping_ || target.impl_->epoll) return false;
  detail::wake_channel* ch = target.impl_->channel;
  int fd = ch->ring_fd.load(std::memory_order_acquire);
  if (fd < 0) {
    const int dup = ::fcntl(target.impl_->ring.ring_fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return false;
    if (ch->ring_fd.compare_exchange_strong(fd, dup, std::memory_order_acq_rel))
      fd = dup;
    else
      ::close(dup);  // another waker's dup won; fd holds it now
  }
  io_uring_sqe* sqe = impl_->get_sqe();
  if (!sqe) return false;  // the SQ is full: the eventfd it is
  ch->ref();
  io_uring_prep_msg_ring(sqe, fd, 0, msg_wake_user_data, 0);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uintptr_t>(ch) | msg_sent_tag);
  ++impl_->msgs_in_flight;
  impl_->msg_unsubmitted = true;
  return true;
}

void io_context::on_wake_sent(std::uint64_t user_data, int res) noexcept {
  auto* ch = reinterpret_cast<detail::wake_channel*>(
      static_cast<std::uintptr_t>(user_data & ~std::uint64_t{7}));
  --impl_->msgs_in_flight;
  if (res < 0) {
    // The target's flag is still set: its eventfd carries this wake-up instead.
    std::uint64_t one = 1;
    ssize_t r = ::write(ch->event_fd, &one, sizeof one);
    (void)r;
    if (res == -EINVAL || res == -EOPNOTSUPP || res == -EBADFD) impl_->msg_wake = false;
  }
  ch->unref();
}

void io_context::arm_wake() noexcept {
  // A poll holds no buffer, so nothing is at risk if it is still armed at queue_exit.
  io_uring_sqe* sqe = impl_->get_sqe();
  if (!sqe) {
    impl_->submit();
    sqe = impl_->get_sqe();
    if (!sqe) return;  // retried at the next wake-up check in run_once
  }
  if (impl_->wake_multishot)
    io_uring_prep_poll_multishot(sqe, impl_->wake_fd, POLLIN);
  else
    io_uring_prep_poll_add(sqe, impl_->wake_fd, POLLIN);
  io_uring_sqe_set_data64(sqe, wake_user_data);
  impl_->wake_armed = true;
}

void io_context::on_wake(int res, std::uint32_t flags) noexcept {
  if (!detail::cqe_more(flags)) {
    impl_->wake_armed = false;
    if (res == -EINVAL && impl_->wake_multishot) impl_->wake_multishot = false;  // pre-5.13
  }
  if (res > 0) {
    // Order matters (see wake()): reset the counter, then clear the flag, then drain. A wake()
    // that saw the flag set pushed its node before we clear it (the exchange makes that push
    // visible); one that sees it clear writes after our read, so the poll fires again.
    std::uint64_t count;
    ssize_t r = ::read(impl_->wake_fd, &count, sizeof count);
    (void)r;
    wake_pending_.exchange(false, std::memory_order_acq_rel);
  }
  run_remote(stopping_);
  if (!impl_->wake_armed && !stopping_) arm_wake();
}

namespace {
// Makes ctx the thread's current context for one loop turn (nested turns restore the outer).
struct current_scope {
  explicit current_scope(io_context* ctx) noexcept : saved(current_context) {
    current_context = ctx;
  }
  ~current_scope() { current_context = saved; }
  io_context* saved;
};
}  // namespace

void io_context::run_remote(bool cancelled) noexcept {
  if (remote_head_.load(std::memory_order_relaxed) == nullptr) return;
  detail::remote_node* lifo = remote_head_.exchange(nullptr, std::memory_order_acquire);
  detail::remote_node* fifo = nullptr;  // run them in the order they were posted
  while (lifo) {
    detail::remote_node* next = lifo->next;
    lifo->next = fifo;
    fifo = lifo;
    lifo = next;
  }
  while (fifo) {
    detail::remote_node* next = fifo->next;  // LIFETIME: fn may free the node
    fifo->fn(fifo, cancelled);
    fifo = next;
  }
}

void io_context::schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

void io_context::run_ready() {
  if (ready_.empty()) return;
  running_.swap(ready_);
  // Handles posted while these run go to ready_ and wait for the next turn.
  for (std::size_t i = 0; i < running_.size(); ++i)
    running_[i].resume();
  running_.clear();
}

void io_context::run() {
  while (!stop_.load(std::memory_order_acquire) && run_once(true)) {}
  stop_.store(false, std::memory_order_relaxed);
}

bool io_context::run_once(bool block) {
  if (owner_only_ && std::this_thread::get_id() != owner_) [[unlikely]]
    throw std::logic_error(
        "io_context run on another thread than the one that created it: with SINGLE_ISSUER and "
        "the registered ring fd the ring belongs to its creating thread (create the context on "
        "the thread that runs it, or turn both off in io_context_options)");
  current_scope scope(this);
  run_remote(false);
  run_ready();
  if (in_flight_ == 0 && impl_->msgs_in_flight == 0 && ready_.empty() &&
      work_.load(std::memory_order_acquire) == 0)
    return false;
  impl& ring = *impl_;
  if (!impl_->wake_armed) arm_wake();
  const bool wait = block && ready_.empty() && !stop_.load(std::memory_order_acquire) &&
                    remote_head_.load(std::memory_order_acquire) == nullptr;
  if (impl_->dirty_rings) detail::buffer_returns::publish(*this);  // issue 14: one store each
  int ret;
  if (skip_enter()) {
    ret = 0;  // issue 14: the CQ holds completions and there is nothing to submit
  } else if (busy_ && impl_->features.defer_taskrun && impl_->features.ext_arg) {
    // TRICKY: on a DEFER_TASKRUN ring, completions that waited for an event (a recv that found
    // no data, the signalfd read, timers, linked-timeout disarms) are posted as task work, and
    // one enter runs at most max(20, wait_nr) items of it (Linux 6.10+). When the last turn was
    // busy (our own submissions keep posting inline completions), 20 per turn let them starve:
    // a SIGTERM to a flooded server was seen 11-36 s late. So a busy turn asks the kernel to
    // run up to task_work_budget items, without waiting (zero timeout: -ETIME at once).
    __kernel_timespec zero{0, 0};
    ret = ring.submit_and_wait_timeout(task_work_budget, &zero);
  } else if (wait && impl_->batch_delay_us != 0)
    ret = batched_wait();
  else if (wait)
    ret = ring.submit_and_wait(1);
  else if (impl_->features.defer_taskrun || impl_->epoll)
    ret = ring.submit_and_get_events();  // DEFER_TASKRUN (epoll: readiness) needs an enter
  else
    ret = ring.submit();
  // A signal interrupts the wait with -EINTR even under SA_RESTART (seen on Linux 6.18);
  // -EAGAIN/-EBUSY are transient resource shortages: reap what is there and go round again.
  if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
    throw_errno(-ret, "io_uring_enter");
  if (ret >= 0 || ret == -ETIME) impl_->msg_unsubmitted = false;  // the SQ went in
  reap();
  // LIFETIME: wake-ups that coroutines resumed by reap() prepared leave with this turn: the
  // next turn may never come (sync_wait returns, run() stops).
  if (impl_->msg_unsubmitted) {
    impl_->msg_unsubmitted = false;
    ring.submit();
  }
  return true;
}

// Issue 14: whether this turn may reap without an enter: nothing is queued to submit and the
// CQ already holds completions (left by an io_uring_submit of acquire_sqe or of a cancel, or by
// the last reap's bound). Not after a busy turn: that enter runs the kernel's deferred task
// work (see run_once). Under COOP_TASKRUN with TASKRUN_FLAG, not when the kernel has task work
// for us (IORING_SQ_TASKRUN); under DEFER_TASKRUN it cannot say, and the next turn runs it.
bool io_context::skip_enter() const noexcept {
  io_uring& ring = impl_->ring;
  if (!impl_->features.skip_enter || busy_ || io_uring_sq_ready(&ring) != 0 ||
      io_uring_cq_ready(&ring) == 0)
    return false;
  return !(impl_->features.taskrun_flag &&
           (IO_URING_READ_ONCE(*ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)));
}

// Issue 14: submits and waits up to batch_delay_us for impl_->batch_wait_nr completions.
// - How many end the wait early adapts to the rate: the count the last batched wait gathered
//   (at least 1, at most batch_wait_nr). A loop that sees one completion at a time (a lone
//   client, a ping-pong) waits for one and is not delayed; at a steady load the count grows
//   with the completions that arrive while the loop wakes, until a wait lasts the budget.
// - A loop that was idle (the last batched wait gathered nothing) waits plainly for one
//   completion: a lone request on a quiet server is answered at once.
// - The wait is wait_nr with the budget as its timeout (EXT_ARG: no SQE). Under DEFER_TASKRUN
//   the kernel wakes the task only when that many completions are ready or the timeout ends.
//   Its cost: a wait that gathers fewer lasts the whole budget.
// - min_wait_usec (Linux 6.12+, ring_features::min_wait) is batch_policy::min_wait (see
//   min_wait_enter): bench/min_wait shows on 6.18 that a recv completing as deferred task work
//   does end the min wait at its end (an earlier try here had concluded it did not). It is not
//   the default: no gain measured (README, "Batched wake-ups").
// This is batch_policy::gathered, the default; rate_wait is batch_policy::rate.
// A timer (IORING_OP_TIMEOUT) ends any wait at once (the kernel counts fired timeouts as a
// reason to wake), and the eventfd poll of execute()/stop() is a completion like any other, so
// neither is held back past the budget.
int io_context::batched_wait() {
  if (!impl_->epoll) {  // issue 14's other policies are the ring's
    io_uring& ring = impl_->ring;
    if (impl_->features.batch_wait == batch_policy::rate) return rate_wait();
    if (impl_->features.batch_wait == batch_policy::min_wait && impl_->batch_wait_nr > 1) {
      const unsigned before = io_uring_cq_ready(&ring);
      const int ret = min_wait_enter(impl_->batch_wait_nr);
      impl_->batch_wait_nr = std::clamp(io_uring_cq_ready(&ring) - before, 1U, batch_wait_nr);
      return ret;
    }
  }
  impl& ring = *impl_;
  if (impl_->last_batch_empty) {
    impl_->last_batch_empty = false;
    impl_->batch_wait_nr = 1;
    return ring.submit_and_wait(1);
  }
  const unsigned before = ring.cq_ready();
  __kernel_timespec ts{impl_->batch_delay_us / 1000000,
                       static_cast<long long>(impl_->batch_delay_us % 1000000) * 1000};
  const int ret = ring.submit_and_wait_timeout(impl_->batch_wait_nr, &ts);
  const unsigned gathered = ring.cq_ready() - before;
  impl_->last_batch_empty = ret == -ETIME && gathered == 0;
  impl_->batch_wait_nr = std::clamp(gathered, 1U, batch_wait_nr);
  return ret;
}

// Issue 14, batch_policy::rate: wait_nr from the smoothed completion rate (completions per µs
// over windows of at least one budget, weight 1/4 to the newest) x the budget, clamped
// 1..batch_wait_nr.
// A wait for one has no timeout (an idle loop sleeps); after a wait that gathered fewer than it
// asked for (it lasted the whole budget), the next waits for one and the estimate restarts from
// what that wait gathered.
int io_context::rate_wait() {
  io_uring& ring = impl_->ring;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const std::int64_t now_ns = std::int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
  // A sample spans at least one budget: one completion 10 µs after another is no rate.
  const double dt_us = double(now_ns - impl_->rate_stamp_ns) / 1000.0;
  if (impl_->rate_stamp_ns == 0 || dt_us >= impl_->batch_delay_us) {
    if (impl_->rate_stamp_ns != 0)
      impl_->rate_per_us = 0.75 * impl_->rate_per_us + 0.25 * (impl_->rate_reaped / dt_us);
    impl_->rate_stamp_ns = now_ns;
    impl_->rate_reaped = 0;
  }
  unsigned want = 1;
  if (!impl_->last_batch_short)
    want = static_cast<unsigned>(
        std::clamp(impl_->rate_per_us * impl_->batch_delay_us + 0.5, 1.0, double(batch_wait_nr)));
  if (want == 1) {
    impl_->last_batch_short = false;
    return io_uring_submit_and_wait(&ring, 1);
  }
  const unsigned before = io_uring_cq_ready(&ring);
  __kernel_timespec ts{impl_->batch_delay_us / 1000000,
                       static_cast<long long>(impl_->batch_delay_us % 1000000) * 1000};
  io_uring_cqe* cqe = nullptr;
  const int ret = io_uring_submit_and_wait_timeout(&ring, &cqe, want, &ts, nullptr);
  const unsigned got = io_uring_cq_ready(&ring) - before;
  impl_->last_batch_short = got < want;
  // The estimate was too high (a ping-pong's dependent steps look like a fast rate): take
  // what the budget actually brought instead of decaying towards it.
  if (impl_->last_batch_short) impl_->rate_per_us = double(got) / impl_->batch_delay_us;
  return ret;
}

// Issue 14, batch_policy::min_wait: wait_nr as for gathered (a fixed 64 held every step of a
// ping-pong for the whole budget: 8 ms round trips with a 2 ms budget in tests/test_batch.cpp),
// min_wait_usec the budget and a 1 s overall timeout (an idle loop wakes once a second), so a
// wait that gathers fewer than wait_nr ends at the budget if one came, or at the first one
// after it. bench/min_wait shows that contract on Linux 6.18, DEFER_TASKRUN included.
// liburing 2.3 cannot pass min_wait_usec: the SQ tail is published here as its submit would,
// and the enter is raw.
int io_context::min_wait_enter(unsigned wait_nr) {
  io_uring& ring = impl_->ring;
  io_uring_sq& sq = ring.sq;
  if (sq.sqe_head != sq.sqe_tail) {
    sq.sqe_head = sq.sqe_tail;
    io_uring_smp_store_release(sq.ktail, sq.sqe_tail);
  }
  const unsigned to_submit = sq.sqe_tail - IO_URING_READ_ONCE(*sq.khead);
  __kernel_timespec ts{1, 0};
  detail::getevents_arg_v612 arg{0, _NSIG / 8, impl_->batch_delay_us,
                                 reinterpret_cast<std::uintptr_t>(&ts)};
  unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
  int fd = ring.ring_fd;
  if (impl_->features.registered_ring_fd) {
    flags |= IORING_ENTER_REGISTERED_RING;
    fd = ring.enter_ring_fd;
  }
  const long r = ::syscall(__NR_io_uring_enter, fd, to_submit, wait_nr, flags, &arg, sizeof arg);
  return r < 0 ? -errno : static_cast<int>(r);
}

void io_context::reap() {
  constexpr unsigned batch = 256;
  struct event {
    std::uint64_t user_data;
    int res;
    std::uint32_t flags;
  };
  impl& ring = *impl_;
  io_uring_cqe* cqes[batch];
  event events[batch];
  // Bounded so that queued coroutines get their turn even under a flood of completions.
  const unsigned rounds = impl_->features.cq_entries / batch + 2;
  unsigned total = 0;
  for (unsigned round = 0; round < rounds; ++round) {
    // peek_batch_cqe also flushes the kernel's overflow list when the CQ overflowed.
    unsigned n = ring.peek_batch_cqe(cqes, batch);
    if (n == 0) break;
    // Copy out and advance before dispatching: resumed code may submit and even reap.
    for (unsigned i = 0; i < n; ++i)
      events[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
    ring.cq_advance(n);
    total += n;
    for (unsigned i = 0; i < n; ++i) {
      const event& e = events[i];
      if (ignored_user_data(e.user_data)) continue;
      if ((e.user_data & 7) == fd_cancel_tag) {
        on_fd_cancel(e.user_data, e.res);
        continue;
      }
      if ((e.user_data & 7) == op_cancel_tag) {
        on_op_cancel(e.user_data, e.res);
        continue;
      }
      if (e.user_data == wake_user_data) {
        on_wake(e.res, e.flags);
        continue;
      }
      if (e.user_data == msg_wake_user_data) {
        // Order as in on_wake: clear the flag, then drain.
        wake_pending_.exchange(false, std::memory_order_acq_rel);
        run_remote(stopping_);
        continue;
      }
      if ((e.user_data & 7) == msg_sent_tag) {
        on_wake_sent(e.user_data, e.res);
        continue;
      }
      if (!detail::cqe_more(e.flags)) --in_flight_;
      auto* c = reinterpret_cast<detail::completion*>(static_cast<std::uintptr_t>(e.user_data));
      c->fn_(c, e.res, e.flags);
    }
    if (n < batch) break;
  }
  busy_ = total >= busy_turn;
  impl_->rate_reaped += total;  // issue 14: batch_policy::rate
}

io_uring_sqe& io_context::acquire_sqe(unsigned n) {
  if (stopping_) throw_error(errc::context_stopping, "submit");
  impl& ring = *impl_;
  for (int tries = 0; ring.sq_space_left() < n; ++tries) {
    int ret = ring.submit();
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
      throw_errno(-ret, "io_uring_submit");
    if (tries == 100) throw_errno(EBUSY, "io_uring_submit: submission queue stays full");
  }
  return *ring.get_sqe();
}

void io_context::attach(io_uring_sqe& sqe, detail::completion* c) noexcept {
  io_uring_sqe_set_data(&sqe, c);
  ++in_flight_;
  if (sqe.opcode == IORING_OP_TIMEOUT) ++impl_->timeouts_submitted;
}

namespace {
template <class Impl>  // io_context::impl (private: deduced, not named)
io_uring_sqe* sqe_for_cancel(Impl& ring) noexcept {
  io_uring_sqe* sqe = ring.get_sqe();
  if (!sqe) {
    ring.submit();
    sqe = ring.get_sqe();
  }
  return sqe;
}
}  // namespace

void io_context::cancel(detail::completion* c) noexcept {
  io_uring_sqe* sqe = sqe_for_cancel(*impl_);
  if (!sqe) return;
  io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(c), 0);
  io_uring_sqe_set_data64(sqe, 0);
  if (impl_->features.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void io_context::cancel(detail::cancel_node& n, detail::completion* c) noexcept {
  if (!n.target) {
    n.target = c;
    n.id = ++next_cancel_id_;
    n.attempts = 0;
    cancels_.push_front(n);
  }
  submit_op_cancel(n);
}

void io_context::submit_op_cancel(detail::cancel_node& n) noexcept {
  io_uring_sqe* sqe = sqe_for_cancel(*impl_);
  if (!sqe) return;
  io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(n.target), 0);
  io_uring_sqe_set_data64(sqe, (static_cast<std::uint64_t>(n.id) << 3) | op_cancel_tag);
  // Success needs no answer; -ENOENT/-EALREADY come back (on_op_cancel).
  if (impl_->features.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void io_context::on_op_cancel(std::uint64_t user_data, int res) noexcept {
  // TRICKY: -ENOENT means the cancel found nothing: the operation completed (its CQE is on
  // its way, and cancel_done() took it off the list), or it was between two kernel attempts
  // (see on_fd_cancel), where it cannot be found. Still on the list: try again. -EALREADY:
  // it is running and will complete on its own.
  if (res != -ENOENT || stopping_) return;
  const auto id = static_cast<std::uint32_t>(user_data >> 3);
  for (detail::cancel_node* n = cancels_.front(); n; n = cancels_.next(*n))
    if (n->id == id) {
      if (++n->attempts < max_cancel_attempts) submit_op_cancel(*n);
      return;
    }
}

void io_context::grow_fds(std::size_t i) noexcept {
  try {
    fds_.resize(i + 1 + i / 2);
  } catch (const std::bad_alloc&) {
    // Out of memory: this descriptor goes untracked (its cancels are not sticky or retried).
  }
}

void io_context::cancel_fd(int fd) noexcept {
  if (fd < 0) return;
  const auto i = static_cast<std::size_t>(fd);
  if (i >= fds_.size()) grow_fds(i);
  if (i < fds_.size()) {
    // Sticky: operations of this socket compare the generation before they (re)submit.
    ++fds_[i].generation;
    fds_[i].stale = fds_[i].in_flight;
  }
  submit_fd_cancel(fd, 0);
}

void io_context::submit_fd_cancel(int fd, unsigned attempt) noexcept {
  if (!impl_->features.cancel_any) return;
  io_uring_sqe* sqe = sqe_for_cancel(*impl_);
  if (!sqe) return;
  io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, (static_cast<std::uint64_t>(fd) << 16) |
                                   (static_cast<std::uint64_t>(attempt) << 3) | fd_cancel_tag);
}

void io_context::on_fd_cancel(std::uint64_t user_data, int) noexcept {
  // TRICKY: a cancel can miss an operation that is between two attempts in the kernel: a
  // socket event (a SHUT_RD, say) woke its poll and the retry waits as task work, where
  // IORING_OP_ASYNC_CANCEL does not look (it answers -ENOENT); the retry then blocks again and
  // the operation stays in flight for ever (a send_all to a peer that never reads). So while an
  // operation the cancel targeted is still in flight, cancel again: the next attempt, a loop
  // turn later, finds it re-armed.
  const int fd = static_cast<int>(user_data >> 16);
  const auto attempt = static_cast<unsigned>((user_data >> 3) & 0x1fff);
  const auto i = static_cast<std::size_t>(fd);
  if (stopping_ || i >= fds_.size() || fds_[i].stale == 0) return;
  if (attempt + 1 < max_cancel_attempts) submit_fd_cancel(fd, attempt + 1);
}

void io_context::shutdown() noexcept {
  if (!impl_ || !impl_->ring_ok || stopping_) return;
  stopping_ = true;
  impl& ring = *impl_;
  // LIFETIME (docs/design.md, "Teardown"): io_uring_queue_exit is not a barrier: an io-wq
  // worker can still write into a buffer after it returns. So: cancel everything, then reap
  // until every operation's own final CQE has arrived, and only then free frames. While
  // stopping_ is set a completion records its result but resumes nobody (see io_op::on_cqe):
  // the code those coroutines would run may use objects that are already gone, and the
  // coroutines queued to run (ready_) are not run either. They are destroyed below.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  try {
    run_remote(true);  // resume_on awaiters resume with context_stopping; functions are dropped
    while (in_flight_ + impl_->msgs_in_flight > 0 && std::chrono::steady_clock::now() < give_up) {
      if (io_uring_sqe* sqe = sqe_for_cancel(ring)) {
        if (impl_->features.cancel_any)
          io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        else
          io_uring_prep_nop(sqe);  // pre-5.19: nothing to cancel with; just wait (bounded)
        io_uring_sqe_set_data64(sqe, 0);
      }
      __kernel_timespec ts{0, 100'000'000};
      ring.submit_and_wait_timeout(1, &ts);
      reap();
      run_remote(true);
    }
  } catch (...) {
    // reap() cannot throw while stopping (nothing is resumed); keep the drain safe regardless.
  }
  ready_.clear();
  if (in_flight_ > 0) {
    // LIFETIME: the kernel may still own buffers in these frames. Leak them rather than free
    // memory it could write into; the ring is left open for the same reason (exit_ring).
    std::fprintf(stderr,
                 "coring: io_context shut down with %zu operation(s) still in flight after 5 s; "
                 "leaking their frames and the ring\n",
                 in_flight_);
    return;
  }
  // Nothing is in flight: destroying the frames of unfinished spawned tasks is now safe. A
  // frame's destructors may spawn or schedule (nothing runs any more) or end other spawned tasks.
  spawned_.destroy_all();
  ready_.clear();
}

void io_context::exit_ring() noexcept {
  if (!impl_ || !impl_->ring_ok || in_flight_ + impl_->msgs_in_flight > 0)
    return;  // in flight: leaked (shutdown)
  if (impl_->epoll)
    impl_->epoll.reset();
  else
    io_uring_queue_exit(&impl_->ring);
  impl_->ring_ok = false;
  impl_->channel->unref();  // closes the eventfd once no wake-up in flight refers to it
}

}  // namespace coring
