"""Peak server RSS under fragment attacks (issue 11, item 2).

Starts ``python -m wsfast echo`` in a subprocess, connects with a raw socket
and sends one fragmented message in the shape an attacker chooses:

* ``fill``: a binary message of ``--size`` bytes in frames of
  ``--fragment`` bytes (default 1);
* ``empty``: a first fragment of 1 byte, then ``--count`` empty continuation
  frames, then the last fragment.

Prints the server's peak RSS (VmHWM) after start and after the attack, how the
connection ended (close code, or still open), the seconds it took, and whether
a normal client is still served afterwards. Example (what docs/DESIGN.md
reports)::

    python bench/fragments_rss.py fill --size 16MiB
    python bench/fragments_rss.py fill --size 16MiB --fragment 64
    python bench/fragments_rss.py empty --count 35000000
    python bench/fragments_rss.py fill --size 16MiB --pure-python
    python bench/fragments_rss.py fill --size 16MiB --commit HEAD   # wsfast as committed, built outside the tree

``--deflate`` negotiates permessage-deflate and compresses the message (each
fragment a sync-flushed piece of one deflate stream, RFC 7692 §7.2.1).
"""

import argparse
import base64
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)
MASK = b"\x11\x22\x33\x44"


def parse_size(text):
    text = text.strip()
    for suffix, mult in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(text)


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def frame(opcode, payload, fin, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload)) if n < 4096 else _mask_big(payload)
    return head + MASK + masked


def _mask_big(payload):
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        len(payload), "little"
    )


def handshake(port, deflate):
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{ext}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("handshake refused")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    if deflate and b"permessage-deflate" not in head.lower():
        raise RuntimeError("permessage-deflate not accepted")
    return sock


def attack_frames(mode, size, count, deflate, fragment=1):
    """Yield the attack's bytes in chunks of about 1 MB."""
    if mode == "fill":
        # ceil(size / fragment) frames of ``fragment`` bytes, the last one
        # carrying what is left.
        frames = -(-size // fragment)
        part = b"x" * fragment
        first = part if frames > 1 else b"x" * size
        total = max(frames - 2, 0)
        tail = b"x" * (size - (frames - 1) * fragment) if frames > 1 else b""
    else:
        first = b"x"
        part = tail = b""
        total = count
    comp = zlib.compressobj(6, zlib.DEFLATED, -15) if deflate else None

    def piece(data, last=False):
        if comp is None:
            return data
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if last else out

    yield frame(2, piece(first), fin=False, rsv1=deflate)
    if comp is None:
        one = frame(0, part, fin=False)
        per_chunk = max(1, 2**20 // len(one))
        chunk = one * per_chunk
        sent = 0
        while sent + per_chunk <= total:
            yield chunk
            sent += per_chunk
        yield one * (total - sent)
    else:
        # Compressed fragments each differ: build them in batches.
        batch = []
        blen = 0
        for _ in range(total):
            f = frame(0, piece(part), fin=False)
            batch.append(f)
            blen += len(f)
            if blen >= 2**20:
                yield b"".join(batch)
                batch = []
                blen = 0
        if batch:
            yield b"".join(batch)
    yield frame(0, piece(tail, last=True), fin=True)


def read_close(sock, timeout):
    """Read frames until a close or EOF; the close code, or None if the
    connection is still open after ``timeout`` seconds of silence, or "EOF"."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return "EOF"
            buf += chunk
            while len(buf) >= 2:
                op = buf[0] & 0x0F
                n = buf[1] & 0x7F
                h = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n = struct.unpack("!H", buf[2:4])[0]
                    h = 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n = struct.unpack("!Q", buf[2:10])[0]
                    h = 10
                if len(buf) < h + n:
                    break
                payload = buf[h : h + n]
                buf = buf[h + n :]
                if op == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if op in (1, 2):
                    return f"message of {n} bytes echoed"
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return "reset"


def normal_client_served(port):
    sock = handshake(port, False)
    try:
        sock.sendall(frame(1, b"hello", fin=True))
        return read_close(sock, 5) == "message of 5 bytes echoed"
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["fill", "empty"])
    ap.add_argument("--size", type=parse_size, default=16 * 2**20, help="fill: message size")
    ap.add_argument("--fragment", type=parse_size, default=1, help="fill: bytes per fragment")
    ap.add_argument("--count", type=int, default=35_000_000, help="empty: continuation frames")
    ap.add_argument("--max-message-size", default="16MiB")
    ap.add_argument("--pure-python", action="store_true")
    ap.add_argument("--deflate", action="store_true")
    at_commit.add_option(ap)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="wsfast-fragments-rss-")
    env, info = at_commit.prepare(args.commit, workdir)
    tree = at_commit.tree(env)
    env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "wsfast", "echo", "--port", "0", "--no-uvloop",
           "--max-message-size", args.max_message_size]
    if args.pure_python:
        cmd.append("--pure-python")
    if args.deflate:
        cmd.append("--deflate")
    # -m puts the working directory first on sys.path: the wsfast there runs
    server = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE)
    try:
        line = server.stdout.readline().decode()
        port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        sock = handshake(port, args.deflate)
        time.sleep(0.2)
        before = vm_hwm(server.pid)
        start = time.monotonic()
        sent = 0
        cut = False
        try:
            for chunk in attack_frames(args.mode, args.size, args.count, args.deflate, args.fragment):
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        outcome = read_close(sock, 10)
        elapsed = time.monotonic() - start
        after = vm_hwm(server.pid)
        sock.close()
        served = normal_client_served(port)
        what = (f"size {args.size} in {args.fragment}-byte fragments" if args.mode == "fill"
                else f"count {args.count}")
        print(
            f"{args.mode} ({what}, codec {'python' if args.pure_python else 'default'}"
            f"{', deflate' if args.deflate else ''}, max {args.max_message_size}): "
            f"sent {sent / 2**20:.1f} MiB{' (cut by the server)' if cut else ''} in {elapsed:.1f} s; "
            f"server peak RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB; "
            f"ended: {outcome}; normal client served: {served}; {at_commit.describe(info)}"
        )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
