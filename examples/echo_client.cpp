// SPDX-License-Identifier: MIT
// Description: echo client: interactive (stdin lines) or a scripted, verified load run, over TCP
// or TLS (--tls: the server's certificate verified).
#include <coring/coring.hpp>
#if CORING_HAS_TLS
#include <coring/tls.hpp>
#endif

#include "client_io.hpp"
#include "example_util.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

const char* usage =
    "usage: echo_client [--host ADDR] [--port N] [--connections N --count M --size S]\n"
    "                   [--timeout SECONDS] [--tls [--ca FILE] [--tls-host NAME] [--insecure]]\n"
    "  Without --connections: sends each stdin line and prints the reply (its bytes as they\n"
    "  came, NULs included); exits 0 at EOF on stdin. If the server closes before a line's\n"
    "  whole echo came back, prints the part that came and exits 1.\n"
    "  With --connections N: N concurrent connections each send M messages of S bytes,\n"
    "  verify every echoed byte and print a summary; exit status 1 on any error.\n"
    "  --timeout SECONDS: waiting that long to connect, to send or for an echo fails (exit 1\n"
    "  in interactive mode; a server that is silent or lost bytes would otherwise be waited\n"
    "  for forever); default 30, 0 for no limit. A closed stdout is an error (exit 1).\n"
    "  --tls speaks TLS (1.2 or 1.3) and verifies the server's certificate chain against the\n"
    "  system's trust store (--ca FILE: against that CA instead; implies --tls) and its name\n"
    "  against --tls-host (default: --host). --insecure skips the verification (implies --tls).\n"
    "  A rejected certificate fails the connection with OpenSSL's words (exit 1). Each\n"
    "  connection ends with close_notify and waits for the server's.\n";

struct totals {
  std::size_t done = 0, failed = 0, bytes = 0, mismatches = 0;
};

// splitmix64's output function: a bijection on 64-bit words that scatters every input bit.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// The bytes at stream offsets [offset, offset + out.size()) of connection c. Each 8-byte word is
// a hash of (connection, word index), so no stretch of a stream repeats elsewhere in it or in
// another stream: a server mixing up streams, dropping, duplicating or reordering bytes is caught.
// (A pattern with a short period, such as (c * 131 + i) & 0xff, misses a reorder of whole periods,
// e.g. two 4 KiB buffers sent in the wrong order, and cannot tell connections c and c + 256 apart.)
void fill_pattern(std::span<std::byte> out, std::size_t c, std::size_t offset) {
  const std::uint64_t stream = mix(c);
  std::uint64_t word = 0;
  for (std::size_t k = 0; k < out.size(); ++k) {
    const std::size_t i = offset + k;
    if (k == 0 || i % 8 == 0) word = mix(stream ^ (i / 8));
    out[k] = static_cast<std::byte>(word >> (8 * (i % 8)));
  }
}

// The end of a plain connection: shutdown(SHUT_WR) (the server sees EOF).
coring::task<> finish(coring::socket& s, std::chrono::nanoseconds) {
  s.shutdown(SHUT_WR);
  co_return;
}

// The end of an interactive session: the socket closed.
coring::task<> hang_up(coring::socket& s, std::chrono::nanoseconds) { co_await s.close(); }

#if CORING_HAS_TLS
/// What the TLS connections share: the context (trust store, verification) and the name the
/// server's certificate must carry.
struct tls_client {
  coring::tls::context ctx;
  std::string host;
};

// The end of a TLS connection: our close_notify (the server answers with its own).
coring::task<> finish(coring::tls::stream& t, std::chrono::nanoseconds timeout) {
  auto bye = example::bounded(t.shutdown(), timeout);  // named: g++ 12
  co_await std::move(bye);
}

// The end of an interactive TLS session: close_notify; the socket closes with the stream.
coring::task<> hang_up(coring::tls::stream& t, std::chrono::nanoseconds timeout) {
  co_await finish(t, timeout);
}
#else
struct tls_client {};
#endif

// The verified load over one connection (a socket, or a TLS stream after its handshake): count
// messages of size bytes, each echo checked, then the end (finish) and a check that nothing
// more comes.
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<> exchange(Stream& s, std::size_t id, std::size_t count,
                                                    std::size_t size,
                                                    std::chrono::nanoseconds timeout, totals& t) {
  std::vector<std::byte> out(size), in(size);
  std::size_t offset = 0;
  for (std::size_t m = 0; m < count; ++m) {
    fill_pattern(out, id, offset);
    auto tx = s.send_all(out);  // named: no temporary in the co_await (g++ 12)
    co_await std::move(tx);
    std::size_t got = 0;
    while (got < size) {
      // Bounded by --timeout if given: a lost byte would otherwise stall us forever.
      auto rx = s.recv(std::span(in).subspan(got));  // named: no temporary in the co_await
      if (timeout.count() > 0) std::move(rx).with_timeout(timeout);
      std::size_t n = co_await std::move(rx);
      if (n == 0)
        throw std::system_error(make_error_code(std::errc::connection_aborted),
                                "server closed early");
      got += n;
    }
    bool same = true;
    for (std::size_t i = 0; i < size && same; ++i)
      if (in[i] != out[i]) {
        same = false;
        if (t.mismatches < 5)
          std::fprintf(stderr,
                       "connection %zu: mismatch at byte %zu of the stream (message %zu): "
                       "got 0x%02x, expected 0x%02x\n",
                       id, offset + i, m, static_cast<unsigned>(in[i]),
                       static_cast<unsigned>(out[i]));
      }
    if (same)
      t.bytes += size;  // only bytes that came back intact count as verified
    else
      ++t.mismatches;
    offset += size;
  }
  co_await finish(s, timeout);
  std::byte extra[1];
  auto rx = s.recv(extra);
  if (timeout.count() > 0) std::move(rx).with_timeout(timeout);
  std::size_t more = co_await std::move(rx);
  if (more != 0) {  // the server must not send more
    if (t.mismatches < 5)
      std::fprintf(stderr, "connection %zu: extra bytes after the %zu echoed\n", id, offset);
    ++t.mismatches;
  }
  ++t.done;
}

coring::task<> load_one(coring::io_context& ctx, coring::address server, std::size_t id,
                        std::size_t count, std::size_t size, std::chrono::nanoseconds timeout,
                        totals& t, const tls_client* tls) {
  try {
    coring::socket s = co_await coring::tcp_connect(ctx, server);
#if CORING_HAS_TLS
    if (tls) {
      coring::tls::stream ts(tls->ctx, std::move(s), tls->host);
      auto hs = example::bounded(ts.handshake(), timeout);  // named: g++ 12
      co_await std::move(hs);
      co_await exchange(ts, id, count, size, timeout, t);
      co_return;
    }
#else
    (void)tls;
#endif
    co_await exchange(s, id, count, size, timeout, t);
  } catch (const std::system_error& e) {
    if (t.failed++ < 5) std::fprintf(stderr, "connection %zu: %s\n", id, e.what());
  }
}

// Sends each stdin line over s and prints its echo. Every wait for the server is bounded by
// timeout (0: none). Returns: the exit status (1 if the server closed before a whole echo came
// back). Throws: std::system_error (timed_out after timeout; "stdout" if stdout is gone).
template <class Stream>
CORING_NO_SANITIZE_FUNCTION coring::task<int> talk(Stream& s, std::chrono::nanoseconds timeout) {
  std::string line;
  std::string reply;
  std::array<std::byte, 4096> buf;
  // Reading stdin blocks the ring's thread; fine for a one-connection interactive client.
  while (std::getline(std::cin, line)) {
    line += '\n';
    auto tx = example::bounded(s.send_all(line), timeout);  // named: g++ 12
    co_await std::move(tx);
    reply.clear();
    while (reply.size() < line.size()) {
      auto rx = example::bounded(s.recv(buf), timeout);
      std::size_t n = co_await std::move(rx);
      if (n == 0) {
        example::write_stdout(reply);  // what did come back is shown, not dropped
        std::fprintf(stderr,
                     "echo_client: the server closed the connection after %zu of the %zu bytes "
                     "of the echo\n",
                     reply.size(), line.size());
        co_return 1;
      }
      reply.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    example::write_stdout(reply);  // bytes, not a C string: a NUL does not end the line
  }
  co_await hang_up(s, timeout);
  co_return 0;
}

// The interactive mode: connects (and with tls, handshakes), then talk().
coring::task<int> interactive(coring::io_context& ctx, coring::address server,
                              std::chrono::nanoseconds timeout, const tls_client* tls) {
  coring::socket s = co_await example::tcp_connect(ctx, server, timeout);
#if CORING_HAS_TLS
  if (tls) {
    coring::tls::stream ts(tls->ctx, std::move(s), tls->host);
    auto hs = example::bounded(ts.handshake(), timeout);  // named: g++ 12
    co_await std::move(hs);
    co_return co_await talk(ts, timeout);
  }
#else
  (void)tls;
#endif
  co_return co_await talk(s, timeout);
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  example::args args(argc, argv, usage);
  std::string host = args.get("--host", "127.0.0.1");
  auto port = static_cast<std::uint16_t>(args.get_int("--port", 9000, 1, 65535));
  auto conns = static_cast<std::size_t>(args.get_int("--connections", 0, 0, 100000));
  auto count = static_cast<std::size_t>(args.get_int("--count", 10, 1, 1000000000));
  auto size = static_cast<std::size_t>(args.get_int("--size", 64, 1, 64 << 20));
  std::chrono::nanoseconds timeout = example::seconds(args.get_double("--timeout", 30, 0, 86400));
  const std::string ca = args.get("--ca", "");
  const bool tls_flag = args.flag("--tls");
  const std::string tls_host = args.get("--tls-host", host);
  const bool insecure = args.flag("--insecure");
  const bool use_tls = tls_flag || !ca.empty() || insecure;  // --ca and --insecure imply --tls
  args.done();
#if !CORING_HAS_TLS
  if (use_tls) {
    std::fprintf(stderr,
                 "echo_client: built without TLS: --tls, --ca and --insecure are not "
                 "available\n");
    return 2;
  }
#endif
  example::raise_fd_limit();
  try {
    coring::io_context ctx;
    coring::address server = coring::address::ip(host, port);
    std::optional<tls_client> tls;
#if CORING_HAS_TLS
    if (use_tls) {
      coring::tls::context_options tls_options;
      tls_options.ca_file = ca;
      tls_options.verify_peer = !insecure;  // --insecure: the explicit opt-out
      tls.emplace(tls_client{coring::tls::context::client(tls_options), tls_host});
    }
#endif
    const tls_client* tls_ptr = tls ? &*tls : nullptr;
    if (conns == 0) {
      try {
        return coring::sync_wait(ctx, interactive(ctx, server, timeout, tls_ptr));
      } catch (const std::system_error& e) {
        if (e.code() != std::errc::timed_out) throw;
        std::fprintf(stderr, "echo_client: no answer from %s within %g s (--timeout)\n",
                     server.to_string().c_str(), std::chrono::duration<double>(timeout).count());
        return 1;
      }
    }
    totals t;
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < conns; ++i)
      ctx.spawn(load_one(ctx, server, i, count, size, timeout, t, tls_ptr));
    ctx.run();  // returns when every connection finished
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%zu connections x %zu messages x %zu bytes: %zu ok, %zu failed, %zu bytes "
        "echoed and verified, %zu mismatches, %.3f s, %.0f round trips/s\n",
        conns, count, size, t.done, t.failed, t.bytes, t.mismatches, secs,
        static_cast<double>(t.done * count) / secs);
    return (t.failed == 0 && t.mismatches == 0 && t.done == conns) ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
