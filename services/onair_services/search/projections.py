"""``search.index``: the channels' state, and the full-text index of the ones on air and public.

The projection folds ``media.live_stream.status|metadata`` and ``media.broad_info.title|tags|options``
into ``search_channels`` (the rules are :func:`onair_services.media_events.fold_channel`'s: stale
events dropped per channel and topic by the runner, visibility by the vote rule), then updates the
index in the same transaction for the channels whose entry changed:

* a channel becomes searchable when it goes on air (and is public), with the title and tags it
  has then (they are kept while it is offline);
* its entry is replaced when its title, tags or renditions change;
* it leaves the index when its stream ends (or it is hidden).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import Event, Projection, VoteRule, excluded, upsert
from onair.service import Service
from onair_services import media_events as me
from onair_services.search.index import Entry, index_for
from onair_services.search.models import channels
from onair_services.search.settings import SearchSettings
from onair_services.search.text import index_terms

INDEX = "search.index"
TOPICS = (me.STATUS, me.METADATA, me.TITLE, me.TAGS, me.OPTIONS)
VISIBILITY_RULE = VoteRule("visibility", {"public": 1, "hidden": -1}, window_s=5.0)
_STATE = tuple(me.new_channel_state("x"))


def searchable(state: Mapping[str, Any]) -> bool:
    return state["status"] == "live" and state["visibility"] == "public"


def entry_of(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What the index holds of a channel (None: not indexed); compared before/after a batch."""
    if not searchable(state):
        return None
    names = tuple(r["name"].lower() for r in me.current_renditions(state))
    return (state["title"], tuple(state["tags"] or ()), names, state["started_us"])


async def _rows(session: AsyncSession, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    stmt = select(channels.c.id, *(channels.c[c] for c in _STATE)).where(channels.c.channel.in_(list(names)))
    # locked in channel order on PostgreSQL (one projection instance per partition anyway)
    stmt = stmt.order_by(channels.c.channel).with_for_update()
    return {r["channel"]: dict(r) for r in (await session.execute(stmt)).mappings()}


def index_projection(svc: Service, settings: SearchSettings) -> Projection:
    assert svc.engine is not None
    index = index_for(svc.engine.dialect.name, settings.title_weight)

    async def apply(events: Sequence[Event], session: AsyncSession) -> None:
        names = sorted({me.channel_of(e.entity) for e in events})
        before = await _rows(session, names)
        work = {
            n: {k: v for k, v in (before.get(n) or me.new_channel_state(n)).items() if k != "id"}
            for n in names
        }
        for e in events:
            me.fold_channel(work[e.entity], e)
        changed = [n for n in names if n not in before or any(work[n][k] != before[n][k] for k in _STATE)]
        if not changed:
            return
        ex = excluded(session, channels)
        rows = [{**work[n], "indexed": searchable(work[n])} for n in changed]
        await upsert(
            session, channels, rows, ["channel"], {c: ex[c] for c in (*_STATE, "indexed") if c != "channel"}
        )
        reindex = [
            n
            for n in changed
            if entry_of(before[n] if n in before else me.new_channel_state(n)) != entry_of(work[n])
        ]
        if not reindex:
            return
        ids = {
            r[0]: r[1]
            for r in (
                await session.execute(
                    select(channels.c.channel, channels.c.id).where(channels.c.channel.in_(reindex))
                )
            ).all()
        }
        await index.remove(session, [ids[n] for n in reindex if not searchable(work[n])])
        await index.put(session, [_entry(ids[n], work[n]) for n in reindex if searchable(work[n])])

    topics = [svc.kafka.topic(t) if svc.kafka else t for t in TOPICS]
    return Projection(INDEX, list(TOPICS), apply, votes={topics[TOPICS.index(me.OPTIONS)]: VISIBILITY_RULE})


def _entry(channel_id: int, state: Mapping[str, Any]) -> Entry:
    tags = [str(t) for t in state["tags"] or ()]
    return Entry(
        id=channel_id,
        title_terms=index_terms(state["title"]),
        tag_terms=index_terms(" ".join(tags)),
        tags=tags,
        renditions=[r["name"].lower() for r in me.current_renditions(state)],
    )
