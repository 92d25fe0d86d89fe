"""The profile store interface and the one retention rule every backend applies.

A profile is named ``<app>/<unix-ms>.pb.gz``; every backend keys by app *and* time. Ranges are
half-open, ``[start, end)`` in unix milliseconds, and listings are newest first.
"""

from __future__ import annotations

import abc
import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from onair.clients.base import Lifecycle

APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUFFIX = ".pb.gz"
FOREVER = 2**63 - 1


class InvalidAppName(ValueError):
    """An app name that could escape its folder/prefix or is otherwise unusable."""


class ProfileNotFound(KeyError):
    pass


def check_app(app: str) -> str:
    """Return ``app`` if it is a safe name (letters, digits, ``._-``, starting alphanumeric, <= 128)."""
    if not isinstance(app, str) or not APP_RE.match(app):
        raise InvalidAppName(
            f"invalid app name {app!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return app


def to_ms(t: datetime | int) -> int:
    """Unix milliseconds from an aware datetime or an int (already milliseconds)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: give a timezone")
        return int(t.timestamp() * 1000)
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"invalid time {t!r}: expected unix milliseconds >= 0")
    return t


def profile_name(app: str, created_at_ms: int) -> str:
    return f"{check_app(app)}/{created_at_ms}{SUFFIX}"


def parse_name(filename: str) -> int | None:
    """``"<ms>.pb.gz"`` -> ms, or ``None`` for anything else."""
    if not filename.endswith(SUFFIX):
        return None
    stem = filename[: -len(SUFFIX)]
    return int(stem) if stem.isdigit() and len(stem) <= 19 else None


@dataclass(frozen=True, order=True)
class ProfileRef:
    app: str
    created_at: int  # unix ms
    size: int = 0

    @property
    def name(self) -> str:
        return profile_name(self.app, self.created_at)


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the profiles created inside the window (``now - window_ms <= t``), at most
    ``max_per_app`` per app, newest first. Everything else is deleted."""

    window_ms: int = 7 * 24 * 3600 * 1000
    max_per_app: int = 256

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.max_per_app <= 0:
            raise ValueError("retention window and max_per_app must be positive")

    def expired(self, refs: Sequence[ProfileRef], now_ms: int) -> list[ProfileRef]:
        """The refs to delete among ``refs`` (one app's profiles)."""
        newest_first = sorted(refs, key=lambda r: r.created_at, reverse=True)
        cutoff = now_ms - self.window_ms
        kept = 0
        out: list[ProfileRef] = []
        for ref in newest_first:
            if ref.created_at >= cutoff and kept < self.max_per_app:
                kept += 1
            else:
                out.append(ref)
        return out


def _range(start: int, end: int | None) -> tuple[int, int]:
    end = FOREVER if end is None else end
    if start < 0 or end < start:
        raise ValueError(f"invalid range [{start}, {end})")
    return start, end


class ProfileStore(Lifecycle, abc.ABC):
    """Save, get, list, delete gzip pprof profiles per app. Backends: dir, valkey, s3."""

    backend = "abstract"

    def __init__(self, retention: RetentionPolicy | None = None) -> None:
        self.retention = retention or RetentionPolicy()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # -- primitives every backend implements -------------------------------------------------------
    @abc.abstractmethod
    async def _save(self, app: str, ms: int, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _get(self, app: str, ms: int) -> bytes | None: ...

    @abc.abstractmethod
    async def _list(self, app: str) -> list[ProfileRef]: ...

    @abc.abstractmethod
    async def _delete(self, app: str, refs: Sequence[ProfileRef]) -> None: ...

    @abc.abstractmethod
    async def apps(self) -> list[str]: ...

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    # -- the interface -----------------------------------------------------------------------------
    async def save(self, app: str, created_at: datetime | int, data: bytes) -> ProfileRef:
        """Store ``data`` as ``<app>/<ms>.pb.gz`` (replacing a profile of the same app and time)."""
        ms = to_ms(created_at)
        await self._save(check_app(app), ms, data)
        return ProfileRef(app, ms, len(data))

    async def get(self, app: str, created_at: datetime | int) -> bytes:
        data = await self._get(check_app(app), to_ms(created_at))
        if data is None:
            raise ProfileNotFound(profile_name(app, to_ms(created_at)))
        return data

    async def exists(self, app: str, created_at: datetime | int) -> bool:
        ms = to_ms(created_at)
        return any(r.created_at == ms for r in await self._list(check_app(app)))

    async def list(
        self, app: str, start: datetime | int = 0, end: datetime | int | None = None, limit: int | None = None
    ) -> list[ProfileRef]:
        """Profiles of ``app`` created in ``[start, end)``, newest first, at most ``limit``."""
        lo, hi = _range(to_ms(start), None if end is None else to_ms(end))
        refs = [r for r in await self._list(check_app(app)) if lo <= r.created_at < hi]
        refs.sort(key=lambda r: r.created_at, reverse=True)
        return refs[:limit] if limit is not None else refs

    async def get_range(
        self, app: str, start: datetime | int = 0, end: datetime | int | None = None, limit: int | None = None
    ) -> builtins.list[tuple[ProfileRef, bytes]]:
        """``(ref, data)`` for the profiles of ``list(...)``; ones that vanished meanwhile are skipped."""
        out: builtins.list[tuple[ProfileRef, bytes]] = []
        for ref in await self.list(app, start, end, limit):
            data = await self._get(app, ref.created_at)
            if data is not None:
                out.append((ref, data))
        return out

    async def delete(self, app: str, created_at: datetime | int) -> bool:
        ms = to_ms(created_at)
        refs = [r for r in await self._list(check_app(app)) if r.created_at == ms]
        if refs:
            await self._delete(app, refs)
        return bool(refs)

    async def delete_range(self, app: str, start: datetime | int, end: datetime | int) -> int:
        """Delete the profiles created in ``[start, end)`` (and only those); return how many."""
        refs = await self.list(app, start, end)
        if refs:
            await self._delete(app, refs)
        return len(refs)

    async def apply_retention(self, now_ms: int, app: str | None = None) -> int:
        """Apply :class:`RetentionPolicy` to one app or all; return the number deleted."""
        deleted = 0
        for name in [check_app(app)] if app else await self.apps():
            expired = self.retention.expired(await self._list(name), now_ms)
            if expired:
                await self._delete(name, expired)
                deleted += len(expired)
        return deleted


ClientT = TypeVar("ClientT", bound=Lifecycle)


class ClientStore(ProfileStore, Generic[ClientT]):
    """A store on one of the base clients: starts it, and closes it only if it owns it."""

    def __init__(
        self, client: ClientT, retention: RetentionPolicy | None = None, *, own_client: bool = False
    ) -> None:
        super().__init__(retention)
        self.client = client
        self._own = own_client

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        if self._own:
            await self.client.close()
