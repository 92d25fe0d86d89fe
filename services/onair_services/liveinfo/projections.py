"""liveinfo's projections: ``liveinfo.channels`` and ``liveinfo.viewers`` (and the viewer sweeper).

``liveinfo.channels`` folds ``media.live_stream.status|metadata`` and
``media.broad_info.title|tags|options`` into one row per channel with
:func:`onair_services.media_events.fold_channel` (the rules are written there: stale events are
dropped by the runner, ``options.visibility`` is decided by the vote rule, a late close of an old
session is ignored, metadata counts for its own session).

``liveinfo.viewers`` keeps the latest count of each chat process per channel (newest by event
time, per process: the runner's per-channel order cannot tell processes apart, so the projection
reads every event, ``ordering="none"``) and the channel's total of the fresh counts. Counts that
go stale without a newer one are swept out by :func:`sweep_viewers` (a background task). The one
place ``apply`` looks at the clock: which counts are still fresh is decided against the wall clock
when the batch is applied, so a batch applied again after a crash gives the totals of *that* time
(the right ones) rather than those of the first attempt.

Each ``apply`` leaves a note of what it changed; the projection's ``after_commit`` hands it to
:meth:`LiveReadModel.changed` (invalidations, NATS) and updates the ranking's sorted set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import Event, Projection, VoteRule, excluded, upsert
from onair.service import Service
from onair_services import media_events as me
from onair_services.liveinfo import store
from onair_services.liveinfo.models import channels
from onair_services.liveinfo.readmodel import LiveReadModel, now_us
from onair_services.liveinfo.settings import LiveinfoSettings
from onair_services.liveinfo.views import list_entry, ranking_entry

CHANNELS = "liveinfo.channels"
VIEWERS = "liveinfo.viewers"
CHANNEL_TOPICS = (me.STATUS, me.METADATA, me.TITLE, me.TAGS, me.OPTIONS)
VIEWER_TOPICS = (me.VIEWER_COUNT,)
VISIBILITY_RULE = VoteRule("visibility", {"public": 1, "hidden": -1}, window_s=5.0)


@dataclass
class Changes:
    """What one batch changed (stored rows as committed), for its after-commit."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    list_changed: bool = False
    rank_candidates: set[str] = field(default_factory=set)
    totals: dict[str, int] | None = None  # viewers: the new total per channel


class _Notes:
    """The note the last ``apply`` left for its batch. The runner calls ``after_commit`` with the
    very batch it committed, after the last ``apply`` of it (a batch is re-applied after a poison
    search); a note for another batch is never used."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._changes: Changes | None = None

    @staticmethod
    def _key_of(events: Sequence[Event]) -> tuple[Any, ...]:
        first, last = events[0], events[-1]
        return (
            len(events),
            first.topic,
            first.partition,
            first.offset,
            last.topic,
            last.partition,
            last.offset,
        )

    def put(self, events: Sequence[Event], changes: Changes) -> None:
        self._key, self._changes = self._key_of(events), changes

    def take(self, events: Sequence[Event]) -> Changes | None:
        if not events or self._key != self._key_of(events):
            return None
        changes, self._key, self._changes = self._changes, None, None
        return changes


# -- liveinfo.channels ---------------------------------------------------------------------------


def channels_projection(svc: Service, model: LiveReadModel) -> Projection:
    notes = _Notes()
    log = svc.log

    async def apply(events: Sequence[Event], session: AsyncSession) -> None:
        names = {me.channel_of(e.entity) for e in events}
        # locked in channel order (PostgreSQL), like every writer of these rows: no deadlock
        before = await store.rows_of(session, names, for_update=True)
        work = {name: dict(before.get(name) or store.new_row(name)) for name in names}
        for e in events:
            me.fold_channel(work[e.entity], e)
        changed: list[dict[str, Any]] = []
        changes = Changes()
        for name in sorted(names):
            row, old = work[name], before.get(name)
            base = old or store.new_row(name)
            if old is not None and row == old:
                continue
            changed.append(row)
            if list_entry(base) != list_entry(row):
                changes.list_changed = True
            if ranking_entry(base) != ranking_entry(row):
                changes.rank_candidates.add(name)
        if changed:
            ex = excluded(session, channels)
            own = [c.name for c in channels.columns if c.name not in ("channel", "viewers", "version")]
            await upsert(
                session,
                channels,
                [{**r, "version": 1} for r in changed],
                ["channel"],
                {**{c: ex[c] for c in own}, "version": channels.c.version + 1},
            )
            changes.rows = await store.rows_of(session, [r["channel"] for r in changed])
        notes.put(events, changes)

    async def after_commit(events: Sequence[Event]) -> None:
        changes = notes.take(events)
        if changes is None:  # no note for this batch (cannot happen with the runner): assume the worst
            log.warning(
                "no change note for a committed batch; invalidating its channels", projection=CHANNELS
            )
            async with svc.session() as session:
                rows = await store.rows_of(session, {e.entity for e in events})
            changes = Changes(rows=rows, list_changed=True, rank_candidates=set(rows))
        await model.changed(
            changes.rows,
            projection=CHANNELS,
            list_changed=changes.list_changed,
            rank_candidates=changes.rank_candidates,
        )

    topics = [svc.kafka.topic(t) if svc.kafka else t for t in CHANNEL_TOPICS]
    return Projection(
        CHANNELS,
        list(CHANNEL_TOPICS),
        apply,
        votes={topics[CHANNEL_TOPICS.index(me.OPTIONS)]: VISIBILITY_RULE},
        after_commit=after_commit,
    )


# -- liveinfo.viewers ----------------------------------------------------------------------------


def viewers_projection(svc: Service, model: LiveReadModel, settings: LiveinfoSettings) -> Projection:
    notes = _Notes()
    stale = settings.viewer_stale_intervals

    async def apply(events: Sequence[Event], session: AsyncSession) -> None:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for e in events:
            name = me.channel_of(e.entity)
            count = me.parse(me.ViewerCountData, e.data)
            ts_us = e.envelope.ts_us
            key = (name, count.process)
            if key not in latest or ts_us > latest[key]["ts_us"]:
                latest[key] = {
                    "channel": name,
                    "process": count.process,
                    "viewers": count.viewers,
                    "ts_us": ts_us,
                    "expires_us": ts_us + int(stale * count.interval_s * 1_000_000),
                }
        await store.write_counts(session, list(latest.values()))
        rows = await store.refresh_totals(session, {k[0] for k in latest}, now_us())
        notes.put(events, _viewer_changes(rows))

    async def after_commit(events: Sequence[Event]) -> None:
        changes = notes.take(events)
        if changes is None:
            async with svc.session() as session:
                changes = _viewer_changes(await store.rows_of(session, {e.entity for e in events}))
        await publish_viewer_changes(model, changes, VIEWERS)

    return Projection(VIEWERS, list(VIEWER_TOPICS), apply, ordering="none", after_commit=after_commit)


def _viewer_changes(rows: dict[str, dict[str, Any]]) -> Changes:
    return Changes(rows=rows, totals={name: int(r["viewers"]) for name, r in rows.items()})


async def publish_viewer_changes(model: LiveReadModel, changes: Changes, projection: str) -> None:
    if not changes.rows:
        return
    await model.update_ranking(changes.totals or {})
    await model.changed(changes.rows, projection=projection, ranking_changed=True)


async def sweep_viewers(svc: Service, model: LiveReadModel, settings: LiveinfoSettings) -> None:
    """Forever: drop the counts that went stale and update the totals, ranking and views.

    Every ``ranking_rebuild_s`` the ranking's sorted set is rebuilt from the database too."""
    log = svc.log
    rebuild_every = max(1, round(settings.ranking_rebuild_s / settings.viewer_sweep_s))
    rounds = 0
    while True:
        await asyncio.sleep(settings.viewer_sweep_s)
        rounds += 1
        try:
            async with svc.session() as session, session.begin():
                now = now_us()
                expired = await store.expire_counts(session, now)
                rows = await store.refresh_totals(session, expired, now) if expired else {}
            await publish_viewer_changes(model, _viewer_changes(rows), "liveinfo.sweeper")
            if rounds % rebuild_every == 0:
                await model.rebuild_ranking()
        except Exception as exc:  # a backend is away: try again next round
            log.warning("viewer sweep failed", error=repr(exc))
