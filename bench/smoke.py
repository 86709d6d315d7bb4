#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: bench smoke test: baselines echo with 0 errors; loadgen catches a broken server.
"""Usage: smoke.py --epoll-echo BIN --uring-echo BIN --loadgen BIN

1. epoll_echo and uring_echo (port 0) each serve loadgen for 1 s with 10 connections, flat
   (depth 4) and paced (2000 rt/s): exit status 0 and "errors": 0 required.
2. Half-close: 256 KiB written in 100-byte writes, then shutdown(SHUT_WR): every byte must come
   back, then EOF.
3. epoll_echo --broken drop|flip|dup|close: loadgen must exit 1 with errors > 0, proving that the
   checker sees loss, corruption, duplication and an early close.
Every server must exit 0 on the SIGTERM that ends its step (a crash or a hang at shutdown fails).
Every step has a timeout; servers are killed whatever happens."""
import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverproc import start_server, stop_server  # noqa: E402


def run_loadgen(loadgen, port, extra, timeout=30):
    cmd = [loadgen, "--host", "127.0.0.1", "--port", str(port), "--connections", "10",
           "--duration", "1", "--json"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        result = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = None
    return p.returncode, result, p.stderr


def stop_checked(name, server, failures):
    """Stops server (SIGTERM; SIGKILL after 5 s) and records a failure unless it exited 0."""
    rc = stop_server(server)
    if rc != 0:
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        print(f"FAIL {name} after SIGTERM: {how} (expected exit status 0)")
        failures.append(f"{name}: {how} after SIGTERM")


def half_close_echo(port, total=256 * 1024, chunk=100, timeout=10.0):
    """Writes total bytes in small writes, shuts down the write side, reads to EOF.
    Returns None if every byte came back in order, else a description of what went wrong."""
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(total))
    got = bytearray()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setblocking(False)
        sent = 0
        with selectors.DefaultSelector() as sel:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while time.monotonic() < deadline:
                for _, ev in sel.select(0.1):
                    if ev & selectors.EVENT_WRITE and sent < total:
                        try:
                            sent += s.send(data[sent:sent + chunk])
                        except BlockingIOError:
                            pass
                        if sent == total:
                            s.shutdown(socket.SHUT_WR)
                            sel.modify(s, selectors.EVENT_READ)
                    if ev & selectors.EVENT_READ:
                        try:
                            b = s.recv(65536)
                        except BlockingIOError:
                            continue
                        if not b:
                            if bytes(got) == data:
                                return None
                            return f"EOF after {len(got)} of {total} bytes (match so far: " \
                                   f"{bytes(got) == data[:len(got)]})"
                        got += b
    return f"timed out with {len(got)} of {total} bytes echoed"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epoll-echo", required=True)
    ap.add_argument("--uring-echo", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--coring-echo", help="examples/echo_server, when built")
    a = ap.parse_args()
    failures = []
    servers = [("epoll_echo", a.epoll_echo), ("uring_echo", a.uring_echo)]
    if a.coring_echo:
        servers.insert(0, ("coring echo_server", a.coring_echo))

    for name, binary in servers:
        for mode, extra in (("flat d4", ["--depth", "4"]), ("rate 2000", ["--rate", "2000"])):
            server, port = start_server([binary, "--port", "0"])
            try:
                rc, res, err = run_loadgen(a.loadgen, port, extra + ["--server-pid", str(server.pid)])
            finally:
                stop_checked(f"{name} {mode}", server, failures)
            ok = rc == 0 and res is not None and res["errors"] == 0 and res["round_trips"] > 0
            print(f"{'ok  ' if ok else 'FAIL'} {name} {mode}: rc={rc} "
                  f"rt/s={res and res['rt_per_s']} errors={res and res['errors']}")
            if not ok:
                failures.append(f"{name} {mode}: {err.strip()}")

    # Half-close: the client stops sending, the server must still echo everything, then close.
    for name, binary in servers:
        server, port = start_server([binary, "--port", "0"])
        try:
            problem = half_close_echo(port)
        finally:
            stop_checked(f"{name} half-close", server, failures)
        print(f"{'ok  ' if problem is None else 'FAIL'} {name} echoes all bytes after the "
              f"client's shutdown(SHUT_WR){'' if problem is None else ': ' + problem}")
        if problem is not None:
            failures.append(f"{name} half-close: {problem}")

    for broken in ("drop", "flip", "dup", "close"):
        server, port = start_server([a.epoll_echo, "--port", "0", "--broken", broken])
        try:
            rc, res, err = run_loadgen(a.loadgen, port, ["--depth", "4"])
        finally:
            stop_checked(f"epoll_echo --broken {broken}", server, failures)
        ok = rc == 1 and res is not None and res["errors"] > 0
        print(f"{'ok  ' if ok else 'FAIL'} loadgen detects --broken {broken}: rc={rc} "
              f"errors={res and res['errors']}")
        if not ok:
            failures.append(f"--broken {broken} not detected (rc={rc})")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    # SIGTERM -> SystemExit, so the finally blocks stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
