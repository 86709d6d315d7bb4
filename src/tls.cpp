// SPDX-License-Identifier: MIT
// Description: coring::tls on OpenSSL 3: contexts, and a stream whose records OpenSSL reads and
// writes through a BIO over buffers the stream owns, moved by the socket's ring operations.
#include <coring/tls.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <arpa/inet.h>

namespace coring::tls {
namespace {

// OpenSSL's words for the oldest error on this thread's queue (then cleared), or fallback.
std::string openssl_words(const char* fallback) {
  unsigned long e = ERR_peek_error();
  std::string out;
  if (e == 0) {
    out = fallback;
  } else {
    const char* reason = ERR_reason_error_string(e);
    if (reason) {
      out = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      out = buf;
    }
  }
  ERR_clear_error();
  return out;
}

[[noreturn]] void context_error(const std::string& what) {
  throw_error(errc::tls_failed, "tls context: " + what + openssl_words("failed"));
}

int to_openssl(version v) noexcept {
  return v == version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

// ALPN wire format: each protocol as a length byte and its name.
std::string alpn_wire(const std::vector<std::string>& protos) {
  std::string wire;
  for (const auto& p : protos) {
    if (p.empty() || p.size() > 255) throw_error(errc::tls_failed, "tls context: bad ALPN name");
    wire += static_cast<char>(p.size());
    wire += p;
  }
  return wire;
}

// The server's ALPN choice: its first protocol, in its order, that the client offered.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const auto* mine = static_cast<const std::string*>(arg);
  for (std::size_t i = 0; i < mine->size();) {
    const auto n = static_cast<unsigned char>((*mine)[i]);
    for (unsigned j = 0; j < inlen;) {
      const unsigned m = in[j];
      if (m == n && j + 1 + m <= inlen &&
          mine->compare(i + 1, n, reinterpret_cast<const char*>(in + j + 1), m) == 0) {
        *out = in + j + 1;
        *outlen = static_cast<unsigned char>(m);
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + m;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no overlap: the handshake goes on without ALPN
}

int alpn_index() {
  static const int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr, [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<std::string*>(ptr);
      });
  return index;
}

SSL_CTX* make_ctx(bool server, const context_options& o) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) context_error("");
  struct guard {
    SSL_CTX* c;
    ~guard() {
      if (c) SSL_CTX_free(c);
    }
  } g{ctx};
  const int min = to_openssl(o.min_version);
  if (SSL_CTX_set_min_proto_version(ctx, min) != 1) context_error("min version: ");
  if (o.max_version) {
    if (to_openssl(*o.max_version) < min)
      throw_error(errc::tls_failed, "tls context: max_version below min_version");
    if (SSL_CTX_set_max_proto_version(ctx, to_openssl(*o.max_version)) != 1)
      context_error("max version: ");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
  if (o.release_buffers) mode |= SSL_MODE_RELEASE_BUFFERS;
  SSL_CTX_set_mode(ctx, mode);
  if (!o.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, o.ciphersuites.c_str()) != 1)
    context_error("ciphersuites \"" + o.ciphersuites + "\": ");
  if (!o.cipher_list.empty() && SSL_CTX_set_cipher_list(ctx, o.cipher_list.c_str()) != 1)
    context_error("cipher_list \"" + o.cipher_list + "\": ");
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1)
      context_error(o.ca_file + ": ");
  } else if (!server) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) context_error("system trust store: ");
  }
  if (!server) SSL_CTX_set_verify(ctx, o.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!o.alpn.empty()) {
    std::string wire = alpn_wire(o.alpn);
    if (server) {
      auto* kept = new std::string(std::move(wire));
      if (SSL_CTX_set_ex_data(ctx, alpn_index(), kept) != 1) {
        delete kept;
        context_error("ALPN: ");
      }
      SSL_CTX_set_alpn_select_cb(ctx, &select_alpn, kept);
    } else if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                       static_cast<unsigned>(wire.size())) != 0) {
      context_error("ALPN: ");
    }
  }
  g.c = nullptr;
  return ctx;
}

}  // namespace

context context::server(const std::string& cert_chain_pem_file, const std::string& key_pem_file,
                        const context_options& opts) {
  SSL_CTX* ctx = make_ctx(true, opts);
  context c(ctx, true);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_chain_pem_file.c_str()) != 1)
    context_error(cert_chain_pem_file + ": ");
  if (SSL_CTX_use_PrivateKey_file(ctx, key_pem_file.c_str(), SSL_FILETYPE_PEM) != 1)
    context_error(key_pem_file + ": ");
  if (SSL_CTX_check_private_key(ctx) != 1) context_error(key_pem_file + ": ");
  return c;
}

context context::client(const context_options& opts) {
  return context(make_ctx(false, opts), false);
}

context::context(const context& o) noexcept : ctx_(o.ctx_), server_(o.server_) {
  if (ctx_) SSL_CTX_up_ref(ctx_);
}

context& context::operator=(const context& o) noexcept {
  if (this != &o) {
    if (o.ctx_) SSL_CTX_up_ref(o.ctx_);
    if (ctx_) SSL_CTX_free(ctx_);
    ctx_ = o.ctx_;
    server_ = o.server_;
  }
  return *this;
}

context& context::operator=(context&& o) noexcept {
  if (this != &o) {
    if (ctx_) SSL_CTX_free(ctx_);
    ctx_ = std::exchange(o.ctx_, nullptr);
    server_ = o.server_;
  }
  return *this;
}

context::~context() {
  if (ctx_) SSL_CTX_free(ctx_);
}

}  // namespace coring::tls

// ---- the stream ----
//
// The state machine (docs/design.md, "TLS"): OpenSSL reads ciphertext from `in` and writes it
// to `out` through a BIO over those two buffers (never the socket); two loop coroutines made
// once per stream move the bytes with the socket's ring operations: rx receives into `in` for
// the operation in the reader slot (handshake or recv), tx sends what `out` holds, in order.
// pump() advances the operations in the two slots (reader: handshake, recv; writer: send,
// send_all, shutdown) with non-blocking OpenSSL calls, starts rx and tx as they need, and
// completes them; a finished waiter is resumed from the next loop turn (io_context::schedule),
// never from inside the state machine, so no user code runs while it works.
namespace coring::detail {
namespace {

using clock = std::chrono::steady_clock;

// A ciphertext buffer: one record of the largest kind (16 KiB of plaintext + 2 KiB expansion +
// header) and room for the small records OpenSSL writes besides (alerts, key updates).
constexpr std::size_t chunk_size = 20 * 1024;
// The plaintext one SSL_write call gets: one record.
constexpr std::size_t max_record = 16 * 1024;

// Per-thread free list of chunks: a busy server reuses them, an idle stream holds none.
struct chunk_pool {
  std::vector<char*> free;
  ~chunk_pool() {
    for (char* c : free)
      delete[] c;
    dead = true;
  }
  static inline thread_local bool dead = false;  // trivially destructible: checked after ~pool
};
thread_local chunk_pool pool;
constexpr std::size_t pool_max = 64;

char* take_chunk() {
  if (!chunk_pool::dead && !pool.free.empty()) {
    char* c = pool.free.back();
    pool.free.pop_back();
    return c;
  }
  return new char[chunk_size];
}

void give_chunk(char* c) noexcept {
  if (!c) return;
  if (!chunk_pool::dead && pool.free.size() < pool_max) {
    try {
      pool.free.push_back(c);
      return;
    } catch (...) {}
  }
  delete[] c;
}

// A loop coroutine: made suspended, resumed by the state machine, never finishes.
struct tls_loop {
  struct promise_type {
    tls_loop get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

bool is_cancel(std::error_code ec) noexcept {
  return ec == std::errc::operation_canceled || ec == std::errc::timed_out;
}

}  // namespace

struct tls_state {
  tls_state(const tls::context& c, socket s) : ctx(&s.context()), sock(std::move(s)), tls_ctx(c) {}
  tls_state(const tls_state&) = delete;
  tls_state& operator=(const tls_state&) = delete;
  ~tls_state() {
    if (ssl) SSL_free(ssl);  // frees the BIO too
    if (rx) rx.destroy();
    if (tx) tx.destroy();
    give_chunk(in);
    give_chunk(out);
  }

  io_context* ctx;
  socket sock;
  tls::context tls_ctx;  // keeps the SSL_CTX alive
  SSL* ssl = nullptr;
  bool server = false;

  // Ciphertext received, not yet read by OpenSSL: in[in_begin, in_end).
  char* in = nullptr;
  std::size_t in_begin = 0, in_end = 0;
  bool in_eof = false;       // the peer closed the TCP connection
  std::error_code in_error;  // the receive failed (ECONNRESET, ...)
  // Ciphertext OpenSSL wrote, not yet sent: out[out_begin, out_end). Totals count every byte
  // ever written and sent: a send is flushed once flushed_total reaches its mark.
  char* out = nullptr;
  std::size_t out_begin = 0, out_end = 0;
  std::uint64_t written_total = 0, flushed_total = 0;
  std::error_code write_error;  // output can no longer be sent
  std::string write_message;

  tls_op_base* rd = nullptr;         // the reader slot: handshake or recv
  tls_op_base* wr = nullptr;         // the writer slot: send, send_all, shutdown
  tls_op_base* inline_op = nullptr;  // the op whose await_suspend runs pump()
  bool inline_done = false;

  bool handshake_done = false;
  bool close_received = false;  // the peer's close_notify
  bool close_sent = false;
  std::error_code fatal;  // the connection is over (failed handshake, protocol error, truncation)
  std::string fatal_message;

  // rx: receives into in for rd; tx: sends out. *_busy: a ring operation in flight.
  std::coroutine_handle<> rx{}, tx{};
  bool rx_busy = false, tx_busy = false, rx_parked = true, tx_parked = true;
  bool want_read = false;           // rd needs more ciphertext
  bool rx_wanted = false;           // rx is asked to receive once more
  std::error_code rx_stopped;       // rd's deadline or stop ended the receive
  tls_op_base* tx_owner = nullptr;  // the op whose deadline and stop bound the send in flight
  std::error_code tx_stopped;       // ... and ended it
  bool pumping = false, repump = false;
  bool orphaned = false;  // the stream was destroyed while rx or tx was in flight

  // ---- the BIO over in and out ----
  static BIO_METHOD* bio_method();

  int bio_read(char* buf, int len) noexcept {
    const std::size_t avail = in_end - in_begin;
    if (avail == 0) {
      if (in_eof) return 0;  // OpenSSL: unexpected EOF unless close_notify came first
      return -2;             // retry (or the receive failed: see in_error)
    }
    const std::size_t n = std::min(avail, static_cast<std::size_t>(len));
    std::memcpy(buf, in + in_begin, n);
    in_begin += n;
    if (in_begin == in_end && !rx_busy) in_begin = in_end = 0;  // rx appends at in_end
    return static_cast<int>(n);
  }

  int bio_write(const char* buf, int len) noexcept {
    if (write_error) return -1;
    if (!out) {
      try {
        out = take_chunk();
      } catch (...) {
        return -1;
      }
    }
    if (out_begin == out_end && !tx_busy) out_begin = out_end = 0;
    const std::size_t room = chunk_size - out_end;
    if (room == 0) return -2;  // retry once tx made room
    const std::size_t n = std::min(room, static_cast<std::size_t>(len));
    std::memcpy(out + out_end, buf, n);
    out_end += n;
    written_total += n;
    return static_cast<int>(n);
  }

  // ---- errors ----
  // The error of an OpenSSL call that failed with SSL_get_error() == err, in its words.
  std::pair<std::error_code, std::string> ssl_failure(int err, const char* step) {
    std::string what = std::string("tls ") + step + ": ";
    const unsigned long e = ERR_peek_error();
    if (err == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const long v = SSL_get_verify_result(ssl);
      ERR_clear_error();
      return {errc::tls_verify_failed,
              what + "certificate verify failed: " + X509_verify_cert_error_string(v)};
    }
    if (e == 0 && in_error) {
      ERR_clear_error();
      return {in_error, what + "receive"};
    }
    if ((err == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (e == 0 && in_eof)) {
      ERR_clear_error();
      return {errc::tls_truncated, what + "the peer closed the connection without close_notify"};
    }
    if (e == 0 && write_error) return {write_error, what + write_message};
    return {errc::tls_failed,
            what + tls::openssl_words(err == SSL_ERROR_SYSCALL ? "system call failed" : "failed")};
  }

  void fail_stream(std::error_code ec, std::string message) {
    if (fatal) return;
    fatal = ec;
    fatal_message = std::move(message);
  }

  // The message of the last failure of the reader slot's op and of the writer slot's op.
  std::string rd_message, wr_message;
  std::string& message_of(const tls_op_base& o) noexcept {
    return o.kind_ == tls_kind::handshake || o.kind_ == tls_kind::recv ? rd_message : wr_message;
  }

  // ---- completing operations ----
  void finish(tls_op_base& o, std::error_code ec = {}, std::string message = {}) noexcept {
    if (ec) {
      o.error_ = ec;
      // Kept here, not in the op: an op may be a temporary in a co_await expression, and g++ 12
      // can destroy those twice (docs/design.md, "g++ 12"); the op stays trivially safe then.
      message_of(o) = std::move(message);
    }
    if (rd == &o) rd = nullptr;
    if (wr == &o) wr = nullptr;
    if (tx_owner == &o) tx_owner = nullptr;
    if (inline_op == &o) {
      inline_done = true;
      return;
    }
    try {
      ctx->schedule(o.waiter_);
    } catch (...) {
      std::terminate();  // cannot lose a waiter
    }
  }

  // ---- the steps ----
  void step_read() {
    tls_op_base& o = *rd;
    if (rx_stopped) {  // its deadline or stop ended the receive: what arrived stays in `in`
      const std::error_code ec = std::exchange(rx_stopped, {});
      if (o.kind_ == tls_kind::handshake) {
        fail_stream(ec, "tls handshake");
        if (!wait_flush(o)) finish(o, fatal, fatal_message);
        return;
      }
      finish(o, ec, "tls recv");
      return;
    }
    if (o.kind_ == tls_kind::handshake) {
      if (tx_owner == &o && tx_stopped) {  // its deadline or stop ended the send of its flight
        const std::error_code ec = std::exchange(tx_stopped, {});
        fail_stream(ec, "tls handshake");
        return finish(o, ec, "tls handshake");
      }
      if (o.started_) {  // finished or failed; waits for its output to go out
        if (!wait_flush(o)) {
          if (fatal)
            finish(o, fatal, fatal_message);
          else if (write_error && flushed_total < o.mark_)
            finish(o, write_error, "tls handshake: " + write_message);
          else
            finish(o);
        }
        return;
      }
      if (fatal) return finish(o, fatal, fatal_message);
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl);
      if (r == 1) {
        handshake_done = true;
        o.started_ = true;
        o.mark_ = written_total;
        if (!wait_flush(o)) finish(o);
        return;
      }
      const int err = SSL_get_error(ssl, r);
      if (err == SSL_ERROR_WANT_READ) {
        if (in_error) {
          fail_stream(in_error, "tls handshake: receive");
        } else {
          want_read = true;
          return;
        }
      } else if (err == SSL_ERROR_WANT_WRITE) {
        return;  // tx makes room, then pump() comes back
      } else {
        auto [ec, msg] = ssl_failure(err, "handshake");
        fail_stream(ec, std::move(msg));
      }
      // Failed: its alert goes out first (bounded by the handshake's deadline and stop).
      o.started_ = true;
      o.mark_ = written_total;
      if (!wait_flush(o)) finish(o, fatal, fatal_message);
      return;
    }
    // recv
    if (close_received) return finish(o);  // 0: close_notify came
    if (fatal) return finish(o, fatal, fatal_message);
    if (!handshake_done) return finish(o, errc::tls_failed, "tls recv: before the handshake");
    if (o.size_ == 0) return finish(o);
    ERR_clear_error();
    std::size_t got = 0;
    const int r = SSL_read_ex(ssl, const_cast<std::byte*>(o.data_), o.size_, &got);
    if (r == 1) {
      o.done_ = got;
      return finish(o);
    }
    const int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_ZERO_RETURN) {
      close_received = true;
      return finish(o);
    }
    if (err == SSL_ERROR_WANT_READ) {
      if (!in_error) {
        want_read = true;
        return;
      }
      fail_stream(in_error, "tls recv: receive");
      return finish(o, fatal, fatal_message);
    }
    if (err == SSL_ERROR_WANT_WRITE) return;  // out is full: tx makes room first
    auto [ec, msg] = ssl_failure(err, "recv");
    fail_stream(ec, std::move(msg));
    finish(o, fatal, fatal_message);
  }

  // True if o still waits for its output (up to o.mark_) to reach the socket.
  bool wait_flush(tls_op_base& o) noexcept {
    if (tx_owner == &o && tx_stopped) return false;
    if (write_error) return false;
    return flushed_total < o.mark_;
  }

  void step_write() {
    tls_op_base& o = *wr;
    const char* step = o.kind_ == tls_kind::shutdown ? "tls shutdown" : "tls send";
    if (tx_owner == &o && tx_stopped) {  // its deadline or stop ended the send of its records
      return finish(o, std::exchange(tx_stopped, {}), step);
    }
    if (o.started_) {
      if (write_error) return finish(o, write_error, std::string(step) + ": " + write_message);
      if (flushed_total < o.mark_) return;  // tx is on it
      o.started_ = false;
      if (o.kind_ == tls_kind::send_all && o.done_ < o.size_) {
        // next record
      } else {
        return finish(o);
      }
    }
    if (fatal) return finish(o, fatal, fatal_message);
    if (write_error) return finish(o, write_error, std::string(step) + ": " + write_message);
    if (!handshake_done)
      return finish(o, errc::tls_failed, std::string(step) + ": before the handshake");
    if (close_sent && o.kind_ != tls_kind::shutdown)
      return finish(o, errc::tls_failed, "tls send: after shutdown");
    if (o.kind_ != tls_kind::shutdown && o.done_ >= o.size_) return finish(o);
    if (out_end != out_begin) return;  // earlier output first (tx is on it)
    // Between two records a stop or deadline ends the op cleanly: nothing is half sent.
    if (o.stop_.stop_requested())
      return finish(o, make_error_code(std::errc::operation_canceled), step);
    if (o.deadline_ != clock::time_point::max() && clock::now() >= o.deadline_)
      return finish(o, make_error_code(std::errc::timed_out), step);
    ERR_clear_error();
    if (o.kind_ == tls_kind::shutdown) {
      const int r = close_sent ? 0 : SSL_shutdown(ssl);
      if (r >= 0) {
        close_sent = true;
        o.started_ = true;
        o.mark_ = written_total;
        if (!wait_flush(o)) finish(o);
        return;
      }
      const int err = SSL_get_error(ssl, r);
      if (err == SSL_ERROR_WANT_WRITE) return;
      auto [ec, msg] = ssl_failure(err, "shutdown");
      return finish(o, ec, std::move(msg));
    }
    std::size_t wrote = 0;
    const std::size_t n = std::min(o.size_ - o.done_, max_record);
    const int r = SSL_write_ex(ssl, o.data_ + o.done_, n, &wrote);
    if (r == 1) {
      o.done_ += wrote;
      o.started_ = true;
      o.mark_ = written_total;
      if (!wait_flush(o)) step_write();  // sent already (cannot be: tx sends later) or failed
      return;
    }
    const int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_WRITE) return;  // part of a record is in OpenSSL: same call later
    auto [ec, msg] = ssl_failure(err, "send");
    fail_stream(ec, msg);
    finish(o, ec, std::move(msg));
  }

  void pump() noexcept {
    if (pumping) {
      repump = true;
      return;
    }
    pumping = true;
    try {
      do {
        repump = false;
        want_read = false;
        if (rd) step_read();
        if (wr) step_write();
        start_tx();
        if (want_read && rd && !rx_busy) start_rx();
      } while (repump);
    } catch (...) {
      // std::bad_alloc from a message: end what waits
      if (rd) finish(*rd, make_error_code(std::errc::not_enough_memory));
      if (wr) finish(*wr, make_error_code(std::errc::not_enough_memory));
    }
    pumping = false;
    release_idle();
  }

  // An idle stream holds no ciphertext buffer.
  void release_idle() noexcept {
    if (in && in_begin == in_end && !rx_busy) {
      give_chunk(std::exchange(in, nullptr));
      in_begin = in_end = 0;
    }
    if (out && out_begin == out_end && !tx_busy) {
      give_chunk(std::exchange(out, nullptr));
      out_begin = out_end = 0;
    }
  }

  void start_rx() {
    if (!rx) rx = rx_loop(*this).handle;
    rx_wanted = true;
    if (rx_parked) {
      rx_parked = false;
      rx.resume();  // submits the receive (or finishes at once), then returns here
    }
  }

  void start_tx() {
    if (tx_busy || out_begin == out_end || write_error) return;
    // The op waiting for this output bounds the send: a started send, else a handshake.
    tx_owner = nullptr;
    if (wr && wr->started_)
      tx_owner = wr;
    else if (rd && rd->kind_ == tls_kind::handshake)
      tx_owner = rd;
    if (!tx) tx = tx_loop(*this).handle;
    if (tx_parked) {
      tx_parked = false;
      tx.resume();
    }
  }

  template <class Op>
  static auto bounded(Op&& op, const tls_op_base* o) noexcept {
    static const std::stop_token none;
    return as_result(detail::bound_by(std::move(op), o ? o->deadline_ : clock::time_point::max(),
                                      o ? o->stop_ : none));
  }

  // Note: defined out of the class: clang 14 with -fsanitize=function cannot build an inline
  // coroutine (include/coring/detail/awaitable.hpp).
  static tls_loop rx_loop(tls_state& st);
  static tls_loop tx_loop(tls_state& st);

  // Frees the state of a stream destroyed while a ring operation was in flight, once none is.
  // Returns: true if it did (the caller's frame is gone then).
  bool reap_orphan() noexcept {
    if (!orphaned || rx_busy || tx_busy) return false;
    delete this;
    return true;
  }
};

// Suspends a loop until the state machine resumes it; frees an orphaned state (and with it
// this frame) instead, from await_suspend, where the frame may be destroyed.
struct loop_park {
  tls_state& st;
  bool& parked;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {
    parked = true;
    st.reap_orphan();  // LIFETIME: touches nothing of the frame after this
  }
  void await_resume() const noexcept {}
};

// Made suspended (initial_suspend: parked), resumed by start_rx.
tls_loop tls_state::rx_loop(tls_state& st) {
  for (;;) {
    while (!st.rx_wanted || st.orphaned)
      co_await loop_park{st, st.rx_parked};
    st.rx_wanted = false;
    std::error_code ec;
    std::size_t got = 0;
    try {
      if (!st.in) st.in = take_chunk();  // here: pump() gives it back while rx is idle
    } catch (...) {
      st.in_error = make_error_code(std::errc::not_enough_memory);
      st.pump();
      continue;
    }
    if (st.in_end == st.in_begin) st.in_begin = st.in_end = 0;
    if (st.in_begin > 0) {
      std::memmove(st.in, st.in + st.in_begin, st.in_end - st.in_begin);
      st.in_end -= st.in_begin;
      st.in_begin = 0;
    }
    st.rx_busy = true;
    try {
      auto recv = bounded(st.sock.recv(std::as_writable_bytes(
                              std::span(st.in + st.in_end, chunk_size - st.in_end))),
                          st.rd);
      result<std::size_t> r = co_await recv;
      if (r)
        got = *r;
      else
        ec = r.error();
    } catch (const std::system_error& e) {
      ec = e.code();  // context_stopping: no SQE could be had
    } catch (...) {
      ec = make_error_code(std::errc::not_enough_memory);
    }
    st.rx_busy = false;
    if (st.orphaned) continue;  // parks, and frees the state if tx is done too
    if (ec) {
      if (is_cancel(ec)) {
        if (st.rd) st.rx_stopped = ec;  // for the op whose deadline or stop it was
      } else {
        st.in_error = ec;
      }
    } else if (got == 0) {
      st.in_eof = true;
    } else {
      st.in_end += got;
    }
    st.pump();
  }
}

// Made suspended (initial_suspend: parked), resumed by start_tx.
tls_loop tls_state::tx_loop(tls_state& st) {
  for (;;) {
    while (st.out_begin == st.out_end || st.write_error || st.orphaned)
      co_await loop_park{st, st.tx_parked};
    while (st.out_begin != st.out_end && !st.write_error && !st.orphaned) {
      st.tx_busy = true;
      std::error_code ec;
      std::size_t sent = 0;
      try {
        auto send = bounded(st.sock.send(std::as_bytes(
                                std::span(st.out + st.out_begin, st.out_end - st.out_begin))),
                            st.tx_owner);
        result<std::size_t> r = co_await send;
        if (r)
          sent = *r;
        else
          ec = r.error();
      } catch (const std::system_error& e) {
        ec = e.code();
      } catch (...) {
        ec = make_error_code(std::errc::not_enough_memory);
      }
      st.tx_busy = false;
      if (st.orphaned) break;
      if (ec) {
        // Records (or part of one) that cannot be taken back are unsent: output is over.
        st.write_error = is_cancel(ec) ? make_error_code(errc::tls_failed) : ec;
        st.write_message = is_cancel(ec) ? "an earlier send was cancelled mid-record"
                                         : ec.message() + " (sending records)";
        if (is_cancel(ec) && st.tx_owner) st.tx_stopped = ec;
        st.out_begin = st.out_end = 0;
        break;
      }
      st.out_begin += sent;
      st.flushed_total += sent;
      if (st.out_begin == st.out_end) st.out_begin = st.out_end = 0;
    }
    if (!st.orphaned) st.pump();
  }
}

namespace {

int bio_write_cb(BIO* b, const char* buf, int len) {
  auto* st = static_cast<tls_state*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const int n = st->bio_write(buf, len);
  if (n == -2) {
    BIO_set_retry_write(b);
    return -1;
  }
  return n;
}

int bio_read_cb(BIO* b, char* buf, int len) {
  auto* st = static_cast<tls_state*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const int n = st->bio_read(buf, len);
  if (n == -2) {
    if (st->in_error) return -1;  // no retry: SSL_read reports SSL_ERROR_SYSCALL
    BIO_set_retry_read(b);
    return -1;
  }
  return n;
}

long bio_ctrl_cb(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // tx sends whatever out holds
    default:
      return 0;
  }
}

int bio_create_cb(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int bio_destroy_cb(BIO*) { return 1; }

}  // namespace

BIO_METHOD* tls_state::bio_method() {
  static BIO_METHOD* const m = [] {
    BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "coring buffers");
    if (!meth) return meth;
    BIO_meth_set_write(meth, &bio_write_cb);
    BIO_meth_set_read(meth, &bio_read_cb);
    BIO_meth_set_ctrl(meth, &bio_ctrl_cb);
    BIO_meth_set_create(meth, &bio_create_cb);
    BIO_meth_set_destroy(meth, &bio_destroy_cb);
    return meth;
  }();
  return m;
}

bool tls_op_base::await_suspend(std::coroutine_handle<> waiter) noexcept {
  tls_state& st = *st_;
  waiter_ = waiter;
  const bool reader = kind_ == tls_kind::handshake || kind_ == tls_kind::recv;
  if (st.ctx->stopping()) {
    error_ = errc::context_stopping;
    return false;
  }
  if ((reader && st.rd) || (!reader && st.wr) || (kind_ == tls_kind::handshake && st.wr)) {
    assert(false && "tls::stream: one recv (or handshake) and one send at a time");
    error_ = std::make_error_code(std::errc::device_or_resource_busy);
    return false;
  }
  (reader ? st.rd : st.wr) = this;
  st.inline_op = this;
  st.inline_done = false;
  st.pump();
  st.inline_op = nullptr;
  return !st.inline_done;
}

void tls_op_base::set_timeout(std::chrono::nanoseconds d) noexcept {
  auto now = clock::now();
  auto left = std::chrono::duration_cast<clock::duration>(std::max(d, d.zero()));
  deadline_ = left >= clock::time_point::max() - now ? clock::time_point::max() : now + left;
}

void tls_op_base::raise() const {
  const std::string& message = st_->message_of(*this);
  if (message.empty()) {
    const char* what = kind_ == tls_kind::handshake  ? "tls handshake"
                       : kind_ == tls_kind::recv     ? "tls recv"
                       : kind_ == tls_kind::shutdown ? "tls shutdown"
                                                     : "tls send";
    throw_error(error_, what);
  }
  throw_error(error_, message);
}

}  // namespace coring::detail

namespace coring::tls {

namespace {

detail::tls_state* make_state(const context& ctx, socket s, const std::string_view* host) {
  if (!ctx.native_handle()) throw_error(errc::tls_failed, "tls stream: empty context");
  if (s.fileno() < 0)
    throw_error(std::make_error_code(std::errc::bad_file_descriptor), "tls stream: no socket");
  auto st = std::make_unique<detail::tls_state>(ctx, std::move(s));
  ERR_clear_error();
  st->ssl = SSL_new(ctx.native_handle());
  if (!st->ssl) throw_error(errc::tls_failed, "tls stream: " + openssl_words("SSL_new failed"));
  BIO_METHOD* m = detail::tls_state::bio_method();
  BIO* bio = m ? BIO_new(m) : nullptr;
  if (!bio) throw_error(errc::tls_failed, "tls stream: " + openssl_words("BIO_new failed"));
  BIO_set_data(bio, st.get());
  SSL_set_bio(st->ssl, bio, bio);  // the SSL owns the BIO (one reference for both directions)
  st->server = host == nullptr;
  if (st->server) {
    SSL_set_accept_state(st->ssl);
  } else {
    SSL_set_connect_state(st->ssl);
    const std::string name(*host);
    unsigned char ip[16];
    const bool literal =
        inet_pton(AF_INET, name.c_str(), ip) == 1 || inet_pton(AF_INET6, name.c_str(), ip) == 1;
    if (literal) {
      // An IP literal: no SNI (RFC 6066); the certificate must name the address.
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(st->ssl), name.c_str()) != 1)
        throw_error(errc::tls_failed, "tls stream: " + openssl_words("bad IP address"));
    } else if (!name.empty()) {
      if (SSL_set_tlsext_host_name(st->ssl, name.c_str()) != 1 ||
          SSL_set1_host(st->ssl, name.c_str()) != 1)
        throw_error(errc::tls_failed, "tls stream: " + openssl_words("bad host name"));
    }
  }
  return st.release();
}

}  // namespace

stream::stream(const context& ctx, socket s) : st_(make_state(ctx, std::move(s), nullptr)) {}

stream::stream(const context& ctx, socket s, std::string_view host)
    : st_(make_state(ctx, std::move(s), &host)) {}

stream::~stream() {
  if (!st_) return;
  // LIFETIME: a ring operation in flight points into the state: it outlives the stream until
  // that operation ends (cancelled here). During io_context teardown the kernel is done
  // already (frames are destroyed only after every final CQE), so everything goes now.
  if ((st_->rx_busy || st_->tx_busy) && !st_->ctx->stopping()) {
    st_->orphaned = true;
    st_->rd = st_->wr = nullptr;
    st_->sock.cancel();
    return;
  }
  delete st_;
}

socket& stream::next_layer() noexcept { return st_->sock; }

std::string_view stream::alpn() const noexcept {
  const unsigned char* p = nullptr;
  unsigned n = 0;
  SSL_get0_alpn_selected(st_->ssl, &p, &n);
  return p ? std::string_view(reinterpret_cast<const char*>(p), n) : std::string_view();
}

std::string_view stream::version_name() const noexcept { return SSL_get_version(st_->ssl); }

std::string_view stream::cipher_name() const noexcept {
  const SSL_CIPHER* c = SSL_get_current_cipher(st_->ssl);
  return c ? SSL_CIPHER_get_name(c) : "";
}

SSL* stream::native_handle() const noexcept { return st_->ssl; }

}  // namespace coring::tls
