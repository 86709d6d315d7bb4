// SPDX-License-Identifier: MIT
// Description: coring::tls on OpenSSL 3: contexts, and a stream whose records OpenSSL reads and
// writes through a BIO over buffers the stream owns, moved by the socket's ring operations.
#include <coring/tls.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <string>

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

// ---- stream: first commit stub (the state machine follows) ----
namespace coring::detail {
struct tls_state {
  socket sock;
  SSL* ssl = nullptr;
  ~tls_state() {
    if (ssl) SSL_free(ssl);
  }
};

bool tls_op_base::await_suspend(std::coroutine_handle<>) noexcept {
  error_ = errc::not_supported;
  return false;
}
void tls_op_base::raise() const { throw_error(error_, "tls: not implemented yet"); }
void tls_op_base::set_timeout(std::chrono::nanoseconds) noexcept {}
}  // namespace coring::detail

namespace coring::tls {
stream::stream(const context& ctx, socket s) : st_(new detail::tls_state{std::move(s)}) {
  st_->ssl = SSL_new(ctx.native_handle());
}
stream::stream(const context& ctx, socket s, std::string_view) : stream(ctx, std::move(s)) {}
stream::~stream() { delete st_; }
socket& stream::next_layer() noexcept { return st_->sock; }
std::string_view stream::alpn() const noexcept { return {}; }
std::string_view stream::version_name() const noexcept { return SSL_get_version(st_->ssl); }
std::string_view stream::cipher_name() const noexcept { return {}; }
SSL* stream::native_handle() const noexcept { return st_->ssl; }
}  // namespace coring::tls
