"""What the warm node worker and its clients share: where the socket is, and how a message
travels over it. Standard library only: the client runs before anything heavy is imported.

A request is a 4-byte length, carrying the sender's file descriptors (SCM_RIGHTS), then that
many bytes of JSON. Replies are JSON lines: `{"pid": n}` then `{"exit": code}` for a run,
`{"refused": why}`, `{"pong": pid}`, `{"stopping": pid}`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any, BinaryIO

# sun_path holds 104 (macOS) to 108 (Linux) bytes with its NUL: keep well inside both.
MAX_SOCKET_PATH = 100
MAX_FDS = 3
_LENGTH = struct.Struct("!I")


def socket_path(state: Path) -> Path:
    """The socket of the worker serving the stack whose state folder is `state`, on this host
    (a state folder shared between hosts holds one socket per host; a unix socket is only
    reachable on its own machine). A path too long for a socket moves under /tmp, keyed by a
    hash of the state folder."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:40]
    path = state / "run" / f"node-worker-{host}.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(state)).hexdigest()[:16]
    return Path("/tmp") / f"millpond-{os.getuid()}" / f"{digest}-{host}.sock"


def private_folder(path: Path) -> bool:
    """True when the socket's folder is ours and nobody else may write into it: a client
    sends its whole environment (secrets included) to whatever listens there."""
    try:
        st = os.stat(path.parent)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def send_request(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(sock, [_LENGTH.pack(len(body))], fds)
    sock.sendall(body)


def recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request and the descriptors it carried (the caller closes them)."""
    head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, MAX_FDS)
    try:
        head += _read_exactly(sock, _LENGTH.size - len(head))
        (length,) = _LENGTH.unpack(head)
        message = json.loads(_read_exactly(sock, length))
        if not isinstance(message, dict):
            raise ValueError("a request is a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the connection mid-request")
        data += chunk
    return data


def send_reply(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def read_reply(reader: BinaryIO) -> dict[str, Any] | None:
    """The next reply, or None when the worker closed the connection."""
    line = reader.readline()
    return json.loads(line) if line else None
