"""Start a server process in its own session, wait for its probe, and stop it (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from onair.devstack.errors import DevstackError

# Popen handles of servers started by this process, so that stopping them also reaps them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in tail) if tail else "(log is empty)"


def spawn(argv: list[str], *, log_path: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- onair devstack: starting {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def wait_ready(
    name: str, proc: subprocess.Popen[bytes], probe: Callable[[], str], timeout_s: float, log_path: Path
) -> str:
    """Poll ``probe`` until it answers; fail fast, with the server's log tail, if the process dies."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            raise DevstackError(
                f"{name} exited with code {code} during start-up; its log ({log_path}) ends with:\n"
                f"{log_tail(log_path)}"
            )
        try:
            return probe()
        except (OSError, ConnectionError, ValueError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            stop(proc.pid)
            raise DevstackError(
                f"{name} did not answer its readiness probe within {timeout_s:.0f}s ({last_error}); "
                f"its log ({log_path}) ends with:\n{log_tail(log_path)}"
            )
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state not in ("Z", "X")


def stop(pid: int, grace_s: float = 5.0, hard: bool = False) -> None:
    """SIGTERM the server's process group (SIGKILL at once when ``hard``), SIGKILL after ``grace_s``."""
    for sig in (signal.SIGKILL,) if hard else (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise DevstackError(f"not allowed to stop pid {pid}: {exc}") from None
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not alive(pid):
                _children.pop(pid, None)
                return
            time.sleep(0.02)
    if alive(pid):
        raise DevstackError(f"pid {pid} survived SIGKILL")
