"""The BFF composes a page from its upstreams: every part, the caller's parts, identity and request
id forwarded, parts degraded (not a 500) when an upstream fails or is slow, the deadline kept,
404 for an unknown channel, the phone page trimmed, the home, shared anonymous pages, breakers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from onair.testing import IdentityIssuer
from onair_services.bff.models import HomePage, MobileLivePage, WebLivePage
from onair_services.bff.settings import BffSettings

from .conftest import FAST, Bff, start_bff


async def test_the_web_page_has_every_part(bff: Bff) -> None:
    r = await bff.http.get("/bff/web/live/alice")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["degraded"] == []
    assert page["signed_in"] is False
    assert page["channel"]["title"] == "Speedruns all night"
    assert page["channel"]["source"]["height"] == 1080  # the web gets the whole view
    chat = page["chat"]
    assert len(chat["messages"]) == FAST.web_messages
    assert chat["messages"][-1]["type"] == "donation"
    assert [m["n"] for m in chat["messages"]] == sorted(m["n"] for m in chat["messages"])
    assert chat["last_n"] == 81
    assert chat["viewers"] == 42
    assert [d["donor"] for d in page["donors"]] == [f"fan{i}" for i in range(FAST.web_donors)]
    # related: channels sharing the first tags, the first tag's first, never the channel itself
    assert [r["channel"] for r in page["related"]] == ["carol", "bob"]
    assert page["wallet"] is None and page["follow"] is None  # anonymous: no personal parts
    assert bff.fakes.seen("wallet", "/wallet/balance") == []
    assert r.headers["cache-control"] == "public, max-age=1"


async def test_a_signed_in_page_forwards_the_identity_and_the_request_id(bff: Bff) -> None:
    bff.fakes.follows["u-vivian"] = ["bob", "alice"]
    headers = {**bff.who("vivian"), "X-Request-ID": "req-test-0001"}
    r = await bff.http.get("/bff/web/live/alice", headers=headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["signed_in"] is True
    assert page["wallet"]["balance"] == 2500
    assert page["follow"] == {"following": True}
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["x-request-id"] == "req-test-0001"
    calls = bff.fakes.calls
    assert {c.service for c in calls} == {"liveinfo", "chat", "wallet", "search"}
    for call in calls:  # every call carries the caller's identity and the request id
        assert call.headers["x-onair-identity"] == headers["X-Onair-Identity"], call
        assert call.headers["x-request-id"] == "req-test-0001", call
    bff.fakes.follows["u-vivian"] = ["bob"]
    page = (await bff.http.get("/bff/web/live/alice", headers=bff.who("vivian"))).json()
    assert page["follow"] == {"following": False}


async def test_an_invalid_identity_is_refused_not_treated_as_anonymous(bff: Bff) -> None:
    r = await bff.http.get("/bff/web/live/alice", headers={"X-Onair-Identity": "not-a-token"})
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert bff.fakes.calls == []


async def test_an_unknown_channel_is_404(bff: Bff) -> None:
    for page in ("web", "mobile"):
        r = await bff.http.get(f"/bff/{page}/live/nobody")
        assert r.status_code == 404
        assert r.json() == {"error": "not_found", "detail": "no channel 'nobody'"}


async def test_a_slow_chat_degrades_the_page_within_the_deadline(bff: Bff) -> None:
    bff.fakes.delay_s["chat"] = 5.0
    started = time.perf_counter()
    r = await bff.http.get("/bff/web/live/alice", headers=bff.who())
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    page = r.json()
    assert sorted(page["degraded"]) == ["chat", "follow"]
    assert page["chat"] is None and page["follow"] is None
    assert page["donors"] and page["related"] and page["wallet"]  # the rest is there
    assert took < FAST.chat_timeout_s + 1.0, took  # the chat deadline, not chat's 5 s


async def test_a_stopped_chat_degrades_the_page(tmp_path: Path, identity_issuer: IdentityIssuer) -> None:
    async for bff in start_bff(tmp_path, identity_issuer, FAST, missing=("chat",)):
        r = await bff.http.get("/bff/web/live/alice")
        assert r.status_code == 200, r.text
        assert r.json()["degraded"] == ["chat"]
        r = await bff.http.get("/bff/mobile/live/alice", headers=bff.who())
        assert r.status_code == 200
        body = r.json()
        assert sorted(body["degraded"]) == ["chat", "follow"]
        assert body["wallet"] == {"balance": 2500}


@pytest.mark.parametrize("service", ["wallet", "search"])
async def test_a_failing_upstream_degrades_its_parts_only(bff: Bff, service: str) -> None:
    bff.fakes.status[service] = 500
    page = (await bff.http.get("/bff/web/live/alice", headers=bff.who())).json()
    expected = {"wallet": ["donors", "wallet"], "search": ["related"]}[service]
    assert sorted(page["degraded"]) == expected
    for part in expected:
        assert page[part] is None
    assert page["chat"] is not None and page["channel"]["channel"] == "alice"


async def test_liveinfo_failing_or_slow_is_the_page_failing(bff: Bff) -> None:
    bff.fakes.status["liveinfo"] = 503
    r = await bff.http.get("/bff/web/live/alice")
    assert r.status_code == 503
    assert r.json()["error"] == "upstream_unavailable" and r.json()["upstream"] == "liveinfo"
    assert r.headers["retry-after"] == "1"
    bff.fakes.status.clear()
    bff.fakes.delay_s["liveinfo"] = 3.0
    started = time.perf_counter()
    r = await bff.http.get("/bff/web/live/alice")
    assert r.status_code == 504
    assert r.json()["error"] == "upstream_timeout"
    assert time.perf_counter() - started < FAST.liveinfo_timeout_s + 1.0


async def test_the_phone_page_is_the_web_page_trimmed(bff: Bff) -> None:
    web = (await bff.http.get("/bff/web/live/alice", headers=bff.who())).json()
    mobile = (await bff.http.get("/bff/mobile/live/alice", headers=bff.who())).json()
    assert set(mobile["channel"]) < set(web["channel"]) | {"renditions"}
    assert "source" not in mobile["channel"] and "session_id" not in mobile["channel"]
    assert mobile["channel"]["renditions"] == ["1080p", "720p"]
    assert mobile["channel"]["title"] == web["channel"]["title"]
    assert len(mobile["chat"]["messages"]) == FAST.mobile_messages < len(web["chat"]["messages"])
    assert mobile["chat"]["messages"] == [
        {k: m[k] for k in ("type", "id", "n", "ts", "user", "text", "amount") if m.get(k) is not None}
        for m in web["chat"]["messages"][-FAST.mobile_messages :]
    ]
    assert "user_id" not in mobile["chat"]["messages"][0]
    assert set(mobile["chat"]) == {"messages", "last_n", "viewers"}
    assert len(mobile["donors"]) == FAST.mobile_donors
    assert set(mobile["donors"][0]) == {"donor", "amount"}
    assert len(mobile["related"]) <= FAST.mobile_related
    assert (
        mobile["related"]
        == [{"channel": r["channel"], "title": r["title"]} for r in web["related"]][: FAST.mobile_related]
    )
    assert mobile["wallet"] == {"balance": 2500}
    assert (
        len(r_bytes := (await bff.http.get("/bff/mobile/live/alice")).content)
        < len((await bff.http.get("/bff/web/live/alice")).content) / 2
    ), len(r_bytes)


async def test_the_home_has_on_air_channels_with_viewers_and_the_ranking(bff: Bff) -> None:
    r = await bff.http.get("/bff/web/home")
    assert r.status_code == 200, r.text
    home = r.json()
    assert home["degraded"] == []
    viewers = {i["channel"]: i["viewers"] for i in home["on_air"]["items"]}
    assert viewers == {"alice": 42, "bob": 7, "carol": 3, "dave": 0}
    assert [e["channel"] for e in home["ranking"]] == ["alice", "bob", "carol"]
    assert {i["channel"]: i["title"] for i in home["on_air"]["items"]}["bob"] == "Retro games"


async def test_the_home_degrades_when_liveinfo_fails(bff: Bff) -> None:
    bff.fakes.status["liveinfo"] = 500
    home = (await bff.http.get("/bff/web/home")).json()
    assert sorted(home["degraded"]) == ["on_air", "ranking"]
    assert home["on_air"] is None and home["ranking"] is None


async def test_concurrent_anonymous_pages_share_one_composition(
    tmp_path: Path, identity_issuer: IdentityIssuer
) -> None:
    settings = FAST.model_copy(update={"anonymous_cache_s": 0.0})
    async for bff in start_bff(tmp_path, identity_issuer, settings):
        bff.fakes.delay_s["liveinfo"] = 0.2  # long enough for every request to join the flight
        answers = await asyncio.gather(*(bff.http.get("/bff/web/live/alice") for _ in range(20)))
        assert all(a.status_code == 200 for a in answers)
        assert len(bff.fakes.seen("liveinfo")) == 1
        # signed-in pages are the caller's own: composed per request
        bff.fakes.calls.clear()
        await asyncio.gather(*(bff.http.get("/bff/web/live/alice", headers=bff.who()) for _ in range(3)))
        assert len(bff.fakes.seen("liveinfo")) == 3


async def test_the_anonymous_cache_keeps_a_page_briefly(
    tmp_path: Path, identity_issuer: IdentityIssuer
) -> None:
    settings = FAST.model_copy(update={"anonymous_cache_s": 0.5})
    async for bff in start_bff(tmp_path, identity_issuer, settings):
        for _ in range(5):
            assert (await bff.http.get("/bff/web/live/alice")).status_code == 200
            assert (await bff.http.get("/bff/mobile/live/alice")).status_code == 200
        assert len(bff.fakes.seen("liveinfo")) == 1  # web and mobile share the composition
        await asyncio.sleep(0.6)
        await bff.http.get("/bff/web/live/alice")
        assert len(bff.fakes.seen("liveinfo")) == 2


async def test_a_breaker_skips_an_upstream_that_keeps_timing_out(
    tmp_path: Path, identity_issuer: IdentityIssuer
) -> None:
    settings = FAST.model_copy(update={"breaker_failures": 2, "breaker_open_s": 60.0, "chat_timeout_s": 0.1})
    async for bff in start_bff(tmp_path, identity_issuer, settings):
        bff.fakes.delay_s["chat"] = 2.0
        for _ in range(2):  # two timed-out pages (each two chat calls) open the breaker
            assert (await bff.http.get("/bff/web/live/alice")).json()["degraded"] == ["chat"]
        before = len(bff.fakes.seen("chat"))
        started = time.perf_counter()
        page = (await bff.http.get("/bff/web/live/alice")).json()
        assert page["degraded"] == ["chat"]
        assert len(bff.fakes.seen("chat")) == before  # skipped: no call made
        assert time.perf_counter() - started < 0.1 + 0.5
        metrics = (await bff.http.get("/metrics")).text
        assert 'onair_bff_breaker_state{upstream="chat"} 2.0' in metrics
        assert 'onair_bff_upstream_calls_total{outcome="breaker_open",upstream="chat"}' in metrics


async def test_answers_match_their_documented_models(bff: Bff) -> None:
    bff.fakes.follows["u-vivian"] = ["alice"]
    for who in ({}, bff.who()):
        WebLivePage.model_validate((await bff.http.get("/bff/web/live/alice", headers=who)).json())
        MobileLivePage.model_validate((await bff.http.get("/bff/mobile/live/alice", headers=who)).json())
    HomePage.model_validate((await bff.http.get("/bff/web/home")).json())
    bff.fakes.status["chat"] = 500
    bff.fakes.status["search"] = 500
    WebLivePage.model_validate((await bff.http.get("/bff/web/live/alice", headers=bff.who())).json())
    MobileLivePage.model_validate((await bff.http.get("/bff/mobile/live/alice")).json())


async def test_the_api_documents_its_answers(bff: Bff) -> None:
    doc = (await bff.http.get("/openapi.json")).json()
    live = doc["paths"]["/bff/web/live/{channel}"]["get"]
    assert {"200", "401", "404", "503", "504"} <= set(live["responses"])
    assert "/bff/mobile/live/{channel}" in doc["paths"] and "/bff/web/home" in doc["paths"]
    r = await bff.http.get("/bff/web/live/NOT%20A%20NAME")
    assert r.status_code == 422


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
async def test_either_http_client_composes_and_degrades(
    tmp_path: Path, identity_issuer: IdentityIssuer, client: str
) -> None:
    settings = FAST.model_copy(update={"http_client": client})
    async for bff in start_bff(tmp_path, identity_issuer, settings, missing=("search",)):
        bff.fakes.delay_s["wallet"] = 2.0
        page = (await bff.http.get("/bff/web/live/alice", headers=bff.who())).json()
        assert sorted(page["degraded"]) == ["donors", "related", "wallet"]
        assert page["chat"]["last_n"] == 81 and page["follow"] == {"following": False}
        assert bff.fakes.seen("chat")[0].headers["x-onair-identity"]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONAIR_BFF_CHAT_TIMEOUT_S", "0.75")
    monkeypatch.setenv("ONAIR_BFF_MOBILE_MESSAGES", "5")
    s = BffSettings()
    assert s.chat_timeout_s == 0.75 and s.mobile_messages == 5
