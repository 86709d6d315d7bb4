#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: benchmark driver: every profile x every echo server, R rounds, markdown medians.
"""Runs loadgen against several echo servers and prints a markdown table of medians.

  run.py --build-dir build                      # every server built there, all profiles
  run.py --server coring=build/examples/echo_server --server epoll=build/bench/epoll_echo \\
         --loadgen build/bench/loadgen --reference coring --profiles 64B-c100-rate60k

A server command must accept "--port N" (run.py appends "--port 0" unless the command has a
--port) and print "listening on HOST:PORT" on stdout once ready. Each sample starts a fresh
server pinned to CPU 0 (taskset) and loadgen pinned to CPU 1, warms up, measures, and stops the
server with SIGTERM. Within each round every profile runs every server once; the server order is
rotated from round to round so slow drift on the machine does not favour one server.
The "ratio" column is a server's CPU per round trip divided by the reference server's (same
profile, medians): < 1 means cheaper than the reference.
A sample is "noisy" when something other than the server and loadgen used more than
--max-other-load of either pinned CPU (other tenants are visible in /proc/stat even when top
cannot see them); noisy samples are re-run up to --retries times and counted in the table.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverproc import start_server, stop_server  # noqa: E402

# name: (size, connections, depth, rate or None)
PROFILES = {
    "64B-c100-d1-flat": (64, 100, 1, None),
    "64B-c100-d16-flat": (64, 100, 16, None),
    "4K-c100-d1-flat": (4096, 100, 1, None),
    "64B-c100-rate60k": (64, 100, 1, 60000),
    "64B-c100-rate120k": (64, 100, 1, 120000),
    "64B-c1000-rate60k": (64, 1000, 1, 60000),
    # Issue 14: the scale profile (CPU per round trip as connections grow, same offered load)
    "64B-c10000-rate60k": (64, 10000, 1, 60000),
    "4K-c100-rate30k": (4096, 100, 1, 30000),
}

# Issue 14: a profile's warm-up is at least this long (s), so that the server has accepted every
# connection and answered each once before the measured window (loadgen's cold_connections).
MIN_WARMUP = {"64B-c10000-rate60k": 3.0}

# Servers found in a build dir when no --server is given (name, path relative to the build dir).
DEFAULT_SERVERS = [
    ("coring", "examples/echo_server"),
    ("epoll", "bench/epoll_echo"),
    ("uring", "bench/uring_echo"),
    ("asio_epoll", "bench/asio_echo_epoll"),
    ("asio_uring", "bench/asio_echo_uring"),
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpu_jiffies():
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = [int(v) for v in parts[1:9]]
                out[parts[0]] = (sum(vals) - vals[3] - vals[4], sum(vals))
    return out


def proc_ticks(pid):
    """utime + stime of pid in clock ticks, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def wait_quiet(cpus, limit, max_wait):
    """Waits (up to max_wait s) until the given CPUs were less than `limit` busy over 1 s.
    Returns the seconds waited."""
    waited = 0.0
    while True:
        before = cpu_jiffies()
        time.sleep(1.0)
        after = cpu_jiffies()
        busy = max((after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in cpus)
        if busy < limit or waited >= max_wait:
            return waited
        waited += 1.0


def pin(cpu, cmd, enabled):
    return (["taskset", "-c", str(cpu)] + cmd) if enabled else cmd


def raise_nofile():
    """preexec_fn for the server and loadgen: the soft open-file limit up to the hard one, so a
    server that does not raise its own still holds 10,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check_nofile(profiles):
    """Exits with a message when a profile needs more descriptors than the hard limit allows
    (each side holds one per connection, plus a few)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = max(PROFILES[p][1] for p in profiles) + 64
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"run.py: the open-file hard limit is {hard}, and {need} are needed "
                 f"(raise it, e.g. `ulimit -Hn {need}` as root, or leave out the big profiles)")


def warmup_for(args, profile):
    return max(args.warmup, MIN_WARMUP.get(profile, 0.0))


def run_sample(args, name, cmd, profile):
    """One fresh server, one loadgen run. Also measures "other load": the share of the server's
    and loadgen's CPUs that neither process used (other tenants of the machine, ksoftirqd);
    processes in other PID namespaces are invisible to top but not to /proc/stat."""
    size, conns, depth, rate = PROFILES[profile]
    warmup = warmup_for(args, profile)
    server, port = start_server(pin(args.server_cpu, cmd, args.pin), preexec_fn=raise_nofile)
    lg = [args.loadgen, "--host", "127.0.0.1", "--port", str(port), "--connections", str(conns),
          "--size", str(size), "--depth", str(depth), "--duration", str(args.duration),
          "--warmup", str(warmup), "--server-pid", str(server.pid), "--json"]
    if rate:
        lg += ["--rate", str(rate)]
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s, cpu_l = f"cpu{args.server_cpu}", f"cpu{args.loadgen_cpu}"
    before, server_before = cpu_jiffies(), proc_ticks(server.pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(pin(args.loadgen_cpu, lg, args.pin), capture_output=True, text=True,
                           timeout=warmup + args.duration + 60, preexec_fn=raise_nofile)
        # The server is not reaped yet, so the children's rusage delta is loadgen alone.
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after, server_after = cpu_jiffies(), proc_ticks(server.pid)
    finally:
        server_rc = stop_server(server)
    loadgen_ticks = hz * (children_after.ru_utime + children_after.ru_stime
                          - children_before.ru_utime - children_before.ru_stime)

    def other(cpu, own_ticks):
        (b0, t0), (b1, t1) = before.get(cpu, (0, 0)), after.get(cpu, (0, 0))
        if t1 <= t0 or own_ticks is None:
            return None
        return max(0.0, (b1 - b0 - own_ticks) / (t1 - t0))

    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res = {"errors": -1, "rt_per_s": 0}
        log(f"  loadgen printed no JSON (rc={p.returncode}): {p.stderr.strip()[:500]}")
    if p.returncode != 0 and p.stderr.strip():
        log("  " + p.stderr.strip().replace("\n", "\n  ")[:1000])
    server_ticks = (None if server_before is None or server_after is None
                    else server_after - server_before)
    res.update({
        "profile": profile, "server": name, "loadgen_rc": p.returncode, "server_rc": server_rc,
        "other_load": {"server_cpu": other(cpu_s, server_ticks),
                       "loadgen_cpu": other(cpu_l, loadgen_ticks)},
    })
    res["noisy"] = other_load(res) > args.max_other_load
    res["warmup"] = warmup
    if res.get("cold_connections", 0) > 0:
        log(f"  {res['cold_connections']} connections had no round trip before the measured "
            f"window (warm-up {warmup:g} s too short): the sample counts as bad")
    return res


def bad_sample(s):
    """Errors, a failed loadgen, or connection setup inside the measured window."""
    return s.get("errors", 0) != 0 or s.get("loadgen_rc") != 0 or s.get("cold_connections", 0) > 0


def other_load(sample):
    loads = [v for v in sample["other_load"].values() if v is not None]
    return max(loads) if loads else 0.0


def median(samples, key):
    vals = [s[key] for s in samples if isinstance(s.get(key), (int, float)) and s[key] is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def noisy_note(every):
    noisy = sum(1 for s in every if s.get("noisy"))
    if noisy == len(every):
        return f"{noisy}/{len(every)}: ALL NOISY, medians unreliable"
    return f"{noisy}/{len(every)}"


def table(samples, servers, profiles, reference):
    rows = ["| profile | server | round trips/s | p50 µs | p99 µs | server CPU µs/rt | "
            f"CPU/rt ÷ {reference} | errors | noisy (left out) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    def pick(profile, name):
        """Samples of one cell, noisy ones left out unless nothing else is there."""
        ss = [s for s in samples if s["profile"] == profile and s["server"] == name]
        return [s for s in ss if not s.get("noisy")] or ss, ss

    for profile in profiles:
        ref_cpu = median(pick(profile, reference)[0], "server_cpu_us_per_rt")
        for name in servers:
            ss, every = pick(profile, name)
            if not ss:
                continue
            cpu = median(ss, "server_cpu_us_per_rt")
            ratio = cpu / ref_cpu if cpu is not None and ref_cpu else None
            errors = sum(max(s.get("errors", 0), 0) for s in ss)
            failed = sum(1 for s in ss if bad_sample(s))
            err = str(errors) + (f" ({failed} bad runs)" if failed else "")
            rows.append(f"| {profile} | {name} | {fmt(median(ss, 'rt_per_s'), ',.0f')} | "
                        f"{fmt(median(ss, 'p50_us'), '.1f')} | {fmt(median(ss, 'p99_us'), '.1f')} | "
                        f"{fmt(cpu, '.2f')} | {fmt(ratio, '.2f')} | {err} | "
                        f"{noisy_note(every)} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                    help="echo server to measure (repeatable)")
    ap.add_argument("--build-dir", help="find loadgen and the servers in this meson build dir")
    ap.add_argument("--loadgen", help="loadgen binary (default: BUILD/bench/loadgen)")
    ap.add_argument("--reference", help="server the CPU/rt ratio is relative to "
                    "(default: coring if present, else the first server)")
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help="comma-separated subset of: " + ", ".join(PROFILES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="don't use taskset")
    ap.add_argument("--json-out", help="write every raw sample to this JSON file")
    ap.add_argument("--table-from", metavar="JSON", help="print the table for a --json-out file "
                    "and exit (with --reference to change the reference)")
    ap.add_argument("--max-other-load", type=float, default=0.10,
                    help="a sample is noisy when another tenant used more than this share of "
                    "the server's or loadgen's CPU (default 0.10)")
    ap.add_argument("--retries", type=int, default=2, help="re-runs of a noisy sample")
    ap.add_argument("--retry-pause", type=float, default=5.0, help="seconds before a re-run")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each sample, wait up to this long for both CPUs to be idle "
                    "(busy < --max-other-load over 1 s)")
    args = ap.parse_args()

    if args.table_from:
        with open(args.table_from) as f:
            data = json.load(f)
        samples, meta = data["samples"], data.get("meta", {})
        names = list(dict.fromkeys(s["server"] for s in samples))
        profiles = list(dict.fromkeys(s["profile"] for s in samples))
        reference = args.reference or meta.get("reference") or names[0]
        print(table(samples, names, profiles, reference))
        return 0

    servers = {}
    for spec in args.server:
        name, sep, cmd = spec.partition("=")
        if not sep or not name or not cmd:
            ap.error(f"--server wants NAME=CMD, got {spec!r}")
        argv = shlex.split(cmd)
        if "--port" not in argv:
            argv += ["--port", "0"]
        servers[name] = argv
    if args.build_dir:
        if not args.loadgen:
            args.loadgen = os.path.join(args.build_dir, "bench", "loadgen")
        if not servers:
            for name, rel in DEFAULT_SERVERS:
                path = os.path.join(args.build_dir, rel)
                if os.access(path, os.X_OK):
                    servers[name] = [path, "--port", "0"]
    if not servers:
        ap.error("no servers: give --server NAME=CMD or --build-dir")
    if not args.loadgen or not os.access(args.loadgen, os.X_OK):
        ap.error("no loadgen binary: give --loadgen or --build-dir")
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in PROFILES:
            ap.error(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    check_nofile(profiles)
    reference = args.reference or ("coring" if "coring" in servers else next(iter(servers)))
    if reference not in servers:
        ap.error(f"--reference {reference!r} is not one of the servers: {', '.join(servers)}")

    names = list(servers)
    samples = []
    started = time.time()
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for profile in profiles:
            for name in order:
                best = None
                for attempt in range(args.retries + 1):
                    if args.wait_quiet > 0:
                        waited = wait_quiet([f"cpu{args.server_cpu}", f"cpu{args.loadgen_cpu}"],
                                            args.max_other_load, args.wait_quiet)
                        if waited:
                            log(f"  waited {waited:.0f} s for the machine to go quiet")
                    res = run_sample(args, name, servers[name], profile)
                    res["round"], res["attempt"] = rnd, attempt
                    ol = res["other_load"]
                    log(f"round {rnd + 1}/{args.rounds} {profile:18} {name:12} "
                        f"{res.get('rt_per_s', 0):>9,.0f} rt/s  "
                        f"p99 {fmt(res.get('p99_us'), '.0f'):>6} µs  "
                        f"server {fmt(res.get('server_cpu_us_per_rt'), '.2f')} µs/rt  "
                        f"errors {res.get('errors')}  setup {fmt(res.get('setup_s'), '.2f')} s  "
                        f"other load "
                        f"{fmt(ol['server_cpu'], '.0%')}/{fmt(ol['loadgen_cpu'], '.0%')}"
                        + ("  NOISY" + (", retrying" if attempt < args.retries else "")
                           if res["noisy"] else ""))
                    if best is None or other_load(res) < other_load(best):
                        best = res
                    if not res["noisy"]:
                        break
                    time.sleep(args.retry_pause)
                samples.append(best)  # the quietest attempt

    longer = [f"{k} {warmup_for(args, k):g} s" for k in profiles
              if warmup_for(args, k) > args.warmup]
    print(f"\n{args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warmup"
          + (f"; {', '.join(longer)}" if longer else "") + "), medians; "
          f"server on CPU {args.server_cpu}, loadgen on CPU {args.loadgen_cpu}; "
          f"{platform.release()}, {os.cpu_count()} CPUs\n")
    print(table(samples, names, profiles, reference))
    if args.json_out:
        meta = {"started": started, "kernel": platform.release(), "cpus": os.cpu_count(),
                "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
                "reference": reference, "servers": {k: v for k, v in servers.items()},
                "profiles": {p: dict(zip(("size", "connections", "depth", "rate"), PROFILES[p]))
                             for p in profiles}}
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "samples": samples}, f, indent=1)
        log(f"raw samples written to {args.json_out}")
    bad = [s for s in samples if bad_sample(s)]
    return 1 if bad else 0


if __name__ == "__main__":
    # SIGTERM -> SystemExit, so the finally blocks stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
