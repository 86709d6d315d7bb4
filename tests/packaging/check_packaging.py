#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: checks the ways users consume coring: meson install + pkg-config (whose Cflags
# carry C++20), meson install + CMake's find_package(coring), and a meson subproject (which must
# not build coring's tests or examples); that no installed header includes liburing; and that
# compiling against the headers in C++17 fails with a message naming the flag.
# Exit status 77 (meson's SKIP) if cmake is not installed, after every other check passed.
import os, re, shutil, subprocess, sys, tempfile

src_root, build_root = sys.argv[1], sys.argv[2]
consumer = os.path.join(src_root, "tests", "packaging", "consumer")
cmake_consumer = os.path.join(src_root, "tests", "packaging", "cmake_consumer")
cxx = os.environ.get("CXX", "c++")
cxx20_message = "coring needs C++20: compile with -std=c++20 (or later)"
env = dict(os.environ)

def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, check=True, timeout=300, env=env, **kw)
    except subprocess.CalledProcessError as e:  # show what a captured command said
        for out in (e.stdout, e.stderr):
            if out:
                print(out if isinstance(out, str) else out.decode(errors="replace"), flush=True)
        raise


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
        run([cxx, "-std=c++20", "-fsyntax-only", "-I", poison, "-I", include_dir, tu])
    print(f"packaging: none of the {len(installed)} installed headers includes liburing",
          flush=True)


def check_cxx17_is_refused(include_dir, tmp):
    """With -std=c++17 each installed header stops the compile, and the first error names the
    flag (rather than one deep in <coroutine>). Checked with every compiler at hand (g++ 12
    defaults to C++17)."""
    root = os.path.join(include_dir, "coring")
    installed = sorted(os.path.relpath(os.path.join(r, f), include_dir)
                       for r, _, fs in os.walk(root) for f in fs if f.endswith((".hpp", ".h")))
    tu = os.path.join(tmp, "cxx17.cpp")
    compilers = []
    for c in (cxx, "g++", "clang++"):
        path = shutil.which(c)
        if path and os.path.realpath(path) not in [os.path.realpath(p) for p in compilers]:
            compilers.append(path)
    for c in compilers:
        for h in installed:
            with open(tu, "w") as f:
                f.write(f"#include <{h}>\nint main() {{}}\n")
            cmd = [c, "-std=c++17", "-fsyntax-only", "-Wfatal-errors", "-I", include_dir, tu]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode != 0, f"{c} compiled <{h}> in C++17"
            errors = [l for l in r.stderr.splitlines() if re.search(r": (fatal )?error:", l)]
            assert errors and cxx20_message in errors[0], \
                f"{c} -std=c++17, <{h}>: the first error is not {cxx20_message!r}:\n" \
                f"{' '.join(cmd)}\n{r.stderr[:2000]}"
    print(f"packaging: in C++17, each of the {len(installed)} installed headers stops "
          f"{' and '.join(os.path.basename(c) for c in compilers)} at '{cxx20_message}'",
          flush=True)


def check_cmake(stage_prefix, tmp):
    """A CMake project finds the installed coring under its prefix (CMAKE_PREFIX_PATH, as a user
    would pass it) and builds and runs with coring::coring alone. Returns False if there is no
    cmake to try it with."""
    if shutil.which("cmake") is None:
        return False
    configs = [os.path.join(r, f) for r, _, fs in os.walk(stage_prefix)
               for f in fs if f == "coringConfig.cmake"]
    assert configs, ("meson install wrote no coringConfig.cmake: was cmake missing when the "
                     "build directory was set up? (meson setup --reconfigure)")
    versions = [os.path.join(r, f) for r, _, fs in os.walk(stage_prefix)
                for f in fs if f == "coringConfigVersion.cmake"]
    assert versions, "meson install wrote no coringConfigVersion.cmake"
    bdir = os.path.join(tmp, "cmake-build")
    run(["cmake", "-S", cmake_consumer, "-B", bdir, "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={stage_prefix}", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
        capture_output=True)
    cache = open(os.path.join(bdir, "CMakeCache.txt")).read()
    found = re.search(r"^coring_DIR:PATH=(.*)$", cache, re.M)
    assert found and found.group(1).startswith(stage_prefix), \
        f"find_package(coring) did not find the staged install: {found and found.group(1)}"
    run(["cmake", "--build", bdir], capture_output=True)
    commands = open(os.path.join(bdir, "compile_commands.json")).read()
    assert re.search(r"-std=(c|gnu)\+\+(20|2a)", commands), \
        f"coring::coring did not bring C++20 to the compile: {commands}"
    out = run([os.path.join(bdir, "consumer")], capture_output=True, text=True).stdout
    assert "consumer received 4 bytes" in out, out
    print("packaging: find_package(coring) + coring::coring work", flush=True)
    return True


with tempfile.TemporaryDirectory() as tmp:
    # 1. meson install into a staging dir, then build a program with pkg-config only: no -std
    #    flag of its own, the Cflags bring C++20.
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
    assert any(re.fullmatch(r"-std=(c|gnu)\+\+20", f) for f in flags), \
        f"pkg-config --cflags coring has no -std=c++20: {flags}"
    libdirs = [f[2:] for f in flags if f.startswith("-L")]
    exe = os.path.join(tmp, "consumer_pc")
    run([cxx, os.path.join(consumer, "main.cpp"), "-o", exe]
        + flags + [f"-Wl,-rpath,{d}" for d in libdirs])
    out = run([exe], capture_output=True, text=True).stdout
    assert "consumer received 4 bytes" in out, out
    include_dir = os.path.dirname(os.path.dirname(headers[0]))
    check_no_liburing(include_dir, tmp)
    check_cxx17_is_refused(include_dir, tmp)

    # 2. CMake: find_package(coring) in the staged prefix.
    cmake_checked = check_cmake(dest + prefix, tmp)

    # 3. coring as a subproject of the consumer.
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
print("packaging: the pkg-config, CMake and subproject consumers work", flush=True)
if not cmake_checked:
    print("SKIP reason: packaging: the CMake consumer needs cmake, which is not installed "
          "(scripts/install-deps installs it)", flush=True)
    sys.exit(77)
