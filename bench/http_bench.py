#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: HTTP and proxy benchmark driver: http_server vs nginx, tcp_proxy vs HAProxy.
"""Measures coring's http_server against nginx and tcp_proxy against HAProxy (issue 12).

  http_bench.py --build-dir build                         # every profile, 5 rounds, ~10 min
  http_bench.py --build-dir build --rounds 1 --duration 2 \\
      --profiles hello-c100-flat,proxy-64B-c100-rate20k
  http_bench.py --table-from results.json                 # the table again from saved samples
  http_bench.py --build-dir build --variant 'tcp_proxy_splice=tcp_proxy --copy splice'

Profiles (PROFILES below): "hello" = GET / answered "Hello, world!\\n" (http_server without
--root; nginx `return 200`), "file4k"/"file1m" = a 4 KiB / 1 MiB file (http_server --root; nginx
`root` with `sendfile on`), "proxy" = echo round trips through the proxy to bench/epoll_echo.
Flat HTTP profiles use wrk (-t1, keep-alive; its lua `done` hook prints the summary as JSON);
paced ones use loadgen --http --rate (every response checked, no coordinated omission); proxy
profiles use loadgen's echo mode (every byte checked).

Pinning: the server (or proxy) runs alone on --server-cpu (0); wrk/loadgen and, for the proxy
profiles, the epoll_echo backend run on --client-cpu (1).
Server CPU per request: flat (wrk) profiles read utime+stime of every server process from
/proc/PID/stat (all threads; nginx: master + worker, the master stays idle) just before and after
the measured wrk run; paced (loadgen) profiles use loadgen --server-pid, the process CPU clock
over loadgen's measured window (nginx: its worker). Each sample starts fresh servers; the server
order alternates from round to round; noisy samples (another tenant used more than
--max-other-load of a pinned CPU) are re-run and left out of the medians like run.py does.
The ratio columns divide by the reference server of the profile (nginx, HAProxy).
"""
import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import cpu_jiffies, fmt, noisy_note, other_load, pin, proc_ticks, wait_quiet  # noqa: E402
from serverproc import start_server, stop_server  # noqa: E402

HELLO = "Hello, world!\n"
FILES = {"4k.bin": 4096, "1m.bin": 1 << 20}

# name: kind (hello | files | proxy), tool (wrk | loadgen), and the load.
PROFILES = {
    "hello-c100-flat": dict(kind="hello", tool="wrk", path="/", conns=100),
    "hello-c100-rate20k": dict(kind="hello", tool="loadgen", path="/", conns=100, rate=20000),
    "hello-c100-rate40k": dict(kind="hello", tool="loadgen", path="/", conns=100, rate=40000),
    "file4k-c100-flat": dict(kind="files", tool="wrk", path="/4k.bin", conns=100),
    "file1m-c10-flat": dict(kind="files", tool="wrk", path="/1m.bin", conns=10),
    "proxy-64B-c100-rate20k": dict(kind="proxy", tool="loadgen", size=64, conns=100, depth=1,
                                   rate=20000),
    "proxy-bulk-64K-c10-d4": dict(kind="proxy", tool="loadgen", size=65536, conns=10, depth=4),
}
HTTP_SERVERS = ("http_server", "nginx")
PROXIES = ("tcp_proxy", "haproxy")
REFERENCE = {"hello": "nginx", "files": "nginx", "proxy": "haproxy"}

WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "bytes": %d, "duration_us": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

NGINX_CONF = """worker_processes 1;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
{body}
  }}
}}
"""
NGINX_HELLO = ('    location / {\n      default_type text/plain;\n'
               '      return 200 "Hello, world!\\n";\n    }')
NGINX_FILES = "    root {root};\n    sendfile on;"

HAPROXY_CONF = """global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server echo 127.0.0.1:{backend}
"""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    """A port that was free a moment ago (for servers that cannot take port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with status {proc.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing accepts on port {port} after {timeout} s")


def child_pids(pid):
    """Direct children of pid (from /proc/*/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


class Server:
    """A started server: popen, port, pids (all its processes, for CPU), main_pid (loadgen's
    --server-pid), and extra processes started for it (the proxy's echo backend)."""

    def __init__(self, popen, port, pids=None, main_pid=None):
        self.popen, self.port = popen, port
        self.pids = pids or [popen.pid]
        self.main_pid = main_pid or popen.pid
        self.backend = None

    def ticks(self):
        vals = [proc_ticks(p) for p in self.pids]
        return None if any(v is None for v in vals) else sum(vals)

    def stop(self):
        rc = stop_server(self.popen)
        if self.backend is not None:
            stop_server(self.backend)
        return rc


def start_named(args, name, kind, tmp):
    """Starts server `name` (nginx, haproxy, or a variant of http_server or tcp_proxy) for
    profile kind `kind` on the server CPU."""
    cpu = args.server_cpu
    name, extra = args.variants.get(name, (name, []))
    if name == "http_server":
        cmd = [args.http_server, "--port", "0"] + (["--root", tmp["root"]] if kind == "files"
                                                   else [])
        p, port = start_server(pin(cpu, cmd + extra, args.pin))
        return Server(p, port)
    if name == "nginx":
        port = free_port()
        body = NGINX_FILES.format(root=tmp["root"]) if kind == "files" else NGINX_HELLO
        conf = os.path.join(tmp["dir"], f"nginx-{kind}.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(port=port, tmp=tmp["dir"], body=body))
        cmd = [args.nginx, "-e", "stderr", "-p", tmp["dir"], "-c", conf,
               "-g", f"daemon off; pid {tmp['dir']}/nginx.pid;"]
        p = subprocess.Popen(pin(cpu, cmd, args.pin), stdin=subprocess.DEVNULL)
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
    if name in PROXIES:
        backend, bport = start_server(pin(args.client_cpu, [args.echo_backend, "--port", "0"],
                                          args.pin))
        try:
            if name == "tcp_proxy":
                cmd = [args.tcp_proxy, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{bport}"]
                p, port = start_server(pin(cpu, cmd + extra, args.pin))
            else:
                port = free_port()
                conf = os.path.join(tmp["dir"], "haproxy.cfg")
                with open(conf, "w") as f:
                    f.write(HAPROXY_CONF.format(port=port, backend=bport))
                p = subprocess.Popen(pin(cpu, [args.haproxy, "-f", conf, "-db"], args.pin),
                                     stdin=subprocess.DEVNULL)
                try:
                    wait_connectable(port, p)
                except BaseException:
                    stop_server(p)
                    raise
        except BaseException:
            stop_server(backend)
            raise
        s = Server(p, port)
        s.backend = backend
        return s
    raise ValueError(name)


def run_wrk(args, prof, port, duration, tmp):
    url = f"http://127.0.0.1:{port}{prof['path']}"
    # --timeout 10s: wrk counts a request older than that as an error (default 2 s, which a
    # loaded machine exceeds without anything being wrong).
    cmd = [args.wrk, "-t1", f"-c{prof['conns']}", f"-d{duration}s", "--timeout", "10s",
           "-s", tmp["lua"], url]
    return subprocess.run(pin(args.client_cpu, cmd, args.pin), capture_output=True, text=True,
                          timeout=duration + 60)


def run_sample(args, name, profile, tmp):
    prof = PROFILES[profile]
    server = start_named(args, name, prof["kind"], tmp)
    hz = os.sysconf("SC_CLK_TCK")
    res = {}
    try:
        if prof["tool"] == "wrk" and args.warmup > 0:
            run_wrk(args, prof, server.port, max(1, round(args.warmup)), tmp)
        if prof["tool"] == "loadgen":
            lg = [args.loadgen, "--host", "127.0.0.1", "--port", str(server.port),
                  "--connections", str(prof["conns"]), "--depth", str(prof.get("depth", 1)),
                  "--duration", str(args.duration), "--warmup", str(args.warmup),
                  "--server-pid", str(server.main_pid), "--json"]
            if prof["kind"] == "proxy":
                lg += ["--size", str(prof["size"])]
            else:
                lg += ["--http", "--path", prof["path"], "--expect-body", HELLO]
            if prof.get("rate"):
                lg += ["--rate", str(prof["rate"])]
        before, s_before = cpu_jiffies(), server.ticks()
        b_before = proc_ticks(server.backend.pid) if server.backend else 0
        ch_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if prof["tool"] == "wrk":
            p = run_wrk(args, prof, server.port, max(1, round(args.duration)), tmp)
        else:
            p = subprocess.run(pin(args.client_cpu, lg, args.pin), capture_output=True,
                               text=True, timeout=args.warmup + args.duration + 60)
        ch_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after, s_after = cpu_jiffies(), server.ticks()
        b_after = proc_ticks(server.backend.pid) if server.backend else 0
    finally:
        server_rc = server.stop()
    client_ticks = hz * (ch_after.ru_utime + ch_after.ru_stime
                         - ch_before.ru_utime - ch_before.ru_stime)
    if b_before is not None and b_after is not None:
        client_ticks += b_after - b_before
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
        res = {"req_per_s": reqs / secs, "mb_per_s": out["bytes"] / secs / 1e6,
               "p50_us": out["p50_us"], "p99_us": out["p99_us"], "errors": errors,
               "bytes_per_req": out["bytes"] / reqs if reqs else None,
               "server_cpu_us_per_req": (server_ticks * 1e6 / hz / reqs
                                         if server_ticks is not None and reqs else None),
               "wrk": out}
        # A short body would pass wrk unnoticed: every response must carry at least the body.
        want = HELLO.encode() if prof["kind"] == "hello" else None
        min_bytes = len(want) if want else FILES[prof["path"].lstrip("/")]
        if reqs and out["bytes"] / reqs < min_bytes:
            res["errors"] += 1
            log(f"  {out['bytes'] / reqs:.0f} bytes per response, less than the {min_bytes} "
                "byte body")
    elif out:
        res = {"req_per_s": out["rt_per_s"], "mb_per_s": out["bytes_per_s"] / 1e6,
               "p50_us": out["p50_us"], "p99_us": out["p99_us"], "errors": out["errors"],
               "incomplete": out["incomplete"],
               "server_cpu_us_per_req": out["server_cpu_us_per_rt"],
               "loadgen": out}
    else:
        res = {"req_per_s": 0, "errors": -1}
    # coring's programs must exit 0 on SIGTERM (nginx does too; HAProxy -db dies of it).
    if server_rc != 0 and name != "haproxy":
        log(f"  {name} exited with status {server_rc} after SIGTERM")
        res["errors"] = res.get("errors", 0) + 1
    res.update({"profile": profile, "server": name, "tool": prof["tool"],
                "tool_rc": p.returncode, "server_rc": server_rc,
                "other_load": {"server_cpu": other(f"cpu{args.server_cpu}", server_ticks),
                               "client_cpu": other(f"cpu{args.client_cpu}", client_ticks)}})
    res["noisy"] = other_load(res) > args.max_other_load
    # Shares of their CPUs that the server and the client side (wrk or loadgen, plus the echo
    # backend) used over the run: a flat profile with neither near 1 was held back by others.
    cpu_total = after.get(f"cpu{args.server_cpu}", (0, 0))[1] - \
        before.get(f"cpu{args.server_cpu}", (0, 0))[1]
    if cpu_total > 0:
        res["server_cpu_util"] = None if server_ticks is None else server_ticks / cpu_total
        res["client_cpu_util"] = client_ticks / cpu_total
    return res


def median(samples, key):
    vals = [s[key] for s in samples if isinstance(s.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def table(samples, profiles):
    rows = ["| profile | server | requests/s | MB/s | p50 µs | p99 µs | server CPU µs/req | "
            "req/s ÷ ref | CPU/req ÷ ref | errors | noisy |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    for profile in profiles:
        kind = PROFILES.get(profile, {}).get("kind", "hello")
        ref = REFERENCE[kind]
        names = list(dict.fromkeys(s["server"] for s in samples if s["profile"] == profile))
        # Noisy samples are left out only when every server of the profile has a clean one:
        # a quiet sample and a loaded one differ (batching), so never compare one with the other.
        clean_everywhere = all(any(not s.get("noisy") for s in samples
                                   if s["profile"] == profile and s["server"] == n)
                               for n in names)

        def pick(profile, name, clean_everywhere=clean_everywhere):
            ss = [s for s in samples if s["profile"] == profile and s["server"] == name]
            return [s for s in ss if not s.get("noisy")] if clean_everywhere else ss, ss
        ref_ss = pick(profile, ref)[0]
        ref_rps, ref_cpu = median(ref_ss, "req_per_s"), median(ref_ss, "server_cpu_us_per_req")
        for name in names:
            ss, every = pick(profile, name)
            if not ss:
                continue
            rps, cpu = median(ss, "req_per_s"), median(ss, "server_cpu_us_per_req")
            all_noisy = all(s.get("noisy") for s in every)
            errors = sum(max(s.get("errors", 0), 0) for s in ss)
            failed = sum(1 for s in ss if s.get("errors", 0) != 0 or s.get("tool_rc") != 0)
            err = str(errors) + (f" ({failed} bad runs)" if failed else "")
            rows.append(
                f"| {profile} | {name} | {fmt(rps, ',.0f')} | "
                f"{fmt(median(ss, 'mb_per_s'), ',.1f')} | "
                f"{fmt(median(ss, 'p50_us'), '.0f')} | {fmt(median(ss, 'p99_us'), '.0f')} | "
                f"{fmt(cpu, '.2f')} | "
                f"{fmt(rps / ref_rps if rps is not None and ref_rps else None, '.2f')} | "
                f"{fmt(cpu / ref_cpu if cpu is not None and ref_cpu else None, '.2f')} | "
                f"{err} | {noisy_note(every)}{'' if clean_everywhere or all_noisy else ' kept'} |")
    return "\n".join(rows)


def make_tmp():
    d = tempfile.mkdtemp(prefix="coring-http-bench-")
    os.chmod(d, 0o755)  # nginx's worker runs as nobody
    root = os.path.join(d, "root")
    os.mkdir(root)
    os.chmod(root, 0o755)
    for fname, size in FILES.items():
        path = os.path.join(root, fname)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        os.chmod(path, 0o644)
    lua = os.path.join(d, "report.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    return {"dir": d, "root": root, "lua": lua}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="meson build dir (finds loadgen, http_server, tcp_proxy, "
                    "epoll_echo)")
    ap.add_argument("--loadgen")
    ap.add_argument("--http-server", help="http_server binary (default BUILD/examples/http/"
                    "http_server)")
    ap.add_argument("--http-server-arg", action="append", default=[],
                    help="extra argument for http_server (repeatable), e.g. --threads=1")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=BASE ARGS",
                    help="one more server to measure: http_server or tcp_proxy with other "
                    "arguments, e.g. 'tcp_proxy_splice=tcp_proxy --copy splice' (repeatable)")
    ap.add_argument("--tcp-proxy", help="tcp_proxy binary (default BUILD/examples/tcp_proxy)")
    ap.add_argument("--tcp-proxy-arg", action="append", default=[],
                    help="extra argument for tcp_proxy (repeatable)")
    ap.add_argument("--echo-backend", help="echo server behind both proxies (default "
                    "BUILD/bench/epoll_echo)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--servers", help="comma-separated subset of: "
                    + ", ".join(HTTP_SERVERS + PROXIES) + " and the --variant names")
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help="comma-separated subset of: " + ", ".join(PROFILES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per sample "
                    "(wrk: rounded to whole seconds)")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="don't use taskset")
    ap.add_argument("--json-out", help="write every raw sample to this JSON file")
    ap.add_argument("--table-from", metavar="JSON", help="print the table of a --json-out file")
    ap.add_argument("--max-other-load", type=float, default=0.10)
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy sample")
    ap.add_argument("--retry-pause", type=float, default=2.0)
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    args = ap.parse_args()

    if args.table_from:
        with open(args.table_from) as f:
            data = json.load(f)
        profiles = list(dict.fromkeys(s["profile"] for s in data["samples"]))
        print(table(data["samples"], profiles))
        return 0

    b = args.build_dir
    def default(value, rel):
        return value or (os.path.join(b, rel) if b else None)
    args.loadgen = default(args.loadgen, "bench/loadgen")
    args.http_server = default(args.http_server, "examples/http/http_server")
    args.tcp_proxy = default(args.tcp_proxy, "examples/tcp_proxy")
    args.echo_backend = default(args.echo_backend, "bench/epoll_echo")
    args.variants = {
        "http_server": ("http_server", [a for x in args.http_server_arg for a in x.split("=", 1)]),
        "tcp_proxy": ("tcp_proxy", [a for x in args.tcp_proxy_arg for a in x.split("=", 1)])}
    for spec in args.variant:
        vname, sep, rest = spec.partition("=")
        argv = shlex.split(rest)
        if not sep or not vname or not argv or argv[0] not in ("http_server", "tcp_proxy") \
                or vname in ("nginx", "haproxy", "http_server", "tcp_proxy"):
            ap.error(f"--variant wants NAME=http_server|tcp_proxy ARGS, got {spec!r}")
        args.variants[vname] = (argv[0], argv[1:])

    def usable(path):
        return bool(path) and os.access(path, os.X_OK)
    available = {"http_server": usable(args.http_server), "nginx": usable(args.nginx),
                 "tcp_proxy": usable(args.tcp_proxy) and usable(args.echo_backend),
                 "haproxy": usable(args.haproxy) and usable(args.echo_backend)}
    for vname, (base, _) in args.variants.items():
        available[vname] = available[base]
    # Groups in table order: coring's program, its variants, then the reference.
    groups = {"http": [n for n, (b, _) in args.variants.items() if b == "http_server"] + ["nginx"],
              "proxy": [n for n, (b, _) in args.variants.items() if b == "tcp_proxy"]
              + ["haproxy"]}
    wanted = args.servers.split(",") if args.servers else list(available)
    for n in wanted:
        if n not in available:
            ap.error(f"unknown server {n!r}")
    servers = [n for n in wanted if available[n]]
    # Before the file part lands, http_server has no --root: its file profiles are skipped.
    args.http_server_files = False
    if available["http_server"]:
        h = subprocess.run([args.http_server, "--help"], capture_output=True, text=True,
                           timeout=10)
        args.http_server_files = "--root" in h.stdout + h.stderr
        if not args.http_server_files:
            log("http_bench: http_server has no --root: its file profiles are skipped")
    for n in wanted:
        if not available[n]:
            log(f"http_bench: {n} not found, skipped")
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in PROFILES:
            ap.error(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    if not usable(args.loadgen) and any(PROFILES[p]["tool"] == "loadgen" for p in profiles):
        ap.error("no loadgen binary: give --loadgen or --build-dir")
    if not usable(args.wrk) and any(PROFILES[p]["tool"] == "wrk" for p in profiles):
        ap.error("wrk not found (scripts/install-deps installs it)")

    tmp = make_tmp()
    samples = []
    started = time.time()
    try:
        for rnd in range(args.rounds):
            for profile in profiles:
                kind = PROFILES[profile]["kind"]
                names = [n for n in groups["proxy" if kind == "proxy" else "http"]
                         if n in servers and (n == "nginx" or kind != "files"
                                              or args.http_server_files)]
                order = names[rnd % len(names):] + names[:rnd % len(names)] if names else []
                for name in order:
                    best = None
                    for attempt in range(args.retries + 1):
                        if args.wait_quiet > 0:
                            wait_quiet([f"cpu{args.server_cpu}", f"cpu{args.client_cpu}"],
                                       args.max_other_load, args.wait_quiet)
                        res = run_sample(args, name, profile, tmp)
                        res["round"], res["attempt"] = rnd, attempt
                        ol = res["other_load"]
                        log(f"round {rnd + 1}/{args.rounds} {profile:22} {name:11} "
                            f"{res.get('req_per_s', 0):>9,.0f} req/s "
                            f"{fmt(res.get('mb_per_s'), ',.1f'):>8} MB/s  "
                            f"p99 {fmt(res.get('p99_us'), '.0f'):>6} µs  "
                            f"server {fmt(res.get('server_cpu_us_per_req'), '.2f')} µs/req  "
                            f"errors {res.get('errors')}  other load "
                            f"{fmt(ol['server_cpu'], '.0%')}/{fmt(ol['client_cpu'], '.0%')}"
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

    print(f"\n{args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warmup), medians; "
          f"server on CPU {args.server_cpu}, client on CPU {args.client_cpu}; "
          f"{platform.release()}, {os.cpu_count()} CPUs; {time.time() - started:.0f} s\n")
    print(table(samples, profiles))
    if args.json_out:
        meta = {"started": started, "seconds": time.time() - started,
                "kernel": platform.release(), "cpus": os.cpu_count(), "rounds": args.rounds,
                "duration": args.duration, "warmup": args.warmup, "servers": servers,
                "variants": args.variants,
                "reference_by_profile": {p: REFERENCE[PROFILES[p]["kind"]] for p in profiles},
                "profiles": {p: PROFILES[p] for p in profiles}}
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "samples": samples}, f, indent=1)
        log(f"raw samples written to {args.json_out}")
    bad = [s for s in samples if s.get("errors", 0) != 0 or s.get("tool_rc") != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
