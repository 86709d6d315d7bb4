// SPDX-License-Identifier: MIT
// Description: tcp_listen, and tcp_connect: name lookup, each address in turn, one deadline.
#include <coring/tcp.hpp>

#include <coring/resolve.hpp>
#include <coring/sockopt.hpp>

#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace coring {

socket tcp_listen(io_context& ctx, const address& addr, int backlog) {
  socket s(ctx, addr.family(), SOCK_STREAM);
  s.set_option(sockopt::reuse_address{true});
  s.bind(addr);
  s.listen(backlog);
  return s;
}

socket tcp_listen(io_context& ctx, std::string_view host_port, int backlog) {
  return tcp_listen(ctx, address::parse(host_port), backlog);
}

namespace {

using clock = std::chrono::steady_clock;

// The options as one absolute deadline (time_point::max(): none) plus the stop token.
struct bounds {
  clock::time_point deadline = clock::time_point::max();
  std::stop_token stop;
  explicit bounds(const connect_options& o) : stop(o.stop) {
    if (o.timeout.count() > 0) deadline = clock::now() + o.timeout;
  }
};

task<socket> connect_one(io_context& ctx, address addr, const bounds& b) {
  socket s(ctx, addr.family(), SOCK_STREAM);
  s.set_option(sockopt::no_delay{true});
  co_await detail::bound_by(s.connect(addr), b.deadline, b.stop);
  co_return s;
}

task<socket> connect_named(io_context& ctx, std::string host, std::string service,
                           connect_options opts) {
  const bounds b(opts);
  std::vector<address> addrs = co_await detail::resolve_bounded(ctx, host, service, AF_UNSPEC,
                                                                SOCK_STREAM, b.deadline, b.stop);
  std::exception_ptr last;
  for (const address& a : addrs) {
    try {
      socket s = co_await connect_one(ctx, a, b);
      co_return s;
    } catch (const std::system_error& e) {
      // A deadline or a stop ends the whole connect, not just this address.
      if (e.code() == std::errc::timed_out || e.code() == std::errc::operation_canceled) throw;
      last = std::current_exception();
    }
  }
  if (last) std::rethrow_exception(last);
  throw_error(errc::invalid_address, "tcp_connect " + host + ":" + service + ": no address");
}

task<socket> connect_address(io_context& ctx, address addr, connect_options opts) {
  const bounds b(opts);
  socket s = co_await connect_one(ctx, addr, b);
  co_return s;
}

}  // namespace

task<socket> tcp_connect(io_context& ctx, address addr, connect_options opts) {
  return connect_address(ctx, addr, std::move(opts));
}

task<socket> tcp_connect(io_context& ctx, std::string_view host_port, connect_options opts) {
  // Not a coroutine: the text is parsed (or copied) now, so it need not outlive the task.
  // TRICKY: parse before anything moves opts (argument evaluation order is unspecified).
  address numeric;
  try {
    numeric = address::parse(host_port);
  } catch (const std::system_error& e) {
    if (e.code() != make_error_code(errc::invalid_address)) throw;
    // A host name: split at the last ':'; "[name]:port" also accepted.
    auto colon = host_port.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == host_port.size()) throw;
    std::string_view host = host_port.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    return connect_named(ctx, std::string(host), std::string(host_port.substr(colon + 1)),
                         std::move(opts));
  }
  return connect_address(ctx, numeric, std::move(opts));
}

}  // namespace coring
