#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: server memory per idle connection: RSS delta over N held connections / N.
"""Usage: memory.py --build-dir build [--connections 10000]
       memory.py --server NAME=CMD ... --loadgen PATH [--connections N]

For each server: start it (fresh, "--port 0" appended unless given), let loadgen open 10
connections, echo one message on each and leave, then echo for one second on 10 connections
(this pays for lazy one-time setup, such as the pages of a buffer ring, which the traffic cycles
through), read VmRSS; then a separate loadgen process (`--idle-connections N`) opens N connections in batches,
echoes one 64-byte message on each (so the server has really set every connection up) and holds
them; VmRSS again; KiB per connection = delta / N. After the clients leave, VmRSS a third time
("after close") to show whether memory returns. The fd limit is 20,000 per process, which is why
the connections come from another process; every baseline server raises its own RLIMIT_NOFILE.
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import DEFAULT_SERVERS  # noqa: E402
from serverproc import rss_kib, start_server, stop_server  # noqa: E402


def idle_clients(loadgen, port, n, hold, extra=()):
    """Starts loadgen holding n idle connections (extra: more loadgen arguments, e.g. --tls);
    returns (Popen, echoed) once it says ready."""
    p = subprocess.Popen([loadgen, "--host", "127.0.0.1", "--port", str(port),
                          "--idle-connections", str(n), "--hold", str(hold), *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # "ready N" (loadgen gives up connecting after ~12 s)
    if not line.startswith("ready"):
        p.kill()
        p.wait()
        raise RuntimeError(f"loadgen did not get ready: {line!r}")
    return p, int(line.split()[1])


def release(p, timeout=30):
    """Closes loadgen's stdin (it then closes its connections and exits); returns its summary."""
    try:
        out, _ = p.communicate(timeout=timeout)  # closes stdin first
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return p.returncode, out.strip()


def measure(loadgen, name, cmd, n, settle):
    server, port = start_server(cmd)
    try:
        warm, _ = idle_clients(loadgen, port, 10, 600)
        release(warm)
        # One second of echo traffic on 10 connections cycles a provided-buffer ring through
        # every buffer: its pages are a fixed cost of the server, not of the idle connections.
        subprocess.run([loadgen, "--host", "127.0.0.1", "--port", str(port), "--connections",
                        "10", "--size", "64", "--duration", "1"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
        time.sleep(settle)
        before = rss_kib(server.pid)
        p, echoed = idle_clients(loadgen, port, n, 600)
        time.sleep(settle)
        held = rss_kib(server.pid)
        rc, summary = release(p)
        time.sleep(settle)
        after = rss_kib(server.pid)
    finally:
        server_rc = stop_server(server)
    return {"server": name, "connections": n, "echoed": echoed, "rss_before_kib": before,
            "rss_held_kib": held, "rss_after_close_kib": after,
            "kib_per_conn": (held - before) / echoed if echoed else None,
            "loadgen_rc": rc, "loadgen": summary, "server_rc": server_rc}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", default=[], metavar="NAME=CMD")
    ap.add_argument("--build-dir")
    ap.add_argument("--loadgen")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each RSS read")
    args = ap.parse_args()

    servers = {}
    for spec in args.server:
        name, _, cmd = spec.partition("=")
        argv = shlex.split(cmd)
        servers[name] = argv if "--port" in argv else argv + ["--port", "0"]
    if args.build_dir:
        args.loadgen = args.loadgen or os.path.join(args.build_dir, "bench", "loadgen")
        if not servers:
            for name, rel in DEFAULT_SERVERS:
                path = os.path.join(args.build_dir, rel)
                if os.access(path, os.X_OK):
                    servers[name] = [path, "--port", "0"]
    if not servers or not args.loadgen:
        ap.error("give --build-dir, or --server NAME=CMD and --loadgen")

    print(f"| server | connections held | RSS before KiB | RSS held KiB | KiB / connection | "
          f"RSS after close KiB | errors |")
    print("|---|---:|---:|---:|---:|---:|---|")
    failed = False
    for name, cmd in servers.items():
        try:
            r = measure(args.loadgen, name, cmd, args.connections, args.settle)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"| {name} | failed: {e} | | | | | |")
            failed = True
            continue
        ok = r["loadgen_rc"] == 0 and r["echoed"] == args.connections
        failed |= not ok
        per = "n/a" if r["kib_per_conn"] is None else f"{r['kib_per_conn']:.2f}"
        print(f"| {name} | {r['echoed']} | {r['rss_before_kib']} | {r['rss_held_kib']} | {per} | "
              f"{r['rss_after_close_kib']} | {'0' if ok else r['loadgen']} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    # SIGTERM -> SystemExit, so the finally blocks stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
