"""Envelope, spool and ordering rules on their own (no servers)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from onair.logstream import Envelope, EnvelopeError, Position, UnknownPosition, VoteRule
from onair.logstream.envelope import from_log_event
from onair.logstream.ordering import EntityPosition, is_stale, vote
from onair.logstream.spool import Spool, SpoolRecord


def test_envelope_from_log_line_roundtrips() -> None:
    ed = {
        "ts": "2026-11-27T07:40:01.123456Z",
        "level": "info",
        "service": "live",
        "event": "title changed",
        "request_id": "r1",
        "category": "media.broad_info.title",
        "entity": "ch42",
        "seq": 7,
        "title": "Hello",
    }
    env = from_log_event(ed)
    assert env.data == {"title": "Hello"} and env.seq == 7 and env.event_id
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert back.ts_us == 1795765201123456
    assert orjson.loads(env.to_bytes())["v"] == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"v": 2}', "unsupported envelope version"),
        (b'{"v": 1, "event_id": "e"}', "'ts'"),
        (
            b'{"v":1,"event_id":"e","ts":"2026-01-01T00:00:00Z","service":"s","category":"Bad","entity":"x"}',
            "category",
        ),
        (
            b'{"v":1,"event_id":"e","ts":"yesterday","service":"s","category":"a.b","entity":"x"}',
            "field 'ts'",
        ),
        (
            b'{"v":1,"event_id":"e","ts":"2026-01-01T00:00:00Z","service":"s","category":"a.b","entity":"x","seq":-1}',
            "seq",
        ),
    ],
)
def test_invalid_envelopes_are_rejected(value: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_bytes(value)


def test_spool_keeps_order_across_prepend_append_and_restart(tmp_path: Path) -> None:
    def rec(i: int) -> SpoolRecord:
        return SpoolRecord("a.b", "k", f'{{"i":{i}}}'.encode(), f"e{i}")

    spool = Spool(tmp_path, segment_records=3)
    spool.append([rec(i) for i in range(5, 10)])
    spool.prepend([rec(i) for i in range(0, 5)])  # older than what was spooled
    assert len(spool) == 10
    first = spool.peek(4)
    assert [r.event_id for r in first][:2] == ["e0", "e1"]
    spool.advance(2)
    # a torn last line (crash while writing) is skipped on load
    tail = sorted(tmp_path.glob("*.seg"))[-1]
    with tail.open("ab") as fh:
        fh.write(b'["a.b","k","{\\"i\\"')
    again = Spool(tmp_path, segment_records=3)
    assert len(again) == 8
    seen: list[str | None] = []
    while batch := again.peek(3):
        seen += [r.event_id for r in batch]
        again.advance(len(batch))
    assert seen == [f"e{i}" for i in range(2, 10)]
    assert len(again) == 0 and not list(tmp_path.glob("*.pos"))


def test_staleness_prefers_seq_then_ts_then_offset() -> None:
    last = EntityPosition(partition=0, offset=10, seq=5, ts_us=1000, event_id="x")
    assert is_stale(last, seq=4, ts_us=9999, partition=0, offset=11, event_id="y")
    assert not is_stale(last, seq=6, ts_us=1, partition=0, offset=11, event_id="y")
    assert is_stale(last, seq=6, ts_us=1, partition=0, offset=11, event_id="x")  # duplicate
    assert is_stale(last, seq=None, ts_us=999, partition=0, offset=11, event_id="y")
    no_ts = EntityPosition(partition=0, offset=10)
    assert is_stale(no_ts, seq=None, ts_us=0, partition=0, offset=9, event_id="y")
    assert not is_stale(None, seq=None, ts_us=0, partition=0, offset=0, event_id="y")


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        ([("public", 0), ("public", 200), ("hidden", 100)], "public"),
        ([("public", 0), ("hidden", 100), ("public", 200)], "public"),
        ([("hidden", 100), ("public", 0)], "hidden"),
    ],
)
def test_vote_counter_decides_by_sign(arrivals: list[tuple[str, int]], expected: str) -> None:
    rule = VoteRule("state", {"public": 1, "hidden": -1}, window_s=1)
    pos = EntityPosition(0, 0)
    decided = None
    for state, ms in arrivals:
        decided = vote(rule, pos, state, ms * 1000)
    assert decided == expected


def test_position_text_roundtrip() -> None:
    pos = Position("media.broad_info.title", 3, 1207)
    assert Position.parse(str(pos)) == pos
    with pytest.raises(UnknownPosition):
        Position.parse("media.broad_info.title:x:1")


def test_platform_tables_for_a_service_migration() -> None:
    from sqlalchemy import create_engine, inspect

    from onair.logstream.schema import create_tables, drop_tables

    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        create_tables(conn)
        create_tables(conn)  # idempotent
        names = set(inspect(conn).get_table_names())
        assert {"projection_offsets", "projection_entity_positions", "projection_dead_letters"} <= names
        drop_tables(conn)
        assert not inspect(conn).get_table_names()


def test_bad_seq_breaks_the_logging_contract_at_the_call_site() -> None:
    from onair.logging import LogContractError

    ed = {"ts": "2026-11-27T07:40:01Z", "category": "a.b", "entity": "x", "event": "e", "seq": "7"}
    with pytest.raises(LogContractError, match="seq"):
        from_log_event(ed)


async def test_read_your_writes_errors_map_to_http_answers() -> None:
    import httpx
    from fastapi import FastAPI

    from onair.logstream import NotYetApplied, install_fastapi_handler

    app = FastAPI()
    install_fastapi_handler(app)

    @app.get("/lagging")
    async def lagging() -> None:
        raise NotYetApplied("titles", Position("media.broad_info.title", 1, 9), 5, 2.0)

    @app.get("/bad")
    async def bad() -> None:
        Position.parse("garbage")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/lagging")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        body = r.json()
        assert body["error"] == "not_yet_applied" and body["position"] == "media.broad_info.title:1:9"
        assert body["applied_up_to"] == 5 and body["waited_ms"] == 2000
        r = await client.get("/bad")
        assert r.status_code == 409 and r.json()["error"] == "unknown_position"
