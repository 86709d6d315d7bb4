// SPDX-License-Identifier: MIT
// Description: chat room: every line a client sends goes to every other client, through a
// bounded queue per client (a client that does not read is disconnected, the room goes on).
//
// Built on the library only: connection_scope (accept loop, graceful drain), reader (lines of
// at most 4,096 bytes), channel (each client's outgoing queue) and signal_set.
//
// Memory: a line is stored once (a std::shared_ptr<const std::string>, two allocations) and
// every recipient's queue holds a pointer to it, so a broadcast allocates nothing per
// recipient. A client's queue holds at most queue_lines lines and queue_bytes bytes; when a
// line does not fit, that client is disconnected ("* ADDR left (not reading)"): it never slows
// the others down, and the server never holds more than 1 MiB of lines for it (shared with
// the other recipients) besides the 24 KiB of the queue's slots, a 4 KiB reader buffer and a
// send batch of at most ~20 KiB. The kernel's socket buffers take what they can first, so a
// client is disconnected only once it is that far behind (1,024 lines: one line from each
// member of a room of 1,000 fits).
#include <coring/coring.hpp>

#include "example_util.hpp"

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/resource.h>
#include <sys/socket.h>

namespace {

const char* usage =
    "usage: chat_room [--host ADDR] [--port N] [--grace SECONDS]\n"
    "  A chat room: every line a client sends goes to every other client as\n"
    "  \"<sender host:port>: <line>\"; the room's own announcements (welcome, joins, leaves)\n"
    "  start with \"* \". Lines are at most 4,096 bytes: a longer one gets \"* line too long\"\n"
    "  and the connection is closed. Each client has a queue of 1,024 lines and 1 MiB: a client\n"
    "  that does not read until its queue is full is disconnected, so it never slows the room\n"
    "  down (\"* ADDR left (not reading)\").\n"
    "  Default 127.0.0.1:9000; --port 0 picks a free port. Prints the address it listens on.\n"
    "  On SIGINT or SIGTERM it stops accepting, tells the clients, sends what is queued (at\n"
    "  most --grace seconds, default 2), closes the connections and exits 0.\n";

constexpr std::size_t max_line = 4096;            // longer lines: "* line too long", then close
constexpr std::size_t queue_lines = 1024;         // each client's outgoing queue: lines
constexpr std::size_t queue_bytes = 1024 * 1024;  // and bytes (shared lines count in full)
constexpr std::size_t batch_bytes = 16384;        // a send takes queued lines up to about this much

using line_ptr = std::shared_ptr<const std::string>;  // one line, shared by its recipients

line_ptr make_line(std::string text) {
  return std::make_shared<const std::string>(std::move(text));
}

// One connected client. Lives in its connection's frame; on the room's list while it is in
// the room (from its welcome to its leaving or being disconnected).
struct member {
  member(coring::socket& sock, std::string addr)
      : s(sock), name(std::move(addr)), out(sock.context(), queue_lines) {}
  coring::socket& s;
  std::string name;               // host:port as the server sees it
  coring::channel<line_ptr> out;  // what the writer sends, oldest first
  std::size_t queued = 0;         // bytes of the lines in out
  member* prev = nullptr;
  member* next = nullptr;
  bool in_room = false;
  std::string why;  // why it left ("" for a plain leave)
};

// The members, and delivery to them.
class room {
 public:
  /// Adds m: it gets a welcome, the others a join announcement.
  void join(member& m) {
    std::string welcome = "* welcome " + m.name + ", " + std::to_string(size_) +
                          (size_ == 1 ? " other here\n" : " others here\n");
    m.queued += welcome.size();
    m.out.try_send(make_line(std::move(welcome)));  // its queue is empty: it fits
    broadcast(nullptr, make_line("* " + m.name + " joined\n"));
    m.next = head_;
    if (head_) head_->prev = &m;
    head_ = &m;
    m.in_room = true;
    ++size_;
  }
  /// Removes m (if still in) and announces it to the others.
  void leave(member& m) {
    if (m.in_room) unlink(m);
    std::string text = "* " + m.name + " left";
    if (!m.why.empty()) text += " (" + m.why + ")";
    text += '\n';
    broadcast(nullptr, make_line(std::move(text)));
  }
  /// Queues line for every member but from (null: for all). A member whose queue is full is
  /// disconnected: taken out of the room, its socket cancelled (its reader and writer end).
  /// Allocates nothing: each queue gets a copy of the pointer.
  void broadcast(const member* from, const line_ptr& line) {
    for (member* m = head_; m;) {
      member* next = m->next;  // m may leave the list below
      if (m != from) {
        if (m->queued + line->size() <= queue_bytes && m->out.try_send(line)) {
          m->queued += line->size();
        } else {
          m->why = "not reading";
          unlink(*m);
          m->s.cancel();  // for good: its pending send and read end with operation_canceled
        }
      }
      m = next;
    }
  }
  /// Members in the room.
  std::size_t size() const noexcept { return size_; }

 private:
  void unlink(member& m) noexcept {
    if (m.prev)
      m.prev->next = m.next;
    else
      head_ = m.next;
    if (m.next) m.next->prev = m.prev;
    m.prev = m.next = nullptr;
    m.in_room = false;
    --size_;
  }
  member* head_ = nullptr;
  std::size_t size_ = 0;
};

// Reads the client's lines and broadcasts them until EOF (the drain's SHUT_RD too), an error,
// a line too long, or a disconnect by the room; then leaves and closes the queue (the writer
// sends what is left in it and ends). Returns: true if the line was too long.
coring::task<bool> read_loop(room& r, member& m) {
  bool too_long = false;
  try {
    coring::reader in(m.s, max_line);
    for (;;) {
      auto line = co_await in.read_line(max_line);
      if (!line || !m.in_room) break;
      std::string text;
      text.reserve(m.name.size() + 2 + line->size() + 1);
      text += m.name;
      text += ": ";
      text += *line;
      text += '\n';
      r.broadcast(&m, make_line(std::move(text)));
    }
  } catch (const std::system_error& e) {
    if (e.code() == coring::errc::line_too_long) {
      too_long = true;
      if (m.why.empty()) m.why = "line too long";
    } else if (m.why.empty() && e.code() != std::errc::operation_canceled) {
      m.why = e.code().message();
    }
  } catch (const std::exception& e) {  // std::bad_alloc: this client ends, the room goes on
    if (m.why.empty()) m.why = e.what();
  }
  if (too_long) m.out.try_send(make_line("* line too long\n"));
  m.out.close();  // first: the writer ends even if what follows throws
  r.leave(m);     // also after the room disconnected it: the others hear why
  co_return too_long;
}

// Sends what is queued for the client, several lines per send when they pile up, until the
// queue is closed and empty. A failed send (a reset, the room's cancel) ends the client.
coring::task<> write_loop(member& m) {
  std::string batch;  // only when more than one line waits: one line is sent from its own buffer
  try {
    for (;;) {
      std::optional<line_ptr> first = co_await m.out.receive();
      if (!first) break;
      m.queued -= (*first)->size();
      if (m.out.size() == 0) {
        co_await m.s.send_all(std::as_bytes(std::span(**first)));
        continue;
      }
      batch.assign(**first);
      while (batch.size() < batch_bytes) {
        std::optional<line_ptr> more = m.out.try_receive();
        if (!more) break;
        m.queued -= (*more)->size();
        batch += **more;
      }
      co_await m.s.send_all(std::as_bytes(std::span(batch)));
    }
  } catch (const std::system_error&) {
    m.s.cancel();  // ends the reader too (it leaves the room)
  }
}

// After "* line too long": our side is done (FIN after the error line), and what the client
// still sends is read and dropped for a short while (at most 64 KiB, 1 s), so that closing
// with unread bytes does not reset the connection before the client read the error line.
coring::task<> linger(coring::socket& s) {
  try {
    s.shutdown(SHUT_WR);
  } catch (const std::system_error&) {
    co_return;  // the client is gone already
  }
  std::array<std::byte, 4096> buf;
  std::size_t total = 0;
  while (total < 64 * 1024) {
    auto n = co_await coring::as_result(s.recv(buf).with_timeout(std::chrono::seconds(1)));
    if (!n || *n == 0) break;
    total += *n;
  }
}

coring::task<> serve_client(room& r, coring::socket& s) {
  std::string name;
  try {
    name = s.peer_name().to_string();
  } catch (const std::system_error&) {
    co_return;  // gone before we got here
  }
  member m(s, std::move(name));
  r.join(m);
  auto rd = read_loop(r, m);  // named: no temporaries inside the co_await
  auto wr = write_loop(m);
  auto both = coring::when_all(std::move(rd), std::move(wr));
  auto ended = co_await std::move(both);
  if (std::get<0>(ended)) co_await linger(s);
}

// Serves until SIGINT or SIGTERM, then drains. LIFETIME: r and scope belong to main and outlive
// the io_context's shutdown (connections left after the drain use them until it).
coring::task<> run(room& r, coring::connection_scope& scope, coring::socket listener,
                   coring::signal_set& signals, std::chrono::nanoseconds grace) {
  scope.serve(std::move(listener), [&r](coring::socket& s) { return serve_client(r, s); });
  int sig = co_await signals.wait();
  std::fprintf(stderr, "chat_room: %s, shutting down (%zu clients)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", r.size());
  r.broadcast(nullptr, make_line("* server shutting down\n"));
  // New clients are refused; each reader sees EOF (SHUT_RD), leaves, and its writer sends what
  // is queued; those left at the grace limit are cancelled.
  const bool all_ended = co_await scope.drain(grace);
  if (!all_ended) std::fputs("chat_room: some clients did not end in time\n", stderr);
}

// A server holding thousands of clients needs a descriptor each: soft limit up to the hard one.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // sends use MSG_NOSIGNAL; this covers stdout and stderr
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 0, 65535));
  double grace_s = args.get_double("--grace", 2, 0, 3600);
  args.done();
  raise_fd_limit();
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
    std::printf("chat_room listening on %s\n", listener.sock_name().to_string().c_str());
    std::fflush(stdout);
    auto grace = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(grace_s));
    room r;
    coring::connection_scope scope(ctx);
    struct shutdown_guard {  // declared last: ends what did not end in the drain first
      coring::io_context& ctx;
      ~shutdown_guard() { ctx.shutdown(); }
    } guard{ctx};
    coring::sync_wait(ctx, run(r, scope, std::move(listener), signals, grace));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_room: %s\n", e.what());
    return 1;
  }
  return 0;
}
