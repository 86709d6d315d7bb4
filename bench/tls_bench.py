#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: TLS benchmark driver (issue 13): TLS echo vs Asio ssl::stream, HTTPS vs nginx.
"""Measures coring's TLS servers against Asio's ssl::stream and nginx (issue 13).

  tls_bench.py --build-dir build                        # every profile, 5 rounds
  tls_bench.py --build-dir build --rounds 1 --duration 2 --profiles echo-64B-c100-rate40k
  tls_bench.py --table-from docs/bench-tls-results.json # the tables again from saved samples
  tls_bench.py --build-dir build --smoke                # the meson `bench` suite's quick check

Profiles (PROFILES below):
  echo-*       loadgen --tls (every byte verified) against examples/echo_server --tls-cert/-key
               ("coring") and bench/asio_tls_echo ("asio_tls"); paced (equal offered load: CPU
               per round trip is comparable) and flat out (closed loop, depth 1).
  https-hello  wrk -t1 -c100 keep-alive against examples/http/http_server --tls-cert/-key and
               nginx (1 worker): requests/s and server CPU per request.
  https-handshake
               loadgen --http --tls --reconnect (100 connections, one request each with
               "Connection: close", a new connection and a full handshake every time: the
               client keeps no session, so nothing is resumed): handshakes/s, CPU each.
  https-resume wrk -H "Connection: close": wrk keeps its SSL object across reconnects
               (SSL_clear keeps the session), so these are TLS 1.3 resumptions (PSK + ECDHE)
               wherever the server issues tickets, not full handshakes.
  idle-tls     server RSS per idle TLS connection: N connections that finished the handshake
               and one echo (echo servers) or one keep-alive request (HTTP servers) sit idle;
               RSS delta / N, measured after a warm-up like memory.py's.
Every server gets the same EC P-256 certificate (made here with the openssl command) and TLS 1.3
with TLS_AES_128_GCM_SHA256 only: asio_tls_echo --ciphersuites, nginx `ssl_protocols TLSv1.3;
ssl_conf_command Ciphersuites`, and on the client side loadgen --tls-ciphersuites and, for wrk,
an OPENSSL_CONF whose system_default section sets MinProtocol and Ciphersuites (coring's servers
are held to the suite by the client). loadgen reports the negotiated version and suite; anything
else is an error.

Pinning, CPU accounting, alternation and noise handling are run.py's and http_bench.py's: the
server alone on --server-cpu (0), the client on --client-cpu (1); loadgen profiles read the
server's process CPU clock over the measured window (--server-pid; nginx: its worker), wrk
profiles utime+stime of every server process around the measured run (after a 1 s warmup run);
a fresh server per sample; the server order rotates each round; a sample is noisy when another
tenant used more than --max-other-load of a pinned CPU, is re-run, and is left out of the medians
when every server of the profile has a clean one.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import WRK_LUA, Server, child_pids, free_port, wait_connectable  # noqa: E402
from memory import idle_clients, release  # noqa: E402
from run import cpu_jiffies, fmt, noisy_note, other_load, pin, proc_ticks, wait_quiet  # noqa: E402
from serverproc import rss_kib, start_server, stop_server  # noqa: E402

HELLO = "Hello, world!\n"
SUITE = "TLS_AES_128_GCM_SHA256"

# name: kind (echo | https | idle), tool (loadgen | wrk | rss) and the load.
PROFILES = {
    "echo-64B-c100-rate40k": dict(kind="echo", tool="loadgen", size=64, conns=100, rate=40000),
    "echo-64B-c100-flat": dict(kind="echo", tool="loadgen", size=64, conns=100),
    "echo-4K-c100-rate20k": dict(kind="echo", tool="loadgen", size=4096, conns=100, rate=20000),
    "echo-4K-c100-flat": dict(kind="echo", tool="loadgen", size=4096, conns=100),
    "https-hello-c100-flat": dict(kind="https", tool="wrk", conns=100),
    "https-handshake-c100-flat": dict(kind="https", tool="loadgen", conns=100, reconnect=True),
    "https-resume-c100-flat": dict(kind="https", tool="wrk", conns=100, close=True),
    "idle-tls": dict(kind="idle", tool="rss"),
}
DEFAULT_PROFILES = [p for p in PROFILES if p != "https-resume-c100-flat"]
# Servers of each kind, coring's first; REFERENCE is the one the ratio columns divide by.
GROUPS = {"echo": ["coring", "asio_tls"], "https": ["http_server", "nginx"],
          "idle": ["coring", "http_server", "asio_tls", "nginx"]}
REFERENCE = {"echo": "asio_tls", "https": "nginx", "idle": "nginx"}
CORING = ("coring", "http_server")
HTTP_SERVERS = ("http_server", "nginx")  # idle-tls: one keep-alive request instead of an echo
# Issue 13's goals: (profile prefix, metric, comparison with the reference, bound).
GOALS = [
    ("echo-", "cpu", "<=", 0.92, "TLS echo server CPU per round trip ≤ 0.92× Asio's"),
    ("https-hello", "ops", ">=", 1.0, "HTTPS keep-alive requests/s ≥ 1.0× nginx's"),
    ("https-handshake", "ops", ">=", 0.95, "full handshakes/s ≥ 0.95× nginx's"),
    # One client core cannot saturate the server with TLS (OpenSSL 3 clients cost more per
    # handshake than servers), so the rates above meet the client's limit: the server's
    # capacity, 1 / its CPU per operation, is the figure that compares the servers.
    ("https-hello", "cap", ">=", 1.0, "HTTPS keep-alive capacity (1 / CPU per request)"),
    ("https-handshake", "cap", ">=", 0.95, "full handshake capacity (1 / CPU per handshake)"),
    ("idle-", "kib", "<=", 1.0, "idle TLS connection memory ≤ nginx's"),
]

# The client-side OpenSSL configuration wrk runs with (OPENSSL_CONF).
OPENSSL_CNF = f"""openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = {SUITE}
"""

NGINX_CONF = """worker_processes 1;
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites {suite};
    location / {{
      default_type text/plain;
      return 200 "Hello, world!\\n";
    }}
  }}
}}
"""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def make_tmp(openssl):
    """A temp dir with a CA, a server certificate for localhost/127.0.0.1 (EC P-256), wrk's lua
    script and OpenSSL client configuration."""
    d = tempfile.mkdtemp(prefix="coring-tls-bench-")
    os.chmod(d, 0o755)  # nginx's worker runs as nobody

    def ossl(*a):
        subprocess.run([openssl, *a], check=True, capture_output=True, timeout=60)
    p = {k: os.path.join(d, k) for k in ("ca.pem", "ca.key", "server.pem", "server.key",
                                         "server.csr", "ext.cnf", "report.lua", "openssl.cnf")}
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.pem"], "-days", "7",
         "-subj", "/CN=coring bench CA")
    ossl("req", *ec, "-keyout", p["server.key"], "-out", p["server.csr"], "-subj", "/CN=localhost")
    ossl("x509", "-req", "-in", p["server.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
         "-CAcreateserial", "-out", p["server.pem"], "-days", "7", "-extfile", p["ext.cnf"])
    for k in ("server.pem", "server.key", "ca.pem"):
        os.chmod(p[k], 0o644)
    with open(p["report.lua"], "w") as f:
        f.write(WRK_LUA)
    with open(p["openssl.cnf"], "w") as f:
        f.write(OPENSSL_CNF)
    return {"dir": d, "ca": p["ca.pem"], "cert": p["server.pem"], "key": p["server.key"],
            "lua": p["report.lua"], "cnf": p["openssl.cnf"]}


def start_named(args, name, tmp):
    """Starts server `name` on the server CPU; returns an http_bench.Server."""
    tls = ["--tls-cert", tmp["cert"], "--tls-key", tmp["key"]]
    if name in ("coring", "asio_tls", "http_server"):
        cmd = {"coring": [args.echo_server] + tls + args.coring_arg,
               "asio_tls": [args.asio_tls_echo] + tls + ["--ciphersuites", SUITE],
               "http_server": [args.http_server] + tls + args.http_server_arg}[name]
        p, port = start_server(pin(args.server_cpu, cmd + ["--port", "0"], args.pin))
        return Server(p, port)
    if name == "nginx":
        port = free_port()
        conf = os.path.join(tmp["dir"], "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(port=port, tmp=tmp["dir"], cert=tmp["cert"],
                                      key=tmp["key"], suite=SUITE))
        cmd = [args.nginx, "-e", "stderr", "-p", tmp["dir"], "-c", conf,
               "-g", f"daemon off; pid {tmp['dir']}/nginx.pid;"]
        p = subprocess.Popen(pin(args.server_cpu, cmd, args.pin), stdin=subprocess.DEVNULL)
        try:
            wait_connectable(port, p)
            workers = []
            deadline = time.monotonic() + 10
            while not workers and time.monotonic() < deadline:
                workers = child_pids(p.pid)
                time.sleep(0.02)
            if len(workers) != 1:
                raise RuntimeError(f"nginx: expected 1 worker, found {workers}")
        except BaseException:
            stop_server(p)
            raise
        return Server(p, port, pids=[p.pid, workers[0]], main_pid=workers[0])
    raise ValueError(name)


def loadgen_cmd(args, tmp, port, extra):
    return [args.loadgen, "--tls", "--ca", tmp["ca"], "--tls-name", "localhost",
            "--tls-ciphersuites", SUITE, "--host", "127.0.0.1", "--port", str(port)] + extra


def run_wrk(args, prof, port, duration, tmp):
    cmd = [args.wrk, "-t1", f"-c{prof['conns']}", f"-d{duration}s", "--timeout", "10s",
           "-s", tmp["lua"]]
    if prof.get("close"):
        cmd += ["-H", "Connection: close"]
    env = dict(os.environ, OPENSSL_CONF=tmp["cnf"])
    return subprocess.run(pin(args.client_cpu, cmd + [f"https://127.0.0.1:{port}/"], args.pin),
                          capture_output=True, text=True, timeout=duration + 60, env=env)


def tls_checked(res, out):
    """Counts an error unless loadgen negotiated TLS 1.3 with SUITE."""
    if out.get("tls_version") != "TLSv1.3" or out.get("tls_cipher") != SUITE:
        log(f"  negotiated {out.get('tls_version')} {out.get('tls_cipher')}, "
            f"expected TLSv1.3 {SUITE}")
        res["errors"] = res.get("errors", 0) + 1
    return res


def run_rss(args, name, profile, tmp):
    """idle-* profiles: RSS per idle TLS connection (memory.py's method, over TLS)."""
    server = start_named(args, name, tmp)
    n = args.idle_connections
    extra = ["--http", "--expect-body", HELLO] if name in HTTP_SERVERS else ["--size", "64"]
    try:
        warm, _ = idle_clients(args.loadgen, server.port, 10, 600,
                               extra=loadgen_cmd(args, tmp, server.port, extra)[1:])
        release(warm)
        subprocess.run(pin(args.client_cpu, loadgen_cmd(args, tmp, server.port, extra + [
            "--connections", "10", "--duration", "1"]), args.pin),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        time.sleep(args.settle)
        before = rss_kib(server.main_pid)
        p, echoed = idle_clients(args.loadgen, server.port, n, 600,
                                 extra=loadgen_cmd(args, tmp, server.port, extra)[1:] + ["--json"])
        time.sleep(args.settle)
        held = rss_kib(server.main_pid)
        rc, summary = release(p)
        time.sleep(args.settle)
        after = rss_kib(server.main_pid)
    finally:
        server_rc = server.stop()
    errors = 0 if rc == 0 and echoed == n else 1
    if errors:
        log(f"  idle clients: {echoed} of {n} set up, loadgen rc {rc}: {summary[:300]}")
    res = {"profile": profile, "server": name, "tool": "rss", "connections": n,
           "echoed": echoed, "rss_before_kib": before, "rss_held_kib": held,
           "rss_after_close_kib": after, "kib_per_conn": (held - before) / echoed if echoed
           else None, "errors": errors, "tool_rc": rc, "server_rc": server_rc,
           "other_load": {}, "noisy": False}
    try:
        res = tls_checked(res, json.loads(summary.splitlines()[-1]))
    except (IndexError, ValueError):
        res["errors"] += 1
    return res


def run_sample(args, name, profile, tmp):
    prof = PROFILES[profile]
    if prof["tool"] == "rss":
        return run_rss(args, name, profile, tmp)
    server = start_named(args, name, tmp)
    hz = os.sysconf("SC_CLK_TCK")
    lg = None
    try:
        if prof["tool"] == "wrk" and args.warmup > 0:
            run_wrk(args, prof, server.port, max(1, round(args.warmup)), tmp)
        if prof["tool"] == "loadgen":
            extra = ["--connections", str(prof["conns"]), "--duration", str(args.duration),
                     "--warmup", str(args.warmup), "--server-pid", str(server.main_pid),
                     "--json"]
            if prof["kind"] == "echo":
                extra += ["--size", str(prof["size"]), "--depth", "1"]
            else:
                extra += ["--http", "--expect-body", HELLO]
            if prof.get("reconnect"):
                extra += ["--reconnect"]
            if prof.get("rate"):
                extra += ["--rate", str(prof["rate"])]
            lg = loadgen_cmd(args, tmp, server.port, extra)
        before, s_before = cpu_jiffies(), server.ticks()
        ch_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if prof["tool"] == "wrk":
            p = run_wrk(args, prof, server.port, max(1, round(args.duration)), tmp)
        else:
            p = subprocess.run(pin(args.client_cpu, lg, args.pin), capture_output=True,
                               text=True, timeout=args.warmup + args.duration + 120)
        ch_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after, s_after = cpu_jiffies(), server.ticks()
    finally:
        server_rc = server.stop()
    client_ticks = hz * (ch_after.ru_utime + ch_after.ru_stime
                         - ch_before.ru_utime - ch_before.ru_stime)
    server_ticks = None if s_before is None or s_after is None else s_after - s_before

    def other(cpu, own):
        (b0, t0), (b1, t1) = before.get(cpu, (0, 0)), after.get(cpu, (0, 0))
        if t1 <= t0 or own is None:
            return None
        return max(0.0, (b1 - b0 - own) / (t1 - t0))

    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        out = None
        log(f"  {prof['tool']} printed no JSON (rc={p.returncode}): {p.stderr.strip()[:500]}")
    if p.returncode != 0 and p.stderr.strip():
        log("  " + p.stderr.strip().replace("\n", "\n  ")[:1000])
    if prof["tool"] == "wrk" and out:
        secs = out["duration_us"] / 1e6
        reqs = out["requests"]
        errors = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
        res = {"ops_per_s": reqs / secs, "p50_us": out["p50_us"], "p99_us": out["p99_us"],
               "errors": errors,
               "server_cpu_us_per_op": (server_ticks * 1e6 / hz / reqs
                                        if server_ticks is not None and reqs else None),
               "wrk": out}
        if reqs and out["bytes"] / reqs < len(HELLO):
            res["errors"] += 1
            log(f"  {out['bytes'] / reqs:.0f} bytes per response, less than the body")
    elif out:
        res = tls_checked({"ops_per_s": out["rt_per_s"], "p50_us": out["p50_us"],
                           "p99_us": out["p99_us"], "errors": out["errors"],
                           "incomplete": out["incomplete"],
                           "server_cpu_us_per_op": out["server_cpu_us_per_rt"],
                           "loadgen": out}, out)
    else:
        res = {"ops_per_s": 0, "errors": -1}
    if server_rc != 0:  # coring's programs, Asio's and nginx all exit 0 on SIGTERM
        log(f"  {name} exited with status {server_rc} after SIGTERM")
        res["errors"] = res.get("errors", 0) + 1
    res.update({"profile": profile, "server": name, "tool": prof["tool"],
                "tool_rc": p.returncode, "server_rc": server_rc,
                "other_load": {"server_cpu": other(f"cpu{args.server_cpu}", server_ticks),
                               "client_cpu": other(f"cpu{args.client_cpu}", client_ticks)}})
    res["noisy"] = other_load(res) > args.max_other_load
    cpu_total = after.get(f"cpu{args.server_cpu}", (0, 0))[1] - \
        before.get(f"cpu{args.server_cpu}", (0, 0))[1]
    if cpu_total > 0:
        res["server_cpu_util"] = None if server_ticks is None else server_ticks / cpu_total
        res["client_cpu_util"] = client_ticks / cpu_total
    return res


def median(samples, key):
    vals = [s[key] for s in samples if isinstance(s.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def cells(samples, profile):
    """{server: (samples used, every sample)} of one profile, noisy ones left out only when
    every server has a clean one (a quiet and a loaded sample are never compared)."""
    names = list(dict.fromkeys(s["server"] for s in samples if s["profile"] == profile))
    every = {n: [s for s in samples if s["profile"] == profile and s["server"] == n]
             for n in names}
    clean = all(any(not s.get("noisy") for s in ss) for ss in every.values())
    return {n: ([s for s in ss if not s.get("noisy")] if clean else ss, ss)
            for n, ss in every.items()}, clean


def summary(samples, profile):
    """{server: {"ops", "cpu", "kib", ...}} medians of one profile."""
    out = {}
    for name, (ss, every) in cells(samples, profile)[0].items():
        out[name] = {"ops": median(ss, "ops_per_s"), "cpu": median(ss, "server_cpu_us_per_op"),
                     "kib": median(ss, "kib_per_conn"), "p50": median(ss, "p50_us"),
                     "p99": median(ss, "p99_us"), "n": len(ss),
                     "su": median(ss, "server_cpu_util"), "cu": median(ss, "client_cpu_util"),
                     "errors": sum(max(s.get("errors", 0), 0) for s in ss),
                     "failed": sum(1 for s in ss if s.get("errors", 0) != 0
                                   or s.get("tool_rc") != 0),
                     "noisy": noisy_note(every)}
    return out


def ratio(a, b):
    return a / b if a is not None and b else None


def tables(samples, profiles):
    rows = ["| profile | server | ops/s | p50 µs | p99 µs | server CPU µs/op | ops/s ÷ ref | "
            "CPU/op ÷ ref | server / client CPU used | errors | noisy |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    mem = ["| profile | server | connections | RSS before KiB | RSS held KiB | KiB / connection | "
           "÷ nginx | RSS after close KiB | errors |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for profile in profiles:
        kind = PROFILES.get(profile, {}).get("kind", "echo")
        ref = REFERENCE[kind]
        sm = summary(samples, profile)
        r = sm.get(ref, {})
        for name, v in sm.items():
            err = str(v["errors"]) + (f" ({v['failed']} bad runs)" if v["failed"] else "")
            if kind == "idle":
                ss = [s for s in samples if s["profile"] == profile and s["server"] == name]
                mem.append(f"| {profile} | {name} | {ss[-1].get('echoed')} | "
                           f"{fmt(median(ss, 'rss_before_kib'), ',.0f')} | "
                           f"{fmt(median(ss, 'rss_held_kib'), ',.0f')} | {fmt(v['kib'], '.2f')} | "
                           f"{fmt(ratio(v['kib'], r.get('kib')), '.2f')} | "
                           f"{fmt(median(ss, 'rss_after_close_kib'), ',.0f')} | {err} |")
                continue
            rows.append(f"| {profile} | {name} | {fmt(v['ops'], ',.0f')} | "
                        f"{fmt(v['p50'], '.0f')} | {fmt(v['p99'], '.0f')} | "
                        f"{fmt(v['cpu'], '.2f')} | {fmt(ratio(v['ops'], r.get('ops')), '.2f')} | "
                        f"{fmt(ratio(v['cpu'], r.get('cpu')), '.2f')} | "
                        f"{fmt(v['su'], '.0%')} / {fmt(v['cu'], '.0%')} | {err} | {v['noisy']} |")
    goals = ["| goal | profile | measured | met |", "|---|---|---:|---|"]
    for prefix, metric, op, bound, text in GOALS:
        for profile in profiles:
            if not profile.startswith(prefix):
                continue
            sm = summary(samples, profile)
            r = sm.get(REFERENCE[PROFILES[profile]["kind"]], {})
            for name in (n for n in CORING if n in sm):
                if metric == "cap":
                    q = ratio(r.get("cpu"), sm[name].get("cpu"))
                else:
                    q = ratio(sm[name].get(metric), r.get(metric))
                met = "n/a" if q is None else (
                    "yes" if (q <= bound if op == "<=" else q >= bound) else "**no**")
                goals.append(f"| {text} | {profile} ({name}) | {fmt(q, '.2f')}× | {met} |")
    parts = []
    if len(rows) > 2:
        parts.append("\n".join(rows))
    if len(mem) > 2:
        parts.append("\n".join(mem))
    parts.append("\n".join(goals))
    return "\n\n".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="meson build dir (finds loadgen, asio_tls_echo, "
                    "echo_server, http_server)")
    ap.add_argument("--loadgen")
    ap.add_argument("--echo-server", help="default BUILD/examples/echo_server")
    ap.add_argument("--coring-arg", action="append", default=[],
                    help="extra argument for echo_server (repeatable)")
    ap.add_argument("--asio-tls-echo", help="default BUILD/bench/asio_tls_echo")
    ap.add_argument("--http-server", help="default BUILD/examples/http/http_server")
    ap.add_argument("--http-server-arg", action="append", default=[],
                    help="extra argument for http_server (repeatable)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--openssl", default=shutil.which("openssl") or "/usr/bin/openssl")
    ap.add_argument("--servers", help="comma-separated subset of: coring, asio_tls, "
                    "http_server, nginx")
    ap.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                    help="comma-separated subset of: " + ", ".join(PROFILES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before each RSS read")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="don't use taskset")
    ap.add_argument("--json-out", help="write every raw sample to this JSON file")
    ap.add_argument("--table-from", metavar="JSON", help="print the tables of a --json-out file")
    ap.add_argument("--max-other-load", type=float, default=0.10)
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy sample")
    ap.add_argument("--retry-pause", type=float, default=2.0)
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    ap.add_argument("--smoke", action="store_true", help="quick check for meson test: 1 round "
                    "of 1 s, 100 idle connections, paced rates / 10, 0 errors required; exit "
                    "77 when no TLS server was built")
    args = ap.parse_args()

    if args.table_from:
        with open(args.table_from) as f:
            data = json.load(f)
        profiles = list(dict.fromkeys(s["profile"] for s in data["samples"]))
        print(tables(data["samples"], profiles))
        return 0

    b = args.build_dir
    def default(value, rel):
        return value or (os.path.join(b, rel) if b else None)
    args.loadgen = default(args.loadgen, "bench/loadgen")
    args.echo_server = default(args.echo_server, "examples/echo_server")
    args.asio_tls_echo = default(args.asio_tls_echo, "bench/asio_tls_echo")
    args.http_server = default(args.http_server, "examples/http/http_server")
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
        args.idle_connections, args.settle, args.retries = 100, 0.2, 0
        for p in PROFILES.values():
            if p.get("rate"):
                p["rate"] //= 10

    def usable(path):
        return bool(path) and os.access(path, os.X_OK)

    def has_tls_flag(path):  # before issue 13's examples land, they have no --tls-cert
        if not usable(path):
            return False
        h = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
        return "--tls-cert" in h.stdout + h.stderr
    if not usable(args.loadgen):
        ap.error("no loadgen binary: give --loadgen or --build-dir")
    lg_help = subprocess.run([args.loadgen, "--tls", "--port", "1", "--duration", "0.01"],
                             capture_output=True, text=True, timeout=30)
    if "without OpenSSL" in lg_help.stderr:
        log("tls_bench: loadgen was built without OpenSSL: nothing to do")
        return 77
    available = {"coring": has_tls_flag(args.echo_server), "asio_tls": usable(args.asio_tls_echo),
                 "http_server": has_tls_flag(args.http_server), "nginx": usable(args.nginx)}
    wanted = args.servers.split(",") if args.servers else list(available)
    for n in wanted:
        if n not in available:
            ap.error(f"unknown server {n!r}")
        if not available[n]:
            log(f"tls_bench: {n} not found (or without --tls-cert), skipped")
    servers = [n for n in wanted if available[n]]
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in PROFILES:
            ap.error(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    if not usable(args.wrk) and any(PROFILES[p]["tool"] == "wrk" for p in profiles):
        log("tls_bench: wrk not found, its profiles are skipped")
        profiles = [p for p in profiles if PROFILES[p]["tool"] != "wrk"]
    if not usable(args.openssl):
        ap.error("the openssl command is needed to make the certificates")

    tmp = make_tmp(args.openssl)
    if args.smoke and "asio_tls" in servers:  # the checker's own check: a wrong name fails
        try:
            server = start_named(args, "asio_tls", tmp)
            try:
                cmd = loadgen_cmd(args, tmp, server.port, ["--connections", "2", "--duration",
                                                           "0.5", "--size", "64"])
                cmd[cmd.index("localhost")] = "wrong.example"
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            finally:
                server.stop()
            if p.returncode != 1 or "hostname mismatch" not in p.stderr:
                log(f"tls_bench: loadgen --tls-name wrong.example gave status {p.returncode}: "
                    f"{p.stderr.strip()[:300]}")
                shutil.rmtree(tmp["dir"], ignore_errors=True)
                return 1
        except BaseException:
            shutil.rmtree(tmp["dir"], ignore_errors=True)
            raise
    samples = []
    started = time.time()
    try:
        for rnd in range(args.rounds):
            for profile in profiles:
                names = [n for n in GROUPS[PROFILES[profile]["kind"]] if n in servers]
                order = names[rnd % len(names):] + names[:rnd % len(names)] if names else []
                for name in order:
                    best = None
                    for attempt in range(args.retries + 1):
                        if args.wait_quiet > 0:
                            wait_quiet([f"cpu{args.server_cpu}", f"cpu{args.client_cpu}"],
                                       args.max_other_load, args.wait_quiet)
                        try:
                            res = run_sample(args, name, profile, tmp)
                        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                            log(f"  {name} {profile}: {e}")
                            res = {"profile": profile, "server": name, "errors": 1,
                                   "other_load": {}, "noisy": False, "failure": str(e)}
                        res["round"], res["attempt"] = rnd, attempt
                        ol = res.get("other_load", {})
                        if PROFILES[profile]["tool"] == "rss":
                            log(f"round {rnd + 1}/{args.rounds} {profile:26} {name:11} "
                                f"{fmt(res.get('kib_per_conn'), '.2f')} KiB/connection "
                                f"({res.get('echoed')} held)  errors {res.get('errors')}")
                        else:
                            log(f"round {rnd + 1}/{args.rounds} {profile:26} {name:11} "
                                f"{res.get('ops_per_s', 0):>9,.0f} ops/s  "
                                f"p99 {fmt(res.get('p99_us'), '.0f'):>6} µs  "
                                f"server {fmt(res.get('server_cpu_us_per_op'), '.2f')} µs/op  "
                                f"errors {res.get('errors')}  other load "
                                f"{fmt(ol.get('server_cpu'), '.0%')}/"
                                f"{fmt(ol.get('client_cpu'), '.0%')}"
                                + ("  NOISY" + (", retrying" if attempt < args.retries else "")
                                   if res["noisy"] else ""))
                        if best is None or other_load(res) < other_load(best):
                            best = res
                        if not res["noisy"]:
                            break
                        time.sleep(args.retry_pause)
                    samples.append(best)
    finally:
        shutil.rmtree(tmp["dir"], ignore_errors=True)

    if not samples:
        log("tls_bench: no server to measure")
        return 77
    print(f"\n{args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warmup), medians; "
          f"server on CPU {args.server_cpu}, client on CPU {args.client_cpu}; "
          f"{platform.release()}, {os.cpu_count()} CPUs; TLS 1.3 {SUITE}, EC P-256; "
          f"{time.time() - started:.0f} s\n")
    print(tables(samples, [p for p in profiles if any(s["profile"] == p for s in samples)]))
    if args.json_out:
        meta = {"started": started, "seconds": time.time() - started,
                "kernel": platform.release(), "cpus": os.cpu_count(), "rounds": args.rounds,
                "duration": args.duration, "warmup": args.warmup, "servers": servers,
                "suite": SUITE, "key": "EC P-256", "idle_connections": args.idle_connections,
                "reference_by_profile": {p: REFERENCE[PROFILES[p]["kind"]] for p in profiles},
                "profiles": {p: PROFILES[p] for p in profiles}}
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "samples": samples}, f, indent=1)
        log(f"raw samples written to {args.json_out}")
    bad = [s for s in samples if s.get("errors", 0) != 0 or s.get("tool_rc", 0) != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
