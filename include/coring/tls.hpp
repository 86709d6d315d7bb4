// SPDX-License-Identifier: MIT
// Description: TLS on OpenSSL 3: a context (certificates, trust, versions, ALPN) and a stream
// over a coring socket whose handshake, recv, send, send_all and shutdown are ring operations.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/detail/tls_config.hpp>
#include <coring/error.hpp>
#include <coring/socket.hpp>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#if !CORING_HAS_TLS
#error "coring was built without TLS (meson -Dtls=enabled needs OpenSSL 3, libssl-dev)"
#endif

// OpenSSL's own declarations (openssl/types.h), repeated so that this header needs no OpenSSL
// header: include <openssl/ssl.h> yourself to use native_handle().
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace coring::tls {

class stream;

/// A TLS protocol version. Nothing below TLS 1.2 is ever negotiated.
enum class version { tls1_2, tls1_3 };

/// How a context is set up (both sides unless a field says otherwise).
struct context_options {
  /// The lowest version accepted; never lower than TLS 1.2.
  version min_version = version::tls1_2;
  /// The highest version accepted (e.g. force TLS 1.2 in tests); none: OpenSSL's highest.
  std::optional<version> max_version;
  /// ALPN protocols ("h2", "http/1.1"): a client offers them; a server accepts the first of its
  /// list, in its order, that the client offered (no overlap: no ALPN, the handshake goes on).
  std::vector<std::string> alpn;
  /// Trust the CAs in this PEM file instead of the system store (clients; servers: for client
  /// certificates, unused so far).
  std::string ca_file;
  /// Clients: verify the server's chain and host name (the default). false is the explicit
  /// opt-out: any certificate is accepted.
  bool verify_peer = true;
  /// TLS 1.3 suites (SSL_CTX_set_ciphersuites syntax); empty: OpenSSL's defaults.
  std::string ciphersuites;
  /// TLS 1.2 ciphers (SSL_CTX_set_cipher_list syntax); empty: OpenSSL's defaults.
  std::string cipher_list;
  /// SSL_MODE_RELEASE_BUFFERS: OpenSSL frees its record buffers while a connection is idle.
  bool release_buffers = true;
};

/// An SSL_CTX: what every connection made from it shares. Cheap to copy (the SSL_CTX is reference
/// counted by OpenSSL); thread-safe to use from several threads once made.
class context {
 public:
  /// A server context with the certificate chain (PEM: the leaf first) and its private key.
  /// Throws: std::system_error(errc::tls_failed, "tls context: <file>: <OpenSSL's words>").
  static context server(const std::string& cert_chain_pem_file, const std::string& key_pem_file,
                        const context_options& opts = {});
  /// A client context: trusts opts.ca_file, or the system's store when it is empty.
  /// Throws: std::system_error(errc::tls_failed, "tls context: <OpenSSL's words>").
  static context client(const context_options& opts = {});
  context(const context& o) noexcept;
  context& operator=(const context& o) noexcept;
  context(context&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)), server_(o.server_) {}
  context& operator=(context&& o) noexcept;
  ~context();

  /// The SSL_CTX (owned by this context and its copies).
  SSL_CTX* native_handle() const noexcept { return ctx_; }
  /// True for a context made by server().
  bool is_server() const noexcept { return server_; }

 private:
  context(SSL_CTX* ctx, bool server) noexcept : ctx_(ctx), server_(server) {}
  SSL_CTX* ctx_ = nullptr;
  bool server_ = false;
};

}  // namespace coring::tls

namespace coring::detail {

struct tls_state;

/// What a TLS operation does.
enum class tls_kind : unsigned char { handshake, recv, send, send_all, shutdown };

/// The non-template part of a TLS operation (src/tls.cpp).
class tls_op_base {
 public:
  tls_op_base(tls_state* st, tls_kind kind, const std::byte* data, std::size_t size) noexcept
      : st_(st), kind_(kind), data_(data), size_(size) {}
  /// Only before it is awaited.
  tls_op_base(tls_op_base&& o) noexcept
      : st_(o.st_), kind_(o.kind_), data_(o.data_), size_(o.size_), deadline_(o.deadline_),
        stop_(std::move(o.stop_)) {}
  tls_op_base& operator=(tls_op_base&&) = delete;

  /// False: await_suspend may answer at once (await_ready is const for as_result).
  bool await_ready() const noexcept { return false; }
  /// Starts the operation. Returns: false if it finished at once (no suspension).
  bool await_suspend(std::coroutine_handle<> waiter) noexcept;

 protected:
  /// Throws the error with its message.
  [[noreturn]] void raise() const;
  void set_timeout(std::chrono::nanoseconds d) noexcept;

  friend struct tls_state;  // the state machine (src/tls.cpp)
  tls_state* st_;
  tls_kind kind_;
  const std::byte* data_;  // recv: the caller's buffer (written); send: the caller's bytes
  std::size_t size_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::stop_token stop_;
  std::coroutine_handle<> waiter_{};
  std::size_t done_ = 0;     // recv, send: bytes; send_all: bytes taken so far
  std::size_t mark_ = 0;     // send: the output position its records end at
  bool started_ = false;     // send: its bytes were made into records
  std::error_code error_{};  // its message (OpenSSL's words) is kept in the stream's state
};

/// co_await s.handshake(), s.recv(buf), s.send(buf), s.send_all(buf), s.shutdown(): takes
/// .with_timeout(d) and .with_stop(tok), which bound the whole operation (every ring operation
/// it needs), and coring::as_result.
template <class T>
class [[nodiscard]] tls_op : public tls_op_base {
 public:
  using value_type = T;
  using tls_op_base::tls_op_base;

  /// Bounds the whole operation by d from now; on expiry the co_await throws
  /// std::system_error(std::errc::timed_out).
  template <class Rep, class Period>
  tls_op&& with_timeout(std::chrono::duration<Rep, Period> d) && noexcept {
    set_timeout(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    return std::move(*this);
  }
  /// Ends the operation with std::system_error(std::errc::operation_canceled) when stop is
  /// requested on tok (from any thread), as a stop ends a ring operation.
  tls_op with_stop(std::stop_token tok) && noexcept {
    stop_ = std::move(tok);
    return std::move(*this);
  }

  T await_resume() {
    if (error_) raise();
    if constexpr (!std::is_void_v<T>) return done_;
  }
  /// The non-throwing form of await_resume (used by coring::as_result).
  result<T> await_resume_result() noexcept {
    if (error_) return error_;
    if constexpr (std::is_void_v<T>) {
      return {};
    } else {
      return done_;
    }
  }
};

}  // namespace coring::detail

namespace coring::tls {

/// A TLS connection over a connected stream socket, which it owns. Every byte goes through the
/// socket's ring operations (OpenSSL reads and writes buffers the stream owns, never the socket).
/// ```
/// coring::tls::stream s(client_ctx, std::move(sock), "example.com");
/// co_await s.handshake().with_timeout(5s);
/// co_await s.send_all("GET / HTTP/1.0\r\n\r\n");
/// std::size_t n = co_await s.recv(buf);
/// ```
/// Full duplex: one recv (or the handshake) and one send (send, send_all or shutdown) may be
/// awaited at the same time, from two coroutines; output OpenSSL makes while reading (TLS 1.3
/// key updates, alerts) is queued behind what a send already made, in order.
/// Errors: std::system_error whose what() says which step failed in OpenSSL's words
/// ("tls handshake: certificate verify failed: certificate has expired"): errc::tls_failed,
/// errc::tls_verify_failed (peer certificate rejected), errc::tls_truncated (the peer closed
/// the TCP connection without close_notify), std::errc::timed_out, operation_canceled, or the
/// socket's errno. A failed handshake, a protocol error or truncation ends the stream: later
/// operations fail with the same error.
/// Cancellation: a recv stopped or timed out keeps what it received (the next recv returns it).
/// A send stopped or timed out after its bytes were made into records, but before they all
/// reached the socket, leaves the stream unusable: a record cannot be taken back, so later
/// sends, send_all and shutdown fail with errc::tls_failed ("tls send: an earlier send was
/// cancelled mid-record"); recv still works. A stopped handshake ends the stream.
/// Memory: ciphertext buffers (at most two of 20 KiB) are taken from a small per-thread
/// free list only while an operation needs them and given back when the stream goes idle; an
/// idle stream holds only its SSL object (and, with release_buffers, OpenSSL frees its record
/// buffers too). No coroutine frame is allocated per operation.
/// Note: the stream, the context it was made with and the buffers of an operation must outlive
/// the operation's co_await; destroy the stream only while no operation on it is suspended
/// (io_context teardown is the exception: it is safe then). Output OpenSSL queued after the
/// last send (an alert) may still be going out when the stream is destroyed: the stream's state
/// then stays alive until that ring operation ends (cancelled).
class stream {
 public:
  /// The server side of a connection (ctx from context::server()).
  /// Throws: std::system_error(errc::tls_failed) if OpenSSL cannot make the SSL object.
  stream(const context& ctx, socket s);
  /// The client side: sends host as SNI (not for an IP literal) and, with verify_peer, checks
  /// that the certificate names host (or its IP address).
  /// Throws: std::system_error(errc::tls_failed).
  stream(const context& ctx, socket s, std::string_view host);
  stream(stream&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  stream& operator=(stream&&) = delete;
  stream(const stream&) = delete;
  ~stream();

  /// The TLS handshake (client or server side, as the stream was made).
  /// Throws: std::system_error (errc::tls_failed, errc::tls_verify_failed, errc::tls_truncated,
  /// timed_out, operation_canceled, errno).
  [[nodiscard]] detail::tls_op<void> handshake() noexcept {
    return {st_, detail::tls_kind::handshake, nullptr, 0};
  }
  /// Receives up to buf.size() bytes of application data (after the handshake).
  /// Returns: bytes received (>= 1), or 0 once the peer sent close_notify.
  /// Throws: std::system_error (errc::tls_truncated if the peer closed without close_notify,
  /// errc::tls_failed, ...). Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::tls_op<std::size_t> recv(std::span<std::byte> buf) noexcept {
    return {st_, detail::tls_kind::recv, buf.data(), buf.size()};
  }
  /// Sends up to one record's worth (16 KiB) of buf and waits until its records reached the
  /// socket. Returns: bytes sent (>= 1 unless buf is empty). Throws: std::system_error.
  /// Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::tls_op<std::size_t> send(std::span<const std::byte> buf) noexcept {
    return {st_, detail::tls_kind::send, buf.data(), buf.size()};
  }
  /// Sends all of buf (records of up to 16 KiB) and waits until they reached the socket.
  /// Throws: std::system_error. Note: buf must stay valid until the co_await completes.
  [[nodiscard]] detail::tls_op<void> send_all(std::span<const std::byte> buf) noexcept {
    return {st_, detail::tls_kind::send_all, buf.data(), buf.size()};
  }
  /// send_all for text. Note: the characters must stay valid until the co_await completes.
  [[nodiscard]] detail::tls_op<void> send_all(std::string_view text) noexcept {
    return send_all(std::as_bytes(std::span(text.data(), text.size())));
  }
  /// Sends close_notify and waits until it reached the socket (does not wait for the peer's;
  /// a recv returns 0 when that arrives). Later sends fail. Throws: std::system_error.
  [[nodiscard]] detail::tls_op<void> shutdown() noexcept {
    return {st_, detail::tls_kind::shutdown, nullptr, 0};
  }

  /// The socket (e.g. for options, or shutdown(SHUT_WR) after shutdown()).
  socket& next_layer() noexcept;
  /// The ALPN protocol negotiated, empty if none (valid while the stream lives).
  std::string_view alpn() const noexcept;
  /// The version negotiated ("TLSv1.3", "TLSv1.2"; before the handshake "unknown").
  std::string_view version_name() const noexcept;
  /// The cipher suite negotiated, OpenSSL's name ("TLS_AES_128_GCM_SHA256"); empty before.
  std::string_view cipher_name() const noexcept;
  /// The SSL object (owned by the stream).
  SSL* native_handle() const noexcept;

 private:
  detail::tls_state* st_;
};

}  // namespace coring::tls
