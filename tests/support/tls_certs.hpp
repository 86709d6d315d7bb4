// SPDX-License-Identifier: MIT
// Description: test certificates for TLS tests, made at test time with the openssl command: a CA,
// a server certificate it signed (localhost, 127.0.0.1, ::1), an expired one, one for the wrong
// host, and a self-signed one (EC P-256 keys: fast to make).
#pragma once

#include "process.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

// The openssl program meson found at configure time (tests/meson.build), or "" if none.
#ifndef CORING_OPENSSL_PROGRAM
#define CORING_OPENSSL_PROGRAM ""
#endif

namespace coring::test {

/// Paths of PEM files in one directory (made by make_tls_certs).
struct tls_certs {
  std::string ca;                               ///< the CA's certificate (trust it)
  std::string server_cert, server_key;          ///< signed by the CA: DNS:localhost, 127.0.0.1, ::1
  std::string expired_cert, expired_key;        ///< signed by the CA, expired yesterday
  std::string wrong_host_cert, wrong_host_key;  ///< signed by the CA: DNS:wrong.example only
  std::string self_signed_cert, self_signed_key;  ///< self-signed: localhost, 127.0.0.1, ::1
};

/// The openssl command meson found, or nullptr.
inline const char* openssl_program() {
  const char* p = CORING_OPENSSL_PROGRAM;
  return p[0] != '\0' ? p : nullptr;
}

/// The openssl command, as an environment requirement for skip_unless.
inline requirement has_openssl() {
  return {requirement::kind::environment, "the openssl command",
          openssl_program() ? "" : "not found when meson configured the build"};
}

namespace detail_tls {

// Runs openssl with args; REQUIREs exit status 0.
inline void openssl(std::vector<std::string> args) {
  args.insert(args.begin(), openssl_program());
  std::string line;
  for (const auto& a : args)
    line += a + " ";
  INFO("running: " << line);
  REQUIRE(exit_status_of(args, std::chrono::seconds(30)) == 0);
}

// A P-256 key and a certificate request for /CN=cn in dir/name.key, dir/name.csr.
inline void key_and_request(const temp_dir& dir, const std::string& name, const std::string& cn) {
  openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", dir / (name + ".key"), "-out", dir / (name + ".csr"), "-subj", "/CN=" + cn});
}

// Signs dir/name.csr with the CA into dir/name.pem, with extensions from dir/name.ext.
inline void sign(const temp_dir& dir, const std::string& name, const std::string& san, int serial,
                 const std::string& days) {
  write_file(dir / (name + ".ext"),
             "subjectAltName=" + san +
                 "\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                 "extendedKeyUsage=serverAuth\n");
  openssl({"x509", "-req", "-in", dir / (name + ".csr"), "-CA", dir / "ca.pem", "-CAkey",
           dir / "ca.key", "-set_serial", std::to_string(serial), "-days", days, "-extfile",
           dir / (name + ".ext"), "-out", dir / (name + ".pem")});
}

}  // namespace detail_tls

/// Makes the certificates in dir (about 10 runs of openssl: well under a second) and returns
/// their paths. Needs openssl_program(): check has_openssl() first (skip_unless).
inline tls_certs make_tls_certs(const temp_dir& dir) {
  using detail_tls::openssl;
  REQUIRE_MESSAGE(openssl_program() != nullptr, "the openssl command was not found by meson");
  const std::string local_san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  openssl({"req",
           "-x509",
           "-new",
           "-newkey",
           "ec",
           "-pkeyopt",
           "ec_paramgen_curve:P-256",
           "-nodes",
           "-keyout",
           dir / "ca.key",
           "-out",
           dir / "ca.pem",
           "-days",
           "3650",
           "-subj",
           "/CN=coring test CA",
           "-addext",
           "basicConstraints=critical,CA:TRUE",
           "-addext",
           "keyUsage=critical,keyCertSign,cRLSign"});
  detail_tls::key_and_request(dir, "server", "localhost");
  detail_tls::sign(dir, "server", local_san, 2, "365");
  detail_tls::key_and_request(dir, "expired", "localhost");
  // -days -1: notAfter a day before notBefore (OpenSSL 3.0 accepts it): expired from the start.
  detail_tls::sign(dir, "expired", local_san, 3, "-1");
  detail_tls::key_and_request(dir, "wrong_host", "wrong.example");
  detail_tls::sign(dir, "wrong_host", "DNS:wrong.example", 4, "365");
  openssl({"req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", dir / "self_signed.key", "-out", dir / "self_signed.pem", "-days", "365",
           "-subj", "/CN=localhost", "-addext", "subjectAltName=" + local_san});
  tls_certs c;
  c.ca = dir / "ca.pem";
  c.server_cert = dir / "server.pem";
  c.server_key = dir / "server.key";
  c.expired_cert = dir / "expired.pem";
  c.expired_key = dir / "expired.key";
  c.wrong_host_cert = dir / "wrong_host.pem";
  c.wrong_host_key = dir / "wrong_host.key";
  c.self_signed_cert = dir / "self_signed.pem";
  c.self_signed_key = dir / "self_signed.key";
  return c;
}

}  // namespace coring::test
