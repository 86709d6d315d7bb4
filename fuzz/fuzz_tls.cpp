// SPDX-License-Identifier: MIT
// Description: libFuzzer target: a server-side coring::tls::stream fed arbitrary bytes as its
// client's side of the connection (over a socketpair on a real ring) ends cleanly, whatever the
// bytes: the handshake and then recv either succeed or throw one of TLS's error codes, never
// stall, crash, leak or trip a sanitizer.
//
// Build: meson setup build-fuzz -Dfuzzing=enabled -Dtls=enabled (CXX=clang++), then
//   cp -r fuzz/corpus/tls /tmp/corpus && build-fuzz/fuzz/fuzz_tls -max_total_time=60 /tmp/corpus
// (Copy the corpus first: libFuzzer adds new inputs to the first corpus directory.) The seeds
// are real ClientHellos (TLS 1.2 and 1.3, with and without SNI and ALPN) written by
// fuzz/make_tls_corpus.py.
//
// One io_context and one server context for the whole run: a P-256 key and a self-signed
// certificate made with the OpenSSL API at start, handed to tls::context::server through memfd
// paths (/proc/self/fd/N: no file is written). Per input: a fresh socketpair; the input is
// written to the client's end, at once or in pieces (their size follows from the input's size,
// so both ways are fuzzed: pieces make the stream read partial records, one recv at a time),
// then the client's end shuts its writes (the server sees EOF after the input); the server end
// runs handshake() and, if that succeeds, recv() until 0 or an error, each bounded by a deadline
// that must never be reached (the EOF comes after the input: a timeout means the stream waited
// for bytes that cannot come).
//
// Invariants (std::abort, so libFuzzer saves the input):
// - every failure is a std::system_error with coring::errc::tls_failed, tls_truncated or
//   tls_verify_failed, or ECONNRESET/EPIPE; never timed_out, never another exception type;
// - a failed handshake's message names the step ("tls handshake");
// - recv returns at most the buffer's size.
#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

void check(bool ok) {
  if (!ok) std::abort();
}

// A PEM text written to an anonymous memory file; path() names it for functions taking a path.
class memfd_text {
 public:
  explicit memfd_text(std::string_view text) : fd_(::memfd_create("fuzz_tls", MFD_CLOEXEC)) {
    check(fd_ >= 0);
    check(::write(fd_, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  }
  ~memfd_text() { ::close(fd_); }
  memfd_text(const memfd_text&) = delete;
  memfd_text& operator=(const memfd_text&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// The PEM text of what write puts into a memory BIO.
template <class Write>
std::string pem_of(Write write) {
  BIO* bio = BIO_new(BIO_s_mem());
  check(bio != nullptr);
  check(write(bio) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

// A server context with a fresh P-256 key and a self-signed certificate for "localhost".
coring::tls::context make_server_context() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  check(key != nullptr);
  X509* cert = X509_new();
  check(cert != nullptr);
  check(X509_set_version(cert, 2) == 1);
  check(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) == 1);
  check(X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr);
  check(X509_gmtime_adj(X509_getm_notAfter(cert), 3600L * 24 * 365) != nullptr);
  check(X509_set_pubkey(cert, key) == 1);
  X509_NAME* name = X509_get_subject_name(cert);
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1,
                                   0) == 1);
  check(X509_set_issuer_name(cert, name) == 1);
  check(X509_sign(cert, key, EVP_sha256()) > 0);
  const std::string cert_pem = pem_of([cert](BIO* b) { return PEM_write_bio_X509(b, cert); });
  const std::string key_pem = pem_of([key](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  X509_free(cert);
  EVP_PKEY_free(key);
  const memfd_text cert_file(cert_pem), key_file(key_pem);
  coring::tls::context_options opts;
  opts.alpn = {"http/1.1", "h2"};
  return coring::tls::context::server(cert_file.path(), key_file.path(), opts);
}

struct fixture {
  coring::io_context ctx;
  coring::tls::context tls = make_server_context();
};

fixture& the_fixture() {
  static fixture f;
  return f;
}

// What a stream may throw for bad input from its peer.
void check_error(const std::system_error& e, bool handshake) {
  const std::error_code ec = e.code();
  check(ec != std::errc::timed_out);  // the EOF was queued: nothing to wait for
  const bool tls_error = ec == coring::errc::tls_failed || ec == coring::errc::tls_truncated ||
                         ec == coring::errc::tls_verify_failed;
  check(tls_error || ec == std::errc::connection_reset || ec == std::errc::broken_pipe);
  if (handshake && tls_error) check(std::string_view(e.what()).find("tls handshake") == 0);
}

// The server's side of one connection: the handshake, then what the client sent, until its end.
CORING_NO_SANITIZE_FUNCTION coring::task<> serve(coring::tls::stream& t) {
  try {
    auto hs = t.handshake().with_timeout(5s);
    co_await std::move(hs);
  } catch (const std::system_error& e) {
    check_error(e, true);
    co_return;
  }
  try {
    std::array<std::byte, 4096> buf;
    for (int i = 0; i < 1000; ++i) {
      auto op = t.recv(buf).with_timeout(5s);
      const std::size_t n = co_await std::move(op);
      check(n <= buf.size());
      if (n == 0) break;
    }
  } catch (const std::system_error& e) {
    check_error(e, false);
  }
}

// The client's side: bytes in pieces of piece bytes (each a ring send, so the server runs in
// between), then EOF. A send refused because the server is done (EPIPE) ends it; one that waits
// 10 s is a bug of this harness.
CORING_NO_SANITIZE_FUNCTION coring::task<> feed(coring::socket& client,
                                                std::span<const std::byte> bytes,
                                                std::size_t piece) {
  while (!bytes.empty()) {
    const std::size_t n = std::min(piece, bytes.size());
    auto op = coring::as_result(client.send_all(bytes.first(n)).with_timeout(10s));
    auto sent = co_await std::move(op);
    if (!sent) {
      check(sent.error() != std::errc::timed_out);
      break;
    }
    bytes = bytes.subspan(n);
  }
  (void)::shutdown(client.fileno(), SHUT_WR);
}

// The server, then its socket shut down both ways: a client still sending many small pieces
// (each takes far more of the socket's buffer than its size) gets EPIPE instead of waiting for
// room the server will never make.
CORING_NO_SANITIZE_FUNCTION coring::task<> serve_then_close(coring::tls::stream& t) {
  co_await serve(t);
  (void)::shutdown(t.next_layer().fileno(), SHUT_RDWR);
}

CORING_NO_SANITIZE_FUNCTION coring::task<> run(coring::tls::stream& t, coring::socket& client,
                                               std::span<const std::byte> bytes,
                                               std::size_t piece) {
  auto server = serve_then_close(t);
  auto writer = feed(client, bytes, piece);
  co_await coring::when_all(std::move(server), std::move(writer));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fixture& f = the_fixture();
  auto [server_end, client_end] = coring::socket_pair(f.ctx);
  // Inputs over 64 KiB are cut (libFuzzer's stay under 4 KiB unless told otherwise).
  const auto bytes = std::as_bytes(std::span(data, std::min<std::size_t>(size, 64 * 1024)));
  // Half the inputs at once, the others in pieces of 1 to 64 bytes.
  const std::size_t piece = size % 2 == 0 ? bytes.size() + 1 : 1 + (size / 2) % 64;
  coring::tls::stream t(f.tls, std::move(server_end));
  try {
    coring::sync_wait(f.ctx, run(t, client_end, bytes, piece));
  } catch (...) {
    std::abort();  // serve() and feed() let only their invariants' aborts out
  }
  return 0;
}
