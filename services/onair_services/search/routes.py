"""search's HTTP API: ``GET /search?q=&tag=&rendition=&page=&limit=``.

``q`` is free text: its words are found by prefix in titles and tags (every word must match),
ranked (bm25 / ts_rank, title matches first) and paged. No ``q`` (or only spaces): every channel on
air, newest first. A ``q`` with no word in it (only punctuation) matches nothing. Whatever the
text, it never reaches the engine's query syntax (see :mod:`onair_services.search.text`).
``position`` / ``X-Onair-Position``: read-your-writes, as in liveinfo.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field

from onair.logstream import Position, UnknownPosition, wait_for_position
from onair.service import Service, responses, service_of
from onair_services.media_events import current_renditions
from onair_services.search import metrics
from onair_services.search.index import Query as IndexQuery
from onair_services.search.index import SearchIndex
from onair_services.search.projections import INDEX, TOPICS
from onair_services.search.settings import SearchSettings
from onair_services.search.text import normalize_tag, query_words

router = APIRouter(prefix="/search", tags=["search"])

TAG_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters (NUL cannot reach PostgreSQL)
POSITION_PATTERN = r"^[A-Za-z0-9._-]+:[0-9]{1,9}:[0-9]{1,18}$"
POSITION_DOC = (
    "Read-your-writes: a position a write answered (`<topic>:<partition>:<offset>`); the search waits "
    "until the index applied it (503 after the bound, 409 for a topic search does not read)."
)


class SearchHit(BaseModel):
    channel: str
    title: str
    tags: list[str]
    renditions: list[str] = Field(description="Renditions offered, e.g. 1080p, 720p")
    started_at: str | None


class SearchPage(BaseModel):
    items: list[SearchHit]
    page: int
    limit: int
    total: int = Field(description="Channels matching, over all pages")


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@router.get(
    "",
    response_model=SearchPage,
    summary="Channels on air, by words of their title and tags (prefixes too), tag and rendition",
    responses=responses(409),
)
async def search(
    q: Annotated[
        str | None, Query(max_length=200, description="Words to find (prefixes too), any language")
    ] = None,
    tag: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=TAG_PATTERN, description="Only channels with this tag"),
    ] = None,
    rendition: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Only channels offering it, e.g. 720p"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
    position: Annotated[
        str | None, Query(pattern=POSITION_PATTERN, max_length=300, description=POSITION_DOC)
    ] = None,
    x_onair_position: Annotated[
        str | None,
        Header(alias="X-Onair-Position", pattern=POSITION_PATTERN, max_length=300, description=POSITION_DOC),
    ] = None,
    svc: Service = Depends(service_of),
) -> SearchPage:
    settings: SearchSettings = svc.state["settings"]
    index: SearchIndex = svc.state["index"]
    given = position or x_onair_position
    if given is not None:
        await _wait(svc, given, settings)
    browse = q is None or not q.strip()
    words = [] if browse or q is None else query_words(q)
    query = IndexQuery(
        words=words,
        tag=normalize_tag(tag) if tag is not None else None,
        rendition=rendition.lower() if rendition is not None else None,
        limit=limit,
        offset=(page - 1) * limit,
        browse=browse,
    )
    metrics.SEARCHES.labels("browse" if browse else "words").inc()
    async with svc.session() as session:
        total, hits = await index.search(session, query)
    return SearchPage(
        items=[
            SearchHit(
                channel=h["channel"],
                title=h["title"],
                tags=list(h["tags"] or ()),
                renditions=[r["name"] for r in current_renditions(h)],
                started_at=_iso(h["started_us"]),
            )
            for h in hits
        ],
        page=page,
        limit=limit,
        total=total,
    )


async def _wait(svc: Service, given: str, settings: SearchSettings) -> None:
    pos = Position.parse(given)
    topics = [svc.kafka.topic(t) if svc.kafka is not None else t for t in TOPICS]
    if pos.topic not in topics:
        raise UnknownPosition(given, f"search does not read topic {pos.topic}")
    assert svc.engine is not None
    await wait_for_position(
        svc.engine, INDEX, pos, timeout_s=settings.position_wait_s, runner=svc.runners.get(INDEX)
    )
