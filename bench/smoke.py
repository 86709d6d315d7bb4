#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: bench smoke test: baselines echo with 0 errors; loadgen catches a broken server.
"""Usage: smoke.py --epoll-echo BIN --uring-echo BIN --loadgen BIN

1. epoll_echo and uring_echo (port 0) each serve loadgen for 1 s with 10 connections, flat
   (depth 4) and paced (2000 rt/s): exit status 0 and "errors": 0 required.
2. epoll_echo --broken drop|flip|dup|close: loadgen must exit 1 with errors > 0, proving that the
   checker sees loss, corruption, duplication and an early close.
Every step has a timeout; servers are killed whatever happens."""
import argparse
import json
import os
import subprocess
import sys

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epoll-echo", required=True)
    ap.add_argument("--uring-echo", required=True)
    ap.add_argument("--loadgen", required=True)
    a = ap.parse_args()
    failures = []

    for name, binary in (("epoll_echo", a.epoll_echo), ("uring_echo", a.uring_echo)):
        for mode, extra in (("flat d4", ["--depth", "4"]), ("rate 2000", ["--rate", "2000"])):
            server, port = start_server([binary, "--port", "0"])
            try:
                rc, res, err = run_loadgen(a.loadgen, port, extra + ["--server-pid", str(server.pid)])
            finally:
                stop_server(server)
            ok = rc == 0 and res is not None and res["errors"] == 0 and res["round_trips"] > 0
            print(f"{'ok  ' if ok else 'FAIL'} {name} {mode}: rc={rc} "
                  f"rt/s={res and res['rt_per_s']} errors={res and res['errors']}")
            if not ok:
                failures.append(f"{name} {mode}: {err.strip()}")

    for broken in ("drop", "flip", "dup", "close"):
        server, port = start_server([a.epoll_echo, "--port", "0", "--broken", broken])
        try:
            rc, res, err = run_loadgen(a.loadgen, port, ["--depth", "4"])
        finally:
            stop_server(server)
        ok = rc == 1 and res is not None and res["errors"] > 0
        print(f"{'ok  ' if ok else 'FAIL'} loadgen detects --broken {broken}: rc={rc} "
              f"errors={res and res['errors']}")
        if not ok:
            failures.append(f"--broken {broken} not detected (rc={rc})")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
