// SPDX-License-Identifier: MIT
// Description: coring::errc category and the throw helpers.
#include <coring/error.hpp>

#include <string>

namespace coring {
namespace {
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "coring"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::invalid_address:
        return "invalid address";
      case errc::address_too_long:
        return "address too long";
      case errc::wrong_family:
        return "wrong address family";
      case errc::not_supported:
        return "not supported by this kernel";
      case errc::io_uring_unavailable:
        return "io_uring unavailable";
      case errc::context_stopping:
        return "io_context is being destroyed";
      case errc::message_truncated:
        return "message truncated";
      case errc::line_too_long:
        return "line too long";
      case errc::unexpected_eof:
        return "peer closed the connection early";
      case errc::tls_failed:
        return "TLS failed";
      case errc::tls_verify_failed:
        return "TLS peer certificate rejected";
      case errc::tls_truncated:
        return "TLS connection closed without close_notify";
    }
    return "unknown coring error";
  }
  std::error_condition default_error_condition(int v) const noexcept override {
    switch (static_cast<errc>(v)) {
      case errc::invalid_address:
      case errc::address_too_long:
        return std::errc::invalid_argument;
      case errc::wrong_family:
        return std::errc::address_family_not_supported;
      case errc::not_supported:
        return std::errc::function_not_supported;
      case errc::context_stopping:
        return std::errc::operation_canceled;
      case errc::message_truncated:
      case errc::line_too_long:
        return std::errc::message_size;
      default:
        return {v, *this};
    }
  }
};
}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

void throw_errno(int errno_value, const char* what) {
  throw std::system_error(errno_value, std::system_category(), what);
}
void throw_error(std::error_code ec, const char* what) { throw std::system_error(ec, what); }
void throw_error(std::error_code ec, const std::string& what) { throw std::system_error(ec, what); }

}  // namespace coring
