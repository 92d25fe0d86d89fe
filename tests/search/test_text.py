"""The tokenizer, and why it exists: what FTS5 unicode61 and PostgreSQL ``simple`` do with Korean
and Japanese on their own, against what they do with the service's tokens."""

from __future__ import annotations

import os
import sqlite3

import pytest
from sqlalchemy import text

from onair.db import create_engine
from onair.testing import POSTGRES_ENV
from onair_services.search.index import fts5_query, tsquery
from onair_services.search.text import index_terms, normalize, query_words


def test_tokens() -> None:
    assert index_terms("오늘은 게임 방송") == "오늘 늘은 은 게임 임 방송 송"
    assert index_terms("게임방송") == "게임 임방 방송 송"
    assert index_terms("今日はゲーム配信") == "今日 日は はゲ ゲー ーム ム配 配信 信"
    assert index_terms("Café Crème, v1.2 & hello-world!") == "cafe creme v1 2 hello world"
    assert index_terms("BTS방송") == "bts 방송 송"
    assert (
        index_terms("\uff46\uff55\uff4c\uff4c \uff76\uff80\uff76\uff85") == "full カタ タカ カナ ナ"
    )  # full/half width
    assert normalize("İSTANBUL Straße") == "istanbul strasse"
    assert [w.tokens for w in query_words("게임방 gam")] == [("게임", "임방"), ("gam",)]
    assert [w.tokens for w in query_words("게")] == [("게",)]
    # nothing of the engines' query syntax survives
    assert query_words('"*" - NEAR/2 ( ) : ^ \' \\ & | ! <-> \x00 \u0301') == [
        query_words("near")[0],
        query_words("2")[0],
    ]
    assert query_words("") == [] and query_words("!!! ***") == []
    assert fts5_query(query_words("게임방 gam")) == '"게임 임방" * AND "gam" *'
    assert tsquery(query_words("게임방 gam")) == "('게임' <-> '임방':*) & ('gam':*)"


def test_sqlite_unicode61_alone_cannot_find_words_of_unspaced_scripts() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE native USING fts5(t)")  # the default tokenizer: unicode61
    tokenizer = "unicode61 remove_diacritics 0 categories 'L* N* Co M*'"  # as the migration
    db.execute(f'CREATE VIRTUAL TABLE ours USING fts5(t, tokenize = "{tokenizer}")')
    titles = ["오늘은 게임 방송", "게임방송", "今日はゲーム配信"]
    for t in titles:
        db.execute("INSERT INTO native (t) VALUES (?)", (t,))
        db.execute("INSERT INTO ours (t) VALUES (?)", (index_terms(t),))

    def native(q: str) -> list[str]:
        return [r[0] for r in db.execute("SELECT t FROM native WHERE native MATCH ? ORDER BY rowid", (q,))]

    def ours(q: str) -> list[int]:
        return [
            r[0]
            for r in db.execute(
                "SELECT rowid FROM ours WHERE ours MATCH ? ORDER BY rowid", (fts5_query(query_words(q)),)
            )
        ]

    assert native('"게임"') == ["오늘은 게임 방송"]  # Hangul words are split on spaces...
    assert native('"방송"') == ["오늘은 게임 방송"]  # ...but a compound is one token
    assert native('"ゲーム"') == []  # and Japanese is one token for the whole title
    assert ours("게임") == [1, 2]
    assert ours("방송") == [1, 2]
    assert ours("ゲーム") == [3]
    with pytest.raises(sqlite3.OperationalError):  # what a user's quote does to a raw MATCH
        native('"게임')


async def test_postgres_simple_alone_cannot_either() -> None:
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it); PostgreSQL cases not run")
    engine = create_engine(server)  # only SELECTs of expressions: the server's own database will do
    try:
        async with engine.connect() as conn:

            async def matches(document: str, query: str) -> bool:
                sql = text("SELECT to_tsvector('simple', :d) @@ to_tsquery('simple', :q)")
                return bool((await conn.execute(sql, {"d": document, "q": query})).scalar_one())

            assert await matches("오늘은 게임 방송", "게임")
            assert not await matches("게임방송", "방송")
            assert not await matches("今日はゲーム配信", "ゲーム")
            for title, q in (
                ("게임방송", "방송"),
                ("今日はゲーム配信", "ゲーム"),
                ("오늘은 게임 방송", "게임"),
            ):
                assert await matches(index_terms(title), tsquery(query_words(q)))
    finally:
        await engine.dispose()
