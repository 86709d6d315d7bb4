#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: writes fuzz/corpus/tls/: the first flight of real TLS clients (Python's ssl, on
# OpenSSL), as a server reads it from the wire, for the server-side TLS stream fuzzer (fuzz_tls).
# Run: python3 fuzz/make_tls_corpus.py   (rewrites the directory's files; each run captures new
# ClientHellos: their random and key shares differ every time)
#
# Each capture: a loopback listener, a client with one configuration (TLS 1.3 or 1.2 only, with
# or without SNI and ALPN) that starts a handshake, the bytes it sends before it waits for the
# server (the ClientHello records), then the listener closes. A few non-TLS inputs are added
# (plain HTTP on the TLS port, an SSLv2-style hello, a truncated record).
import os
import socket
import ssl
import threading

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tls")


def client_hello(configure, server_hostname):
    """The bytes a client made by configure(ctx) sends first (until it waits for the server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got = bytearray()

    def server():
        conn, _ = listener.accept()
        conn.settimeout(0.5)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
        except socket.timeout:
            pass
        conn.close()

    t = threading.Thread(target=server)
    t.start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    configure(ctx)
    raw = socket.create_connection(("127.0.0.1", port))
    raw.settimeout(5)
    try:
        ctx.wrap_socket(raw, server_hostname=server_hostname)
    except (ssl.SSLError, OSError):
        pass  # the listener never answers: only the first flight matters
    raw.close()
    t.join(10)
    listener.close()
    assert got and got[0] == 0x16, f"not a handshake record: {bytes(got[:8])!r}"
    return bytes(got)


def versions(low, high, alpn=None):
    def configure(ctx):
        ctx.minimum_version = low
        ctx.maximum_version = high
        if alpn:
            ctx.set_alpn_protocols(alpn)
    return configure


def main():
    os.makedirs(OUT, exist_ok=True)
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    captures = {
        "hello_tls13_sni_alpn": (versions(v12, v13, ["h2", "http/1.1"]), "localhost"),
        "hello_tls13_only": (versions(v13, v13), "localhost"),
        "hello_tls13_no_sni": (versions(v12, v13, ["http/1.1"]), None),
        "hello_tls12_sni_alpn": (versions(v12, v12, ["http/1.1"]), "localhost"),
        "hello_tls12_no_sni": (versions(v12, v12), None),
    }
    for name, (configure, host) in captures.items():
        data = client_hello(configure, host)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")
    others = {
        "plain_http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        # An SSLv2-compatible ClientHello header asking for SSL 3.0 (refused).
        "sslv2_hello": bytes([0x80, 0x2e, 0x01, 0x03, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10])
        + bytes(range(0x15)) + bytes(16),
        # A handshake record header announcing more than arrives.
        "truncated_record": bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]),
        # An alert record (close_notify) before any handshake.
        "alert_first": bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]),
    }
    for name, data in others.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
