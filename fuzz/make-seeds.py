#!/usr/bin/env python3
"""Writes the seed corpus of the serve_messages fuzz target (corpus/serve_messages/):
request streams as borg 1.2/1.4 clients send them (dict form and legacy 4-element arrays).
Each seed starts with the target's read-size byte. Stdlib only: a small msgpack encoder
with borg's rules (bytes and text as raw/str, never bin)."""
import os
import struct
import sys


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        n = len(v)
        if n < 32:
            return bytes([0xA0 | n]) + v
        if n < 1 << 16:
            return b"\xda" + struct.pack(">H", n) + v
        return b"\xdb" + struct.pack(">I", n) + v
    if isinstance(v, (list, tuple)):
        n = len(v)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)


def req(i, method, **args):
    return pack({"i": i, "m": method, "a": args})


def legacy(i, method, *args):
    return pack([1, i, method, list(args)])


NEGOTIATE = req(1, "negotiate", client_data={"client_version": (1, 2, 4, -1)})
OBJ = bytes([7]) * 32
NEW = bytes(range(32))


def open_(i, path="/./work/repo", create=False, exclusive=True):
    return req(i, "open", path=path, create=create, lock_wait=1, lock=True,
               exclusive=exclusive, append_only=False, make_parent_dirs=False)


SEEDS = {
    "read-session": NEGOTIATE + open_(2, exclusive=False) + req(3, "__len__")
    + req(4, "list", limit=100, marker=None) + req(5, "get", id=OBJ)
    + req(6, "scan", limit=10, marker=None) + req(7, "load_key"),
    "write-session": NEGOTIATE + open_(2) + req(3, "get_free_nonce")
    + req(4, "commit_nonce_reservation", next_unreserved=64, start_nonce=None)
    + req(5, "put", id=NEW, data=b"new object data") + req(6, "delete", id=OBJ)
    + req(7, "commit", compact=True, threshold=0.1, cleanup_commits=False)
    + req(8, "check", repair=False, max_duration=0) + req(9, "rollback"),
    "create-destroy": NEGOTIATE + open_(2, "/./work/new", create=True)
    + req(3, "save_key", keydata=b"BORG_KEY 00\n") + req(4, "load_key")
    + req(5, "break_lock") + req(6, "destroy"),
    "legacy": legacy(1, "negotiate", 2) + legacy(2, "open", "/./work/repo", False, 1.0, True, True)
    + legacy(3, "get", OBJ) + legacy(4, "list", 10, None),
    "errors": NEGOTIATE + req(2, "get", id=OBJ) + req(3, "no_such_method")
    + open_(4, "/./outside") + open_(5, "/~root/x") + req(6, "get", id=b"short")
    + req(7, "list", limit="x"),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "serve_messages")
os.makedirs(out, exist_ok=True)
for name, stream in SEEDS.items():
    for cut in (0, 7):
        with open(os.path.join(out, f"{name}-{cut}"), "wb") as f:
            f.write(bytes([cut]) + stream)
print(f"{2 * len(SEEDS)} seeds in {out}", file=sys.stderr)
