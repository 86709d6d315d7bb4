// SPDX-License-Identifier: MIT
// Description: connection_scope: a server's live connections and accept loops, one failure
// ending one connection, and the graceful drain (refuse, stop hook, grace, cancel).
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/acceptor.hpp>
#include <coring/detail/awaitable.hpp>
#include <coring/detail/intrusive_list.hpp>
#include <coring/detail/op.hpp>
#include <coring/io_context.hpp>
#include <coring/socket.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

class connection_scope;

namespace detail {

/// One connection's (or one accept loop's) place in its scope. It is a coroutine parameter, so
/// it lives in the connection's frame from the spawn on: it owns the socket, is on the scope's
/// list from the spawn (before the frame starts) until the frame is destroyed (at its end, or
/// by io_context::shutdown without being resumed), and tells the scope when it leaves.
class scope_slot {
 public:
  /// Links itself into sc's list and owns s.
  scope_slot(connection_scope& sc, socket s, bool listener) noexcept;
  /// Takes o's place in the list (the coroutine's parameter copy).
  scope_slot(scope_slot&& o) noexcept;
  scope_slot& operator=(scope_slot&&) = delete;
  /// Unlinks itself (the last one out wakes a drain), then the socket closes.
  ~scope_slot();

  /// The socket this slot owns.
  socket& sock() noexcept { return s_; }
  /// The scope, or null once the scope was destroyed before this slot.
  connection_scope* scope() const noexcept { return scope_; }
  /// What the connection threw: reported by the scope. Returns: false if nobody took it (the
  /// scope is gone and e is no operation_canceled): the caller rethrows it.
  bool failed(std::exception_ptr e) noexcept;

 private:
  friend class coring::connection_scope;
  connection_scope* scope_ = nullptr;
  list_links<scope_slot> links_;
  bool listener_ = false;
  socket s_;
};

template <class F>
task<> scope_connection(scope_slot slot, F f);
template <class F>
task<> scope_serve(scope_slot slot, F f, acceptor_options opts);

}  // namespace detail

/// How a connection_scope handles its connections.
struct connection_scope_options {
  /// Run on every connection when drain() starts (and on one spawned while it runs). Null (the
  /// default): shutdown(SHUT_RD): the handler's next receive sees EOF once it has read what
  /// arrived, and replies in flight still go out.
  std::function<void(socket&)> stop_hook{};
  /// Called with a connection's socket and what its handler threw (not operation_canceled
  /// once drain() started). Null (the default): one line on stderr with the peer's address.
  /// Note: must not throw (an exception is dropped).
  std::function<void(const socket&, std::exception_ptr)> on_error{};
  /// How long drain() waits, after it cancelled the connections left at the grace limit, for
  /// their handlers to end (the kernel gives cancelled operations back at once; this bounds
  /// a handler that waits on something else). One more timer.
  std::chrono::nanoseconds cancel_wait = std::chrono::seconds(1);
};

/// A server's connections: each runs its handler in its own coroutine on the io_context, and
/// one that fails (throws) ends alone; the scope reports it (on_error) and the others go on,
/// unlike task_group. co_await drain(grace) shuts the server down gracefully. A whole server:
///   coring::connection_scope scope(ctx);
///   scope.serve(std::move(listener), echo);  // accept loop: a connection per client
///   co_await signals.wait();
///   const bool all_ended = co_await scope.drain(2s);
/// Note: not thread-safe (one io_context thread); not movable (connections point at it).
/// Connections and accept loops are spawned tasks of the io_context: io_context::shutdown()
/// destroys unfinished ones without resuming them (the scope must then still exist, or be
/// destroyed already). Destroying the scope while connections run cancels them (socket::cancel)
/// and lets them end on their own, no longer reported; their handlers, and what those use,
/// must outlive them. A drain resumes once they all ended, so after it the scope can go.
class connection_scope {
 public:
  /// An empty scope whose connections run on ctx.
  /// Throws: std::bad_alloc (stop_source states).
  explicit connection_scope(io_context& ctx, connection_scope_options opts = {});
  /// Cancels connections still running (see the class note).
  ~connection_scope();
  connection_scope(const connection_scope&) = delete;
  connection_scope& operator=(const connection_scope&) = delete;

  /// Runs co_await handler(s) as a connection, from the next loop turn; its value, if any, is
  /// discarded. handler (copied into the connection's frame with s) lives until it ended, so
  /// a capturing coroutine lambda is safe here. Once drain() started, s is reset (closed with
  /// SO_LINGER 0) instead: the client sees a reset, never an accepted connection nobody serves.
  /// Throws: std::bad_alloc; s is closed then.
  template <class F>
  requires std::invocable<F&, socket&> && detail::awaitable<std::invoke_result_t<F&, socket&>>
  void spawn(socket s, F handler) {
    if (draining_) {
      refuse(s);
      return;
    }
    ctx_->spawn(detail::scope_connection(detail::scope_slot(*this, std::move(s), false),
                                         std::move(handler)));
  }

  /// The accept loop: accepts on listener (an acceptor with opts: by default it backs off when
  /// out of descriptors) and spawns handler on each connection, from the next loop turn until
  /// drain() starts. drain() then shuts the listener down at once, so clients that connect
  /// later are refused (ECONNREFUSED) and those in its backlog are reset; the loop ends and
  /// closes it. Accept errors other than a cancel go to on_error (with the listener); the loop
  /// goes on after ECONNABORTED, EPERM and EPROTO, and ends after others. It always backs off
  /// when out of descriptors or memory (a zero opts.back_off is taken as the default).
  /// Throws: std::bad_alloc. Note: handler is copied per connection.
  template <class F>
  requires std::invocable<F&, socket&> && detail::awaitable<std::invoke_result_t<F&, socket&>>
  void serve(socket listener, F handler, acceptor_options opts = {}) {
    if (draining_) return;  // the listener closes here: nothing more is accepted
    ctx_->spawn(detail::scope_serve(detail::scope_slot(*this, std::move(listener), true),
                                    std::move(handler), std::move(opts)));
  }

  /// co_await scope.drain(grace): stops accepting (serve()'s listeners are shut down, so new
  /// clients are refused), runs the stop hook on every connection, and waits up to grace for
  /// them to end, woken by the last one's end (one timer: the grace deadline). Then it cancels
  /// those left (socket::cancel(), for good) and waits until they ended, at most cancel_wait
  /// (one more timer). Returns: true if every connection and accept loop ended (false: those
  /// left end with io_context::shutdown()).
  /// Note: one drain at a time; once started, the scope stays draining (spawn() resets).
  task<bool> drain(std::chrono::nanoseconds grace);

  /// Requested when drain() cancels the connections left at the grace limit (or the scope is
  /// destroyed): for handlers that wait on something that is not their socket
  /// (`.with_stop(scope.token())`).
  std::stop_token token() const noexcept { return cancel_.get_token(); }
  /// Live connections (spawned and not ended yet, started or not).
  std::size_t size() const noexcept { return connections_; }
  /// Accept loops (serve()) still running.
  std::size_t serving() const noexcept { return loops_; }
  /// True once drain() started.
  bool draining() const noexcept { return draining_; }
  /// The io_context the connections run on.
  io_context& context() const noexcept { return *ctx_; }

 private:
  friend class detail::scope_slot;
  template <class F>
  friend task<> detail::scope_serve(detail::scope_slot slot, F f, acceptor_options opts);

  static void refuse(socket& s) noexcept;
  void link(detail::scope_slot& p) noexcept;
  void replace(detail::scope_slot& from, detail::scope_slot& to) noexcept;
  void unlink(detail::scope_slot& p) noexcept;
  void report(const socket& s, std::exception_ptr e) noexcept;
  task<bool> wait_empty(std::chrono::steady_clock::time_point deadline);
  std::stop_token listen_token() const noexcept { return listen_.get_token(); }

  io_context* ctx_;
  connection_scope_options opts_;
  detail::intrusive_list<detail::scope_slot, &detail::scope_slot::links_> slots_;
  std::size_t connections_ = 0, loops_ = 0;
  std::stop_source listen_;  // drain started: accept loops stop waiting
  std::stop_source cancel_;  // token(): the grace is over
  struct drain_waiter;
  drain_waiter* wake_ = nullptr;  // a drain waiting for the last one out
  bool draining_ = false;
};

namespace detail {

// The coroutine of one connection: slot (the socket) and f live in its frame.
template <class F>
CORING_NO_SANITIZE_FUNCTION task<> scope_connection(scope_slot slot, F f) {
  try {
    auto a = std::invoke(f, slot.sock());      // named: no temporary around the co_await
    static_cast<void>(co_await std::move(a));  // the value, if any, is discarded
  } catch (...) {
    if (!slot.failed(std::current_exception())) throw;
  }
}

// The accept loop of serve(): ends when drain() starts (its stop request, the listener's shut
// down) or the scope goes.
template <class F>
CORING_NO_SANITIZE_FUNCTION task<> scope_serve(scope_slot slot, F f, acceptor_options opts) {
  const std::stop_token tok = slot.scope()->listen_token();
  if (opts.back_off.count() <= 0) opts.back_off = acceptor_options{}.back_off;
  acceptor acc(slot.sock(), std::move(opts));
  for (;;) {
    auto op = as_result(acc.accept().with_stop(tok));  // named: see the g++ 12 notes
    auto r = co_await std::move(op);
    connection_scope* sc = slot.scope();
    if (!sc) {  // the scope went: a connection that raced it is reset, not left unserved
      if (r) connection_scope::refuse(*r);
      break;
    }
    if (r) {
      sc->spawn(std::move(*r), f);  // reset instead once drain() started
      if (sc->draining()) break;
      continue;
    }
    if (sc->draining()) break;
    const std::error_code ec = r.error();
    if (ec == std::errc::operation_canceled) break;
    sc->report(slot.sock(), std::make_exception_ptr(std::system_error(ec, "accept")));
    // A connection that went before we took it (ECONNABORTED), a firewall's EPERM: go on.
    // Anything else means no more connections (EMFILE and friends are the back-off's).
    if (ec != std::errc::connection_aborted && ec != std::errc::operation_not_permitted &&
        ec != std::errc::protocol_error)
      break;
  }
}

}  // namespace detail

}  // namespace coring
