// SPDX-License-Identifier: MIT
// Description: examples/http/static_files in-process: a coring server task answers raw requests
// with serve(); status lines, headers and bytes checked (traversal in every form, ranges, 404,
// index.html, content types, HEAD, If-Modified-Since, the sendfile/read/splice body paths).
#include "test_support.hpp"

#include "static_files.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace coring;
using namespace std::chrono_literals;
using test::bytes;
using test::temp_dir;
using test::write_file;
using body_method = http::static_files::body_method;

namespace {

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 88172645U;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>('a' + x % 26);
  }
  return s;
}

// The tree every test serves:
//   root/index.html, a.txt, style.css, big.bin (1 MiB + 1), sub/index.html, sub/x.json,
//   empty/ (no index), in_link -> a.txt, out_link -> ../secret.txt, abs_link -> /…/secret.txt,
//   fifo (a named pipe); secret.txt next to root.
struct site {
  temp_dir d{"http-files"};
  std::string root = d / "root";
  std::string big = pattern((1 << 20) + 1);
  site() {
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    REQUIRE(::mkdir((root + "/sub").c_str(), 0755) == 0);
    REQUIRE(::mkdir((root + "/empty").c_str(), 0755) == 0);
    write_file(d / "secret.txt", "SECRET");
    write_file(root + "/index.html", "<h1>home</h1>\n");
    write_file(root + "/a.txt", "0123456789");
    write_file(root + "/style.css", "body{}");
    write_file(root + "/big.bin", big);
    write_file(root + "/sub/index.html", "<h1>sub</h1>\n");
    write_file(root + "/sub/x.json", "{}");
    REQUIRE(::symlink("a.txt", (root + "/in_link").c_str()) == 0);
    REQUIRE(::symlink("../secret.txt", (root + "/out_link").c_str()) == 0);
    REQUIRE(::symlink((d / "secret.txt").c_str(), (root + "/abs_link").c_str()) == 0);
    REQUIRE(::mkfifo((root + "/fifo").c_str(), 0644) == 0);
    const timespec times[2] = {{1'700'000'000, 0}, {1'700'000'000, 0}};  // Tue, 14 Nov 2023
    REQUIRE(::utimensat(AT_FDCWD, (root + "/a.txt").c_str(), times, 0) == 0);
  }
};

// A minimal request-head reader for the test (the server's own parser is not needed here):
// request line, then header lines; fills what static_files reads.
void parse_head(std::string_view head, http::request& r) {
  auto line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  const auto sp1 = line.find(' '), sp2 = line.rfind(' ');
  r.method_text = line.substr(0, sp1);
  r.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  r.minor_version = line.substr(sp2 + 1) == "HTTP/1.0" ? 0 : 1;
  r.verb = r.method_text == "GET"    ? http::method::get
           : r.method_text == "HEAD" ? http::method::head
           : r.method_text == "POST" ? http::method::post
                                     : http::method::unknown;
  r.keep_alive = r.minor_version == 1;
  head.remove_prefix(line_end + 2);
  while (!head.empty() && !head.starts_with("\r\n")) {
    line_end = head.find("\r\n");
    line = head.substr(0, line_end);
    const auto colon = line.find(':');
    http::header h{line.substr(0, colon), line.substr(colon + 1)};
    while (!h.value.empty() && h.value.front() == ' ')
      h.value.remove_prefix(1);
    r.header_storage[r.header_count++] = h;
    if (h.name == "Range") r.range = h.value;
    if (h.name == "If-Modified-Since") r.if_modified_since = h.value;
    if (h.name == "Connection") r.keep_alive = h.value != "close";
    head.remove_prefix(line_end + 2);
  }
}

// Accepts one connection and answers its requests with serve() until one says close or the
// client has no more. Returns: serve()'s results in order.
task<std::vector<bool>> server(coring::socket& listener, http::static_files& files,
                               body_method body) {
  coring::socket s = co_await listener.accept();
  http::static_files::connection c;
  http::static_files::options o;
  o.send_timeout = 10s;
  o.body = body;
  std::string in;
  std::vector<bool> results;
  std::array<char, 4096> buf{};
  for (int i = 0; i < 1000; ++i) {
    const auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) {
      std::size_t n = co_await s.recv(std::as_writable_bytes(std::span(buf)));
      if (n == 0) break;
      in.append(buf.data(), n);
      continue;
    }
    http::request r;
    parse_head(std::string_view(in).substr(0, end + 4), r);
    const bool keep = co_await files.serve(s, r, "Server: test\r\n", c, o);
    results.push_back(keep);
    in.erase(0, end + 4);
    if (!keep) break;
  }
  s.shutdown(SHUT_WR);
  co_return results;
}

task<std::string> client(io_context& ctx, address to, std::string requests) {
  coring::socket s(ctx, AF_INET, SOCK_STREAM);
  co_await s.connect(to);
  co_await s.send_all(requests);
  s.shutdown(SHUT_WR);
  std::string all = co_await test::read_all(s);
  co_return all;
}

struct response {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

// Splits what came back into responses (bodies framed by Content-Length; none after HEAD/304).
std::vector<response> split(std::string_view all, bool head = false) {
  std::vector<response> out;
  for (int i = 0; i < 100 && !all.empty(); ++i) {
    response r;
    const auto end = all.find("\r\n\r\n");
    REQUIRE(end != std::string_view::npos);
    std::string_view h = all.substr(0, end + 2);
    REQUIRE(h.starts_with("HTTP/1.1 "));
    r.status = std::atoi(std::string(h.substr(9, 3)).c_str());
    h.remove_prefix(h.find("\r\n") + 2);
    while (!h.empty()) {
      const auto eol = h.find("\r\n");
      std::string_view line = h.substr(0, eol);
      const auto colon = line.find(": ");
      r.headers[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 2));
      h.remove_prefix(eol + 2);
    }
    all.remove_prefix(end + 4);
    std::size_t len = 0;
    if (!head && r.status != 304 && r.headers.count("Content-Length"))
      len = std::stoul(r.headers["Content-Length"]);
    REQUIRE(all.size() >= len);
    r.body = std::string(all.substr(0, len));
    all.remove_prefix(len);
    out.push_back(std::move(r));
  }
  return out;
}

// Sends requests on one connection to a fresh static_files over root; returns what came back.
struct talk_result {
  std::vector<bool> keep;
  std::string raw;
};
talk_result talk(const std::string& root, std::string requests,
                 body_method body = body_method::sendfile) {
  io_context ctx;
  http::static_files files(ctx, root);
  return test::run_on(ctx, [&](io_context& ctx) -> task<talk_result> {
    coring::socket listener = tcp_listen(ctx, "127.0.0.1:0");
    auto srv = server(listener, files, body);
    auto cli = client(ctx, listener.sock_name(), std::move(requests));
    auto both = co_await when_all(std::move(srv), std::move(cli));
    co_return talk_result{std::get<0>(both), std::get<1>(both)};
  });
}

response get_one(const std::string& root, const std::string& target, std::string extra = {},
                 std::string verb = "GET") {
  auto x = talk(root, verb + " " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n");
  auto rs = split(x.raw, verb == "HEAD");
  REQUIRE(rs.size() == 1);
  return rs[0];
}

}  // namespace

TEST_CASE("a file is served with its type, length, Last-Modified and bytes") {
  site s;
  response r = get_one(s.root, "/a.txt");
  CHECK(r.status == 200);
  CHECK(r.body == "0123456789");
  CHECK(r.headers["Content-Length"] == "10");
  CHECK(r.headers["Content-Type"] == "text/plain; charset=utf-8");
  CHECK(r.headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT");
  CHECK(r.headers["Accept-Ranges"] == "bytes");
  CHECK(r.headers["Server"] == "test");
  CHECK(get_one(s.root, "/style.css").headers["Content-Type"] == "text/css; charset=utf-8");
  CHECK(get_one(s.root, "/sub/x.json").headers["Content-Type"] == "application/json");
  CHECK(get_one(s.root, "/big.bin").headers["Content-Type"] == "application/octet-stream");
  CHECK(get_one(s.root, "/in_link").body == "0123456789");  // a symlink inside the root
  // Query and fragment are not part of the path; escapes are decoded.
  CHECK(get_one(s.root, "/a.txt?x=1#f").body == "0123456789");
  CHECK(get_one(s.root, "/%61.txt").body == "0123456789");
  CHECK(get_one(s.root, "http://t/a.txt").body == "0123456789");  // absolute-form
}

TEST_CASE("Content-Type follows the extension") {
  using http::content_type_for;
  CHECK(content_type_for("a/index.html") == "text/html; charset=utf-8");
  CHECK(content_type_for("x.CSS") == "text/css; charset=utf-8");
  CHECK(content_type_for("app.js") == "text/javascript; charset=utf-8");
  CHECK(content_type_for("d.json") == "application/json");
  CHECK(content_type_for("t.txt") == "text/plain; charset=utf-8");
  CHECK(content_type_for("i.png") == "image/png");
  CHECK(content_type_for("i.jpg") == "image/jpeg");
  CHECK(content_type_for("i.gif") == "image/gif");
  CHECK(content_type_for("i.svg") == "image/svg+xml");
  CHECK(content_type_for("favicon.ico") == "image/x-icon");
  CHECK(content_type_for("m.wasm") == "application/wasm");
  CHECK(content_type_for("doc.pdf") == "application/pdf");
  CHECK(content_type_for("noext") == "application/octet-stream");
  CHECK(content_type_for("dir.d/noext") == "application/octet-stream");
}

TEST_CASE("a directory serves its index.html, redirects without its slash, 404 without index") {
  site s;
  response home = get_one(s.root, "/");
  CHECK(home.status == 200);
  CHECK(home.body == "<h1>home</h1>\n");
  CHECK(home.headers["Content-Type"] == "text/html; charset=utf-8");
  CHECK(get_one(s.root, "/sub/").body == "<h1>sub</h1>\n");
  response redirect = get_one(s.root, "/sub?q=1");
  CHECK(redirect.status == 301);
  CHECK(redirect.headers["Location"] == "/sub/?q=1");
  CHECK(get_one(s.root, "/empty/").status == 404);
  CHECK(get_one(s.root, "/missing.txt").status == 404);
  CHECK(get_one(s.root, "/a.txt/").status == 404);  // ENOTDIR
  CHECK(get_one(s.root, "/fifo").status == 404);    // not a regular file; opening does not block
}

TEST_CASE("nothing outside the root is ever served, whatever the spelling") {
  site s;
  for (const char* target :
       {"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt", "/out_link", "/abs_link", "/./../secret.txt",
        "//../secret.txt", "/..%2fsecret.txt"}) {
    CAPTURE(target);
    response r = get_one(s.root, target);
    CHECK(r.status == 404);
    CHECK(r.body.find("SECRET") == std::string::npos);
  }
  // An absolute path after the slash stays relative to the root.
  CHECK(get_one(s.root, "//etc/passwd").status == 404);
  CHECK(get_one(s.root, "/" + s.d.path() + "/secret.txt").status == 404);
  // NUL bytes and broken escapes are refused (400) and the connection closes.
  for (const char* target : {"/a.txt%00.html", "/%zz", "/%2", "/%", "*"}) {
    CAPTURE(target);
    auto x = talk(s.root, std::string("GET ") + target + " HTTP/1.1\r\nHost: t\r\n\r\n" +
                              "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    auto rs = split(x.raw);
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].status == 400);
    CHECK(x.keep == std::vector<bool>{false});
  }
  // A .. that stays inside the root is fine.
  CHECK(get_one(s.root, "/sub/../a.txt").body == "0123456789");
}

TEST_CASE("single byte ranges give 206 with Content-Range; past the end 416; several ranges 200") {
  site s;
  response r = get_one(s.root, "/a.txt", "Range: bytes=2-4\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "234");
  CHECK(r.headers["Content-Range"] == "bytes 2-4/10");
  CHECK(r.headers["Content-Length"] == "3");
  r = get_one(s.root, "/a.txt", "Range: bytes=7-\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "789");
  r = get_one(s.root, "/a.txt", "Range: bytes=-4\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "6789");
  CHECK(r.headers["Content-Range"] == "bytes 6-9/10");
  r = get_one(s.root, "/a.txt", "Range: bytes=5-100\r\n");  // the end is clamped
  CHECK(r.status == 206);
  CHECK(r.body == "56789");
  r = get_one(s.root, "/a.txt", "Range: bytes=10-20\r\n");
  CHECK(r.status == 416);
  CHECK(r.headers["Content-Range"] == "bytes */10");
  CHECK(get_one(s.root, "/a.txt", "Range: bytes=-0\r\n").status == 416);
  r = get_one(s.root, "/a.txt", "Range: bytes=0-1,4-5\r\n");
  CHECK(r.status == 200);
  CHECK(r.body == "0123456789");
  CHECK(get_one(s.root, "/a.txt", "Range: bytes=4-2\r\n").status == 200);  // invalid: ignored
  CHECK(get_one(s.root, "/a.txt", "Range: lines=1-2\r\n").status == 200);
  // If-Range with another date: the whole file.
  CHECK(get_one(s.root, "/a.txt", "Range: bytes=2-4\r\nIf-Range: Mon, 01 Jan 2001 00:00:00 GMT\r\n")
            .status == 200);
  // A range of the large file takes the sendfile path.
  r = get_one(s.root, "/big.bin", "Range: bytes=100000-\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == s.big.substr(100000));
}

TEST_CASE("a large file arrives whole; HEAD sends the head only; If-Modified-Since gives 304") {
  site s;
  response big = get_one(s.root, "/big.bin");
  CHECK(big.status == 200);
  CHECK(big.body == s.big);
  response head = get_one(s.root, "/big.bin", {}, "HEAD");
  CHECK(head.status == 200);
  CHECK(head.headers["Content-Length"] == std::to_string(s.big.size()));
  CHECK(head.body.empty());
  response not_modified =
      get_one(s.root, "/a.txt", "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n");
  CHECK(not_modified.status == 304);
  CHECK(not_modified.body.empty());
  CHECK(get_one(s.root, "/a.txt", "If-Modified-Since: Tue, 14 Nov 2023 22:13:19 GMT\r\n").status ==
        200);
  CHECK(get_one(s.root, "/a.txt", "If-Modified-Since: yesterday\r\n").status == 200);
  response post = get_one(s.root, "/a.txt", {}, "POST");
  CHECK(post.status == 405);
  CHECK(post.headers["Allow"] == "GET, HEAD");
}

TEST_CASE("keep-alive: several requests on one connection, in order; Connection: close ends it") {
  site s;
  auto x = talk(s.root,
                "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /sub/x.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
  auto rs = split(x.raw);
  REQUIRE(rs.size() == 4);
  CHECK(rs[0].body == "0123456789");
  CHECK(rs[1].body == s.big);
  CHECK(rs[2].status == 404);
  CHECK(rs[3].body == "{}");
  CHECK(rs[3].headers["Connection"] == "close");
  CHECK(x.keep == std::vector<bool>{true, true, true, false});
}

TEST_CASE("large bodies go out whole and in ranges by sendfile, read + send and splice") {
  site s;
  for (body_method m : {body_method::sendfile, body_method::read_send, body_method::splice}) {
    CAPTURE(static_cast<int>(m));
    auto x = talk(s.root,
                  "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-70000\r\n\r\n"
                  "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
                  m);
    auto rs = split(x.raw);
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].body == s.big);
    CHECK(rs[1].status == 206);
    CHECK(rs[1].body == s.big.substr(s.big.size() - 70000));
    CHECK(rs[2].body == "0123456789");
    CHECK(x.keep == std::vector<bool>{true, true, true});
  }
}

TEST_CASE("dates are IMF-fixdates both ways") {
  using namespace std::chrono;
  const auto t = sys_days(year(1994) / November / 6) + 8h + 49min + 37s;
  CHECK(http::http_date(t) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(http::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == t);
  CHECK_FALSE(http::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"));
  CHECK_FALSE(http::parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT"));
}

TEST_CASE("a reader that never reads a large file is cut off at send_timeout") {
  site s;
  write_file(s.root + "/huge.bin", pattern(32 << 20));
  for (body_method m : {body_method::sendfile, body_method::read_send, body_method::splice}) {
    CAPTURE(static_cast<int>(m));
    io_context ctx;
    http::static_files files(ctx, s.root);
    test::run_on(ctx, [&files, m](io_context& ctx) -> task<> {
      auto pair = co_await test::make_tcp_pair(ctx);
      pair.server.set_option(sockopt::send_buffer_size{64 << 10});
      pair.client.set_option(sockopt::recv_buffer_size{64 << 10});
      http::request r;
      parse_head("GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n", r);
      http::static_files::connection c;
      http::static_files::options o;
      o.send_timeout = 200ms;
      o.body = m;
      const auto t0 = std::chrono::steady_clock::now();
      const bool keep = co_await files.serve(pair.server, r, {}, c, o);
      const auto took = std::chrono::steady_clock::now() - t0;
      CHECK_FALSE(keep);
      CHECK(took >= 150ms);
      CHECK(took < 5s);
    });
  }
}
