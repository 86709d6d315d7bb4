// SPDX-License-Identifier: MIT
// Description: coring::tls in-process over loopback: handshakes, echo (full duplex), versions,
// ALPN, close_notify and truncation, bad input, certificate checks, deadlines, stops, teardown.
#include <coring/coring.hpp>

#include "test_support.hpp"
#include "tls_certs.hpp"

#include <doctest/doctest.h>

#include <fstream>

using namespace coring;
using namespace std::chrono_literals;

TEST_CASE("the test certificates are made by the openssl command" *
          test::skip_unless(test::has_openssl())) {
  test::temp_dir dir("tls");
  test::tls_certs certs = test::make_tls_certs(dir);
  for (const auto& p : {certs.ca, certs.server_cert, certs.server_key, certs.expired_cert,
                        certs.expired_key, certs.wrong_host_cert, certs.wrong_host_key,
                        certs.self_signed_cert, certs.self_signed_key}) {
    std::ifstream f(p);
    std::string first;
    std::getline(f, first);
    CHECK_MESSAGE(first.rfind("-----BEGIN", 0) == 0, p);
  }
  CHECK_NOTHROW(tls::context::server(certs.server_cert, certs.server_key));
  tls::context_options o;
  o.ca_file = certs.ca;
  CHECK_NOTHROW(tls::context::client(o));
}
