// SPDX-License-Identifier: MIT
// Description: resolve: getaddrinfo on a helper thread; the ring reads an eventfd to wake up.
#include <coring/detail/op.hpp>
#include <coring/resolve.hpp>

#include <liburing.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <netdb.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace coring {

namespace {

class resolve_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "resolve"; }
  std::string message(int ev) const override { return ::gai_strerror(ev); }
};

/// The lookup's state, shared by the awaiting coroutine and the helper thread: whichever lets go
/// last closes the eventfd.
struct lookup {
  std::string host, service;
  int family = AF_UNSPEC, type = 0;
  int efd = -1;
  int gai = 0, sys_errno = 0;
  std::vector<address> addrs;
  std::atomic<bool> done{false};
  ~lookup() {
    if (efd >= 0) ::close(efd);
  }
  void run() noexcept {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = type;
    addrinfo* res = nullptr;
    gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                        service.empty() ? "0" : service.c_str(), &hints, &res);
    if (gai == EAI_SYSTEM) sys_errno = errno;
    try {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        address a(ai->ai_addr, ai->ai_addrlen);
        bool seen = false;
        for (const address& b : addrs)
          seen = seen || b == a;
        if (!seen) addrs.push_back(a);
      }
    } catch (...) {
      gai = EAI_MEMORY;
      addrs.clear();
    }
    if (res) ::freeaddrinfo(res);
    // The eventfd write/read pair already orders these writes before the reader's reads, but
    // TSan cannot see through the kernel (docs/design.md, "Sanitizers and the kernel's writes"):
    // publish them with release/acquire too.
    done.store(true, std::memory_order_release);
    std::uint64_t one = 1;
    while (::write(efd, &one, sizeof one) < 0 && errno == EINTR) {}
  }
};

/// co_await: IORING_OP_READ of the eventfd's 8-byte counter.
class eventfd_read_op : public detail::io_op<eventfd_read_op, void> {
 public:
  static constexpr const char* name = "resolve: eventfd read";
  eventfd_read_op(io_context& ctx, int fd) noexcept : io_op(ctx), fd_(fd) {}
  void prep(io_uring_sqe& sqe) noexcept {
    io_uring_prep_read(&sqe, fd_, &value_, sizeof value_, 0);
  }

 private:
  int fd_;
  std::uint64_t value_ = 0;  // LIFETIME: the kernel writes it; lives in the op
};

}  // namespace

const std::error_category& resolve_category() noexcept {
  static const resolve_category_impl cat;
  return cat;
}

task<std::vector<address>> resolve(io_context& ctx, std::string host, std::string service,
                                   int family, int type) {
  return detail::resolve_bounded(ctx, std::move(host), std::move(service), family, type,
                                 std::chrono::steady_clock::time_point::max(), {});
}

task<std::vector<address>> detail::resolve_bounded(io_context& ctx, std::string host,
                                                   std::string service, int family, int type,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   std::stop_token stop) {
  auto job = std::make_shared<lookup>();
  job->host = std::move(host);
  job->service = std::move(service);
  job->family = family;
  job->type = type;
  job->efd = ::eventfd(0, EFD_CLOEXEC);
  if (job->efd < 0) throw_errno(errno, "resolve: eventfd");
  // Why an eventfd and not io_context::execute: the helper thread may outlive the context (the
  // lookup is not cancellable, and teardown must not wait for a slow DNS server), and
  // execute() on a destroyed context is undefined, whereas a write to an eventfd that nobody
  // reads any more is harmless.
  // TRICKY: the thread holds its own reference: if this frame is destroyed while getaddrinfo
  // runs (io_context teardown cancels the read), the thread still writes to a live eventfd and
  // the last owner closes it.
  std::thread([job] { job->run(); }).detach();
  // An abandoned wait (deadline, stop) leaves the thread to finish on its own, as teardown does.
  eventfd_read_op wake(ctx, job->efd);
  if (deadline != std::chrono::steady_clock::time_point::max()) {
    auto left = std::max(deadline - std::chrono::steady_clock::now(),
                         std::chrono::steady_clock::duration::zero());
    std::move(wake).with_timeout(left);
  }
  co_await std::move(wake).with_stop(std::move(stop));
  if (!job->done.load(std::memory_order_acquire))  // cannot happen: the write comes after it
    throw_errno(EIO, "resolve: woken before the lookup finished");
  if (job->gai == EAI_SYSTEM)
    throw_errno(job->sys_errno, ("resolve " + job->host + ":" + job->service).c_str());
  if (job->gai != 0)
    throw_error(std::error_code(job->gai, resolve_category()),
                "resolve " + job->host + ":" + job->service);
  co_return std::move(job->addrs);
}

}  // namespace coring
