# SPDX-License-Identifier: MIT
# Description: start an echo server, learn its port from "listening on HOST:PORT", stop it.
import re
import select
import signal
import subprocess
import time

LISTENING = re.compile(r"listening on (\S+):(\d+)")


def start_server(cmd, timeout=10.0, **popen_kw):
    """Starts cmd (a list) and waits up to timeout s for its "listening on" line.
    Returns (Popen, port). Raises RuntimeError (after killing it) if the line never comes."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         **popen_kw)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = LISTENING.search(line)
        if m:
            return p, int(m.group(2))
    stop_server(p)
    raise RuntimeError(f"{cmd!r} printed no 'listening on' line within {timeout} s: {seen!r}")


def stop_server(p, timeout=5.0):
    """SIGTERM, then SIGKILL after timeout s. Returns the exit status."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)
    if p.stdout:
        p.stdout.close()
    return p.returncode


def rss_kib(pid):
    """VmRSS of pid in KiB (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
