// SPDX-License-Identifier: MIT
// Description: reader: one buffer, a request checked against it, and a receive loop (one
// coroutine per reader, made once) that fills it with recv or recv_stream::next.
#include <coring/reader.hpp>

#include <coring/buffer_ring.hpp>
#include <coring/recv_stream.hpp>
#include <coring/socket.hpp>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <string>

namespace coring::detail {

using clock = std::chrono::steady_clock;

// The receive loop's coroutine: made suspended, resumed by each read that needs data (from its
// await_suspend), suspended again when the read is answered (park).
struct reader_loop {
  struct promise_type {
    reader_loop get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

// co_await reader_park{st, waiter}: the read is answered; suspends the loop. Called from a read's
// await_suspend (inline), it returns there (which then does not suspend the reader); from a
// completion, it resumes the waiter.
// TRICKY: reads answered without waiting go back through a bool await_suspend, not through a
// transfer: g++ 12 may not make symmetric transfer a tail call (docs/design.md, "g++ 12"), and
// a run of such reads would then grow the stack.
struct reader_park {
  const bool& inline_call;
  std::coroutine_handle<> waiter;
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept {
    if (inline_call) return std::noop_coroutine();
    return waiter;
  }
  void await_resume() const noexcept {}
};

struct reader_state {
  reader_state(socket* s, recv_stream* rx, std::size_t max_line)
      : sock(s), stream(rx), limit(std::clamp<std::size_t>(max_line, 1, SIZE_MAX / 2)),
        capacity(limit + 2), storage(new char[capacity]) {}
  ~reader_state() {
    if (loop) loop.destroy();
  }

  socket* sock;
  recv_stream* stream;
  std::size_t limit, capacity;
  std::unique_ptr<char[]> storage;
  std::size_t begin = 0, end = 0;  // unread bytes: [begin, end)
  bool eof = false;
  buffer pending;  // recv_stream: the rest of a ring buffer that did not fit (rare)
  std::size_t pending_used = 0;
  reader_op_base* op = nullptr;  // the read the loop serves
  bool inline_call = false;      // the loop runs inside the read's await_suspend
  bool served = false;           // the loop answered op
  std::coroutine_handle<> loop{};

  char* data() noexcept { return storage.get(); }
  std::size_t unread() const noexcept { return end - begin; }

  // Moves the unread bytes to the front. Only while a read runs: the previous answer (before
  // begin) may be overwritten from then on.
  void compact() noexcept {
    if (begin == 0) return;
    std::memmove(data(), data() + begin, end - begin);
    end -= begin;
    begin = 0;
  }

  // Copies b into the free space; keeps what does not fit in pending.
  void append(std::span<const std::byte> b) noexcept {
    compact();
    std::size_t n = std::min(b.size(), capacity - end);
    std::memcpy(data() + end, b.data(), n);
    end += n;
    pending_used = n;
  }

  // Takes from pending what fits. Returns: true if it copied anything.
  bool drain_pending() noexcept {
    if (!pending) return false;
    compact();
    auto rest = pending.data().subspan(pending_used);
    std::size_t n = std::min(rest.size(), capacity - end);
    if (n == 0) return false;
    std::memcpy(data() + end, rest.data(), n);
    end += n;
    pending_used += n;
    if (pending_used == pending.size()) pending.reset();
    return true;
  }

  void answer(reader_op_base& o, std::size_t size, std::size_t consumed) noexcept {
    o.data_ = data() + begin;
    o.size_ = size;
    begin += consumed;
  }

  // Finds o's delimiter in the first window unread bytes, from where the last search ended.
  // Returns: its offset from begin, or npos.
  std::size_t find(reader_op_base& o, std::string_view delim, std::size_t window) noexcept {
    std::size_t from = o.scanned_ >= delim.size() ? o.scanned_ - (delim.size() - 1) : 0;
    o.scanned_ = window;
    if (window < delim.size() || from > window - delim.size()) return std::string_view::npos;
    std::string_view hay(data() + begin + from, window - from);
    std::size_t at = hay.find(delim);
    return at == std::string_view::npos ? at : at + from;
  }

  // Answers o from the buffer if it can. Returns: true if o is finished (answered or failed).
  bool check(reader_op_base& o) noexcept {
    const std::size_t avail = unread();
    switch (o.kind_) {
      case read_kind::exact:
        if (o.n_ > limit) {
          o.error_ = std::make_error_code(std::errc::invalid_argument);
          return true;
        }
        if (avail >= o.n_) {
          answer(o, o.n_, o.n_);
          return true;
        }
        if (eof) {
          o.received_ = avail;
          o.error_ = errc::unexpected_eof;
          return true;
        }
        return false;
      case read_kind::until: {
        const std::size_t max = std::min(o.n_, limit);
        const std::string_view delim = o.delim_.empty() ? std::string_view(&o.ch_, 1) : o.delim_;
        std::size_t at = find(o, delim, std::min(avail, max));
        if (at != std::string_view::npos) {
          answer(o, at + delim.size(), at + delim.size());
          return true;
        }
        if (avail >= max) {
          o.error_ = errc::line_too_long;
          return true;
        }
        if (eof) {
          answer(o, avail, avail);
          return true;
        }
        return false;
      }
      case read_kind::line: {
        const std::size_t max = std::min(o.n_, limit);
        std::size_t at = find(o, std::string_view(&o.ch_, 1), std::min(avail, max + 2));
        if (at != std::string_view::npos) {
          std::size_t len = at > 0 && data()[begin + at - 1] == '\r' ? at - 1 : at;
          if (len > max) {
            o.error_ = errc::line_too_long;
            return true;
          }
          answer(o, len, at + 1);
          return true;
        }
        if (avail >= max + 2) {
          o.error_ = errc::line_too_long;
          return true;
        }
        if (eof) {
          o.has_value_ = avail > 0;
          answer(o, avail, avail);
          return true;
        }
        return false;
      }
    }
    return true;
  }

  // check, after taking what pending holds. Returns: true if o is finished.
  bool settle(reader_op_base& o) noexcept {
    for (;;) {
      if (check(o)) return true;
      if (!drain_pending()) return false;
    }
  }

  // Bounds op by what is left of o's deadline and by o's stop token.
  template <class Op>
  static auto bounded(Op&& op, const reader_op_base& o) noexcept {
    return as_result(detail::bound_by(std::move(op), o.deadline_, o.stop_));
  }

  // Serves one read after another: receives until the buffer answers the read (or the receive
  // fails), then resumes the read's waiter and waits for the next read.
  // Note: defined out of the class: clang 14 with -fsanitize=function cannot build an inline
  // coroutine (include/coring/detail/awaitable.hpp).
  static reader_loop receive_loop(reader_state& st);
};

reader_loop reader_state::receive_loop(reader_state& st) {
  for (;;) {
    reader_op_base& o = *st.op;
    try {
      while (!st.settle(o)) {
        if (st.sock) {
          st.compact();
          auto recv = bounded(st.sock->recv(std::as_writable_bytes(
                                  std::span(st.data() + st.end, st.capacity - st.end))),
                              o);
          result<std::size_t> r = co_await recv;
          if (!r) {
            o.error_ = r.error();
            break;
          }
          if (*r == 0)
            st.eof = true;
          else
            st.end += *r;
        } else {
          auto next = bounded(st.stream->next(), o);
          result<buffer> r = co_await next;
          if (!r) {
            o.error_ = r.error();
            break;
          }
          if (!*r) {
            st.eof = true;
          } else {
            st.append(r->data());
            if (st.pending_used < r->size()) st.pending = std::move(*r);  // gives it back later
          }
        }
      }
    } catch (...) {
      o.exception_ = std::current_exception();
    }
    st.op = nullptr;
    st.served = true;
    co_await reader_park{st.inline_call, o.waiter_};
  }
}

namespace {

reader_state* make_state(socket* s, recv_stream* rx, std::size_t max_line) {
  auto st = std::make_unique<reader_state>(s, rx, max_line);
  // The one allocation besides the state and its buffer: the loop's frame.
  st->loop = reader_state::receive_loop(*st).handle;
  return st.release();
}

}  // namespace

bool reader_op_base::await_suspend(std::coroutine_handle<> waiter) noexcept {
  if (st_->settle(*this)) return false;  // answered from the buffer
  assert(st_->op == nullptr && "one read at a time on a reader");
  waiter_ = waiter;
  st_->op = this;
  st_->served = false;
  st_->inline_call = true;
  st_->loop.resume();  // until the read is answered or the loop waits for a completion
  st_->inline_call = false;
  return !st_->served;
}

void reader_op_base::set_timeout(std::chrono::nanoseconds d) noexcept {
  auto now = clock::now();
  auto left = std::chrono::duration_cast<clock::duration>(std::max(d, d.zero()));
  deadline_ = left >= clock::time_point::max() - now ? clock::time_point::max() : now + left;
}

std::error_code reader_op_base::failure() const noexcept {
  if (!exception_) return error_;
  try {
    std::rethrow_exception(exception_);
  } catch (const std::system_error& e) {
    return e.code();
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

void reader_op_base::raise() const {
  if (exception_) std::rethrow_exception(exception_);
  const char* what = kind_ == read_kind::exact   ? "read_exact"
                     : kind_ == read_kind::until ? "read_until"
                                                 : "read_line";
  std::size_t max = std::min(n_, st_->limit);
  if (error_ == errc::unexpected_eof) {
    throw_error(error_, std::string(what) + ": peer closed after " + std::to_string(received_) +
                            " of " + std::to_string(n_) + " bytes");
  }
  if (error_ == errc::line_too_long) {
    throw_error(error_, std::string(what) + ": no " +
                            (kind_ == read_kind::line ? "line ending" : "delimiter") + " within " +
                            std::to_string(max) + " bytes");
  }
  if (error_ == std::errc::invalid_argument) {
    throw_error(error_, std::string(what) + ": " + std::to_string(n_) +
                            " bytes asked, more than max_line " + std::to_string(st_->limit));
  }
  throw_error(error_, what);
}

}  // namespace coring::detail

namespace coring {

reader::reader(socket& s, std::size_t max_line) : st_(detail::make_state(&s, nullptr, max_line)) {}

reader::reader(recv_stream& rx, std::size_t max_line)
    : st_(detail::make_state(nullptr, &rx, max_line)) {}

reader::~reader() { delete st_; }

std::string_view reader::buffered() const noexcept {
  return {st_->data() + st_->begin, st_->unread()};
}

std::size_t reader::max_line() const noexcept { return st_->limit; }

}  // namespace coring
