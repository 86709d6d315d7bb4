// SPDX-License-Identifier: MIT
// Description: connection_scope: the slots' list, error reports, refusing, and the drain.
#include <coring/connection_scope.hpp>

#include <coring/task_group.hpp>  // detail::is_operation_canceled
#include <coring/timer.hpp>

#include <cstdio>
#include <string>

#include <sys/socket.h>

namespace coring {

// LIFETIME: lives in wait_empty's frame, which io_context::shutdown may destroy while it waits;
// the scope and this forget each other, whichever goes first.
struct connection_scope::drain_waiter {
  std::stop_source woken;
  connection_scope* sc;
  explicit drain_waiter(connection_scope* s) : sc(s) { sc->wake_ = this; }
  drain_waiter(const drain_waiter&) = delete;
  drain_waiter& operator=(const drain_waiter&) = delete;
  ~drain_waiter() {
    if (sc) sc->wake_ = nullptr;
  }
};

namespace detail {

scope_slot::scope_slot(connection_scope& sc, socket s, bool listener) noexcept
    : scope_(&sc), listener_(listener), s_(std::move(s)) {
  sc.link(*this);
}

scope_slot::scope_slot(scope_slot&& o) noexcept
    : scope_(std::exchange(o.scope_, nullptr)), listener_(o.listener_), s_(std::move(o.s_)) {
  if (scope_) scope_->replace(o, *this);
}

scope_slot::~scope_slot() {
  if (scope_) scope_->unlink(*this);
}

bool scope_slot::failed(std::exception_ptr e) noexcept {
  if (!scope_) return is_operation_canceled(e);  // the scope went and cancelled us: no news
  if (scope_->draining() && is_operation_canceled(e)) return true;  // the drain's own cancel
  scope_->report(s_, std::move(e));
  return true;
}

}  // namespace detail

connection_scope::connection_scope(io_context& ctx, connection_scope_options opts)
    : ctx_(&ctx), opts_(std::move(opts)) {}

connection_scope::~connection_scope() {
  // LIFETIME: what still runs stays a spawned task of the context (io_context::shutdown ends
  // it); it must not reach this scope any more. Outside a shutdown, it is cancelled for good.
  const bool stopping = ctx_->stopping();
  if (wake_) std::exchange(wake_, nullptr)->sc = nullptr;
  listen_.request_stop();
  cancel_.request_stop();
  for (detail::scope_slot* p = slots_.front(); p; p = slots_.next(*p)) {
    p->scope_ = nullptr;
    if (stopping) continue;
    if (p->listener_) ::shutdown(p->s_.fileno(), SHUT_RD);
    p->s_.cancel();
  }
  slots_.clear();  // the slots' links are stale: scope_ == nullptr keeps them off
}

void connection_scope::refuse(socket& s) noexcept {
  // SO_LINGER {1, 0}: close() sends a reset, so the client knows at once it is not served.
  linger l{1, 0};
  ::setsockopt(s.fileno(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  socket gone = std::move(s);  // closed here
}

void connection_scope::link(detail::scope_slot& p) noexcept {
  slots_.push_front(p);
  ++(p.listener_ ? loops_ : connections_);
}

void connection_scope::replace(detail::scope_slot& from, detail::scope_slot& to) noexcept {
  slots_.replace(from, to);
}

void connection_scope::unlink(detail::scope_slot& p) noexcept {
  slots_.remove(p);
  p.scope_ = nullptr;
  --(p.listener_ ? loops_ : connections_);
  // The last one out wakes a waiting drain (its timer's stop: no polling). Not during a
  // shutdown: the drain's frame may be gone already, and nobody is resumed anyway.
  if (connections_ == 0 && loops_ == 0 && wake_ && !ctx_->stopping()) wake_->woken.request_stop();
}

void connection_scope::report(const socket& s, std::exception_ptr e) noexcept {
  try {
    if (opts_.on_error) {
      opts_.on_error(s, std::move(e));
      return;
    }
    std::string peer = "?";
    try {
      peer = s.peer_name().to_string();
    } catch (...) {
      try {
        peer = s.sock_name().to_string();  // a listener's report
      } catch (...) {}
    }
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {}
    std::fprintf(stderr, "coring: connection %s: %s\n", peer.c_str(), what.c_str());
  } catch (...) {
    // Out of memory, or on_error threw: the report is dropped, the connection still ends.
  }
}

task<bool> connection_scope::wait_empty(std::chrono::steady_clock::time_point deadline) {
  if (connections_ == 0 && loops_ == 0) co_return true;
  drain_waiter w(this);
  auto sleep = as_result(sleep_until(*ctx_, deadline).with_stop(w.woken.get_token()));
  auto r = co_await std::move(sleep);
  (void)r;  // operation_canceled: woken by the last one out; otherwise the deadline passed
  co_return connections_ == 0 && loops_ == 0;
}

namespace {
// now + d, saturated (a grace of years means "no limit" without overflowing).
std::chrono::steady_clock::time_point after(std::chrono::nanoseconds d) {
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  if (d.count() < 0) return now;
  if (d >= std::chrono::duration_cast<std::chrono::nanoseconds>(clock::time_point::max() - now))
    return clock::time_point::max();
  return now + std::chrono::duration_cast<clock::duration>(d);
}
}  // namespace

task<bool> connection_scope::drain(std::chrono::nanoseconds grace) {
  const auto grace_end = after(grace);
  draining_ = true;
  listen_.request_stop();  // serve()'s accept waits end
  for (detail::scope_slot* p = slots_.front(); p; p = slots_.next(*p)) {
    if (p->listener_) {
      // A listening TCP socket shut down for reading stops listening at once: its backlog is
      // reset and new clients are refused (ECONNREFUSED), before the loop even resumes.
      ::shutdown(p->s_.fileno(), SHUT_RD);
      p->s_.cancel();
    } else if (opts_.stop_hook) {
      try {
        opts_.stop_hook(p->s_);
      } catch (...) {
        ::shutdown(p->s_.fileno(), SHUT_RD);
      }
    } else {
      ::shutdown(p->s_.fileno(), SHUT_RD);
    }
  }
  const bool ended = co_await wait_empty(grace_end);
  if (ended) co_return true;
  cancel_.request_stop();  // token()
  for (detail::scope_slot* p = slots_.front(); p; p = slots_.next(*p))
    p->s_.cancel();  // for good: also a handler between two operations ends
  const bool ended_after_cancel = co_await wait_empty(after(opts_.cancel_wait));
  co_return ended_after_cancel;
}

}  // namespace coring
