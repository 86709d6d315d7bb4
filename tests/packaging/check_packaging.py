#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: checks the three ways users consume coring: meson install + pkg-config, and
# a meson subproject (which must not build coring's tests or examples).
import os, shutil, subprocess, sys, tempfile

src_root, build_root = sys.argv[1], sys.argv[2]
consumer = os.path.join(src_root, "tests", "packaging", "consumer")
env = dict(os.environ)

def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, timeout=300, env=env, **kw)

with tempfile.TemporaryDirectory() as tmp:
    # 1. meson install into a staging dir, then build a program with pkg-config only.
    dest = os.path.join(tmp, "stage")
    run(["meson", "install", "-C", build_root, "--no-rebuild", "--destdir", dest, "--quiet"])
    pcs = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs if f == "coring.pc"]
    assert pcs, "meson install wrote no coring.pc"
    headers = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs if f == "coring.hpp"]
    assert headers, "meson install wrote no coring/coring.hpp"
    env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
    prefix = subprocess.run(["pkg-config", "--variable=prefix", "coring"], check=True,
                            capture_output=True, text=True, env=env).stdout.strip()
    flags = subprocess.run(["pkg-config", f"--define-variable=prefix={dest}{prefix}",
                            "--cflags", "--libs", "coring"],
                           check=True, capture_output=True, text=True, env=env).stdout.split()
    libdirs = [f[2:] for f in flags if f.startswith("-L")]
    exe = os.path.join(tmp, "consumer_pc")
    run([os.environ.get("CXX", "c++"), "-std=c++20", os.path.join(consumer, "main.cpp"), "-o", exe]
        + flags + [f"-Wl,-rpath,{d}" for d in libdirs])
    out = run([exe], capture_output=True, text=True).stdout
    assert "consumer received 4 bytes" in out, out
    for h in open(headers[0]).read().splitlines():
        assert "liburing" not in h, "a public header includes liburing"

    # 2. coring as a subproject of the consumer.
    proj = os.path.join(tmp, "proj")
    shutil.copytree(consumer, proj)
    os.makedirs(os.path.join(proj, "subprojects"))
    os.symlink(src_root, os.path.join(proj, "subprojects", "coring"))
    env.pop("PKG_CONFIG_PATH")
    bdir = os.path.join(tmp, "proj-build")
    run(["meson", "setup", bdir, proj, "--wrap-mode=nodownload", "--force-fallback-for=coring"],
        capture_output=True)
    run(["ninja", "-C", bdir], capture_output=True)
    built = [f for _, _, fs in os.walk(bdir) for f in fs]
    for unwanted in ("echo_server", "test_task"):
        assert unwanted not in built, f"subproject build produced {unwanted}"
    out = run([os.path.join(bdir, "consumer")], capture_output=True, text=True).stdout
    assert "consumer received 4 bytes" in out, out
print("packaging: pkg-config and subproject consumers both work")
