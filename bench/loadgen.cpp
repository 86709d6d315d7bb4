// SPDX-License-Identifier: MIT
// Description: epoll load generator for echo and HTTP servers: pipelined or paced, all verified.
//
// loadgen --host 127.0.0.1 --port N [--connections C] [--size S] [--depth D] [--duration SEC]
//         [--rate R] [--warmup SEC] [--server-pid PID] [--timeout SEC] [--spin-us US] [--json]
// loadgen --http [--path /x] [--host-header H] [--expect-body STR | --expect-body-file F |
//                 --expect-length N] ...
// loadgen --host 127.0.0.1 --port N --idle-connections N [--hold SEC] [--size S] [--http]
// loadgen --tls [--ca FILE] [--tls-name NAME] [--tls-ciphersuites LIST] ... (any mode above)
//
// Closed loop (no --rate): every connection keeps D messages of S bytes in flight; latency runs
// from the moment a message is queued. Open loop (--rate R): global send slots every 1/R s are
// dealt round-robin to the connections (message j of connection c is due at t0 + (c + j*C)/R);
// a message is sent when its slot arrives (at most D outstanding per connection), and its latency
// runs from the *scheduled* time, so a stalled server cannot hide behind a waiting load generator
// (no coordinated omission). The schedule is absolute, so it does not drift: loadgen sleeps in
// epoll_pwait2 (1 ns timer slack) until --spin-us (default 200) before the next slot, then polls.
//
// Verification: connection c sends the byte stream pattern[(seed_c + offset) % P], P = 65521
// (prime), pattern = fixed pseudo-random bytes, seed_c = c * 7919 % P (distinct for c < P). Every
// received byte is compared with the byte expected at that offset, so loss, duplication,
// reordering, corruption and bytes from another connection all show up as a mismatch (only a
// shift by an exact multiple of P bytes could pass, and then the byte count no longer adds up).
// Any mismatch, unexpected EOF/reset, or a message outstanding for longer than --timeout at the
// end is an error; errors make the exit status 1.
//
// Output: one human-readable line, or one JSON object with --json. With --server-pid the server's
// CPU time over the measured interval (process CPU clock via clock_getcpuclockid: all threads,
// ns resolution; utime+stime ticks from /proc/PID/stat as a cross-check) is divided by the round
// trips completed in that interval.
//
// HTTP mode (--http): every message is one keep-alive "GET PATH HTTP/1.1" request (Host: the
// --host-header, default HOST:PORT), and a round trip ends with its complete response. Depth D
// = requests pipelined per connection; --rate schedules requests exactly like echo messages.
// Every response must be "HTTP/1.x 200", framed by exactly one Content-Length (no
// Transfer-Encoding), with a body equal to --expect-body or to the contents of
// --expect-body-file (or of --expect-length bytes), and no response may arrive without a
// request outstanding; anything else counts as a bad response.
//
// TLS (--tls, built with OpenSSL 3): every connection does a client handshake (non-blocking
// OpenSSL on the socket, on the same epoll loop) before the load starts, then the same load and
// checks as above go through SSL_write/SSL_read. --ca FILE verifies the chain and --tls-name
// (default localhost, also sent as SNI); without --ca the server is not verified (a load
// generator). A failed handshake counts as a connect failure. At the end loadgen sends
// close_notify and half-closes; the server's EOF is accepted with or without its close_notify
// ("tls_unclean_closes" counts the latter). The JSON names the negotiated version and suite.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#else
struct ssl_st;
struct ssl_ctx_st;
using SSL = ssl_st;
using SSL_CTX = ssl_ctx_st;
#endif

namespace {

constexpr std::uint32_t pattern_period = 65521;  // prime
constexpr std::size_t max_chunk = 256 * 1024;    // longest contiguous slice we send at once
constexpr std::size_t recv_chunk = 64 * 1024;

std::vector<unsigned char> pattern;  // pattern_period + max_chunk bytes: slices never wrap

void make_pattern() {
  pattern.resize(pattern_period + max_chunk);
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  for (std::size_t i = 0; i < pattern_period; ++i) {
    x += 0x9e3779b97f4a7c15ull;  // splitmix64
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    pattern[i] = static_cast<unsigned char>(z ^ (z >> 31));
  }
  for (std::size_t i = pattern_period; i < pattern.size(); ++i)
    pattern[i] = pattern[i - pattern_period];
}

std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

std::int64_t clock_ns(clockid_t id) {
  timespec ts;
  if (clock_gettime(id, &ts) != 0) return -1;
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

/// Log-linear latency histogram in ns: 64 sub-buckets per power of two (< 1.6% error).
class histogram {
 public:
  void record(std::int64_t ns) {
    if (ns < 0) ns = 0;
    ++counts_[index(static_cast<std::uint64_t>(ns))];
    ++total_;
    max_ = std::max(max_, ns);
  }
  std::uint64_t total() const { return total_; }
  std::int64_t max() const { return max_; }
  /// Returns: the value (ns) at quantile q in [0, 1]; the bucket midpoint.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(midpoint(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

 private:
  static constexpr int sub_bits = 6;
  static std::size_t index(std::uint64_t v) {
    if (v < (1u << sub_bits)) return v;
    int msb = 63 - std::countl_zero(v);
    int shift = msb - sub_bits;
    return (static_cast<std::size_t>(shift + 1) << sub_bits) + ((v >> shift) - (1u << sub_bits));
  }
  static double midpoint(std::size_t i) {
    if (i < (1u << sub_bits)) return static_cast<double>(i);
    int shift = static_cast<int>(i >> sub_bits) - 1;
    std::uint64_t low = ((i & ((1u << sub_bits) - 1)) + (1u << sub_bits)) << shift;
    return static_cast<double>(low) + static_cast<double>((1ull << shift)) / 2.0;
  }
  std::vector<std::uint64_t> counts_ = std::vector<std::uint64_t>(64 * 60);
  std::uint64_t total_ = 0;
  std::int64_t max_ = 0;
};

struct options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 10;
  std::size_t size = 64;
  int depth = 1;
  double duration = 5;
  double warmup = 0;
  double rate = 0;
  double timeout = 2;
  double spin_us = 200;
  pid_t server_pid = 0;
  bool json = false;
  int idle_connections = 0;
  double hold = 0;
  bool http = false;
  bool reconnect = false;  // --http: one "Connection: close" request per connection, then anew
  std::string path = "/";
  std::string host_header;  // empty: HOST:PORT
  bool have_expect_body = false;
  std::string expect_body;
  long long expect_length = -1;  // -1: any Content-Length
  bool tls = false;
  std::string ca;  // empty: the server is not verified
  std::string tls_name = "localhost";
  std::string tls_ciphersuites;  // empty: OpenSSL's default TLS 1.3 suites
};

struct conn {
  int fd = -1;
  std::uint32_t id = 0;
  std::uint32_t seed = 0;
  std::uint64_t tx_off = 0;  // bytes written
  std::uint64_t rx_off = 0;  // bytes received and verified
  std::uint64_t queued = 0;  // messages queued for sending
  std::uint64_t done = 0;    // messages fully echoed
  std::uint64_t due = 0;     // open loop: messages whose slot has arrived
  bool want_out = false;
  bool dead = false;
  // HTTP mode: the response being parsed.
  std::string head;      // start of a header block split across reads (else empty)
  bool in_body = false;  // header block parsed, body_left bytes of body still to come
  std::uint64_t body_left = 0;
  std::uint64_t body_off = 0;  // body bytes seen so far (compared with --expect-body)
  std::uint64_t resp_bytes = 0;
  SSL* ssl = nullptr;             // --tls
  int phase = 0;                  // --reconnect: 0 ready, 1 connecting, 2 TLS handshake
  std::int64_t connect_at = 0;    // --reconnect: when this connection's connect() started
  bool read_wants_write = false;  // --tls: SSL_read asked for a writable socket
};

// What one read or write on a connection came to.
enum class io_kind { data, again, eof, eof_unclean, error };
struct io_result {
  io_kind kind = io_kind::data;
  std::size_t n = 0;
  std::string what;  // io_kind::error: what failed
};

struct counters {
  std::uint64_t mismatches = 0;
  std::uint64_t eofs = 0;
  std::uint64_t socket_errors = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t bad_responses = 0;  // HTTP mode: status, framing or body not as expected
  std::uint64_t total() const {
    return mismatches + eofs + socket_errors + connect_failures + timeouts + bad_responses;
  }
};

struct cpu_sample {
  std::int64_t wall = 0;
  std::int64_t self = 0;     // loadgen process CPU ns
  std::int64_t server = -1;  // server process CPU ns (all threads), -1 if unknown
  std::int64_t ticks = -1;   // server utime+stime in clock ticks
};

class loadgen {
 public:
  explicit loadgen(const options& o) : opt_(o), msg_size_(o.size) {}

  int run();
  int run_idle();

 private:
  bool resolve();
  bool tls_setup();
  void setup_http();
  void handshake(int first, int last);
  io_result read_some(conn& c, void* buf, std::size_t len);
  io_result write_some(conn& c, const void* buf, std::size_t len);
  void close_conn(conn& c);
  void tls_new(conn& c);
  int tls_step(conn& c);
  void reconnect(conn& c);
  void advance(conn& c);
  void on_event(conn& c, std::uint32_t events);
  void open_connections(int n);
  void close_all();
  void fail(conn& c, std::uint64_t& counter, const std::string& what);
  void set_out(conn& c, bool on);
  void flush(conn& c);
  void refill(conn& c);
  void on_readable(conn& c);
  void on_readable_http(conn& c);
  bool on_http_bytes(conn& c, const char* p, std::size_t n, std::int64_t now);
  bool parse_head(conn& c, std::string_view head);
  void response_done(conn& c, std::int64_t now);
  void drain();
  std::int64_t slot_time(std::uint64_t slot) const {
    return t0_ + static_cast<std::int64_t>(static_cast<double>(slot) * slot_ns_);
  }
  cpu_sample sample() const;

  options opt_;
  std::size_t msg_size_;  // bytes sent per message: --size, or the HTTP request's length
  std::string request_;   // HTTP mode: one request
  std::string requests_;  // HTTP mode: the request repeated, so that a send can be long
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int ep_ = -1;
  std::vector<conn> conns_;
  std::vector<std::int64_t> sent_at_;    // ring of D latency start times per connection
  std::vector<std::int64_t> queued_at_;  // ring of D actual queueing times (for --timeout)
  std::vector<unsigned char> rbuf_ = std::vector<unsigned char>(recv_chunk);
  histogram hist_;
  counters err_;
  std::int64_t t0_ = 0;
  double slot_ns_ = 0;
  std::int64_t spin_ns_ = 0;
  bool measuring_ = false;
  bool draining_ = false;           // after the run: shut down, read the last echoes, expect EOF
  std::uint64_t max_messages_ = 0;  // idle mode: messages per connection (0 = unlimited)
  std::uint64_t completed_ = 0;     // round trips completed while measuring
  std::uint64_t bytes_ = 0;         // bytes echoed while measuring
  clockid_t server_clock_{};
  bool have_server_clock_ = false;
  int errors_logged_ = 0;
  SSL_CTX* tls_ctx_ = nullptr;
  std::string tls_version_, tls_cipher_;  // of the first connection's handshake
  std::uint64_t tls_unclean_closes_ = 0;  // server EOFs at the end without close_notify
  std::uint64_t tls_resumed_ = 0;         // handshakes that resumed a session (expected: 0)
};

bool loadgen::resolve() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opt_.port);
  int r = getaddrinfo(opt_.host.c_str(), port.c_str(), &hints, &res);
  if (r != 0) {
    std::fprintf(stderr, "loadgen: bad --host %s: %s\n", opt_.host.c_str(), gai_strerror(r));
    return false;
  }
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  addr_len_ = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// Connects n sockets in batches (the listen backlog is capped at 4096, and the server has to
// accept as we go); sockets that fail count as connect failures.
void loadgen::open_connections(int n) {
  conns_.resize(static_cast<std::size_t>(n));
  constexpr int batch = 1000;
  std::vector<epoll_event> evs(batch);
  for (int first = 0; first < n; first += batch) {
    int last = std::min(n, first + batch);
    int pending = 0;
    for (int i = first; i < last; ++i) {
      conn& c = conns_[static_cast<std::size_t>(i)];
      c.id = static_cast<std::uint32_t>(i);
      c.seed = static_cast<std::uint32_t>((static_cast<std::uint64_t>(i) * 7919) % pattern_period);
      c.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        fail(c, err_.connect_failures, std::string("socket: ") + std::strerror(errno));
        continue;
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr_), addr_len_) < 0 &&
          errno != EINPROGRESS) {
        fail(c, err_.connect_failures, std::string("connect: ") + std::strerror(errno));
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLOUT;
      ev.data.u32 = c.id;
      epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
      ++pending;
    }
    std::int64_t deadline = now_ns() + 10'000'000'000ll;
    while (pending > 0) {
      int left_ms = static_cast<int>((deadline - now_ns()) / 1'000'000);
      if (left_ms <= 0) break;
      int k = epoll_wait(ep_, evs.data(), batch, left_ms);
      for (int i = 0; i < k; ++i) {
        std::uint32_t id = evs[static_cast<std::size_t>(i)].data.u32;
        if (id < static_cast<std::uint32_t>(first) || id >= static_cast<std::uint32_t>(last))
          continue;  // an earlier batch's connection
        conn& c = conns_[id];
        if (c.dead || c.want_out) continue;  // want_out marks "connected" during this phase
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        --pending;
        if (err != 0) {
          fail(c, err_.connect_failures, std::string("connect: ") + std::strerror(err));
          continue;
        }
        c.want_out = true;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = c.id;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
      }
    }
    for (int i = first; i < last; ++i) {
      conn& c = conns_[static_cast<std::size_t>(i)];
      if (!c.dead && !c.want_out) fail(c, err_.connect_failures, "connect timed out");
      c.want_out = false;
    }
    if (tls_ctx_ != nullptr) handshake(first, last);
  }
  // TLS: a connection parks (no events) once its handshake is done, since the server's
  // session tickets would keep it readable while later batches connect; now wake them all.
  for (conn& c : conns_) {
    if (tls_ctx_ == nullptr || c.dead) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = c.id;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }
}

void loadgen::fail(conn& c, std::uint64_t& counter, const std::string& what) {
  ++counter;
  if (errors_logged_++ < 10) {
    std::fprintf(stderr,
                 "loadgen: connection %u: %s at rx offset %" PRIu64 ", tx offset %" PRIu64 "\n",
                 c.id, what.c_str(), c.rx_off, c.tx_off);
  }
  close_conn(c);
  c.dead = true;
}

void loadgen::close_conn(conn& c) {
#ifdef LOADGEN_TLS
  if (c.ssl != nullptr) SSL_free(c.ssl);
#endif
  c.ssl = nullptr;
  if (c.fd >= 0) close(c.fd);  // also removes it from the epoll set
  c.fd = -1;
}

// Both directions of a TLS connection can need either readiness, so TLS connections try
// both on any event; plain ones follow the event.
void loadgen::on_event(conn& c, std::uint32_t e) {
  if (c.phase != 0) {
    advance(c);
    return;
  }
  if (c.ssl != nullptr || (e & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
  if (!c.dead && c.fd >= 0 && (c.ssl != nullptr || (e & EPOLLOUT))) flush(c);
}

io_result loadgen::read_some(conn& c, void* buf, std::size_t len) {
#ifdef LOADGEN_TLS
  if (c.ssl != nullptr) {
    ERR_clear_error();
    int r = SSL_read(c.ssl, buf, static_cast<int>(len));
    if (r > 0) {
      if (c.read_wants_write) {
        c.read_wants_write = false;
        if (c.queued * msg_size_ == c.tx_off) set_out(c, false);
      }
      return {io_kind::data, static_cast<std::size_t>(r), {}};
    }
    int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) return {io_kind::again, 0, {}};
    if (err == SSL_ERROR_WANT_WRITE) {
      c.read_wants_write = true;
      set_out(c, true);
      return {io_kind::again, 0, {}};
    }
    if (err == SSL_ERROR_ZERO_RETURN) return {io_kind::eof, 0, {}};
    unsigned long e = ERR_peek_error();
    if (err == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return {io_kind::eof_unclean, 0, {}};
    if (err == SSL_ERROR_SYSCALL && e == 0 && errno == 0) return {io_kind::eof_unclean, 0, {}};
    char msg[256] = "";
    if (e != 0) ERR_error_string_n(e, msg, sizeof msg);
    return {io_kind::error, 0, std::string("SSL_read: ") + (e != 0 ? msg : std::strerror(errno))};
  }
#endif
  for (;;) {
    ssize_t r = recv(c.fd, buf, len, 0);
    if (r > 0) return {io_kind::data, static_cast<std::size_t>(r), {}};
    if (r == 0) return {io_kind::eof, 0, {}};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {io_kind::again, 0, {}};
    return {io_kind::error, 0, std::string("recv: ") + std::strerror(errno)};
  }
}

io_result loadgen::write_some(conn& c, const void* buf, std::size_t len) {
#ifdef LOADGEN_TLS
  if (c.ssl != nullptr) {
    ERR_clear_error();
    // Partial writes and a moving buffer are enabled: a retry after WANT_WRITE passes the
    // same bytes (same stream offset) and at least as many of them.
    int r = SSL_write(c.ssl, buf, static_cast<int>(std::min<std::size_t>(len, 1 << 30)));
    if (r > 0) return {io_kind::data, static_cast<std::size_t>(r), {}};
    int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return {io_kind::again, 0, {}};
    unsigned long e = ERR_peek_error();
    char msg[256] = "";
    if (e != 0) ERR_error_string_n(e, msg, sizeof msg);
    return {io_kind::error, 0, std::string("SSL_write: ") + (e != 0 ? msg : std::strerror(errno))};
  }
#endif
  for (;;) {
    ssize_t w = send(c.fd, buf, len, MSG_NOSIGNAL);
    if (w >= 0) return {io_kind::data, static_cast<std::size_t>(w), {}};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {io_kind::again, 0, {}};
    return {io_kind::error, 0, std::string("send: ") + std::strerror(errno)};
  }
}

#ifdef LOADGEN_TLS
std::string tls_error(SSL* ssl, int r, const char* step) {
  std::string out = step;
  int err = SSL_get_error(ssl, r);
  unsigned long e = ERR_get_error();
  char msg[256] = "";
  if (e != 0) {
    ERR_error_string_n(e, msg, sizeof msg);
    out += msg;
  } else if (err == SSL_ERROR_SYSCALL) {
    out += errno != 0 ? std::strerror(errno) : "connection closed";
  } else {
    out += "SSL_get_error " + std::to_string(err);
  }
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) out += std::string(" (") + X509_verify_cert_error_string(v) + ")";
  return out;
}

bool loadgen::tls_setup() {
  tls_ctx_ = SSL_CTX_new(TLS_client_method());
  if (tls_ctx_ == nullptr) return false;
  SSL_CTX_set_min_proto_version(tls_ctx_, TLS1_2_VERSION);
  long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
  if (opt_.idle_connections > 0) mode |= SSL_MODE_RELEASE_BUFFERS;  // 10,000 idle clients
  SSL_CTX_set_mode(tls_ctx_, mode);
  if (opt_.idle_connections == 0) SSL_CTX_set_read_ahead(tls_ctx_, 1);  // fewer recv calls
  SSL_CTX_set_session_cache_mode(tls_ctx_, SSL_SESS_CACHE_OFF);         // every handshake is full
  if (!opt_.tls_ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(tls_ctx_, opt_.tls_ciphersuites.c_str()) != 1) {
    std::fprintf(stderr, "loadgen: bad --tls-ciphersuites %s\n", opt_.tls_ciphersuites.c_str());
    return false;
  }
  if (!opt_.ca.empty()) {
    if (SSL_CTX_load_verify_locations(tls_ctx_, opt_.ca.c_str(), nullptr) != 1) {
      std::fprintf(stderr, "loadgen: cannot load --ca %s\n", opt_.ca.c_str());
      return false;
    }
    SSL_CTX_set_verify(tls_ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(tls_ctx_, SSL_VERIFY_NONE, nullptr);
  }
  return true;
}

void loadgen::tls_new(conn& c) {
  c.ssl = SSL_new(tls_ctx_);
  SSL_set_fd(c.ssl, c.fd);
  SSL_set_connect_state(c.ssl);
  SSL_set_tlsext_host_name(c.ssl, opt_.tls_name.c_str());
  if (!opt_.ca.empty()) SSL_set1_host(c.ssl, opt_.tls_name.c_str());
}

// One step of c's handshake. Returns: 1 done (c waits for EPOLLIN), 0 in progress (c waits for
// what OpenSSL asked for), -1 failed (c is dead).
int loadgen::tls_step(conn& c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c.ssl);
  epoll_event ev{};
  ev.data.u32 = c.id;
  if (r == 1) {
    if (tls_version_.empty()) {
      tls_version_ = SSL_get_version(c.ssl);
      tls_cipher_ = SSL_get_cipher_name(c.ssl);
    }
    tls_resumed_ += SSL_session_reused(c.ssl) ? 1 : 0;
    // open_connections wakes the parked ones (events 0) at its end.
    ev.events = c.phase == 2 ? static_cast<std::uint32_t>(EPOLLIN) : 0u;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = false;
    return 1;
  }
  int err = SSL_get_error(c.ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    ev.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    return 0;
  }
  fail(c, err_.connect_failures, tls_error(c.ssl, r, "tls handshake: "));
  return -1;
}

// TLS client handshakes on the connected sockets first..last-1, all at once on the epoll set;
// a connection that fails or is not done within 30 s counts as a connect failure.
void loadgen::handshake(int first, int last) {
  std::vector<char> done(conns_.size(), 1);
  int pending = 0;
  for (int i = first; i < last; ++i) {
    conn& c = conns_[static_cast<std::size_t>(i)];
    if (c.dead) continue;
    tls_new(c);
    if (tls_step(c) == 0) {
      done[c.id] = 0;
      ++pending;
    }
  }
  std::vector<epoll_event> evs(1024);
  std::int64_t deadline = now_ns() + 30'000'000'000ll;
  while (pending > 0) {
    int left_ms = static_cast<int>((deadline - now_ns()) / 1'000'000);
    if (left_ms <= 0) break;
    int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), left_ms);
    for (int i = 0; i < k; ++i) {
      conn& c = conns_[evs[static_cast<std::size_t>(i)].data.u32];
      if (done[c.id] || c.dead) continue;
      if (tls_step(c) != 0) {
        done[c.id] = 1;
        --pending;
      }
    }
  }
  for (int i = first; i < last; ++i) {
    conn& c = conns_[static_cast<std::size_t>(i)];
    if (!done[c.id] && !c.dead) fail(c, err_.connect_failures, "tls handshake timed out");
  }
}
#else
bool loadgen::tls_setup() {
  std::fprintf(stderr, "loadgen: built without OpenSSL: no --tls\n");
  return false;
}
void loadgen::handshake(int, int) {}
void loadgen::tls_new(conn&) {}
int loadgen::tls_step(conn&) { return -1; }
#endif

// --reconnect: the response is in and the server closed: say goodbye and connect anew (a new
// TCP connection and, with --tls, a new SSL object: a full handshake, no session kept).
void loadgen::reconnect(conn& c) {
#ifdef LOADGEN_TLS
  if (c.ssl != nullptr) {
    ERR_clear_error();
    SSL_shutdown(c.ssl);
  }
#endif
  close_conn(c);
  c.rx_off = c.tx_off = c.queued = c.done = 0;
  c.head.clear();
  c.in_body = false;
  c.want_out = c.read_wants_write = false;
  c.connect_at = now_ns();
  c.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, err_.connect_failures, std::string("socket: ") + std::strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr_), addr_len_) < 0 && errno != EINPROGRESS) {
    fail(c, err_.connect_failures, std::string("connect: ") + std::strerror(errno));
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u32 = c.id;
  epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  c.phase = 1;
}

// --reconnect: the connect or the handshake of c made progress.
void loadgen::advance(conn& c) {
  if (c.phase == 1) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == EINPROGRESS) return;
    if (err != 0) {
      fail(c, err_.connect_failures, std::string("connect: ") + std::strerror(err));
      return;
    }
    if (tls_ctx_ != nullptr) {
      tls_new(c);
      c.phase = 2;
    } else {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = c.id;
      epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
      c.phase = 0;
      refill(c);
      return;
    }
  }
  int r = tls_step(c);
  if (r == 1) {
    c.phase = 0;
    refill(c);
  }
}

void loadgen::set_out(conn& c, bool on) {
  if (c.want_out == on) return;
  c.want_out = on;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u32 = c.id;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}

void loadgen::flush(conn& c) {
  std::uint64_t owed = c.queued * msg_size_ - c.tx_off;
  while (owed > 0) {
    const void* data;
    std::size_t len;
    if (opt_.http) {  // every request is the same: send from the repeated copy
      std::size_t pos = static_cast<std::size_t>(c.tx_off % msg_size_);
      data = requests_.data() + pos;
      len = static_cast<std::size_t>(std::min<std::uint64_t>(owed, requests_.size() - pos));
    } else {
      std::size_t pos = static_cast<std::size_t>((c.seed + c.tx_off) % pattern_period);
      data = pattern.data() + pos;
      len = static_cast<std::size_t>(std::min<std::uint64_t>(owed, max_chunk));
    }
    io_result w = write_some(c, data, len);
    if (w.kind == io_kind::again) {
      set_out(c, true);
      return;
    }
    if (w.kind != io_kind::data) {
      fail(c, err_.socket_errors, w.what);
      return;
    }
    c.tx_off += w.n;
    owed -= w.n;
  }
  set_out(c, c.read_wants_write);
}

// Queues as many messages as the mode allows, stamping each with its start time.
void loadgen::refill(conn& c) {
  auto depth = static_cast<std::uint64_t>(opt_.depth);
  std::uint64_t limit = c.done + depth;
  if (opt_.rate > 0) limit = std::min(limit, c.due);
  if (max_messages_ > 0) limit = std::min(limit, max_messages_);
  if (c.queued >= limit) return;
  std::int64_t now = now_ns();
  auto conns = static_cast<std::uint64_t>(opt_.connections);
  for (; c.queued < limit; ++c.queued) {
    std::size_t i = c.id * depth + c.queued % depth;
    sent_at_[i] = opt_.rate > 0    ? slot_time(c.id + c.queued * conns)
                  : opt_.reconnect ? c.connect_at
                                   : now;
    queued_at_[i] = now;
  }
  flush(c);
}

void loadgen::on_readable(conn& c) {
  if (opt_.http) {
    on_readable_http(c);
    return;
  }
  auto depth = static_cast<std::uint64_t>(opt_.depth);
  for (;;) {
    io_result r = read_some(c, rbuf_.data(), rbuf_.size());
    if (r.kind == io_kind::eof || r.kind == io_kind::eof_unclean) {
      if (draining_ && c.rx_off == c.tx_off) {  // the orderly end: every byte came back
        tls_unclean_closes_ += r.kind == io_kind::eof_unclean ? 1 : 0;
        close_conn(c);
        return;
      }
      fail(c, err_.eofs,
           std::string(draining_ ? "EOF before every byte was echoed" : "unexpected EOF") +
               (r.kind == io_kind::eof_unclean ? " (no close_notify)" : ""));
      return;
    }
    if (r.kind == io_kind::again) return;
    if (r.kind == io_kind::error) {
      fail(c, err_.socket_errors, r.what);
      return;
    }
    auto n = static_cast<std::uint64_t>(r.n);
    if (c.rx_off + n > c.tx_off) {
      fail(c, err_.mismatches,
           "received " + std::to_string(c.rx_off + n - c.tx_off) + " more bytes than were sent");
      return;
    }
    std::size_t pos = static_cast<std::size_t>((c.seed + c.rx_off) % pattern_period);
    if (std::memcmp(rbuf_.data(), pattern.data() + pos, static_cast<std::size_t>(n)) != 0) {
      std::uint64_t at = 0;
      while (at < n && rbuf_[at] == pattern[pos + at])
        ++at;
      c.rx_off += at;  // the report names the stream offset of the first wrong byte
      char what[96];
      std::snprintf(what, sizeof what, "echoed byte 0x%02x where 0x%02x was sent", rbuf_[at],
                    pattern[pos + at]);
      fail(c, err_.mismatches, what);
      return;
    }
    c.rx_off += n;
    std::int64_t now = now_ns();
    std::uint64_t finished = c.rx_off / opt_.size;
    for (; c.done < finished; ++c.done) {
      if (measuring_) {
        hist_.record(now - sent_at_[c.id * depth + c.done % depth]);
        ++completed_;
        bytes_ += opt_.size;
      }
    }
    if (!draining_) refill(c);
    if (c.dead || c.fd < 0) return;
    // A short read drained the socket; TLS reads until WANT_READ (records may wait in OpenSSL).
    if (c.ssl == nullptr && r.n < rbuf_.size()) return;
  }
}

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

std::string printable(std::string_view v) {
  std::string out;
  for (char ch : v.substr(0, 80))
    out += (ch >= 32 && ch < 127) ? ch : '?';
  return out;
}

// Checks one response header block (status line through the empty line) and sets up the body.
bool loadgen::parse_head(conn& c, std::string_view head) {
  std::size_t eol = head.find("\r\n");
  std::string_view status = head.substr(0, eol);
  if (!(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200")) ||
      (status.size() > 12 && status[12] != ' ')) {
    fail(c, err_.bad_responses, "status line \"" + printable(status) + "\", expected 200");
    return false;
  }
  long long length = -1;
  std::size_t at = eol + 2;
  while (at < head.size()) {
    std::size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos || end == at) break;  // the empty line ends the block
    std::string_view line = head.substr(at, end - at);
    at = end + 2;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      fail(c, err_.bad_responses, "header line without a colon: " + printable(line));
      return false;
    }
    std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (ieq(name, "transfer-encoding")) {
      fail(c, err_.bad_responses,
           "Transfer-Encoding in a response (only Content-Length is "
           "supported)");
      return false;
    }
    if (!ieq(name, "content-length")) continue;
    long long v = 0;
    bool ok = !value.empty() && value.size() <= 15;
    for (char ch : value) {
      ok = ok && ch >= '0' && ch <= '9';
      v = v * 10 + (ch - '0');
    }
    if (!ok || (length >= 0 && v != length)) {
      fail(c, err_.bad_responses, "bad or conflicting Content-Length: " + printable(value));
      return false;
    }
    length = v;
  }
  if (length < 0) {
    fail(c, err_.bad_responses, "response without Content-Length");
    return false;
  }
  long long want =
      opt_.have_expect_body ? static_cast<long long>(opt_.expect_body.size()) : opt_.expect_length;
  if (want >= 0 && length != want) {
    fail(c, err_.bad_responses,
         "Content-Length " + std::to_string(length) + ", expected " + std::to_string(want));
    return false;
  }
  c.in_body = true;
  c.body_left = static_cast<std::uint64_t>(length);
  c.body_off = 0;
  c.resp_bytes = head.size() + static_cast<std::uint64_t>(length);
  return true;
}

void loadgen::response_done(conn& c, std::int64_t now) {
  c.in_body = false;
  if (measuring_) {
    auto depth = static_cast<std::uint64_t>(opt_.depth);
    hist_.record(now - sent_at_[c.id * depth + c.done % depth]);
    ++completed_;
    bytes_ += c.resp_bytes;
  }
  ++c.done;
}

// Consumes n response bytes; returns false once the connection has failed.
bool loadgen::on_http_bytes(conn& c, const char* p, std::size_t n, std::int64_t now) {
  constexpr std::size_t max_head = 16 * 1024;
  while (n > 0) {
    if (!c.in_body) {
      if (c.done >= c.queued) {
        fail(c, err_.bad_responses, "response bytes with no request outstanding");
        return false;
      }
      std::size_t used;      // bytes of p that belong to the header block
      if (c.head.empty()) {  // fast path: the whole header block is in this read
        const void* e = memmem(p, n, "\r\n\r\n", 4);
        if (e == nullptr) {
          c.head.assign(p, std::min(n, max_head + 1));
          used = n;
        } else {
          used = static_cast<std::size_t>(static_cast<const char*>(e) - p) + 4;
          if (!parse_head(c, std::string_view(p, used))) return false;
        }
      } else {  // the header block was split across reads
        std::size_t old = c.head.size();
        c.head.append(p, std::min(n, max_head + 1));
        std::size_t e = c.head.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
        if (e == std::string::npos) {
          used = n;
        } else {
          used = e + 4 - old;
          c.head.resize(e + 4);
          if (!parse_head(c, c.head)) return false;
          c.head.clear();
        }
      }
      if (c.head.size() > max_head) {
        fail(c, err_.bad_responses, "response header block over 16 KiB");
        return false;
      }
      p += used;
      n -= used;
      if (!c.in_body) continue;  // header block still incomplete (n is 0 now)
      if (c.body_left == 0) {
        response_done(c, now);
        continue;
      }
    }
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, c.body_left));
    if (opt_.have_expect_body && std::memcmp(p, opt_.expect_body.data() + c.body_off, k) != 0) {
      std::size_t at = 0;
      while (p[at] == opt_.expect_body[c.body_off + at])
        ++at;
      fail(c, err_.bad_responses,
           "body differs from --expect-body at byte " + std::to_string(c.body_off + at));
      return false;
    }
    c.body_off += k;
    c.body_left -= k;
    p += k;
    n -= k;
    if (c.body_left == 0) response_done(c, now);
  }
  return true;
}

void loadgen::on_readable_http(conn& c) {
  for (;;) {
    io_result r = read_some(c, rbuf_.data(), rbuf_.size());
    if (r.kind == io_kind::eof || r.kind == io_kind::eof_unclean) {
      if (opt_.reconnect && !draining_ && c.queued > 0 && c.done == c.queued && !c.in_body &&
          c.head.empty()) {  // the answer to "Connection: close" is in: the next connection
        reconnect(c);
        return;
      }
      // The orderly end: every request answered, no response half-read.
      if (draining_ && c.done == c.queued && !c.in_body && c.head.empty()) {
        tls_unclean_closes_ += r.kind == io_kind::eof_unclean ? 1 : 0;
        close_conn(c);
        return;
      }
      fail(c, err_.eofs,
           std::string(draining_ ? "EOF before every request was answered" : "unexpected EOF") +
               (r.kind == io_kind::eof_unclean ? " (no close_notify)" : ""));
      return;
    }
    if (r.kind == io_kind::again) return;
    if (r.kind == io_kind::error) {
      fail(c, err_.socket_errors, r.what);
      return;
    }
    c.rx_off += r.n;
    if (!on_http_bytes(c, reinterpret_cast<const char*>(rbuf_.data()), r.n, now_ns())) return;
    if (!draining_) refill(c);
    if (c.dead || c.fd < 0) return;
    if (c.ssl == nullptr && r.n < rbuf_.size()) return;  // short read: socket drained
  }
}

cpu_sample loadgen::sample() const {
  cpu_sample s;
  s.wall = now_ns();
  s.self = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  if (opt_.server_pid > 0) {
    if (have_server_clock_) s.server = clock_ns(server_clock_);
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(opt_.server_pid));
    if (FILE* f = std::fopen(path, "r")) {
      char buf[4096];
      std::size_t len = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      buf[len] = 0;
      // Fields after the ")" that ends comm: state(3) ... utime(14) stime(15).
      if (char* p = std::strrchr(buf, ')')) {
        unsigned long long ut = 0, st = 0;
        if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) ==
            2)
          s.ticks = static_cast<std::int64_t>(ut + st);
      }
    }
  }
  return s;
}

void loadgen::close_all() {
  for (conn& c : conns_)
    close_conn(c);
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Ends every connection the polite way: shutdown(SHUT_WR), read (and verify) the echoes still
// in flight, and wait up to 1 s for the server's EOF. Closing with unread data would make the
// kernel send RST, and the servers would log a reset for every connection.
void loadgen::drain() {
  draining_ = true;
  std::size_t open = 0;
  for (conn& c : conns_) {
    if (c.dead || c.fd < 0) continue;
#ifdef LOADGEN_TLS
    if (c.ssl != nullptr) {  // close_notify first; echoes still in flight can be read after it
      ERR_clear_error();
      SSL_shutdown(c.ssl);
    }
#endif
    shutdown(c.fd, SHUT_WR);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = c.id;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    ++open;
  }
  std::vector<epoll_event> evs(1024);
  const std::int64_t deadline = now_ns() + 1'000'000'000;
  while (open > 0) {
    std::int64_t left = (deadline - now_ns()) / 1'000'000;
    if (left <= 0) break;
    int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), static_cast<int>(left));
    for (int i = 0; i < k; ++i) {
      std::uint32_t id = evs[static_cast<std::size_t>(i)].data.u32;
      if (id >= conns_.size()) continue;  // not a connection (idle mode's stdin watch)
      conn& c = conns_[id];
      if (c.dead || c.fd < 0) continue;
      on_readable(c);
      if (c.dead || c.fd < 0) --open;
    }
  }
}

void loadgen::setup_http() {
  if (opt_.http) {
    std::string host = opt_.host_header;
    if (host.empty()) {
      bool v6 = opt_.host.find(':') != std::string::npos;
      host = (v6 ? "[" + opt_.host + "]" : opt_.host) + ":" + std::to_string(opt_.port);
    }
    request_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + host + "\r\n" +
               (opt_.reconnect ? "Connection: close\r\n" : "") + "\r\n";
    msg_size_ = request_.size();
    std::size_t copies =
        std::clamp<std::size_t>(64 * 1024 / msg_size_, 1, static_cast<std::size_t>(opt_.depth));
    for (std::size_t i = 0; i < copies; ++i)
      requests_ += request_;
  }
}

int loadgen::run() {
  if (!resolve()) return 2;
  if (opt_.tls && !tls_setup()) return 2;
  setup_http();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (opt_.server_pid > 0)
    have_server_clock_ = clock_getcpuclockid(opt_.server_pid, &server_clock_) == 0;
  if (opt_.reconnect) max_messages_ = 1;  // per connection: counts restart on reconnect
  const std::int64_t setup_from = now_ns();
  open_connections(opt_.connections);
  // Connection setup (and, with --warmup, the server's accepts) stays out of the window.
  const double setup_s = static_cast<double>(now_ns() - setup_from) / 1e9;
  sent_at_.assign(conns_.size() * static_cast<std::size_t>(opt_.depth), 0);
  queued_at_ = sent_at_;
  for (conn& c : conns_)
    c.connect_at = now_ns();  // the first connections' latency runs from here

  t0_ = now_ns();
  slot_ns_ = opt_.rate > 0 ? 1e9 / opt_.rate : 0;
  spin_ns_ = static_cast<std::int64_t>(opt_.spin_us * 1e3);
  const std::int64_t measure_from = t0_ + static_cast<std::int64_t>(opt_.warmup * 1e9);
  const std::int64_t measure_to = measure_from + static_cast<std::int64_t>(opt_.duration * 1e9);
  std::uint64_t next_slot = 0;
  cpu_sample start{}, end{};
  // Live connections with no round trip done when the window opened: a warm-up too short for
  // the server to accept every connection and answer it once (should be 0).
  int cold = 0;

  if (opt_.rate <= 0)
    for (conn& c : conns_)
      if (!c.dead) refill(c);

  std::vector<epoll_event> evs(1024);
  for (;;) {
    std::int64_t now = now_ns();
    if (!measuring_ && now >= measure_from && start.wall == 0) {
      start = sample();
      measuring_ = true;
      for (const conn& c : conns_)
        cold += (!c.dead && c.done == 0 && !opt_.reconnect) ? 1 : 0;
    }
    if (now >= measure_to) break;
    std::int64_t wake = measuring_ ? measure_to : measure_from;
    if (opt_.rate > 0) wake = std::min(wake, slot_time(next_slot));
    std::int64_t wait = std::max<std::int64_t>(0, wake - now);
    // TRICKY: a sleep per send slot costs a timer interrupt and a wake-up (both VM exits under
    // KVM, ~10 µs here), which made loadgen itself the bottleneck at 60k slots/s. Within
    // --spin-us of the next slot we poll instead; loadgen owns its CPU, so only its own CPU
    // figure grows (loadgen_cpu_us_per_rt is then mostly polling).
    // sched_yield lets ksoftirqd (loopback TCP work deferred to this CPU) run between polls.
    if (opt_.rate > 0 && wait < spin_ns_) {
      wait = 0;
      sched_yield();
    }
    timespec ts{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
    int k = epoll_pwait2(ep_, evs.data(), static_cast<int>(evs.size()), &ts, nullptr);
    if (k < 0 && errno != EINTR) {
      std::perror("epoll_pwait2");
      return 2;
    }
    for (int i = 0; i < k; ++i) {
      conn& c = conns_[evs[static_cast<std::size_t>(i)].data.u32];
      if (c.dead) continue;
      std::uint32_t e = evs[static_cast<std::size_t>(i)].events;
      on_event(c, e);
    }
    if (opt_.rate > 0) {
      now = now_ns();
      auto nconns = static_cast<std::uint64_t>(opt_.connections);
      // Late wake-ups send every overdue slot at once; their latency still counts from the slot.
      while (slot_time(next_slot) <= now) {
        conn& c = conns_[next_slot % nconns];
        ++next_slot;
        if (c.dead) continue;
        ++c.due;
        refill(c);
      }
    }
  }
  end = sample();
  measuring_ = false;

  // Anything outstanding for longer than --timeout is a lost echo.
  std::uint64_t incomplete = 0;
  auto depth = static_cast<std::uint64_t>(opt_.depth);
  const auto timeout_ns = static_cast<std::int64_t>(opt_.timeout * 1e9);
  for (conn& c : conns_) {
    if (c.dead) continue;
    if (c.phase != 0) {  // --reconnect: between connections
      if (end.wall - c.connect_at > timeout_ns)
        fail(c, err_.timeouts, "connect and handshake not done within --timeout");
      else
        close_conn(c);
      continue;
    }
    if (opt_.rate > 0) {
      // Scheduled inside the window but not echoed by its end (sent late or still in flight).
      std::uint64_t nconns = conns_.size();
      for (std::uint64_t j = c.done; j < c.due; ++j)
        if (slot_time(c.id + j * nconns) >= start.wall) ++incomplete;
    }
    // Measured from when the message was really queued: in open loop a message can be
    // scheduled long ago (server overloaded) yet sent just now; that is lateness, not loss.
    if (c.queued > c.done && end.wall - queued_at_[c.id * depth + c.done % depth] > timeout_ns)
      fail(c, err_.timeouts,
           (opt_.http ? "request " : "message ") + std::to_string(c.done) +
               (opt_.http ? " not answered within --timeout" : " not echoed within --timeout"));
  }
  int alive = 0;
  for (const conn& c : conns_)
    alive += c.dead ? 0 : 1;
  if (completed_ == 0 && alive > 0) {  // e.g. a server that swallows everything in a short run
    ++err_.timeouts;
    std::fprintf(stderr, "loadgen: no round trip completed in the measured interval\n");
  }
  drain();
  close_all();

  double secs = static_cast<double>(end.wall - start.wall) / 1e9;
  double rts = secs > 0 ? static_cast<double>(completed_) / secs : 0;
  double per_rt = completed_ > 0 ? 1e-3 / static_cast<double>(completed_) : 0;  // ns -> µs/rt
  double self_us = static_cast<double>(end.self - start.self) * per_rt;
  double server_us = -1, server_ticks_us = -1;
  if (start.server >= 0 && end.server >= 0)
    server_us = static_cast<double>(end.server - start.server) * per_rt;
  if (start.ticks >= 0 && end.ticks >= 0)
    server_ticks_us = static_cast<double>(end.ticks - start.ticks) * 1e9 /
                      static_cast<double>(sysconf(_SC_CLK_TCK)) * per_rt;
  double p50 = hist_.quantile(0.50) / 1e3, p90 = hist_.quantile(0.90) / 1e3;
  double p99 = hist_.quantile(0.99) / 1e3, p999 = hist_.quantile(0.999) / 1e3;
  double maxl = static_cast<double>(hist_.max()) / 1e3;
  std::uint64_t errors = err_.total();

  if (opt_.json) {
    std::printf(
        "{\"mode\": \"%s\", \"connections\": %d, \"alive\": %d, \"size\": %zu, \"depth\": %d, "
        "\"rate\": %.0f, "
        "\"duration_s\": %.6f, \"round_trips\": %" PRIu64
        ", \"rt_per_s\": %.1f, "
        "\"bytes_per_s\": %.0f, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
        "\"p999_us\": %.2f, \"max_us\": %.2f, \"incomplete\": %" PRIu64 ", \"errors\": %" PRIu64
        ", \"mismatches\": %" PRIu64 ", \"eofs\": %" PRIu64 ", \"socket_errors\": %" PRIu64
        ", \"connect_failures\": %" PRIu64 ", \"timeouts\": %" PRIu64
        ", \"bad_responses\": %" PRIu64
        ", \"server_pid\": %d, \"server_cpu_us_per_rt\": %s, \"server_cpu_ticks_us_per_rt\": %s, "
        "\"server_cpu_util\": %s, \"loadgen_cpu_us_per_rt\": %.3f, \"tls\": %s, "
        "\"tls_version\": %s, \"tls_cipher\": %s, \"tls_unclean_closes\": %" PRIu64
        ", \"tls_resumed\": %" PRIu64
        ", \"reconnect\": %s, \"setup_s\": %.3f"
        ", \"cold_connections\": %d}\n",
        opt_.http ? "http" : "echo", opt_.connections, alive, msg_size_, opt_.depth, opt_.rate,
        secs, completed_, rts, static_cast<double>(bytes_) / (secs > 0 ? secs : 1), p50, p90, p99,
        p999, maxl, incomplete, errors, err_.mismatches, err_.eofs, err_.socket_errors,
        err_.connect_failures, err_.timeouts, err_.bad_responses, static_cast<int>(opt_.server_pid),
        server_us >= 0 ? fmt("%.3f", server_us).c_str() : "null",
        server_ticks_us >= 0 ? fmt("%.3f", server_ticks_us).c_str() : "null",
        server_us >= 0
            ? fmt("%.4f", server_us * static_cast<double>(completed_) / 1e6 / secs).c_str()
            : "null",
        self_us, opt_.tls ? "true" : "false",
        tls_version_.empty() ? "null" : ("\"" + tls_version_ + "\"").c_str(),
        tls_cipher_.empty() ? "null" : ("\"" + tls_cipher_ + "\"").c_str(), tls_unclean_closes_,
        tls_resumed_, opt_.reconnect ? "true" : "false", setup_s, cold);
  } else {
    const char* unit = opt_.http ? "req" : "rt";
    std::printf("%.0f %s/s  p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us  errors %" PRIu64,
                rts, unit, p50, p99, p999, maxl, errors);
    if (server_us >= 0) std::printf("  server %.2f us/%s", server_us, unit);
    std::printf("  loadgen %.2f us/%s  (c%d s%zu d%d", self_us, unit, opt_.connections, msg_size_,
                opt_.depth);
    if (opt_.rate > 0) std::printf(" rate %.0f, %" PRIu64 " incomplete", opt_.rate, incomplete);
    if (opt_.tls) std::printf(", %s %s", tls_version_.c_str(), tls_cipher_.c_str());
    std::printf(", %.2f s, setup %.2f s, %d cold)\n", secs, setup_s, cold);
  }
  std::fflush(stdout);
  return errors == 0 ? 0 : 1;
}

volatile sig_atomic_t hold_interrupted = 0;
void on_hold_signal(int) { hold_interrupted = 1; }

// Opens N connections, echoes one message on each (verified), reports "ready N" on stdout and
// holds them for --hold seconds (or until SIGINT/SIGTERM/stdin EOF).
int loadgen::run_idle() {
  if (!resolve()) return 2;
  if (opt_.tls && !tls_setup()) return 2;
  setup_http();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  opt_.connections = opt_.idle_connections;
  opt_.depth = 1;
  max_messages_ = 1;  // one echo each, then silence
  open_connections(opt_.idle_connections);
  sent_at_.assign(conns_.size(), 0);
  queued_at_ = sent_at_;
  for (conn& c : conns_)
    if (!c.dead) refill(c);
  std::vector<epoll_event> evs(1024);
  std::int64_t deadline =
      now_ns() + static_cast<std::int64_t>(opt_.timeout * 1e9) + 10'000'000'000ll;
  for (;;) {
    std::size_t waiting = 0;
    for (const conn& c : conns_)
      waiting += (!c.dead && c.done == 0) ? 1 : 0;
    if (waiting == 0 || now_ns() > deadline) break;
    int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), 100);
    for (int i = 0; i < k; ++i) {
      conn& c = conns_[evs[static_cast<std::size_t>(i)].data.u32];
      if (c.dead) continue;
      std::uint32_t e = evs[static_cast<std::size_t>(i)].events;
      on_event(c, e);
    }
  }
  int echoed = 0;
  for (conn& c : conns_) {
    if (c.dead) continue;
    if (c.done == 0)
      fail(c, err_.timeouts, "no echo");
    else
      ++echoed;
  }
  std::printf("ready %d\n", echoed);
  std::fflush(stdout);
  struct sigaction sa {};
  sa.sa_handler = on_hold_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // Hold: watch the connections (a server that drops them is an error) and stdin (EOF = done).
  epoll_event sev{};
  sev.events = EPOLLIN;
  sev.data.u32 = UINT32_MAX;
  bool watch_stdin = epoll_ctl(ep_, EPOLL_CTL_ADD, STDIN_FILENO, &sev) == 0;
  std::int64_t until = now_ns() + static_cast<std::int64_t>(opt_.hold * 1e9);
  while (!hold_interrupted) {
    std::int64_t left = (until - now_ns()) / 1'000'000;
    if (left <= 0) break;
    int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()),
                       static_cast<int>(std::min<std::int64_t>(left, 1000)));
    bool stop = false;
    for (int i = 0; i < k; ++i) {
      std::uint32_t id = evs[static_cast<std::size_t>(i)].data.u32;
      if (id == UINT32_MAX) {
        char b[256];
        if (read(STDIN_FILENO, b, sizeof b) <= 0) stop = true;
        continue;
      }
      if (!conns_[id].dead) on_readable(conns_[id]);
    }
    if (stop || (k < 0 && errno != EINTR)) break;
  }
  if (watch_stdin) epoll_ctl(ep_, EPOLL_CTL_DEL, STDIN_FILENO, nullptr);
  drain();
  close_all();
  std::uint64_t errors = err_.total();
  if (opt_.json)
    std::printf("{\"idle_connections\": %d, \"echoed\": %d, \"errors\": %" PRIu64
                ", \"tls_version\": \"%s\", \"tls_cipher\": \"%s\"}\n",
                opt_.idle_connections, echoed, errors, tls_version_.c_str(), tls_cipher_.c_str());
  else
    std::printf("idle: %d connections, %d echoed, errors %" PRIu64 "\n", opt_.idle_connections,
                echoed, errors);
  std::fflush(stdout);
  return errors == 0 ? 0 : 1;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "loadgen: %s\n"
      "usage: loadgen --host 127.0.0.1 --port N [--connections C] [--size S] [--depth D]\n"
      "               [--duration SEC] [--rate R] [--warmup SEC] [--server-pid PID]\n"
      "               [--timeout SEC] [--spin-us US] [--json]\n"
      "               [--http [--path /x] [--host-header H] [--expect-body STR]\n"
      "                [--expect-body-file FILE] [--expect-length N] [--reconnect]]\n"
      "       loadgen --host 127.0.0.1 --port N --idle-connections N [--hold SEC] [--http]\n"
      "       any of these with --tls [--ca FILE] [--tls-name NAME]\n"
      "                                [--tls-ciphersuites LIST]\n",
      why);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (a == "--json")
      o.json = true;
    else if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = std::atoi(value());
    else if (a == "--connections")
      o.connections = std::atoi(value());
    else if (a == "--size")
      o.size = std::strtoull(value(), nullptr, 10);
    else if (a == "--depth")
      o.depth = std::atoi(value());
    else if (a == "--duration")
      o.duration = std::atof(value());
    else if (a == "--warmup")
      o.warmup = std::atof(value());
    else if (a == "--rate")
      o.rate = std::atof(value());
    else if (a == "--timeout")
      o.timeout = std::atof(value());
    else if (a == "--spin-us")
      o.spin_us = std::atof(value());
    else if (a == "--server-pid")
      o.server_pid = static_cast<pid_t>(std::atoi(value()));
    else if (a == "--idle-connections")
      o.idle_connections = std::atoi(value());
    else if (a == "--hold")
      o.hold = std::atof(value());
    else if (a == "--http")
      o.http = true;
    else if (a == "--path")
      o.path = value();
    else if (a == "--host-header")
      o.host_header = value();
    else if (a == "--expect-body") {
      o.expect_body = value();
      o.have_expect_body = true;
    } else if (a == "--expect-body-file") {
      const char* path = value();
      FILE* f = std::fopen(path, "rb");
      if (f == nullptr) usage((std::string("cannot open ") + path).c_str());
      o.expect_body.clear();
      char buf[65536];
      for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
        o.expect_body.append(buf, n);
      std::fclose(f);
      o.have_expect_body = true;
    } else if (a == "--expect-length")
      o.expect_length = std::atoll(value());
    else if (a == "--tls")
      o.tls = true;
    else if (a == "--reconnect")
      o.reconnect = true;
    else if (a == "--ca")
      o.ca = value();
    else if (a == "--tls-name")
      o.tls_name = value();
    else if (a == "--tls-ciphersuites")
      o.tls_ciphersuites = value();
    else
      usage(("unknown argument " + std::string(a)).c_str());
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required");
  if (o.connections < 1 || o.depth < 1 || o.size < 1 || o.duration <= 0 || o.warmup < 0 ||
      o.rate < 0 || o.idle_connections < 0)
    usage("bad value");
  if (o.reconnect && (!o.http || o.rate > 0 || o.depth != 1 || o.idle_connections > 0))
    usage("--reconnect needs --http, closed loop (no --rate), --depth 1");
  if (!o.tls && (!o.ca.empty() || !o.tls_ciphersuites.empty()))
    usage("--ca and --tls-ciphersuites need --tls");
  if (!o.http &&
      (o.have_expect_body || o.expect_length >= 0 || o.path != "/" || !o.host_header.empty()))
    usage("--path, --host-header, --expect-body and --expect-length need --http");
  if (o.path.empty() || o.path[0] != '/' || o.path.find_first_of(" \r\n") != std::string::npos ||
      o.host_header.find_first_of("\r\n") != std::string::npos)
    usage("--path must start with / and have no spaces; no line breaks in --host-header");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_TIMERSLACK, 1UL);  // default 50 µs slack would blur the send schedule
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  make_pattern();
  loadgen g(o);
  return o.idle_connections > 0 ? g.run_idle() : g.run();
}
