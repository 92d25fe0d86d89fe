"""Readiness probes that speak each server's own protocol: PING, NATS INFO, Kafka ApiVersions, HTTP."""

from __future__ import annotations

import json
import socket
import struct
import urllib.request


def _connect(port: int, timeout: float) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _recv_line(sock: socket.socket, limit: int = 65536) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed before a full line")
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError("line too long")
    return buf


def valkey_version(port: int, timeout: float = 1.0) -> str:
    """PING, then the server version from ``INFO server``."""
    with _connect(port, timeout) as sock, sock.makefile("rb") as rfile:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = rfile.readline()
        if not reply.startswith(b"+PONG"):
            raise ConnectionError(f"unexpected PING reply {reply!r}")
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        header = rfile.readline()
        if not header.startswith(b"$"):
            raise ConnectionError(f"unexpected INFO reply {header!r}")
        body = rfile.read(int(header[1:]) + 2)
    fields = dict(line.split(":", 1) for line in body.decode(errors="replace").splitlines() if ":" in line)
    return fields.get("valkey_version") or fields.get("redis_version", "unknown")


def nats_version(port: int, timeout: float = 1.0) -> str:
    """The INFO line a NATS server sends on connect; also checks JetStream is on."""
    with _connect(port, timeout) as sock:
        line = _recv_line(sock)
    if not line.startswith(b"INFO "):
        raise ConnectionError(f"unexpected NATS greeting {line[:40]!r}")
    info = json.loads(line[5:])
    if not info.get("jetstream"):
        raise ConnectionError("NATS server runs without JetStream")
    return str(info.get("version", "unknown"))


def kafka_api_versions(port: int, timeout: float = 1.0) -> int:
    """Send ApiVersions v0 and return how many API keys the broker supports."""
    client_id = b"onair-devstack"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with _connect(port, timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    correlation, error, count = struct.unpack(">ihi", payload[:10])
    if correlation != 7 or error != 0:
        raise ConnectionError(f"ApiVersions answered correlation={correlation} error={error}")
    return int(count)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return buf


def http_ok(port: int, timeout: float = 1.0, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        if resp.status >= 500:
            raise ConnectionError(f"HTTP {resp.status}")
    return "ok"


def port_in_use(port: int) -> bool:
    """True when something already accepts connections (or holds the bind) on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port whose old connections sit in TIME_WAIT is free for a server
        # (servers set it too); only a live listener or bound socket makes bind() fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
