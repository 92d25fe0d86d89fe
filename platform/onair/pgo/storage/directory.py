"""Profiles as files: ``<root>/<app>/<unix-ms>.pb.gz`` (written atomically: temp file + rename)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from onair.pgo.storage.base import SUFFIX, ProfileRef, ProfileStore, RetentionPolicy, check_app, parse_name


class DirectoryStore(ProfileStore):
    backend = "dir"

    def __init__(self, root: str | os.PathLike[str], retention: RetentionPolicy | None = None) -> None:
        super().__init__(retention)
        self.root = Path(root)

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    def _path(self, app: str, ms: int) -> Path:
        return self.root / check_app(app) / f"{ms}{SUFFIX}"

    async def _save(self, app: str, ms: int, data: bytes) -> None:
        def write() -> None:
            folder = self.root / app
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, folder / f"{ms}{SUFFIX}")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        await asyncio.to_thread(write)

    async def _get(self, app: str, ms: int) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(app, ms).read_bytes)
        except FileNotFoundError:
            return None

    async def _list(self, app: str) -> list[ProfileRef]:
        def scan() -> list[ProfileRef]:
            try:
                entries = list(os.scandir(self.root / app))
            except FileNotFoundError:
                return []
            out = []
            for e in entries:
                ms = parse_name(e.name)
                if ms is not None and e.is_file():
                    try:
                        out.append(ProfileRef(app, ms, e.stat().st_size))
                    except FileNotFoundError:
                        continue
            return out

        return await asyncio.to_thread(scan)

    async def _delete(self, app: str, refs: Sequence[ProfileRef]) -> None:
        def remove() -> None:
            for ref in refs:
                self._path(app, ref.created_at).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def apps(self) -> list[str]:
        def scan() -> list[str]:
            try:
                return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and check_app_ok(e.name))
            except FileNotFoundError:
                return []

        return await asyncio.to_thread(scan)

    async def ping(self) -> bool:
        return await asyncio.to_thread(lambda: self.root.is_dir() and os.access(self.root, os.W_OK))


def check_app_ok(name: str) -> bool:
    try:
        check_app(name)
    except ValueError:
        return False
    return True
