// SPDX-License-Identifier: MIT
// Description: HTTP/1.1 server (RFC 9112): keep-alive, pipelining, request bodies framed and
// discarded, strict rejections, header/idle/send deadlines, graceful drain; the "hello"
// profile, or static files with --root (http::static_files); HTTPS with --tls-cert/--tls-key
// (coring::tls::stream: the same connection loop, a template over its transport).
//
// One coroutine per connection, with a fixed receive buffer and a fixed response buffer in its
// frame: a request of the hello profile allocates nothing. Every complete request in the
// receive buffer is answered into the response buffer, and the whole batch goes out in one
// send (what makes pipelining, and wrk, fast). The deadlines cost nothing per request either:
// each connection writes the time its current wait must end into its entry on its thread's
// list, and one timer per thread (every 100 ms) cancels the sockets whose time is up; the same
// tick formats the Date header, once per second, and is the clock the deadlines are set from.
// Measured (wrk -t1 -c100, server on CPU 0, wrk on CPU 1, 2-core VM shared with other work):
// about 3.9-4.1 us of server CPU per request against nginx's 4.4-4.6 us (1 worker, return 200),
// similar requests/s (wrk is the bottleneck); over 90% of the server's CPU is the kernel's TCP.
#include <coring/coring.hpp>

#include "../example_util.hpp"
#include "parser.hpp"
#include "static_files.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <latch>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <sys/socket.h>

namespace {

const char* usage =
    "usage: http_server [--host ADDR] [--port N] [--root DIR] [--threads N]\n"
    "                   [--header-timeout S] [--idle-timeout S] [--send-timeout S] [--grace S]\n"
    "                   [--multishot] [--body sendfile|read|splice]\n"
    "                   [--tls-cert FILE --tls-key FILE] [--batch-delay-us N]\n"
    "  An HTTP/1.1 server. Without --root every GET or HEAD is answered 200 \"Hello, world!\\n\"\n"
    "  (text/plain); with --root DIR the files under DIR (index.html for a directory, 404 for\n"
    "  what is missing or outside DIR, Last-Modified, a single byte range: 206 or 416).\n"
    "  Other methods get 405 (their bodies are read and discarded), unknown ones 501.\n"
    "  Keep-alive and pipelining (the answers to every request received at once go out in\n"
    "  one send), HTTP/1.0, Connection: close, Expect: 100-continue, chunked bodies. A malformed\n"
    "  request gets its status (400, 414, 431, 501, 505) with Connection: close, then the\n"
    "  connection is closed.\n"
    "  Default 127.0.0.1:8080; --port 0 picks a free port. Prints the address it listens on.\n"
    "  --header-timeout (default 10 s): a request head not complete that long after its first\n"
    "  byte closes the connection (slowloris); --idle-timeout (default 60 s): a keep-alive\n"
    "  connection with no request for that long is closed; --send-timeout (default 30 s): a\n"
    "  client that does not take its answers for that long is closed.\n"
    "  --threads N (default 1): N threads, each with its own ring and SO_REUSEPORT listener.\n"
    "  --batch-delay-us N (default 0: off): each loop may wait up to N microseconds to gather\n"
    "  completions before it wakes (io_context_options::max_batch_delay).\n"
    "  Requests are received by a recv per reception into the connection's own buffer;\n"
    "  --multishot keeps one multishot recv armed per connection instead, into buffers of a ring\n"
    "  shared by the thread's connections (4,096 x 4 KiB in all, taken only as used), copied\n"
    "  from there (measured with wrk -c100: about 3% more CPU per request than plain recv).\n"
    "  --body (with --root): how a file over 16 KiB is sent: sendfile (the default: sendfile(2)\n"
    "  from the page cache, the socket waiting on the ring, a cold chunk read on the ring),\n"
    "  read (read into a 128 KiB buffer + send) or splice (file -> pipe -> socket); smaller\n"
    "  files are read and sent with their head in one send.\n"
    "  --tls-cert FILE --tls-key FILE: HTTPS instead (PEM: the certificate chain, leaf first,\n"
    "  and its private key; TLS 1.2 and 1.3, ALPN http/1.1). The handshake must end within\n"
    "  --header-timeout; file bodies are read and sent encrypted, in pieces of 128 KiB (--body\n"
    "  does not apply), and --multishot is ignored (TLS records are read into the stream).\n"
    "  On SIGINT or SIGTERM it stops accepting, finishes the answers in flight (at most --grace\n"
    "  seconds, default 2), closes idle connections and exits 0.\n";

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
constexpr time_point no_deadline = time_point::max();
constexpr auto tick = std::chrono::milliseconds(100);  // the deadlines' resolution
constexpr auto linger_time = std::chrono::seconds(1);  // reading what follows a final answer
constexpr std::size_t linger_bytes = 1 << 20;

// The parser decides within max_request_head_bytes (an 8 KiB target plus an 8 KiB header
// block, ~16.2 KiB): the receive buffer holds the largest head, with slack for the start of
// the next pipelined request; it never grows (a head that filled it would get 431).
constexpr std::size_t in_capacity = http::max_request_head_bytes + 1024;
constexpr std::size_t out_capacity = 8192;
constexpr std::size_t out_reserve = 1024;  // room one answer needs (else flush first)

struct settings {
  std::chrono::nanoseconds header_timeout, idle_timeout, send_timeout, grace;
  bool coop = false;
  std::chrono::microseconds batch_delay{};  // --batch-delay-us (issue 14)
  std::string root;                         // --root: static files; empty: the hello profile
  http::static_files::body_method body = http::static_files::body_method::sendfile;  // --body
  bool multishot = false;        // a multishot recv into the thread's buffer ring
  unsigned ring_buffers = 4096;  // per thread: 4,096 x 4 KiB in all, at least 256 each
#if CORING_HAS_TLS
  std::optional<coring::tls::context> tls;  // --tls-cert/--tls-key: HTTPS (shared by threads)
#endif
};

struct server;

// A connection's place on its thread's list: when its current wait must end. The tick cancels
// the socket of an entry whose deadline passed (the pending operation throws
// operation_canceled, and expired says why). Lives in the connection's frame.
struct conn_entry {
  conn_entry(server& srv, coring::socket& sock) noexcept;
  ~conn_entry();
  conn_entry(const conn_entry&) = delete;
  conn_entry& operator=(const conn_entry&) = delete;
  server& srv;
  coring::socket& s;
  time_point deadline = no_deadline;
  bool expired = false;
  conn_entry* prev = nullptr;
  conn_entry* next = nullptr;
};

// What one thread's connections share (one per thread: nothing is shared across threads).
// LIFETIME: every connection and the tick hold a shared_ptr to it.
struct server {
  explicit server(const settings& c) : cfg(c) {
    common.reserve(128);
    update_date(std::time(nullptr));
  }
  settings cfg;
  conn_entry* head = nullptr;  // live connections
  std::string common;          // "Date: ...\r\nServer: coring\r\n"
  std::time_t date_second = -1;
  bool draining = false;  // answers carry Connection: close
  std::size_t accepted = 0;
  time_point now = clock_type::now();  // as of the last tick: no clock read per request

  // A deadline d from now, never early (now may be a tick old), at most two ticks late.
  time_point after(std::chrono::nanoseconds d) const noexcept { return now + d + tick; }
  // True when the connections speak TLS.
  bool tls() const noexcept {
#if CORING_HAS_TLS
    return cfg.tls.has_value();
#else
    return false;
#endif
  }
  std::optional<coring::buffer_ring> ring;   // --multishot (and the kernel has buffer rings)
  std::optional<http::static_files> files;   // --root
  http::static_files::options file_options;  // its send timeout, and the drain's stop

  // Formats the Date header (IMF-fixdate) when the second changed.
  void update_date(std::time_t t) {
    if (t == date_second) return;
    date_second = t;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[64];
    std::size_t n = std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    common.assign("Date: ");
    common.append(date, n);
    common.append("\r\nServer: coring\r\n");
  }

  // The drain of TLS connections (their sockets are the streams', not the scope's): what the
  // scope does to its own sockets, shutdown(SHUT_RD) at the start, cancel at the grace limit.
  void shut_reads() noexcept {
    for (conn_entry* e = head; e; e = e->next)
      ::shutdown(e->s.fileno(), SHUT_RD);
  }
  void cancel_all() noexcept {
    for (conn_entry* e = head; e;) {
      conn_entry* next = e->next;
      e->s.cancel();
      e = next;
    }
  }

  // Cancels the connections whose deadline passed.
  void expire(time_point t) noexcept {
    for (conn_entry* e = head; e;) {
      conn_entry* next = e->next;
      if (e->deadline <= t) {
        e->deadline = no_deadline;
        e->expired = true;
        e->s.cancel();
      }
      e = next;
    }
  }
};

conn_entry::conn_entry(server& sv, coring::socket& sock) noexcept : srv(sv), s(sock) {
  next = srv.head;
  if (next) next->prev = this;
  srv.head = this;
}

conn_entry::~conn_entry() {
  if (prev)
    prev->next = next;
  else
    srv.head = next;
  if (next) next->prev = prev;
}

// The tick: every 100 ms, the Date header and the deadlines, until stop.
coring::task<> ticker(coring::io_context& ctx, std::shared_ptr<server> srv, std::stop_token stop) {
  while (!stop.stop_requested()) {
    auto op = coring::as_result(coring::sleep_for(ctx, tick).with_stop(stop));
    auto r = co_await std::move(op);
    (void)r;
    srv->update_date(std::time(nullptr));
    srv->now = clock_type::now();
    srv->expire(srv->now);
  }
}

// A connection's fixed response buffer: answers are appended, then sent in one send.
struct out_buffer {
  std::array<char, out_capacity> data;
  std::size_t size = 0;

  std::size_t space() const noexcept { return data.size() - size; }
  void put(std::string_view s) noexcept {
    std::memcpy(data.data() + size, s.data(), s.size());
    size += s.size();
  }
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span(data.data(), size));
  }
};

constexpr std::string_view hello_body = "Hello, world!\n";

// "Connection: ..." for an answer: close, keep-alive (HTTP/1.0 asked for it), or none.
void put_connection(out_buffer& o, bool keep, int minor_version) {
  if (!keep)
    o.put("Connection: close\r\n");
  else if (minor_version == 0)
    o.put("Connection: keep-alive\r\n");
}

// 200 "Hello, world!\n" (HEAD: the same head, no body).
void put_hello(out_buffer& o, const server& srv, bool head, bool keep, int minor_version) {
  o.put("HTTP/1.1 200 OK\r\n");
  o.put(srv.common);
  o.put("Content-Type: text/plain\r\nContent-Length: 14\r\n");
  put_connection(o, keep, minor_version);
  o.put("\r\n");
  if (!head) o.put(hello_body);
}

// 405 for a known method other than GET and HEAD.
void put_not_allowed(out_buffer& o, const server& srv, bool head, bool keep, int minor_version) {
  o.put("HTTP/1.1 405 Method Not Allowed\r\n");
  o.put(srv.common);
  o.put("Allow: GET, HEAD\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n");
  put_connection(o, keep, minor_version);
  o.put("\r\n");
  if (!head) o.put("Method Not Allowed\n");
}

std::string_view reason_of(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

// A final error answer (the connection closes after it): "400 Bad Request" with the reason as
// its text/plain body.
void put_error(out_buffer& o, const server& srv, int status) {
  char line[64];
  const std::string_view reason = reason_of(status);
  int n = std::snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
  o.put(std::string_view(line, static_cast<std::size_t>(n)));
  o.put(reason);
  o.put("\r\n");
  o.put(srv.common);
  n = std::snprintf(line, sizeof line, "Content-Length: %zu\r\n", reason.size() + 1);
  o.put("Content-Type: text/plain\r\n");
  o.put(std::string_view(line, static_cast<std::size_t>(n)));
  o.put("Connection: close\r\n\r\n");
  o.put(reason);
  o.put("\n");
}

// The answer a request waits for while its body is read.
enum class reply : unsigned char { none, hello, not_allowed };

// Whether e is how a connection usually ends (a reset, a broken pipe, a deadline, the drain's
// cancel, a TLS client that closed without close_notify): not worth a log line.
bool quiet_end(const std::system_error& e, const conn_entry& self) noexcept {
  const std::error_code ec = e.code();
#if CORING_HAS_TLS
  if (ec == coring::errc::tls_truncated) return true;
#endif
  return self.expired || ec == std::errc::operation_canceled || ec == std::errc::connection_reset ||
         ec == std::errc::broken_pipe || ec == std::errc::timed_out;
}

// The connection loop (the whole of it is one coroutine: no frame per request), over its
// transport: a plain socket, or a TLS stream (then sock is its socket: the deadlines cancel it).
// The transport's recv and send_all are called directly (a template: no virtual call).
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<> connection(server& srv, Stream& s,
                                                      coring::socket& sock) {
  constexpr bool plain = std::is_same_v<Stream, coring::socket>;
  conn_entry self(srv, sock);
  std::array<char, in_capacity> in;
  // With a buffer ring: one multishot recv stays armed (no SQE per request); the bytes of a
  // ring buffer are copied into in, and what did not fit waits in held.
  std::optional<coring::recv_stream> rx;
  if (plain && srv.ring)
    rx.emplace(sock, *srv.ring, coring::recv_stream_options{.multishot = true});
  coring::buffer held;
  std::size_t held_at = 0;
  http::static_files::connection files;  // --root: this connection's state (pipe, buffers)
  out_buffer out;
  http::request req;
  http::chunked_decoder chunks;
  std::size_t head = 0, tail = 0;  // unconsumed bytes: in[head, tail)
  bool keep = true;
  bool head_started = false;  // a partial request head is in the buffer since head_deadline
  time_point head_deadline = no_deadline;
  // The body being discarded, and the answer that waits for it.
  http::body_framing body = http::body_framing::none;
  std::uint64_t body_left = 0;
  reply pending = reply::none;
  bool pending_head = false;
  int pending_minor = 1;

  // After the final answer (an error, Connection: close, the drain): stop sending and read what
  // the client still sends, briefly, so that it sees the answer rather than a reset.
  bool linger = false;
  try {
    sock.set_option(coring::sockopt::no_delay{true});
#if CORING_HAS_TLS
    if constexpr (!plain) {
      // The handshake and the first request head, within the header timeout (a client that
      // stalls in the handshake, or after it, is closed then).
      head_started = true;
      head_deadline = srv.after(srv.cfg.header_timeout);
      self.deadline = head_deadline;
      auto hs = s.handshake();
      co_await std::move(hs);
    }
#endif
    for (;;) {
      int error_status = 0;
      // Answer every complete request in the buffer.
      while (error_status == 0) {
        if (body == http::body_framing::content_length) {
          const std::uint64_t take = std::min<std::uint64_t>(body_left, tail - head);
          head += take;
          body_left -= take;
          if (body_left > 0) break;  // more to come
          body = http::body_framing::none;
        } else if (body == http::body_framing::chunked) {
          bool done = false;
          while (head < tail) {
            const http::chunked_decoder::step st = chunks.feed({in.data() + head, tail - head});
            head += st.consumed;
            if (st.error) {
              error_status = 400;
              break;
            }
            if (st.done) {
              done = true;
              break;
            }
            if (st.consumed == 0) break;
          }
          if (error_status != 0 || !done) break;
          body = http::body_framing::none;
        }
        if (pending != reply::none) {
          if (out.space() < out_reserve) {
            self.deadline = srv.after(srv.cfg.send_timeout);
            co_await s.send_all(out.bytes());
            out.size = 0;
          }
          if (pending == reply::hello)
            put_hello(out, srv, pending_head, keep, pending_minor);
          else
            put_not_allowed(out, srv, pending_head, keep, pending_minor);
          pending = reply::none;
        }
        if (!keep || head == tail) break;
        const http::parse_result pr = http::parse_request({in.data() + head, tail - head}, req);
        if (pr.state == http::parse_result::status::incomplete) {
          if (head == 0 && tail == in.size()) error_status = 431;  // no parser should get here
          break;
        }
        if (pr.state == http::parse_result::status::error) {
          error_status = pr.error_status;
          break;
        }
        head += pr.consumed;
        head_started = false;
        keep = req.keep_alive && !srv.draining;
        pending = req.verb == http::method::get || req.verb == http::method::head
                      ? reply::hello
                      : reply::not_allowed;
        pending_head = req.verb == http::method::head;
        pending_minor = req.minor_version;
        bool served = false;
        if (srv.files && pending == reply::hello) {
          // --root: the file goes out now, after the answers before it (its body, if any, is
          // discarded after it: the request's views point into in until then).
          if (out.size > 0) {
            self.deadline = srv.after(srv.cfg.send_timeout);
            co_await s.send_all(out.bytes());
            out.size = 0;
          }
          self.deadline = no_deadline;  // serve() bounds its own sends
          auto answer = srv.files->serve(s, req, srv.common, files, srv.file_options);
          const bool reusable = co_await std::move(answer);  // named: g++ 12
          keep = keep && reusable;
          pending = reply::none;
          served = true;
        }
        body = req.framing;
        if (body == http::body_framing::content_length) {
          body_left = req.content_length;
          if (body_left == 0) body = http::body_framing::none;
        } else if (body == http::body_framing::chunked) {
          chunks = http::chunked_decoder{};
        }
        // 100 Continue when the client waits for it (its body is not here yet).
        if (body != http::body_framing::none && req.expect_continue && req.minor_version >= 1 &&
            head == tail && !served) {
          if (out.space() < out_reserve) {
            self.deadline = srv.after(srv.cfg.send_timeout);
            co_await s.send_all(out.bytes());
            out.size = 0;
          }
          out.put("HTTP/1.1 100 Continue\r\n\r\n");
        }
      }
      if (error_status != 0) {
        put_error(out, srv, error_status);
        keep = false;
        body = http::body_framing::none;
      }
      if (out.size > 0) {
        self.deadline = srv.after(srv.cfg.send_timeout);
        co_await s.send_all(out.bytes());
        out.size = 0;
      }
      if (!keep && body == http::body_framing::none) {
        linger = true;
        break;
      }
      // Wait for more: keep the unconsumed bytes (a partial head, or the body's) at the start.
      if (head == tail) {
        head = tail = 0;
      } else if (head > 0) {
        std::memmove(in.data(), in.data() + head, tail - head);
        tail -= head;
        head = 0;
      }
      if (tail == in.size()) {  // a chunk line the decoder could not take
        put_error(out, srv, 400);
        self.deadline = srv.after(srv.cfg.send_timeout);
        co_await s.send_all(out.bytes());
        out.size = 0;
        linger = true;
        break;
      }
      if (body != http::body_framing::none) {
        self.deadline = srv.after(srv.cfg.idle_timeout);
      } else if (tail > 0 || head_started) {  // (head_started without bytes: TLS's first head)
        if (!head_started) {
          head_started = true;
          head_deadline = srv.after(srv.cfg.header_timeout);
        }
        self.deadline = head_deadline;
      } else {
        self.deadline = srv.after(srv.cfg.idle_timeout);
      }
      if (rx) {  // from the ring: copy what fits, keep the rest of the buffer for later
        if (held_at == held.size()) {
          held = co_await rx->next();
          held_at = 0;
          if (held.size() == 0) break;  // the client is done (or the drain's SHUT_RD)
        }
        const std::size_t n = std::min(held.size() - held_at, in.size() - tail);
        std::memcpy(in.data() + tail, held.data().data() + held_at, n);
        held_at += n;
        tail += n;
        if (held_at == held.size()) {
          held = coring::buffer{};  // back to the ring at once
          held_at = 0;
        }
      } else {
        const std::size_t n = co_await s.recv(std::as_writable_bytes(std::span(in)).subspan(tail));
        if (n == 0) break;  // the client is done (or the drain's SHUT_RD)
        tail += n;
      }
    }
  } catch (const std::system_error& e) {
    // A reset, a broken pipe, a deadline (expired), the drain's cancel: the connection ends.
    if (!quiet_end(e, self))
      example::log::err().line(std::string("http_server: connection: ") + e.what());
    linger = false;
  }
  if (!linger) co_return;
  // The lingering close: bounded in time and bytes.
  try {
#if CORING_HAS_TLS
    if constexpr (!plain) {  // close_notify first; what follows is read raw and dropped
      self.deadline = srv.after(srv.cfg.send_timeout);
      auto bye = s.shutdown();
      co_await std::move(bye);
    }
#endif
    sock.shutdown(SHUT_WR);
    self.deadline = srv.after(linger_time);
    std::size_t drained = 0;
    while (drained < linger_bytes) {
      std::size_t n = 0;
      if (rx) {
        held = co_await rx->next();
        n = held.size();
        held = coring::buffer{};
      } else {
        n = co_await sock.recv(std::as_writable_bytes(std::span(in)));
      }
      if (n == 0) break;
      drained += n;
    }
  } catch (const std::system_error&) {
    // the client reset or did not close in time: nothing more to do
  }
}

// A thread's server: its buffer ring (--multishot, if the kernel has them) is taken from
// the system only as the kernel first fills each buffer.
std::shared_ptr<server> make_server(coring::io_context& ctx, const settings& cfg) {
  auto srv = std::make_shared<server>(cfg);
  if (cfg.multishot && !srv->tls() && ctx.features().buf_ring)
    srv->ring.emplace(ctx, cfg.ring_buffers, 4096);
  if (!cfg.root.empty()) {
    srv->files.emplace(ctx, cfg.root);
    srv->file_options.send_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg.send_timeout);
    srv->file_options.body = cfg.body;
  }
  return srv;
}

// One client: counted, served; errors end it alone (connection() reports what is news).
coring::task<> serve_client(std::shared_ptr<server> srv, coring::socket& s) {
  ++srv->accepted;
#if CORING_HAS_TLS
  if (srv->cfg.tls) {
    // The stream owns the socket from here (the scope's slot keeps an empty one: serve() drains
    // these connections itself).
    coring::tls::stream t(*srv->cfg.tls, std::move(s));
    co_await connection(*srv, t, t.next_layer());
    co_return;
  }
#endif
  co_await connection(*srv, s, s);
}

// The grace is over: cancels every connection of srv (the TLS ones: see serve()).
struct cancel_all_fn {
  server* srv;
  void operator()() const noexcept { srv->cancel_all(); }
};

// Serves listener until stopped() returns, then drains (see the usage text).
template <class Wait>
coring::task<> serve(coring::io_context& ctx, coring::socket listener, std::shared_ptr<server> srv,
                     Wait stopped) {
  std::stop_source ticking;
  ctx.spawn(ticker(ctx, srv, ticking.get_token()));
  coring::connection_scope scope(ctx);
  srv->file_options.stop = scope.token();  // the grace is over: a file being sent ends
  scope.serve(std::move(listener), [srv](coring::socket& s) { return serve_client(srv, s); });
  auto why = stopped(scope);  // named: no temporary around the co_await (g++ 12)
  co_await std::move(why);
  srv->draining = true;
  // TLS streams own their sockets: shut their reads down now, cancel them at the grace limit.
  std::optional<std::stop_callback<cancel_all_fn>> cancel_tls;
  if (srv->tls()) {
    srv->shut_reads();
    cancel_tls.emplace(scope.token(), cancel_all_fn{srv.get()});
  }
  const bool ended = co_await scope.drain(srv->cfg.grace);  // named: g++ 12
  ticking.request_stop();
  if (!ended)
    example::log::err().line("http_server: " + std::to_string(scope.size()) +
                             " connections did not end after the cancel; destroying them");
}

coring::io_context_options ring_options(const settings& cfg) {
  return coring::io_context_options{.defer_taskrun = !cfg.coop, .max_batch_delay = cfg.batch_delay};
}

// --threads: one listener per thread on the same address (SO_REUSEPORT). Bound, not listening.
coring::socket reuse_port_socket(coring::io_context& ctx, const coring::address& at) {
  coring::socket s(ctx, at.family(), SOCK_STREAM);
  s.set_option(coring::sockopt::reuse_address{true});
  s.set_option(coring::sockopt::reuse_port{true});
  s.bind(at);
  return s;
}

// The address every worker binds: a plain bind first, which fails if anything listens there
// (instead of joining another process's SO_REUSEPORT group); with port 0 it picks the port.
coring::address claim_address(coring::io_context& ctx, coring::address at) {
  coring::socket probe(ctx, at.family(), SOCK_STREAM);
  probe.set_option(coring::sockopt::reuse_address{true});
  probe.bind(at);
  return probe.sock_name();
}

// What the --threads workers share with main: written before start(), or by one worker each.
struct pool {
  settings cfg;
  coring::address at;
  std::latch listening;               // every worker listens, or failed to
  std::vector<std::size_t> accepted;  // per worker, set when it ends (read after join)
};

// One worker of --threads on its own thread and io_context: serves until the runner's stop.
coring::task<> worker(coring::io_context& ctx, unsigned index, std::stop_token stop, pool& p) {
  std::shared_ptr<server> srv;
  std::optional<coring::socket> listener;
  try {
    srv = make_server(ctx, p.cfg);
    listener.emplace(reuse_port_socket(ctx, p.at));
    listener->listen();
  } catch (const std::exception& e) {
    p.listening.count_down();
    throw std::runtime_error("thread " + std::to_string(index + 1) +
                             " could not start: " + e.what());
  }
  p.listening.count_down();
  auto until_stop = [&ctx, stop, index, &p](coring::connection_scope&) -> coring::task<> {
    while (!stop.stop_requested())  // request_stop() ends the sleep (it wakes every ring)
      (void)co_await coring::as_result(
          coring::sleep_for(ctx, std::chrono::hours(1)).with_stop(stop));
    if (index == 0)
      example::log::err().line("http_server: shutting down " + std::to_string(p.accepted.size()) +
                               " threads");
  };
  co_await serve(ctx, std::move(*listener), srv, until_stop);
  p.accepted[index] = srv->accepted;
}

void run_threads(const std::string& host, std::uint16_t port, const settings& cfg,
                 unsigned threads) {
  coring::address at = [&] {
    coring::io_context ctx(ring_options(cfg));
    return claim_address(ctx, coring::address::ip(host, port));
  }();
  pool p{cfg, at, std::latch(threads), std::vector<std::size_t>(threads)};
  coring::runner r(threads, ring_options(cfg));
  r.stop_on_signals({SIGINT, SIGTERM});
  try {
    r.start([&p](coring::io_context& ctx, unsigned i, std::stop_token stop) {
      return worker(ctx, i, std::move(stop), p);
    });
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("could not start ") + std::to_string(threads) +
                             " threads: " + e.what());
  }
  p.listening.wait();
  if (!r.stop_requested()) {  // else a worker failed (join says why) or a signal came
    std::printf("http_server listening on %s (%u threads)\n", at.to_string().c_str(), threads);
    std::fflush(stdout);
  }
  r.join();  // rethrows the first worker failure
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 8080, 0, 65535));
  settings cfg{};
  cfg.root = args.get("--root", "");
  cfg.header_timeout = example::seconds(args.get_double("--header-timeout", 10, 0.001, 86400));
  cfg.idle_timeout = example::seconds(args.get_double("--idle-timeout", 60, 0.001, 86400));
  cfg.send_timeout = example::seconds(args.get_double("--send-timeout", 30, 0.001, 86400));
  cfg.grace = example::seconds(args.get_double("--grace", 2, 0, 3600));
  // For benchmarks: the ring's task-run mode (DEFER_TASKRUN costs CPU at some loads).
  cfg.coop = args.flag("--coop-taskrun");
  cfg.multishot = args.flag("--multishot");
  auto threads = static_cast<unsigned>(args.get_int("--threads", 1, 1, 256));
  cfg.batch_delay = std::chrono::microseconds(args.get_int("--batch-delay-us", 0, 0, 1000000));
  const std::string body = args.get("--body", "sendfile");
  const std::string tls_cert = args.get("--tls-cert", "");
  const std::string tls_key = args.get("--tls-key", "");
  args.done();
  if (tls_cert.empty() != tls_key.empty()) {
    std::fprintf(stderr, "http_server: --tls-cert and --tls-key go together\n%s", usage);
    return 2;
  }
  if (body == "read") {
    cfg.body = http::static_files::body_method::read_send;
  } else if (body == "splice") {
    cfg.body = http::static_files::body_method::splice;
  } else if (body != "sendfile") {
    std::fprintf(stderr, "http_server: --body must be sendfile, read or splice\n%s", usage);
    return 2;
  }
  while (cfg.ring_buffers > 256 && cfg.ring_buffers * threads > 4096)
    cfg.ring_buffers /= 2;
  example::raise_fd_limit();
  int status = 0;
  try {
    if (!tls_cert.empty()) {
#if CORING_HAS_TLS
      coring::tls::context_options tls_options;
      tls_options.alpn = {"http/1.1"};
      cfg.tls = coring::tls::context::server(tls_cert, tls_key, tls_options);
#else
      throw std::runtime_error("--tls-cert: this build has no TLS (meson -Dtls=enabled)");
#endif
    }
    if (threads == 1) {
      coring::io_context ctx(ring_options(cfg));
      coring::signal_set signals(ctx, {SIGINT, SIGTERM});
      auto srv = make_server(ctx, cfg);
      coring::socket listener = coring::tcp_listen(ctx, coring::address::ip(host, port));
      std::printf("http_server listening on %s\n", listener.sock_name().to_string().c_str());
      std::fflush(stdout);
      auto until_signal = [&signals](coring::connection_scope& scope) -> coring::task<> {
        int sig = co_await signals.wait();
        example::log::err().line(std::string("http_server: ") +
                                 (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", shutting down (" +
                                 std::to_string(scope.size()) + " connections)");
      };
      coring::sync_wait(ctx, serve(ctx, std::move(listener), srv, until_signal));
    } else {
      run_threads(host, port, cfg, threads);
    }
  } catch (const std::exception& e) {
    example::log::err().line(std::string("http_server: ") + e.what());
    status = 1;
  }
  example::log::flush_all();
  return status;
}
