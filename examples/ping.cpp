// SPDX-License-Identifier: MIT
// Description: ping: ICMP echo requests and replies like ping(8), over a raw ICMP socket or,
// without CAP_NET_RAW, an ICMP datagram ("ping") socket.
//
// Two kinds of ICMP socket, two ways to read a reply:
// - SOCK_RAW/IPPROTO_ICMP (needs CAP_NET_RAW) receives every ICMP packet the host gets, IP
//   header included: we skip the header (its TTL byte is the reply's TTL) and keep only echo
//   replies carrying our id (the low 16 bits of our pid). On loopback it also sees our own
//   requests, which the type check drops.
// - SOCK_DGRAM/IPPROTO_ICMP (allowed when our gid is in net.ipv4.ping_group_range) gets no IP
//   header, and the kernel sets the id itself and delivers only our replies. The TTL then comes
//   as an IP_TTL control message (IP_RECVTTL), so this path reads with recv_msg.
// Each request carries an 8-byte steady-clock timestamp; the reply echoes it, and the round
// trip is measured from it. One request at a time: send, wait for its reply at most --timeout,
// then sleep until --interval after the send. SIGINT or SIGTERM stops early and still prints
// the summary, as ping(8) does.
#include <coring/coring.hpp>

#include "client_io.hpp"
#include "example_util.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <unistd.h>

namespace {

const char* usage =
    "usage: ping [--count N] [--interval SECONDS] [--timeout SECONDS] [--dgram] HOST\n"
    "  Sends N (default 4) ICMP echo requests to HOST (a numeric IPv4 address), one every\n"
    "  --interval seconds (default 1), waits at most --timeout seconds (default 2) for each\n"
    "  reply, prints one line per reply (\"16 bytes from HOST: icmp_seq=1 ttl=64 time=0.051 ms\")\n"
    "  and a summary (\"4 packets transmitted, 4 received, 0% packet loss\").\n"
    "  Uses a raw ICMP socket (needs CAP_NET_RAW) or else an ICMP datagram socket (needs the\n"
    "  gid in net.ipv4.ping_group_range); --dgram uses the datagram socket only.\n"
    "  HOST 0.0.0.0 means this host, as for ping(8): the replies come from 127.0.0.1.\n"
    "  Exits 0 if at least one reply arrived, 1 if none did, no ICMP socket could be opened,\n"
    "  or stdout is closed.\n";

constexpr std::size_t payload_size = 8;  // the timestamp
constexpr std::size_t request_size = sizeof(icmphdr) + payload_size;

// Splits argv into flags (for example::args) and positionals; value-taking flags keep their value.
struct split_args {
  std::vector<char*> flags;
  std::vector<std::string> positional;
};
split_args split(int argc, char** argv) {
  split_args out;
  out.flags.push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      out.flags.push_back(argv[i]);
      if ((a == "--count" || a == "--interval" || a == "--timeout") && i + 1 < argc)
        out.flags.push_back(argv[++i]);
    } else {
      out.positional.emplace_back(a);
    }
  }
  return out;
}

// The Internet checksum (RFC 1071) over an ICMP message, in network byte order.
std::uint16_t checksum(std::span<const unsigned char> p) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < p.size(); i += 2)
    sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (p.size() % 2) sum += static_cast<std::uint32_t>(p[p.size() - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<std::uint16_t>(~sum));
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// An echo request: type 8, code 0, id, seq, then our timestamp (host byte order: only we read it).
std::array<unsigned char, request_size> echo_request(std::uint16_t id, std::uint16_t seq) {
  std::array<unsigned char, request_size> pkt{};
  icmphdr h{};
  h.type = ICMP_ECHO;
  h.un.echo.id = htons(id);
  h.un.echo.sequence = htons(seq);
  std::memcpy(pkt.data(), &h, sizeof h);
  std::int64_t t = now_ns();
  std::memcpy(pkt.data() + sizeof h, &t, sizeof t);
  std::uint16_t c = checksum(pkt);
  std::memcpy(pkt.data() + offsetof(icmphdr, checksum), &c, sizeof c);
  return pkt;
}

// The IP_TTL control message of a datagram-socket reply, or -1.
int ttl_from_control(std::span<const std::byte> raw) {
  if (raw.empty()) return -1;
  msghdr mh{};
  mh.msg_control = const_cast<std::byte*>(raw.data());
  mh.msg_controllen = raw.size();
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) {
      int ttl = 0;
      std::memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
      return ttl;
    }
  return -1;
}

struct pinger {
  coring::io_context& ctx;
  coring::socket& sock;
  bool raw;  // SOCK_RAW (IP header in front, we filter by id) or SOCK_DGRAM
  coring::address to;
  std::uint16_t id;
  long count;
  std::chrono::nanoseconds interval, timeout;
  // statistics
  long transmitted = 0, received = 0;
  double rtt_min = std::numeric_limits<double>::max(), rtt_max = 0, rtt_sum = 0;
};

// True if a reply from `from` answers our requests to p.to. Pinging 0.0.0.0 (INADDR_ANY)
// reaches this host, which answers from a real address of its own (127.0.0.1), so any source
// is taken then; the id, sequence number and timestamp checks still pick out our replies.
bool from_target(const pinger& p, const coring::address& from) {
  return p.to.host() == "0.0.0.0" || from.host() == p.to.host();
}

// One received ICMP message, already stripped of the IP header.
struct reply {
  std::span<const unsigned char> icmp;
  int ttl = -1;
  coring::address from;
};

// Receives one ICMP message, waiting at most `wait`. Returns: the message, or an error
// (timed_out when nothing came, operation_canceled on stop).
coring::task<coring::result<reply>> receive(pinger& p, std::span<std::byte> buf,
                                            coring::control_buffer& control,
                                            std::chrono::nanoseconds wait,
                                            const std::stop_token& tok) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(buf.data());
  if (p.raw) {
    auto op = coring::as_result(p.sock.recv_from(buf).with_timeout(wait).with_stop(tok));
    coring::result<coring::datagram> d = co_await op;
    if (!d) co_return d.error();
    std::size_t ihl = d->size > 0 ? static_cast<std::size_t>(bytes[0] & 0x0f) * 4 : 0;
    if (ihl < sizeof(iphdr) || d->size < ihl)
      co_return reply{{}, -1, d->from};                                         // not IPv4: ignored
    co_return reply{std::span(bytes + ihl, d->size - ihl), bytes[8], d->from};  // byte 8: TTL
  }
  std::span<std::byte> bufs[1] = {buf};
  auto op = coring::as_result(p.sock.recv_msg(bufs, control).with_timeout(wait).with_stop(tok));
  coring::result<coring::message_info> m = co_await op;
  if (!m) co_return m.error();
  co_return reply{std::span(bytes, m->size), ttl_from_control(control.raw()), m->from};
}

// Sends the requests and prints the replies; stops early when tok is stopped.
coring::task<> ping_loop(pinger& p, std::stop_token tok) {
  std::vector<std::byte> buf(65536);
  coring::control_buffer control(256);
  for (long i = 1; i <= p.count; ++i) {
    const auto seq = static_cast<std::uint16_t>(i);
    const auto request = echo_request(p.id, seq);
    const auto sent_at = std::chrono::steady_clock::now();
    auto send =
        coring::as_result(p.sock.send_to(std::as_bytes(std::span(request)), p.to).with_stop(tok));
    coring::result<std::size_t> sent = co_await send;
    if (!sent) {
      if (sent.error() == std::errc::operation_canceled) co_return;
      std::fprintf(stderr, "ping: sendto %s: %s\n", p.to.host().c_str(),
                   sent.error().message().c_str());
    } else {
      ++p.transmitted;
      // Wait for this request's reply; skip everything else (other ids, other types, late
      // replies to earlier requests, our own requests on loopback).
      const auto deadline = sent_at + p.timeout;
      for (;;) {
        auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::nanoseconds::zero()) {
          std::printf("no reply for icmp_seq=%u within %.3f s\n", seq,
                      std::chrono::duration<double>(p.timeout).count());
          example::flush_stdout();
          break;
        }
        coring::result<reply> r = co_await receive(p, buf, control, left, tok);
        if (!r) {
          if (r.error() == std::errc::operation_canceled) co_return;
          if (r.error() == std::errc::timed_out) continue;  // the deadline check above reports it
          std::fprintf(stderr, "ping: receive: %s\n", r.error().message().c_str());
          continue;
        }
        std::span<const unsigned char> icmp = r->icmp;
        if (icmp.size() < request_size) continue;
        icmphdr h{};
        std::memcpy(&h, icmp.data(), sizeof h);
        if (h.type != ICMP_ECHOREPLY || h.code != 0) continue;
        if (p.raw && (ntohs(h.un.echo.id) != p.id || !from_target(p, r->from))) continue;
        if (ntohs(h.un.echo.sequence) != seq) continue;
        std::int64_t stamp = 0;
        std::memcpy(&stamp, icmp.data() + sizeof h, sizeof stamp);
        const double ms = static_cast<double>(now_ns() - stamp) / 1e6;
        ++p.received;
        p.rtt_min = std::min(p.rtt_min, ms);
        p.rtt_max = std::max(p.rtt_max, ms);
        p.rtt_sum += ms;
        if (r->ttl >= 0)
          std::printf("%zu bytes from %s: icmp_seq=%u ttl=%d time=%.3f ms\n", icmp.size(),
                      r->from.host().c_str(), seq, r->ttl, ms);
        else
          std::printf("%zu bytes from %s: icmp_seq=%u time=%.3f ms\n", icmp.size(),
                      r->from.host().c_str(), seq, ms);
        example::flush_stdout();
        break;
      }
    }
    if (i < p.count) {
      auto pause = coring::sleep_until(p.ctx, sent_at + p.interval).with_stop(tok);
      auto slept = coring::as_result(std::move(pause));
      coring::result<void> woke = co_await slept;
      if (!woke) co_return;  // stopped
    }
  }
}

coring::task<> run(pinger& p, coring::signal_set& signals) {
  auto pings = [&](std::stop_token tok) { return ping_loop(p, tok); };
  // An operation races as it is: when_any binds it to its stop token.
  auto race = coring::when_any(pings, signals.wait());
  auto first = co_await std::move(race);
  (void)first;
}

std::string read_ping_group_range() {
  std::ifstream in("/proc/sys/net/ipv4/ping_group_range");
  std::string a, b;
  if (!(in >> a >> b)) return "?";
  return a + " " + b;
}

bool is_permission_error(const std::system_error& e) {
  return e.code() == std::errc::operation_not_permitted || e.code() == std::errc::permission_denied;
}

// Opens the ICMP socket: raw if allowed (and not --dgram), else a ping socket.
// Returns: nullopt (after printing why) if neither may be opened.
std::optional<coring::socket> open_icmp(coring::io_context& ctx, bool dgram_only, bool& raw) {
  std::string raw_why = "not tried (--dgram)";
  if (!dgram_only) {
    try {
      raw = true;
      return coring::socket(ctx, AF_INET, SOCK_RAW, IPPROTO_ICMP);
    } catch (const std::system_error& e) {
      if (!is_permission_error(e)) throw;
      raw_why = e.code().message() + " (needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep)";
    }
  }
  raw = false;
  try {
    coring::socket s(ctx, AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    int one = 1;
    s.set_option(IPPROTO_IP, IP_RECVTTL, &one, sizeof one);
    return s;
  } catch (const std::system_error& e) {
    if (!is_permission_error(e)) throw;
    std::fprintf(
        stderr,
        "ping: cannot open an ICMP socket.\n"
        "  raw socket (SOCK_RAW): %s\n"
        "  ping socket (SOCK_DGRAM): %s (gid %u is outside net.ipv4.ping_group_range = %s)\n",
        raw_why.c_str(), e.code().message().c_str(), static_cast<unsigned>(::getgid()),
        read_ping_group_range().c_str());
    return std::nullopt;
  }
}

}  // namespace

int main(int argc, char** argv) {
  example::ignore_sigpipe();
  split_args parts = split(argc, argv);
  example::args args(static_cast<int>(parts.flags.size()), parts.flags.data(), usage);
  long count = args.get_int("--count", 4, 1, 65535);
  double interval_s = args.get_double("--interval", 1, 0, 3600);
  double timeout_s = args.get_double("--timeout", 2, 0.001, 3600);
  bool dgram_only = args.flag("--dgram");
  args.done();
  if (parts.positional.size() != 1) {
    std::fprintf(stderr, "ping: give exactly one HOST\n%s", usage);
    return 2;
  }
  const std::string& host = parts.positional.front();
  coring::address to;
  try {
    to = coring::address::ip(host, 0);
  } catch (const std::system_error&) {}
  if (to.family() != AF_INET) {
    std::fprintf(stderr, "ping: HOST must be a numeric IPv4 address, not '%s'\n%s", host.c_str(),
                 usage);
    return 2;
  }
  try {
    coring::io_context ctx;
    coring::signal_set signals(ctx, {SIGINT, SIGTERM});
    bool raw = false;
    std::optional<coring::socket> sock = open_icmp(ctx, dgram_only, raw);
    if (!sock) return 1;
    pinger p{ctx,
             *sock,
             raw,
             to,
             static_cast<std::uint16_t>(::getpid() & 0xffff),
             count,
             example::seconds(interval_s),
             example::seconds(timeout_s)};
    std::printf("PING %s: %zu data bytes (%s socket)\n", to.host().c_str(), payload_size,
                raw ? "raw" : "datagram");
    example::flush_stdout();
    coring::sync_wait(ctx, run(p, signals));
    const long lost = p.transmitted - p.received;
    std::printf("--- %s ping statistics ---\n", to.host().c_str());
    std::printf("%ld packets transmitted, %ld received, %ld%% packet loss\n", p.transmitted,
                p.received, p.transmitted > 0 ? lost * 100 / p.transmitted : 0);
    if (p.received > 0)
      std::printf("rtt min/avg/max = %.3f/%.3f/%.3f ms\n", p.rtt_min,
                  p.rtt_sum / static_cast<double>(p.received), p.rtt_max);
    example::flush_stdout();
    return p.received > 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ping: %s\n", e.what());
    return 1;
  }
}
