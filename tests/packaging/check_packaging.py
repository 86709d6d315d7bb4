#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: checks the three ways users consume coring: meson install + pkg-config, and
# a meson subproject (which must not build coring's tests or examples); and that no installed
# header includes liburing.
import os, re, shutil, subprocess, sys, tempfile

src_root, build_root = sys.argv[1], sys.argv[2]
consumer = os.path.join(src_root, "tests", "packaging", "consumer")
env = dict(os.environ)

def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, timeout=300, env=env, **kw)


def check_no_liburing(include_dir, tmp):
    """No installed header includes liburing, directly or through another header: each one is
    searched for the #include and compiled on its own with a liburing.h that stops the compile
    first on the include path."""
    root = os.path.join(include_dir, "coring")
    installed = sorted(os.path.join(r, f) for r, _, fs in os.walk(root)
                       for f in fs if f.endswith((".hpp", ".h")))
    assert len(installed) > 1, f"only {installed} installed under {include_dir}/coring"
    direct = re.compile(r'^\s*#\s*include\s*[<"]liburing')
    for h in installed:
        for n, line in enumerate(open(h), 1):
            assert not direct.match(line), f"{h}:{n}: a public header includes liburing: {line}"
    poison = os.path.join(tmp, "poison")
    os.makedirs(os.path.join(poison, "liburing"))
    for name in ("liburing.h", "liburing/io_uring.h", "liburing/compat.h", "liburing/barrier.h"):
        with open(os.path.join(poison, name), "w") as f:
            f.write(f"#error an installed coring header includes <{name}>\n")
    tu = os.path.join(tmp, "header_tu.cpp")
    for h in installed:
        with open(tu, "w") as f:
            f.write(f"#include <{os.path.relpath(h, include_dir)}>\n")
        run([os.environ.get("CXX", "c++"), "-std=c++20", "-fsyntax-only", "-I", poison,
             "-I", include_dir, tu])
    print(f"packaging: none of the {len(installed)} installed headers includes liburing",
          flush=True)

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
    check_no_liburing(os.path.dirname(os.path.dirname(headers[0])), tmp)

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
