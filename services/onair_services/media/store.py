"""media's database rules: one live session per channel, leases, and the status counter.

* ``open``: in one transaction, ``UPDATE streams SET live_session_id=…, status_seq=status_seq+1
  WHERE channel=… AND live_session_id IS NULL`` (no row changed: the channel is live already) and
  the session row with its lease. The counter is the ``seq`` of the channel's status events, so
  readers order open and close correctly whichever instance logged them.
* ``close``: ``UPDATE sessions SET state='closed' … WHERE id=… AND state='open'`` (plus ``AND
  lease_expires_ms < now`` for the reaper): exactly one closer wins — the encoder's handler, the
  owner's stop, the shutdown or any instance's reaper — and only the winner logs ``close``.
* ``renew``: the holder pushes its open sessions' leases forward and learns which of them were
  closed elsewhere (reaped after a stall, stopped from another instance).
* ``logged_seq`` trails ``status_seq`` until the events of a change were acknowledged; the
  re-logger logs the current state of channels left behind by a crash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.logstream import upsert
from onair_services.media.models import publish_keys, sessions, streams


def now_ms() -> int:
    return int(time.time() * 1000)


class AlreadyLive(Exception):
    def __init__(self, channel: str, session_id: str, lease_expires_ms: int) -> None:
        super().__init__(f"channel {channel!r} is live already (session {session_id})")
        self.channel = channel
        self.session_id = session_id
        self.lease_expires_ms = lease_expires_ms


@dataclass(frozen=True)
class PublishKey:
    channel: str
    owner_id: str
    key_sha256: str


@dataclass(frozen=True)
class SessionRow:
    id: str
    channel: str
    instance: str
    kind: str
    state: str
    source: dict[str, Any]
    renditions: list[dict[str, Any]]
    open_seq: int
    opened_ms: int
    lease_expires_ms: int
    closed_ms: int | None
    close_reason: str | None


@dataclass(frozen=True)
class Transition:
    """A committed status change: what the status event says (``seq`` = the channel's counter)."""

    channel: str
    session_id: str
    status: str  # open | close
    seq: int
    reason: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    renditions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StreamState:
    channel: str
    status_seq: int
    logged_seq: int
    live_session_id: str | None
    last_session_id: str | None
    last_reason: str | None


def _session(row: Any) -> SessionRow:
    m = row._mapping
    return SessionRow(
        id=m["id"],
        channel=m["channel"],
        instance=m["instance"],
        kind=m["kind"],
        state=m["state"],
        source=dict(m["source"]),
        renditions=list(m["renditions"]),
        open_seq=int(m["open_seq"]),
        opened_ms=int(m["opened_ms"]),
        lease_expires_ms=int(m["lease_expires_ms"]),
        closed_ms=m["closed_ms"],
        close_reason=m["close_reason"],
    )


class MediaStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessionmaker

    # -- publish keys (the projection writes them; ingest reads) ---------------------------------
    async def publish_key(self, channel: str) -> PublishKey | None:
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(publish_keys.c.owner_id, publish_keys.c.key_sha256).where(
                        publish_keys.c.channel == channel
                    )
                )
            ).first()
        return PublishKey(channel, row[0], row[1]) if row is not None else None

    # -- sessions --------------------------------------------------------------------------------
    async def open(
        self,
        channel: str,
        session_id: str,
        *,
        instance: str,
        kind: str,
        source: dict[str, Any],
        renditions: list[dict[str, Any]],
        lease_ms: int,
    ) -> Transition:
        """Open a session (raises :class:`AlreadyLive` when the channel has one)."""
        at = now_ms()
        async with self.sessions() as s, s.begin():
            await upsert(
                s,
                streams,
                [{"channel": channel, "status_seq": 0, "logged_seq": 0, "updated_ms": at}],
                ["channel"],
                update=[],
            )
            taken = await s.execute(
                update(streams)
                .where(and_(streams.c.channel == channel, streams.c.live_session_id.is_(None)))
                .values(live_session_id=session_id, status_seq=streams.c.status_seq + 1, updated_ms=at)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                live = (
                    await s.execute(
                        select(sessions.c.id, sessions.c.lease_expires_ms)
                        .select_from(streams.join(sessions, sessions.c.id == streams.c.live_session_id))
                        .where(streams.c.channel == channel)
                    )
                ).first()
                raise AlreadyLive(channel, live[0] if live else "?", int(live[1]) if live else 0)
            seq = int(
                (
                    await s.execute(select(streams.c.status_seq).where(streams.c.channel == channel))
                ).scalar_one()
            )
            await s.execute(
                insert(sessions).values(
                    id=session_id,
                    channel=channel,
                    instance=instance,
                    kind=kind,
                    state="open",
                    source=source,
                    renditions=renditions,
                    open_seq=seq,
                    opened_ms=at,
                    lease_expires_ms=at + lease_ms,
                )
            )
        return Transition(channel, session_id, "open", seq, None, source, renditions)

    async def close(
        self, session_id: str, reason: str, *, expired_before_ms: int | None = None
    ) -> Transition | None:
        """Close an open session; None when it was closed already (someone else won).

        With ``expired_before_ms`` (the reaper) it closes only a session whose lease expired.
        """
        at = now_ms()
        cond = and_(sessions.c.id == session_id, sessions.c.state == "open")
        if expired_before_ms is not None:
            cond = and_(cond, sessions.c.lease_expires_ms < expired_before_ms)
        async with self.sessions() as s, s.begin():
            won = await s.execute(
                update(sessions).where(cond).values(state="closed", closed_ms=at, close_reason=reason)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            channel = (
                await s.execute(select(sessions.c.channel).where(sessions.c.id == session_id))
            ).scalar_one()
            await s.execute(
                update(streams)
                .where(and_(streams.c.channel == channel, streams.c.live_session_id == session_id))
                .values(
                    live_session_id=None,
                    last_session_id=session_id,
                    last_reason=reason,
                    status_seq=streams.c.status_seq + 1,
                    updated_ms=at,
                )
            )
            seq = int(
                (
                    await s.execute(select(streams.c.status_seq).where(streams.c.channel == channel))
                ).scalar_one()
            )
        return Transition(channel, session_id, "close", seq, reason)

    async def renew(self, instance: str, session_ids: Sequence[str], lease_ms: int) -> dict[str, str]:
        """Extend the leases of ``session_ids`` held by ``instance``; return the close reason of
        those that are no longer open (closed elsewhere, or gone)."""
        if not session_ids:
            return {}
        ids = list(session_ids)
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(sessions)
                .where(
                    and_(sessions.c.id.in_(ids), sessions.c.instance == instance, sessions.c.state == "open")
                )
                .values(lease_expires_ms=now_ms() + lease_ms)
            )
            rows = (
                await s.execute(
                    select(sessions.c.id, sessions.c.state, sessions.c.close_reason).where(
                        sessions.c.id.in_(ids)
                    )
                )
            ).all()
        seen = {r[0]: (r[1], r[2]) for r in rows}
        lost: dict[str, str] = {}
        for sid in ids:
            state, reason = seen.get(sid, ("gone", None))
            if state != "open":
                lost[sid] = reason or "gone"
        return lost

    async def expired(self, before_ms: int, limit: int = 100) -> list[str]:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(sessions.c.id)
                    .where(and_(sessions.c.state == "open", sessions.c.lease_expires_ms < before_ms))
                    .order_by(sessions.c.lease_expires_ms)
                    .limit(limit)
                )
            ).all()
        return [r[0] for r in rows]

    async def session(self, session_id: str) -> SessionRow | None:
        async with self.sessions() as s:
            row = (await s.execute(select(sessions).where(sessions.c.id == session_id))).first()
        return _session(row) if row is not None else None

    async def live_session(self, channel: str) -> SessionRow | None:
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(sessions)
                    .select_from(streams.join(sessions, sessions.c.id == streams.c.live_session_id))
                    .where(streams.c.channel == channel)
                )
            ).first()
        return _session(row) if row is not None else None

    async def last_session(self, channel: str) -> SessionRow | None:
        """The live session of a channel, else its most recent one."""
        live = await self.live_session(channel)
        if live is not None:
            return live
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(sessions)
                    .where(sessions.c.channel == channel)
                    .order_by(sessions.c.opened_ms.desc())
                    .limit(1)
                )
            ).first()
        return _session(row) if row is not None else None

    async def prune(self, closed_before_ms: int) -> int:
        async with self.sessions() as s, s.begin():
            result = await s.execute(
                delete(sessions).where(
                    and_(sessions.c.state == "closed", sessions.c.closed_ms < closed_before_ms)
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- what is on the log ----------------------------------------------------------------------
    async def mark_logged(self, channel: str, seq: int) -> bool:
        """Every event of change ``seq`` was acknowledged: advance if the previous one was too."""
        async with self.sessions() as s, s.begin():
            result = await s.execute(
                update(streams)
                .where(and_(streams.c.channel == channel, streams.c.logged_seq == seq - 1))
                .values(logged_seq=seq)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def mark_relogged(self, channel: str, seq: int) -> None:
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(streams)
                .where(and_(streams.c.channel == channel, streams.c.logged_seq < seq))
                .values(logged_seq=seq)
            )

    async def lagging(self, changed_before_ms: int, limit: int) -> list[StreamState]:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(streams)
                    .where(
                        and_(
                            streams.c.logged_seq < streams.c.status_seq,
                            streams.c.updated_ms < changed_before_ms,
                        )
                    )
                    .order_by(streams.c.updated_ms)
                    .limit(limit)
                )
            ).all()
        return [
            StreamState(
                r.channel,
                int(r.status_seq),
                int(r.logged_seq),
                r.live_session_id,
                r.last_session_id,
                r.last_reason,
            )
            for r in rows
        ]


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
