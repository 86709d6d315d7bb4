#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: writes fuzz/corpus/cmsg/: control-message byte strings as the kernel lays them out
# on x86-64 / aarch64 Linux (cmsghdr: 8-byte cmsg_len, int level, int type; 8-byte alignment),
# well-formed and malformed, for the parse_control fuzzer (fuzz_cmsg) to start from.
# Run: python3 fuzz/make_cmsg_corpus.py   (rewrites the directory's files; deterministic)
import os
import struct

SOL_SOCKET, SCM_RIGHTS, SCM_CREDENTIALS = 1, 1, 2
IPPROTO_IP, IP_PKTINFO = 0, 8
IPPROTO_IPV6, IPV6_PKTINFO = 41, 50
HDR = 16  # CMSG_LEN(0)


def align(n):
    return (n + 7) & ~7


def cmsg(level, ctype, payload, length=None):
    """One message padded to CMSG_SPACE; length overrides cmsg_len (for lying headers)."""
    clen = HDR + len(payload) if length is None else length
    raw = struct.pack("=Qii", clen, level, ctype) + payload
    return raw + b"\0" * (align(len(raw)) - len(raw))


def fds(*ns):
    return cmsg(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"={len(ns)}i", *ns))


creds = cmsg(SOL_SOCKET, SCM_CREDENTIALS, struct.pack("=iII", 4242, 1000, 1000))
pktinfo4 = cmsg(IPPROTO_IP, IP_PKTINFO,
                struct.pack("=i4s4s", 1, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])))
pktinfo6 = cmsg(IPPROTO_IPV6, IPV6_PKTINFO, bytes(15) + b"\1" + struct.pack("=I", 1))

seeds = {
    "rights_one": fds(3),
    "rights_three": fds(3, 4, 5),
    "rights_odd_payload": cmsg(SOL_SOCKET, SCM_RIGHTS, struct.pack("=i", 7) + b"\1\2"),
    "credentials": creds,
    "credentials_short": cmsg(SOL_SOCKET, SCM_CREDENTIALS, struct.pack("=i", 4242)),
    "pktinfo_v4": pktinfo4,
    "pktinfo_v6": pktinfo6,
    "rights_then_credentials": fds(9) + creds,
    "all_kinds": fds(3, 4) + creds + pktinfo4 + pktinfo6,
    "unknown_type": cmsg(SOL_SOCKET, 99, b"abcd"),
    "len_too_small": cmsg(SOL_SOCKET, SCM_RIGHTS, struct.pack("=i", 3), length=8),
    "len_past_end": cmsg(SOL_SOCKET, SCM_RIGHTS, struct.pack("=i", 3), length=4096),
    "truncated_header": fds(3)[:12],
    "second_header_cut": fds(3) + struct.pack("=Q", 20),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "cmsg")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
