#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: bench smoke test for issue 12: loadgen --http and the proxy path, 0 errors.
"""Usage: http_smoke.py --loadgen BIN --echo-backend BIN [--http-server BIN] [--tcp-proxy BIN]

1. loadgen --http against a tiny in-process HTTP server: a correct one passes; one that answers
   404, a wrong body, a wrong Content-Length, chunked, a response too many, or closes after the
   first response makes loadgen exit 1 (the checker sees each of them).
2. http_server (port 0, hello profile): loadgen --http for 1 s with 10 connections, pipelined
   (depth 4) and paced (2000 req/s): exit status 0 and "errors": 0 required. If it has --root,
   the same with a 64 KiB file whose every byte is compared (--expect-body-file).
3. tcp_proxy in front of the echo backend: loadgen echo mode for 1 s, the same two ways.
Servers must exit 0 on SIGTERM. A missing http_server or tcp_proxy is skipped with a message;
when both are missing the test reports "skipped" (exit status 77) after step 1."""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverproc import start_server, stop_server  # noqa: E402

HELLO = "Hello, world!\n"


def run_loadgen(loadgen, port, extra, timeout=30):
    cmd = [loadgen, "--host", "127.0.0.1", "--port", str(port), "--connections", "10",
           "--duration", "1", "--json"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        result = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = None
    return p.returncode, result, p.stderr


def response(mode, n):
    """The bytes the fake server answers request n (0-based) with."""
    ok = f"HTTP/1.1 200 OK\r\nContent-Length: {len(HELLO)}\r\n\r\n{HELLO}".encode()
    if mode == "404":
        return f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(HELLO)}\r\n\r\n{HELLO}".encode()
    if mode == "body":
        return ok.replace(b"world", b"w0rld")
    if mode == "length":
        return f"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{HELLO[:13]}".encode()
    if mode == "chunked":
        return (f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                f"{len(HELLO):x}\r\n{HELLO}\r\n0\r\n\r\n").encode()
    if mode == "extra":
        return ok + ok
    if mode == "split":  # correct, but dribbled out byte by byte (see serve)
        return ok
    return ok


class FakeServer:
    """Answers each "\\r\\n\\r\\n"-terminated request on a thread per connection."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf, n = b"", 0
        c.settimeout(5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # "split" really dribbles
        with c:
            while not self.stop:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    out = response(self.mode, n)
                    try:
                        if self.mode == "split" and n < 3:
                            for i in range(len(out)):
                                c.sendall(out[i:i + 1])
                        else:
                            c.sendall(out)
                    except OSError:
                        return
                    n += 1
                    if self.mode == "close":
                        return

    def close(self):
        self.stop = True
        self.sock.close()
        self.thread.join(5)


def stop_checked(name, server, failures):
    rc = stop_server(server)
    if rc != 0:
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        print(f"FAIL {name} after SIGTERM: {how} (expected exit status 0)")
        failures.append(f"{name}: {how} after SIGTERM")


def check_run(name, rc, res, err, failures):
    ok = rc == 0 and res is not None and res["errors"] == 0 and res["round_trips"] > 0
    print(f"{'ok  ' if ok else 'FAIL'} {name}: rc={rc} per_s={res and res['rt_per_s']} "
          f"errors={res and res['errors']}")
    if not ok:
        failures.append(f"{name}: {err.strip()[:1000]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--echo-backend", required=True)
    ap.add_argument("--http-server")
    ap.add_argument("--tcp-proxy")
    a = ap.parse_args()
    failures = []
    http_args = ["--http", "--expect-body", HELLO]
    modes = (("d4", ["--depth", "4"]), ("rate 2000", ["--rate", "2000"]))

    # 1. The checker itself, against a fake server that is right, then wrong in one way each.
    for mode in ("ok", "split", "404", "body", "length", "chunked", "extra", "close"):
        fake = FakeServer(mode)
        try:
            extra = ["--duration", "0.3", "--connections", "2"] if mode in ("ok", "split") else []
            rc, res, err = run_loadgen(a.loadgen, fake.port, http_args + extra)
        finally:
            fake.close()
        good = mode in ("ok", "split")
        ok = res is not None and ((rc == 0 and res["errors"] == 0 and res["round_trips"] > 0)
                                  if good else (rc == 1 and res["errors"] > 0))
        print(f"{'ok  ' if ok else 'FAIL'} loadgen --http {'accepts' if good else 'rejects'} "
              f"a server that answers {mode!r}: rc={rc} errors={res and res['errors']}")
        if not ok:
            failures.append(f"loadgen --http vs {mode!r}: rc={rc} {err.strip()[:500]}")

    ran = False
    # 2. http_server's hello profile.
    if a.http_server and os.access(a.http_server, os.X_OK):
        ran = True
        for mode, extra in modes:
            server, port = start_server([a.http_server, "--port", "0"])
            try:
                rc, res, err = run_loadgen(a.loadgen, port,
                                           http_args + extra + ["--server-pid", str(server.pid)])
            finally:
                stop_checked(f"http_server {mode}", server, failures)
            check_run(f"http_server hello {mode}", rc, res, err, failures)
        h = subprocess.run([a.http_server, "--help"], capture_output=True, text=True, timeout=10)
        if "--root" in h.stdout + h.stderr:
            with tempfile.TemporaryDirectory() as root:
                body = os.path.join(root, "64k.bin")
                with open(body, "wb") as f:
                    f.write(os.urandom(64 * 1024))
                for mode, extra in modes:
                    server, port = start_server([a.http_server, "--port", "0", "--root", root])
                    try:
                        rc, res, err = run_loadgen(
                            a.loadgen, port, ["--http", "--path", "/64k.bin",
                                              "--expect-body-file", body] + extra)
                    finally:
                        stop_checked(f"http_server --root {mode}", server, failures)
                    check_run(f"http_server --root, 64 KiB file, {mode}", rc, res, err, failures)
        else:
            print("SKIP http_server --root: not in its --help yet")
    else:
        print("SKIP http_server: not built (examples/http/http_server)")

    # 3. tcp_proxy in front of the echo backend.
    if a.tcp_proxy and os.access(a.tcp_proxy, os.X_OK):
        ran = True
        for mode, extra in modes:
            backend, bport = start_server([a.echo_backend, "--port", "0"])
            try:
                proxy, port = start_server([a.tcp_proxy, "--listen", "127.0.0.1:0",
                                            "--to", f"127.0.0.1:{bport}"])
                try:
                    rc, res, err = run_loadgen(a.loadgen, port,
                                               extra + ["--server-pid", str(proxy.pid)])
                finally:
                    stop_checked(f"tcp_proxy {mode}", proxy, failures)
            finally:
                stop_checked(f"echo backend ({mode})", backend, failures)
            check_run(f"tcp_proxy echo {mode}", rc, res, err, failures)
    else:
        print("SKIP tcp_proxy: not built (examples/tcp_proxy)")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    if failures:
        return 1
    return 0 if ran else 77


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
