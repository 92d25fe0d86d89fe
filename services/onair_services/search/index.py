"""The full-text index behind one small interface: SQLite FTS5, or PostgreSQL ``tsvector`` + GIN.

:class:`SearchIndex` is what the projection and the route use: ``put`` (replace the entries of
some channels), ``remove`` and ``search``. Both engines index the same tokens
(:mod:`onair_services.search.text`) and filter by tag and rendition with the same tables; they
differ in how the text is matched and ranked:

* SQLite: an FTS5 table ``search_fts(title, tags)`` (``rowid`` = the channel's id), queried with
  ``MATCH '"tok1 tok2" * AND "tok3" *'`` and ranked by ``bm25`` (title weighted);
* PostgreSQL: ``search_channels.document`` = ``setweight(to_tsvector('simple', title), 'A') ||
  setweight(to_tsvector('simple', tags), 'B')`` under a GIN index, queried with
  ``to_tsquery('simple', '''tok1'' <-> ''tok2'':* & ''tok3'':*')`` and ranked by ``ts_rank``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from onair_services.search.models import channels, renditions, tags
from onair_services.search.text import QueryWord


@dataclass(frozen=True)
class Entry:
    """What the index holds of one channel on air."""

    id: int
    title_terms: str
    tag_terms: str
    tags: Sequence[str]
    renditions: Sequence[str]


@dataclass(frozen=True)
class Query:
    words: Sequence[QueryWord] = ()
    tag: str | None = None
    rendition: str | None = None
    limit: int = 20
    offset: int = 0
    browse: bool = field(default=False)  # no words asked for: every indexed channel, newest first


HIT_COLUMNS = (
    channels.c.channel,
    channels.c.title,
    channels.c.tags,
    channels.c.status,
    channels.c.session_id,
    channels.c.meta_session_id,
    channels.c.renditions,
    channels.c.started_us,
)


class SearchIndex(ABC):
    """One engine's index. Methods run inside the caller's transaction (never commit)."""

    def __init__(self, title_weight: float = 3.0) -> None:
        self.title_weight = title_weight

    async def put(self, session: AsyncSession, entries: Sequence[Entry]) -> None:
        """Make ``entries`` the index's entries for their channels."""
        if not entries:
            return
        await self.remove(session, [e.id for e in entries])
        await self._put_text(session, entries)
        tag_rows = [{"channel_id": e.id, "tag": t} for e in entries for t in dict.fromkeys(e.tags)]
        if tag_rows:
            await session.execute(insert(tags), tag_rows)
        rendition_rows = [
            {"channel_id": e.id, "name": r} for e in entries for r in dict.fromkeys(e.renditions)
        ]
        if rendition_rows:
            await session.execute(insert(renditions), rendition_rows)

    async def remove(self, session: AsyncSession, ids: Sequence[int]) -> None:
        """Take these channels out of the index (absent ones are ignored)."""
        if not ids:
            return
        await self._remove_text(session, ids)
        await session.execute(delete(tags).where(tags.c.channel_id.in_(ids)))
        await session.execute(delete(renditions).where(renditions.c.channel_id.in_(ids)))

    async def search(self, session: AsyncSession, query: Query) -> tuple[int, list[dict[str, Any]]]:
        """``(total, hits of the page)``, best first."""
        if not query.browse and not query.words:
            return 0, []  # the query had no word to look for: nothing matches it
        if query.browse:
            stmt = select(*HIT_COLUMNS).where(channels.c.indexed)
            order: list[Any] = []
        else:
            stmt, rank = self._matching(query.words)
            order = [rank]
        stmt = self._filtered(stmt, query)
        total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
        page = stmt.order_by(*order, channels.c.started_us.desc(), channels.c.channel)
        page = page.limit(query.limit).offset(query.offset)
        return int(total), [dict(r) for r in (await session.execute(page)).mappings()]

    @staticmethod
    def _filtered(stmt: Select[Any], query: Query) -> Select[Any]:
        if query.tag is not None:
            stmt = stmt.where(exists().where(tags.c.channel_id == channels.c.id, tags.c.tag == query.tag))
        if query.rendition is not None:
            stmt = stmt.where(
                exists().where(renditions.c.channel_id == channels.c.id, renditions.c.name == query.rendition)
            )
        return stmt

    @abstractmethod
    async def _put_text(self, session: AsyncSession, entries: Sequence[Entry]) -> None: ...

    @abstractmethod
    async def _remove_text(self, session: AsyncSession, ids: Sequence[int]) -> None: ...

    @abstractmethod
    def _matching(self, words: Sequence[QueryWord]) -> tuple[Select[Any], Any]:
        """The indexed channels matching ``words`` (selecting HIT_COLUMNS), and the ascending rank."""


# -- SQLite FTS5 -----------------------------------------------------------------------------------

_fts = table("search_fts", column("rowid"), column("title"), column("tags"))


def fts5_query(words: Sequence[QueryWord]) -> str:
    """``"tok1 tok2" * AND "tok3" *``: each word a phrase whose last token is a prefix."""
    return " AND ".join('"' + " ".join(t.replace('"', '""') for t in w.tokens) + '" *' for w in words)


class SqliteIndex(SearchIndex):
    async def _put_text(self, session: AsyncSession, entries: Sequence[Entry]) -> None:
        await session.execute(
            text("INSERT INTO search_fts (rowid, title, tags) VALUES (:id, :title, :tags)"),
            [{"id": e.id, "title": e.title_terms, "tags": e.tag_terms} for e in entries],
        )

    async def _remove_text(self, session: AsyncSession, ids: Sequence[int]) -> None:
        await session.execute(delete(_fts).where(_fts.c.rowid.in_(ids)))

    def _matching(self, words: Sequence[QueryWord]) -> tuple[Select[Any], Any]:
        fts: Any = literal_column("search_fts")
        rank = func.bm25(fts, self.title_weight, 1.0)
        stmt = (
            select(*HIT_COLUMNS)
            .select_from(_fts.join(channels, channels.c.id == _fts.c.rowid))
            .where(fts.op("MATCH")(bindparam("match", fts5_query(words))), channels.c.indexed)
        )
        return stmt, rank


# -- PostgreSQL ------------------------------------------------------------------------------------


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(words: Sequence[QueryWord]) -> str:
    """``'tok1' <-> 'tok2':* & 'tok3':*``: each word a phrase whose last token is a prefix."""
    return " & ".join(
        "("
        + " <-> ".join(_lexeme(t) + (":*" if i == len(w.tokens) - 1 else "") for i, t in enumerate(w.tokens))
        + ")"
        for w in words
    )


_SIMPLE: Any = literal_column("'simple'::regconfig")


class PostgresIndex(SearchIndex):
    async def _put_text(self, session: AsyncSession, entries: Sequence[Entry]) -> None:
        document = func.setweight(func.to_tsvector(_SIMPLE, bindparam("b_title")), literal_column("'A'")).op(
            "||"
        )(func.setweight(func.to_tsvector(_SIMPLE, bindparam("b_tags")), literal_column("'B'")))
        stmt = update(channels).where(channels.c.id == bindparam("b_id")).values(document=document)
        await session.execute(
            stmt, [{"b_id": e.id, "b_title": e.title_terms, "b_tags": e.tag_terms} for e in entries]
        )

    async def _remove_text(self, session: AsyncSession, ids: Sequence[int]) -> None:
        await session.execute(update(channels).where(channels.c.id.in_(ids)).values(document=None))

    def _matching(self, words: Sequence[QueryWord]) -> tuple[Select[Any], Any]:
        query = func.to_tsquery(_SIMPLE, bindparam("tsquery", tsquery(words)))
        # weights {D, C, B, A} (each in [0, 1]): tags are B, titles A
        weights: Any = literal_column(f"'{{0, 0, {1.0 / self.title_weight:.6f}, 1}}'::float4[]")
        rank = func.ts_rank(weights, channels.c.document, query)
        stmt = select(*HIT_COLUMNS).where(channels.c.document.op("@@")(query), channels.c.indexed)
        return stmt, rank.desc()


def index_for(dialect: str, title_weight: float = 3.0) -> SearchIndex:
    """The index of a database dialect (``sqlite`` or ``postgresql``)."""
    if dialect == "postgresql":
        return PostgresIndex(title_weight)
    return SqliteIndex(title_weight)
