// SPDX-License-Identifier: MIT
// Description: no byte is lost over an impaired network: inside a private network namespace, an
// in-process echo server and its clients (one io_context) run under 5% random TCP packet drop
// (nftables) and behind a 1 Mbit/s token bucket (tc tbf); every echoed byte is verified.
//
// The process moves itself into a new network namespace once, before the first test case (the
// skip decorators run at static initialization), and talks only to 127.0.0.1 there. The rules
// and the qdisc live in that namespace and vanish with the process, even if it crashes: the
// host's network configuration is never touched. Every command refuses to run outside it.
#include "process.hpp"
#include "test_support.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;

namespace {

// ---- the private network namespace and the commands run inside it ----

ino_t host_netns = 0;  // the namespace the process started in, recorded before unshare

// TRICKY: namespaces belong to threads. unshare moves only the calling thread (and what it
// spawns afterwards); sockets belong to the namespace of the thread that creates them. The
// main thread unshares, runs every test case (doctest runs them on it) and so creates every
// socket and spawns every command.
ino_t current_netns() {
  struct stat st {};
  return ::stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

bool in_private_netns() {
  return host_netns != 0 && current_netns() != 0 && current_netns() != host_netns;
}

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  return line.empty() ? "(no output)" : line;
}

struct command_result {
  int status = -1;     // exit status; -1 if refused or still running after 10 s
  std::string output;  // stdout and stderr
};

// Runs one shell command line (sbin directories on PATH, stderr merged into stdout), waiting at
// most 10 s. Refuses to run anything outside the private namespace.
command_result run_command(const std::string& line) {
  if (!in_private_netns()) return {-1, "refused: not inside the private network namespace"};
  test::child c(
      {"/bin/sh", "-c", "PATH=/usr/sbin:/sbin:/usr/bin:/bin${PATH:+:$PATH}; exec 2>&1; " + line});
  command_result r;
  r.output = c.read_rest(10s);
  r.status = c.wait(10s).value_or(-1);
  return r;
}

// Brings lo up (the address 127.0.0.1 comes with it). Returns: "" or what failed.
std::string bring_lo_up() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  int r = ::ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    r = ::ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  const int e = errno;
  ::close(fd);
  return r == 0 ? "" : std::string("SIOCSIFFLAGS lo up: ") + std::strerror(e);
}

// lo's MTU, or -1.
int lo_mtu() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  const int r = ::ioctl(fd, SIOCGIFMTU, &ifr);
  ::close(fd);
  return r == 0 ? ifr.ifr_mtu : -1;
}

// Enters the private namespace once. Returns: "" or why it cannot be used.
const std::string& private_netns_error() {
  static const std::string why = []() -> std::string {
    if (::geteuid() != 0) return "not root (a private netns, nft and tc need CAP_NET_ADMIN)";
    host_netns = current_netns();
    if (host_netns == 0) return "cannot stat /proc/thread-self/ns/net";
    if (::unshare(CLONE_NEWNET) != 0)
      return std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
    if (!in_private_netns()) return "still in the host's network namespace after unshare";
    return bring_lo_up();
  }();
  return why;
}

std::string probe_tool(const char* tool, const char* package, const std::string& try_it) {
  try {
    if (run_command(std::string("command -v ") + tool).status != 0)
      return std::string(tool) + " not found (Debian: apt-get install " + package + ")";
    command_result r = run_command(try_it);
    if (r.status != 0) return "`" + try_it + "` failed: " + first_line(r.output);
  } catch (const std::system_error& e) {
    return std::string("cannot run commands: ") + e.what();
  }
  return "";
}

// Whether the test can run: a private network namespace and the tool (probed with probe inside
// it), then provided-buffer rings; if not, why.
test::requirement usable(const char* what, const char* tool, const char* package,
                         const char* probe) {
  std::string why = private_netns_error();
  if (why.empty()) why = probe_tool(tool, package, probe);
  if (!why.empty()) return {test::requirement::kind::environment, what, why};
  return test::ring_supports(test::feature::provided_buffer_rings);
}

test::requirement can_drop() {
  return usable("packet drop", "nft", "nftables",
                "nft add table inet coring_probe && nft delete table inet coring_probe");
}

test::requirement can_rate_limit() {
  return usable("rate limit", "tc", "iproute2",
                "tc qdisc add dev lo root tbf rate 1mbit burst 70kb latency 1s && "
                "tc qdisc del dev lo root");
}

// What an earlier test case left installed in the namespace ("" if nothing).
std::string leftover_impairment() {
  std::string left;
  if (run_command("nft list table inet fi").status == 0) left += "nft table inet fi; ";
  if (run_command("tc qdisc show dev lo").output.find("tbf") != std::string::npos)
    left += "tbf qdisc on lo; ";
  return left;
}

// Commands that install an impairment, and the one that removes it, also when a REQUIRE throws:
// the next test case starts from a clean namespace.
class impairment {
 public:
  impairment(const std::vector<std::string>& install, std::string remove)
      : remove_(std::move(remove)) {
    for (const std::string& cmd : install) {
      command_result r = run_command(cmd);
      if (r.status != 0) {
        error_ = "`" + cmd + "` exited " + std::to_string(r.status) + ": " + first_line(r.output);
        break;
      }
    }
  }
  ~impairment() {
    try {
      if (active_) run_command(remove_);
    } catch (...) {  // a destructor never throws; the namespace dies with the process anyway
    }
  }
  impairment(const impairment&) = delete;
  impairment& operator=(const impairment&) = delete;

  bool installed() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  /// Removes it now. Returns: whether the removal command succeeded.
  bool remove() {
    active_ = false;
    return run_command(remove_).status == 0;
  }

 private:
  std::string remove_;
  std::string error_;
  bool active_ = true;  // removed even after a partial install
};

// A positive count from the environment, or fallback if unset. Returns: 0 if malformed.
std::size_t env_count(const char* name, std::size_t fallback, std::size_t max) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long n = std::strtoul(v, &end, 10);
  return (*end == '\0' && n >= 1 && n <= max) ? n : 0;
}

// Two descriptors per connection (both ends live in this process) plus slack.
bool ensure_fd_limit(std::size_t connections) {
  const rlim_t need = static_cast<rlim_t>(2 * connections + 128);
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur >= need) return true;
  rl.rlim_cur = need;
  if (rl.rlim_max < need) rl.rlim_max = need;  // root may raise the hard limit
  return ::setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

// ---- the echo server and its clients ----

// The byte at offset i of client id's stream: distinct per client, so mixed-up streams show.
std::byte pattern(std::size_t id, std::size_t i) {
  return static_cast<std::byte>((id * 131 + i + i / 251) & 0xff);
}

// Longest silence either end accepts. Longer than a data segment dropped 6 times in a row takes
// to arrive (RTO from 200 ms, doubling: 12.6 s) and than a handshake whose SYN was dropped 5
// times (1 s doubling: 31 s; at 5% loss p = 3e-7 per connection).
constexpr auto silence_limit = 40s;

struct echo_server {
  echo_server(io_context& c, buffer_ring& r, std::size_t backlog)
      : ctx(c), ring(r), listener(tcp_listen(c, "127.0.0.1:0", static_cast<int>(backlog))),
        addr(listener.sock_name()), group(c) {}
  io_context& ctx;
  buffer_ring& ring;
  coring::socket listener;
  address addr;
  task_group group;  // the accept loop and one child per connection
  std::size_t accepted = 0;
  std::size_t received = 0;  // bytes taken from all connections
  std::vector<std::string> errors;
};

// How a connection's echo receives: accepted connections take each path in turn, so both run
// under the impairment.
struct receive_path {
  const char* name;
  bool ring;  // a recv_stream on the shared buffer ring; otherwise a plain recv into the frame
};
constexpr std::array<receive_path, 2> receive_paths{{
    {"recv_stream on the shared buffer ring", true},
    {"plain recv into a buffer in the frame", false},
}};

// Echoes until EOF, receiving the way `path` says. A connection whose client vanished (its RST
// lost) ends after the silence limit. Errors name the path.
task<> serve(echo_server& srv, coring::socket s, receive_path path) {
  try {
    if (path.ring) {
      recv_stream rx(s, srv.ring, {.idle_timeout = silence_limit});
      while (buffer b = co_await rx.next()) {
        srv.received += b.size();
        co_await s.send_all(b.data());
      }
    } else {
      std::array<std::byte, 4096> buf;
      while (std::size_t n = co_await s.recv(buf).with_timeout(silence_limit)) {
        srv.received += n;
        co_await s.send_all(std::span(buf).first(n));
      }
    }
  } catch (const std::system_error& e) {
    srv.errors.push_back(std::string("server (") + path.name + "): " + e.what());
  }
}

task<> accept_loop(echo_server& srv) {
  acceptor acc(srv.listener);
  for (;;) {
    auto c = co_await as_result(acc.accept());
    if (!c) {
      if (c.error() != std::errc::operation_canceled)
        srv.errors.push_back("accept: " + c.error().message());
      break;  // operation_canceled: shutting down
    }
    c->set_option(sockopt::no_delay{true});  // echoes are not held back by Nagle
    const receive_path path = receive_paths[srv.accepted++ % receive_paths.size()];
    srv.group.spawn(serve(srv, std::move(*c), path));
  }
}

struct client_result {
  std::size_t sent = 0, echoed = 0, mismatches = 0;
  std::string error;
};

task<std::size_t> send_pattern(coring::socket& s, std::span<const std::byte> data) {
  co_return co_await s.send_all(data);
}

// Reads the echo until `expected` bytes came (or EOF), comparing every byte with the pattern;
// a byte beyond `expected` in the last read counts too. Returns: bytes received.
task<std::size_t> check_echo(coring::socket& s, std::size_t id, std::size_t expected,
                             std::size_t& mismatches) {
  std::vector<std::byte> in(16 * 1024);
  std::size_t got = 0;
  while (got < expected) {
    std::size_t n = co_await s.recv(in).with_timeout(silence_limit);
    if (n == 0) break;
    for (std::size_t i = 0; i < n; ++i)
      if (in[i] != pattern(id, got + i)) ++mismatches;
    got += n;
  }
  co_return got;
}

// Sends size pattern bytes while reading their echo (neither side can stall the other whatever
// the size), then closes. The client closes first on purpose: the server sees EOF only after its
// whole echo arrived, so it never closes a socket with unsent data. (Closed with unsent data, a
// socket is orphaned, and the kernel aborts orphans that keep failing to transmit: behind a tbf
// qdisc that drops, their echo would be lost, measured.)
task<client_result> client(io_context& ctx, address to, std::size_t id, std::size_t size) {
  client_result r;
  try {
    std::vector<std::byte> out(size);
    for (std::size_t i = 0; i < size; ++i)
      out[i] = pattern(id, i);
    coring::socket s = co_await tcp_connect(ctx, to);
    auto both = when_all(send_pattern(s, out), check_echo(s, id, size, r.mismatches));
    std::tuple<std::size_t, std::size_t> sent_echoed = co_await std::move(both);
    r.sent = std::get<0>(sent_echoed);
    r.echoed = std::get<1>(sent_echoed);
  } catch (const std::system_error& e) {
    r.error = "client " + std::to_string(id) + ": " + e.what();
  }
  co_return r;
}

struct transfer_report {
  std::size_t connections = 0, size = 0;
  std::size_t ok = 0;        // connections whose whole echo came back intact
  std::size_t accepted = 0;  // connections the server accepted
  std::size_t sent = 0, echoed = 0, mismatches = 0, server_received = 0;
  std::vector<std::string> errors;  // clients' and server's
  double seconds = 0;               // until every client had its echo
  double close_seconds = 0;         // then until the server had seen every client's FIN
};

// connections clients at once, each sending size bytes and verifying their echo.
task<transfer_report> echo_transfer(io_context& ctx, std::size_t connections, std::size_t size) {
  transfer_report rep;
  rep.connections = connections;
  rep.size = size;
  buffer_ring ring(ctx, 1024, 4096);
  echo_server srv(ctx, ring, connections + 16);
  srv.group.spawn(accept_loop(srv));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<task<client_result>> clients;
  for (std::size_t i = 0; i < connections; ++i)
    clients.push_back(client(ctx, srv.addr, i, size));
  auto all = when_all(std::move(clients));
  std::vector<client_result> results = co_await std::move(all);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  srv.listener.cancel();
  co_await srv.group.join();  // each connection ends at its client's FIN (or the silence limit)
  rep.close_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - rep.seconds;
  for (const client_result& r : results) {
    rep.sent += r.sent;
    rep.echoed += r.echoed;
    rep.mismatches += r.mismatches;
    if (!r.error.empty()) rep.errors.push_back(r.error);
    if (r.error.empty() && r.sent == size && r.echoed == size && r.mismatches == 0) ++rep.ok;
  }
  rep.accepted = srv.accepted;
  rep.server_received = srv.received;
  rep.errors.insert(rep.errors.end(), srv.errors.begin(), srv.errors.end());
  co_return rep;
}

std::string describe(const transfer_report& rep) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << rep.connections << " connections x " << rep.size << " B: " << rep.accepted << " accepted, "
    << rep.ok << " ok, " << rep.connections - rep.ok << " failed, " << rep.sent << " B sent, "
    << rep.echoed << " B echoed, every byte compared: " << rep.mismatches << " mismatched, "
    << rep.errors.size() << " errors, " << rep.seconds << " s (server done " << rep.close_seconds
    << " s later)";
  return o.str();
}

// Runs the loop until nothing is in flight: the idle timers of the last streams were cancelled
// when they ended, and those cancellations complete in the next loop turns.
void drain(io_context& ctx) {
  test::watchdog w(10s, "draining the ring");
  ctx.run();
}

void check_transfer(const transfer_report& rep) {
  const std::size_t total = rep.connections * rep.size;
  for (std::size_t i = 0; i < rep.errors.size() && i < 10; ++i)
    MESSAGE(rep.errors[i]);
  CHECK(rep.ok == rep.connections);
  CHECK(rep.accepted == rep.connections);
  CHECK(rep.errors.empty());
  CHECK(rep.mismatches == 0);
  CHECK(rep.sent == total);
  CHECK(rep.echoed == total);
  CHECK(rep.server_received == total);
}

// "counter packets N bytes M" of each rule of chain inet fi in, in order.
std::vector<unsigned long long> nft_counters() {
  std::vector<unsigned long long> packets;
  const std::string out = run_command("nft list chain inet fi in").output;
  const std::string key = "counter packets ";
  for (auto at = out.find(key); at != std::string::npos; at = out.find(key, at + 1))
    packets.push_back(std::strtoull(out.c_str() + at + key.size(), nullptr, 10));
  return packets;
}

struct tbf_stats {
  unsigned long long sent_bytes = 0, sent_packets = 0, dropped = 0, overlimits = 0;
  bool parsed = false;
};

// From "Sent 123 bytes 4 pkt (dropped 0, overlimits 5 requeues 0)" of tc -s.
tbf_stats read_tbf_stats() {
  tbf_stats st;
  const std::string out = run_command("tc -s qdisc show dev lo").output;
  const auto at = out.find("Sent ");
  if (at != std::string::npos)
    st.parsed =
        std::sscanf(out.c_str() + at, "Sent %llu bytes %llu pkt (dropped %llu, overlimits %llu",
                    &st.sent_bytes, &st.sent_packets, &st.dropped, &st.overlimits) == 4;
  return st;
}

}  // namespace

TEST_CASE(
    "5% random TCP packet drop (nftables, private netns): 100 connections (or "
    "CORING_IMPAIRMENT_CONNECTIONS) x 64 KiB echoed, every byte verified, 0 errors" *
    test::skip_unless(can_drop())) {
  const std::size_t connections = env_count("CORING_IMPAIRMENT_CONNECTIONS", 100, 10000);
  REQUIRE_MESSAGE(connections > 0, "CORING_IMPAIRMENT_CONNECTIONS must be 1 to 10000");
  constexpr std::size_t size = 64 * 1024;
  REQUIRE(in_private_netns());
  REQUIRE_MESSAGE(leftover_impairment().empty(), leftover_impairment());
  REQUIRE_MESSAGE(ensure_fd_limit(connections), "cannot raise RLIMIT_NOFILE");
  // A random-drop nftables rule on the input hook (not output), with a counter on every TCP
  // packet and one on those dropped.
  // TRICKY: a drop on the output hook is not silent: the sender's transmit fails with EPERM.
  // When that happens to a listener's SYN-ACK retransmission the kernel deletes the request
  // (reqsk_timer_handler: a failed inet_rtx_syn_ack drops it) although the client may already
  // be established (the SYN-ACK came through, its ACK was dropped): the client's data then
  // draws a RST from the listener. Measured: 1 to 4 of 1,000 connections reset per run when
  // clients take over 1 s to send (ASan build). Real loss is silent, as a drop on input is.
  impairment drop(
      {"nft add table inet fi", "nft add chain inet fi in '{ type filter hook input priority 0; }'",
       "nft add rule inet fi in meta l4proto tcp counter",
       "nft add rule inet fi in meta l4proto tcp numgen random mod 100 '<' 5 "
       "counter drop"},
      "nft delete table inet fi");
  REQUIRE_MESSAGE(drop.installed(), drop.error());
  const auto limit = 60s + static_cast<long long>(connections) * 300ms;
  // Declared before the io_context, so that it also bounds the context's teardown.
  test::watchdog whole(limit + 30s, "packet drop test");
  io_context ctx;
  const int base_fds = test::open_fds();
  transfer_report rep = test::run(ctx, echo_transfer(ctx, connections, size),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(limit));
  const std::vector<unsigned long long> packets = nft_counters();
  CHECK(drop.remove());
  check_transfer(rep);
  drain(ctx);
  CHECK(ctx.in_flight() == 0);
  CHECK(test::open_fds() == base_fds);
  REQUIRE(packets.size() == 2);
  // The impairment was in effect: some segments were really dropped (and retransmitted).
  CHECK(packets[1] > 0);
  CHECK(packets[1] < packets[0]);
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << "5% drop: " << describe(rep) << "; nft dropped " << packets[1] << " of " << packets[0]
    << " TCP packets (" << (packets[0] ? 100.0 * double(packets[1]) / double(packets[0]) : 0.0)
    << "%)";
  MESSAGE(o.str());
  CHECK(leftover_impairment().empty());
}

TEST_CASE(
    "1 Mbit/s token bucket on lo (tc tbf, private netns): 10 connections (or "
    "CORING_IMPAIRMENT_RATE_CONNECTIONS) x 16 KiB echoed, every byte verified, 0 errors" *
    test::skip_unless(can_rate_limit())) {
  // TRICKY: tbf drops what exceeds its queue (latency 1s: 196 KB here), and the sender sees
  // the drop (so a failed SYN-ACK retransmission deletes the request, as in the drop test; the
  // handshakes here end before the queue fills). A socket whose unsent data keeps failing at
  // the local qdisc retries every 500 ms and the kernel aborts it with ETIMEDOUT after
  // tcp_retries2 (15) failures in a row (tcp_probe_timer), i.e. once the queue stays full for
  // 7.5 s. 10 x 16 KiB echoed is about 3 s of traffic. Measured: 20 connections passed 5 runs
  // of 5; from 25 on, some connections were aborted (the client's recv fails with ETIMEDOUT
  // after about 11 s) in every run.
  const std::size_t connections = env_count("CORING_IMPAIRMENT_RATE_CONNECTIONS", 10, 10000);
  REQUIRE_MESSAGE(connections > 0, "CORING_IMPAIRMENT_RATE_CONNECTIONS must be 1 to 10000");
  constexpr std::size_t size = 16 * 1024;
  constexpr double rate = 1e6 / 8;     // bytes per second: tc's mbit is 10^6 bit
  constexpr double burst = 70 * 1024;  // tc's kb is 1024 bytes
  REQUIRE(in_private_netns());
  REQUIRE_MESSAGE(leftover_impairment().empty(), leftover_impairment());
  REQUIRE_MESSAGE(ensure_fd_limit(connections), "cannot raise RLIMIT_NOFILE");
  // A packet larger than the bucket can never leave: everything would hang.
  const int mtu = lo_mtu();
  REQUIRE_MESSAGE((mtu > 0 && mtu <= 65536), "lo MTU " << mtu << " exceeds the 70 KiB burst");
  impairment shaper({"tc qdisc add dev lo root tbf rate 1mbit burst 70kb latency 1s"},
                    "tc qdisc del dev lo root");
  REQUIRE_MESSAGE(shaper.installed(), shaper.error());
  // Both directions cross lo's qdisc: 2 x connections x size bytes at 125 kB/s, plus slack.
  const double payload = 2.0 * double(connections * size);
  const auto limit = 60s + std::chrono::seconds(static_cast<long>(3 * payload / rate));
  // Declared before the io_context, so that it also bounds the context's teardown.
  test::watchdog whole(limit + 30s, "rate limit test");
  io_context ctx;
  const int base_fds = test::open_fds();
  transfer_report rep = test::run(ctx, echo_transfer(ctx, connections, size),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(limit));
  const tbf_stats st = read_tbf_stats();
  CHECK(shaper.remove());
  check_transfer(rep);
  drain(ctx);
  CHECK(ctx.in_flight() == 0);
  CHECK(test::open_fds() == base_fds);
  // The shaper was in effect: all the payload went through it, it held packets back, and the
  // transfer could not beat its rate (a lower bound: a slow machine only makes it longer).
  REQUIRE(st.parsed);
  CHECK(double(st.sent_bytes) >= payload);
  CHECK(st.overlimits > 0);
  CHECK(rep.seconds >= 0.95 * (payload - burst) / rate);  // 5% for tc's rounding
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << "1 Mbit/s tbf: " << describe(rep) << " (" << payload * 8 / rep.seconds / 1e6
    << " Mbit/s of payload, both directions); tbf sent " << st.sent_bytes << " B in "
    << st.sent_packets << " packets, dropped " << st.dropped << ", overlimits " << st.overlimits;
  MESSAGE(o.str());
  CHECK(leftover_impairment().empty());
}
