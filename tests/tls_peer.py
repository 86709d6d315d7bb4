#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: the Python `ssl` peer of tests/test_tls_echo.cpp: a verifying TLS echo client, a
# TLS echo server, and the faulty clients (garbage, a truncated or stalled handshake, a reset
# mid-record, a close without close_notify, TLS 1.0/1.1 offered).
#
# Usage: tls_peer.py MODE [options]; every mode prints one result line on stdout and exits 0 when
# things went as the mode expects, 1 otherwise (with the reason on stdout). Every wait is bounded
# by --timeout seconds (default 20). Modes:
#   client     connects to --port verifying --ca (host name --host), sends --size bytes in chunks,
#              checks every echoed byte, sends close_notify and waits for the server's:
#              "ok <version> <cipher> <bytes>"
#   server     TLS echo server (--cert/--key) on 127.0.0.1, port 0: prints
#              "tls_peer listening on 127.0.0.1:PORT", echoes until each client's close_notify
#              (answered with its own), stops at EOF on stdin: "served <N> connections"
#   garbage    sends bytes that are no ClientHello; expects the server to close: "closed ..."
#   truncated  sends half a ClientHello, then closes: "sent <n> of <m> bytes"
#   stall      sends half a ClientHello and waits for the server to close the connection (its
#              handshake deadline): "closed by the server after <seconds> s"
#   reset      handshakes (verifying --ca), echoes 1000 bytes, sends half of a record, then
#              resets (SO_LINGER 0)
#   no-close-notify  handshakes, echoes --size bytes, then closes TCP without close_notify
#   old        offers only TLS 1.0 and 1.1 (@SECLEVEL=0 ciphers): "refused: <why>", or exit 1
#              ("accepted <version>") if the server took it
#   flood      handshakes, then sends and reads back 16 KiB at a time until the server ends the
#              connection: prints "flooding" after the first echo, then "ended: <how> after
#              <bytes> bytes" (how: "close_notify", or the error)
#   flood-noread  as flood, but after the first echo it only sends (never reads): prints
#              "flooding", then "stuck" once a send waited 1 s (the server's echo is stuck on us),
#              then "ended: closed by the server after <bytes> bytes sent" when it hangs up
import argparse
import select
import socket
import ssl
import struct
import sys
import threading
import time
import warnings


def pattern(n, seed=7):
    """n bytes that do not repeat with a short period."""
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


def client_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=args.ca)
    if args.tls_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif args.tls_version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def connect(args):
    return socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)


def echo_over(tls, data):
    """Sends data in chunks and reads the echo of each; returns what came back."""
    got = bytearray()
    for off in range(0, len(data), 16384):
        chunk = data[off:off + 16384]
        tls.sendall(chunk)
        want = len(got) + len(chunk)
        while len(got) < want:
            b = tls.recv(want - len(got))
            if not b:
                return bytes(got)
            got += b
    return bytes(got)


def mode_client(args):
    ctx = client_context(args)
    with connect(args) as raw:
        tls = ctx.wrap_socket(raw, server_hostname=args.host)
        data = pattern(args.size)
        got = echo_over(tls, data)
        if got != data:
            first = next((i for i in range(min(len(got), len(data))) if got[i] != data[i]),
                         min(len(got), len(data)))
            print(f"mismatch: {len(got)} of {len(data)} bytes back, first difference at {first}")
            return 1
        version, cipher = tls.version(), tls.cipher()[0]
        tls.unwrap()  # close_notify, then the server's close_notify
        print(f"ok {version} {cipher} {len(got)}")
    return 0


def serve_one(ctx, conn, counter, lock):
    try:
        conn.settimeout(60)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            while True:
                b = tls.recv(65536)
                if not b:  # the client's close_notify
                    tls.unwrap()
                    break
                tls.sendall(b)
        with lock:
            counter[0] += 1
    except (OSError, ssl.SSLError) as e:
        print(f"tls_peer: connection: {e}", file=sys.stderr, flush=True)
        conn.close()


def mode_server(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    lsock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(f"tls_peer listening on 127.0.0.1:{lsock.getsockname()[1]}", flush=True)
    counter, lock, threads = [0], threading.Lock(), []
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([lsock, sys.stdin], [], [], 0.5)
        if sys.stdin in ready and not sys.stdin.buffer.read1(4096):
            break  # EOF on stdin: the test is done with us
        if lsock in ready:
            conn, _ = lsock.accept()
            t = threading.Thread(target=serve_one, args=(ctx, conn, counter, lock), daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    print(f"served {counter[0]} connections", flush=True)
    return 0


def wait_closed(sock, limit):
    """Reads until EOF or a reset, at most limit seconds. Returns: what was read, or None."""
    sock.settimeout(limit)
    got = bytearray()
    end = time.monotonic() + limit
    try:
        while time.monotonic() < end:
            b = sock.recv(65536)
            if not b:
                return bytes(got)
            got += b
    except ConnectionResetError:
        return bytes(got)
    except socket.timeout:
        pass
    return None


def client_hello(args):
    """The bytes of a real ClientHello (from an SSLObject over memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=args.host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def mode_garbage(args):
    with connect(args) as s:
        junk = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + pattern(2000)
        try:
            s.sendall(junk)
        except OSError:
            pass  # closed already: fine
        got = wait_closed(s, args.timeout)
        if got is None:
            print("the server did not close the connection")
            return 1
        print(f"closed after {len(got)} bytes from the server")
    return 0


def mode_truncated(args):
    hello = client_hello(args)
    with connect(args) as s:
        s.sendall(hello[:len(hello) // 2])
    print(f"sent {len(hello) // 2} of {len(hello)} bytes")
    return 0


def mode_stall(args):
    hello = client_hello(args)
    start = time.monotonic()
    with connect(args) as s:
        s.sendall(hello[:len(hello) // 2])
        got = wait_closed(s, args.timeout)
    if got is None:
        print(f"still open after {args.timeout} s")
        return 1
    print(f"closed by the server after {time.monotonic() - start:.3f} s")
    return 0


def handshake_over(sock, obj, inc, out):
    """Runs obj's handshake over the blocking socket sock (obj reads inc and writes out)."""
    while True:
        try:
            obj.do_handshake()
            sock.sendall(out.read())
            return
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            b = sock.recv(65536)
            if not b:
                raise ConnectionError("the server closed during the handshake")
            inc.write(b)


def echo_through(sock, obj, inc, out, data):
    """Sends data through obj over sock and reads its echo. Returns: the echo."""
    obj.write(data)
    sock.sendall(out.read())
    got = bytearray()
    while len(got) < len(data):
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            b = sock.recv(65536)
            if not b:
                raise ConnectionError("the server closed during the echo")
            inc.write(b)
    return bytes(got)


def mode_reset(args):
    ctx = client_context(args)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=args.host)
    with connect(args) as s:
        handshake_over(s, obj, inc, out)
        if echo_through(s, obj, inc, out, pattern(1000)) != pattern(1000):
            print("the echo before the reset differs")
            return 1
        obj.write(pattern(3000))
        record = out.read()
        s.sendall(record[:len(record) // 2])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    print(f"reset after {len(record) // 2} of {len(record)} bytes of a record")
    return 0


def mode_no_close_notify(args):
    ctx = client_context(args)
    raw = connect(args)
    tls = ctx.wrap_socket(raw, server_hostname=args.host)
    data = pattern(args.size)
    got = echo_over(tls, data)
    # SSLSocket.close() closes the descriptor without close_notify.
    tls.close()
    if got != data:
        print(f"mismatch: {len(got)} of {len(data)} bytes back")
        return 1
    print(f"closed without close_notify after {len(got)} bytes")
    return 0


def mode_old(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # "ssl.TLSVersion.TLSv1 is deprecated": that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with connect(args) as raw:
        try:
            tls = ctx.wrap_socket(raw, server_hostname=args.host)
        except (ssl.SSLError, OSError) as e:
            print(f"refused: {e}")
            return 0
        print(f"accepted {tls.version()}")
        return 1


def mode_flood(args):
    ctx = client_context(args)
    raw = connect(args)
    tls = ctx.wrap_socket(raw, server_hostname=args.host)
    chunk, total, how = pattern(16384), 0, "timeout"
    end = time.monotonic() + args.timeout
    try:
        while time.monotonic() < end:
            got = echo_over(tls, chunk)
            total += len(got)
            if len(got) < len(chunk):
                how = "close_notify"
                break
            if total == len(chunk):
                print("flooding", flush=True)
    except (OSError, ssl.SSLError) as e:
        how = f"{type(e).__name__}: {e}"
    tls.close()
    print(f"ended: {how} after {total} bytes", flush=True)
    return 0


def mode_flood_noread(args):
    ctx = client_context(args)
    raw = connect(args)
    tls = ctx.wrap_socket(raw, server_hostname=args.host)
    chunk = pattern(16384)
    if echo_over(tls, chunk) != chunk:
        print("the first echo differs")
        return 1
    print("flooding", flush=True)
    total, how = 0, "timeout"
    end = time.monotonic() + args.timeout
    tls.settimeout(1.0)
    try:
        while time.monotonic() < end:
            tls.sendall(chunk)
            total += len(chunk)
    except socket.timeout:
        # The server stopped reading: its echo is stuck on us. Wait for it to hang up, without
        # reading (that would let it go on).
        print("stuck", flush=True)
        p = select.poll()
        p.register(tls.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        if p.poll(max(0.0, end - time.monotonic()) * 1000):
            how = "closed by the server"
    except (OSError, ssl.SSLError) as e:
        how = f"{type(e).__name__}: {e}"
    print(f"ended: {how} after {total} bytes sent", flush=True)
    tls.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["client", "server", "garbage", "truncated", "stall", "reset",
                                    "no-close-notify", "old", "flood", "flood-noread"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="localhost")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--size", type=int, default=100000)
    p.add_argument("--tls-version", choices=["1.2", "1.3"])
    p.add_argument("--timeout", type=float, default=20)
    args = p.parse_args()
    modes = {"client": mode_client, "server": mode_server, "garbage": mode_garbage,
             "truncated": mode_truncated, "stall": mode_stall, "reset": mode_reset,
             "no-close-notify": mode_no_close_notify, "old": mode_old, "flood": mode_flood,
             "flood-noread": mode_flood_noread}
    try:
        return modes[args.mode](args)
    except (OSError, ssl.SSLError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
