"""search on both engines: the index follows the streams, words in any language, filters, paging,
ranking, read-your-writes, and hostile queries that never fail."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from liveinfo.helpers import RENDITIONS, close, metadata, open_, options, produce, tags, title, ts

from onair.logstream import Position

from .conftest import Search

pytestmark = pytest.mark.asyncio(loop_scope="module")


def uid(prefix: str = "se") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def word() -> str:
    """A word no other test uses (letters only, so it is one token)."""
    return "w" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))


async def applied(s: Search, positions: list[Position]) -> None:
    """Return once the index applied every position (a search with a position waits for it)."""
    for pos in positions:
        for _ in range(20):  # 503 not_yet_applied: the index may be catching up with the topics
            r = await s.http.get("/search", params={"position": str(pos), "limit": 1})
            if r.status_code != 503:
                break
        assert r.status_code == 200, r.text


async def test_the_index_follows_the_stream(search: Search) -> None:
    ch, old, new, later = uid(), word(), word(), word()
    # title and tags set while offline are kept: going live indexes them
    await applied(
        search,
        await produce(search.kafka, [title(ch, f"{old} speedrun", seq=1), tags(ch, ["gaming"], seq=2)]),
    )
    assert await search.find(old) == []
    await applied(search, await produce(search.kafka, [open_(ch, "s1", seq=1)]))
    assert await search.find(old) == [ch]
    assert ch in await search.find("speedr")  # a prefix
    assert ch in await search.find(f"{old} gam")  # every word must match: one in the title, one in the tags

    await applied(search, await produce(search.kafka, [title(ch, f"{new} marathon", seq=3)]))
    assert await search.find(old) == []
    assert await search.find(new) == [ch]
    assert await search.find(f"{new} {old}") == []

    await applied(search, await produce(search.kafka, [close(ch, "s1", seq=2)]))
    assert await search.find(new) == []
    # a title change while offline, then live again: the current title is what is found
    await applied(search, await produce(search.kafka, [title(ch, later, seq=4), open_(ch, "s2", seq=3)]))
    assert await search.find(later) == [ch]
    assert await search.find(new) == []


async def test_tag_and_rendition_filters(search: Search) -> None:
    w = word()
    hd, sd, other = uid(), uid(), uid()
    envs = [
        title(hd, f"{w} one", seq=1),
        tags(hd, ["gaming", "코딩"], seq=2),
        open_(hd, "s1", seq=1),
        metadata(hd, "s1", seq=1),
        title(sd, f"{w} two", seq=1),
        tags(sd, ["music"], seq=2),
        open_(sd, "s1", seq=1),
        metadata(sd, "s1", renditions=RENDITIONS[2:], seq=1),
        title(other, f"{w} three", seq=1),
        open_(other, "s1", seq=1),
        metadata(other, "s0", seq=1),  # metadata of another session: offers nothing now
    ]
    await applied(search, await produce(search.kafka, envs))
    assert set(await search.find(w)) == {hd, sd, other}
    assert await search.find(w, tag="gaming") == [hd]
    assert await search.find(w, tag="코딩") == [hd]
    assert await search.find(w, tag="GAMING") == [hd]  # normalised like liveapi's tags
    assert await search.find(w, rendition="720p") == [hd]
    assert set(await search.find(w, rendition="480p")) == {hd, sd}
    assert await search.find(w, rendition="480P", tag="music") == [sd]
    assert hd in await search.find(tag="gaming")  # no words: every channel on air with the tag
    r = await search.http.get("/search", params={"q": w, "tag": "gaming"})
    [hit] = r.json()["items"]
    assert hit["renditions"] == ["1080p", "720p", "480p"] and hit["tags"] == ["gaming", "코딩"]
    assert hit["started_at"] is not None and hit["title"] == f"{w} one"


async def test_words_in_any_language(search: Search) -> None:
    ko, compound, ja, zh, mixed, latin = uid(), uid(), uid(), uid(), uid(), uid()
    envs = [
        title(ko, "오늘은 게임 방송", seq=1),
        title(compound, "게임방송 합니다", seq=1),
        title(ja, "今日はゲーム配信", seq=1),
        title(zh, "我们一起玩游戏", seq=1),
        title(mixed, "BTS방송 LIVE", seq=1),
        title(latin, "Café crème à Paris", seq=1),
    ]
    envs += [open_(ch, "s1", seq=1) for ch in (ko, compound, ja, zh, mixed, latin)]
    await applied(search, await produce(search.kafka, envs))

    async def finds(q: str, *channels: str) -> None:
        found = await search.find(q)
        for ch in channels:
            assert ch in found, f"{q!r} does not find {ch}"

    await finds("게임", ko, compound)  # a word, and the start of a compound
    await finds("방송", ko, compound, mixed)  # the end of a compound too
    await finds("게임방", compound)  # a prefix
    await finds("게임 방송", ko, compound)
    await finds("합니다", compound)
    assert ko not in await search.find("게임방송")  # the words, not the glued form
    await finds("ゲーム", ja)  # Japanese has no spaces between words
    await finds("ｹﾞｰﾑ", ja)  # half-width kana
    await finds("配信", ja)
    await finds("游戏", zh)
    await finds("bts", mixed)
    await finds("bts방송", mixed)
    await finds("cafe", latin)  # diacritics do not matter
    await finds("CRÈME", latin)
    await finds("par", latin)
    assert latin not in await search.find("pari x")


async def test_titles_rank_before_tags(search: Search) -> None:
    w = word()
    in_tags, in_title = uid(), uid()
    envs = [
        title(in_tags, "something else", seq=1),
        tags(in_tags, [w], seq=2),
        title(in_title, f"all about {w}", seq=1),
        open_(in_tags, "s1", seq=1, at=ts(0)),
        open_(in_title, "s1", seq=1, at=ts(-60_000)),  # older: would come last without a rank
    ]
    await applied(search, await produce(search.kafka, envs))
    assert await search.find(w) == [in_title, in_tags]


async def test_paging(search: Search) -> None:
    w = word()
    names = [uid() for _ in range(5)]
    envs = [title(ch, f"{w} {i}", seq=1) for i, ch in enumerate(names)] + [
        open_(ch, "s1", seq=1, at=ts(i)) for i, ch in enumerate(names)
    ]
    await applied(search, await produce(search.kafka, envs))
    seen: list[str] = []
    for page, size in ((1, 2), (2, 2), (3, 1), (4, 0)):
        r = await search.http.get("/search", params={"q": w, "limit": 2, "page": page})
        body = r.json()
        assert r.status_code == 200 and body["total"] == 5 and body["page"] == page and body["limit"] == 2
        assert len(body["items"]) == size
        seen += [hit["channel"] for hit in body["items"]]
    assert sorted(seen) == sorted(names)
    assert seen == sorted(names, key=names.index, reverse=True)  # equal rank: newest first


async def test_hidden_channels_are_not_found(search: Search) -> None:
    w = word()
    ch = uid()
    envs = [
        title(ch, w, seq=1),
        open_(ch, "s1", seq=1),
        options(ch, "hidden", seq=1, at=ts(0)),
        options(ch, "hidden", seq=3, at=ts(20)),
        options(ch, "public", seq=2, at=ts(10)),
    ]
    await applied(search, await produce(search.kafka, envs))
    assert await search.find(w) == []
    await applied(search, await produce(search.kafka, [options(ch, "public", seq=4, at=ts(6_000))]))
    assert await search.find(w) == [ch]  # a new vote window: public


HOSTILE = [
    '"',
    '""',
    '"unterminated',
    "*",
    "**",
    "a*",
    "*a",
    "-",
    "-a",
    "a -b",
    "NEAR(a b)",
    "a NEAR b",
    "NEAR/2",
    "a AND",
    "OR",
    "AND OR NOT",
    "NOT a",
    "(",
    ")",
    "(a",
    "a:b",
    "title:x",
    "{title tags}:x",
    "^a",
    "a + b",
    "'",
    "''",
    "\\",
    "a & b | !c",
    "<->",
    "a <-> b",
    "a:*",
    "a:*B",
    "%",
    "_",
    "\x00",
    "a\x00b",
    "\u200b",
    "\u0301\u0301",
    "💥🔥",
    "\u210c\U0001d522\U0001d529\U0001d529\U0001d52c",  # fraktur "Hello"
    '게임"*',
    "' OR 1=1 --",
    "; DROP TABLE search_channels; --",
    "a " * 100,
    "x" * 200,
]


async def test_hostile_queries_never_fail(search: Search) -> None:
    rng = random.Random(11)
    alphabet = "ab 게임ゲ\"'*-+^:()[]{}<>!&|~\\/%_.,;?=@#$\u0301\u200b\x00\x1f\t\n"
    queries = HOSTILE + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(80)]
    for q in queries:
        for extra in ({}, {"tag": "gaming", "rendition": "720p"}):
            r = await search.http.get("/search", params={"q": q, **extra})
            assert r.status_code in (200, 422), (q, r.status_code, r.text)
            assert r.status_code == 200 or len(q) > 200, (q, r.text)
            body: dict[str, Any] = r.json()
            assert "items" in body or "error" in body
    too_long = await search.http.get("/search", params={"q": "x" * 201})
    assert too_long.status_code == 422 and too_long.json()["fields"][0]["field"] == "query.q"
    bad_tag = await search.http.get("/search", params={"tag": "a\x00b"})
    assert bad_tag.status_code == 422
    bad_limit = await search.http.get("/search", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["fields"][0]["field"] == "query.limit"


async def test_read_your_writes(search: Search) -> None:
    ch = uid()
    await applied(search, await produce(search.kafka, [open_(ch, "s1", seq=1)]))
    for i in range(1, 4):
        w = word()
        [pos] = await produce(search.kafka, [title(ch, w, seq=i)])
        r = await search.http.get("/search", params={"q": w}, headers={"X-Onair-Position": str(pos)})
        assert [hit["channel"] for hit in r.json()["items"]] == [ch]
    unknown = await search.http.get("/search", params={"position": "media.viewer.count:0:0"})
    assert unknown.status_code == 409 and unknown.json()["error"] == "unknown_position"
    future = await search.http.get("/search", params={"position": f"{pos.topic}:{pos.partition}:999999999"})
    assert future.status_code == 503 and future.json()["error"] == "not_yet_applied"


async def test_openapi_documents_the_errors(search: Search) -> None:
    doc = (await search.http.get("/openapi.json")).json()
    op = doc["paths"]["/search"]["get"]
    assert {"200", "409", "422", "503"} <= set(op["responses"])
    params = {p["name"]: p for p in op["parameters"]}
    assert params["q"]["schema"]["maxLength"] == 200 and params["limit"]["schema"]["maximum"] == 50
