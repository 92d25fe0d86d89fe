"""liveapi on real servers: one app for the module (SQLite, Kafka, identities from a JWKS).

Events are read back from the topics (no consumer group) and checked field by field against
docs/contracts.md.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from onair.fanout.app import running_server
from onair.logstream import Position
from onair.service import RuntimeSettings
from onair.testing import IdentityIssuer, TopicReader
from onair_services.liveapi.app import create_app
from onair_services.liveapi.settings import LiveapiSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOPICS = [f"media.broad_info.{f}" for f in ("publish_key", "title", "tags", "options")]


@dataclass
class Api:
    http: httpx.AsyncClient
    issuer: IdentityIssuer
    reader: TopicReader

    def who(self, username: str, *roles: str) -> dict[str, str]:
        return self.issuer.headers(username=username, roles=roles or ("streamer",))

    async def create(self, username: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.http.post("/channels", json=body, headers=self.who(username))
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    async def events(self, channel: str, topic: str, n: int) -> list[Any]:
        return await self.reader.wait_for(lambda evs: len(evs) >= n, topic=topic, entity=channel)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, identity_issuer: IdentityIssuer
) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("liveapi")
    settings = RuntimeSettings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'liveapi.db'}",
        kafka_bootstrap=kafka_bootstrap,
        spool_dir=tmp / "spool",
        identity_jwks_url=identity_issuer.jwks_url,
    )
    app = create_app(settings, LiveapiSettings(relog_interval_s=3600))
    async with (
        TopicReader(kafka_bootstrap, TOPICS) as reader,
        running_server(app, lifespan="on") as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        yield Api(http, identity_issuer, reader)


def _data(events: list[Any]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events]


async def test_create_logs_four_events_and_shows_the_key_once(api: Api) -> None:
    title = unicodedata.normalize("NFD", "  오늘의 방송: 롤 랭크  ")
    r = await api.http.post(
        "/channels",
        json={"title": title, "tags": ["  League of Legends", "게임", "GAME", "game"]},
        headers=api.who("alice"),
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    key = body["publish_key"]
    assert key.startswith("live_") and len(key) > 40
    channel = body["channel"]
    assert channel["id"] == "alice" and channel["owner_id"] == "u-alice"
    assert channel["title"] == "오늘의 방송: 롤 랭크"  # NFC, trimmed
    assert channel["tags"] == ["league-of-legends", "게임", "game"]
    assert channel["options"] == {"adult": False, "chat_mode": "open", "visibility": "public"}
    assert channel["version"] == 1 and "publish_key" not in channel
    assert set(body["positions"]) == {"publish_key", "title", "tags", "options"}
    assert r.headers["x-onair-position"] == body["positions"]["options"]
    for field, pos in body["positions"].items():
        assert Position.parse(pos).topic == f"media.broad_info.{field}"

    digest = hashlib.sha256(key.encode()).hexdigest()
    assert channel["key_fingerprint"] == f"sha256:{digest[:8]}"
    (pk,) = await api.events("alice", "media.broad_info.publish_key", 1)
    assert pk.seq == 1 and dict(pk.data) == {"owner_id": "u-alice", "key_sha256": digest}
    (t,) = await api.events("alice", "media.broad_info.title", 1)
    assert dict(t.data) == {"owner_id": "u-alice", "title": "오늘의 방송: 롤 랭크"} and t.seq == 1
    (g,) = await api.events("alice", "media.broad_info.tags", 1)
    assert dict(g.data) == {"owner_id": "u-alice", "tags": ["league-of-legends", "게임", "game"]}
    (o,) = await api.events("alice", "media.broad_info.options", 1)
    assert dict(o.data) == {
        "owner_id": "u-alice",
        "adult": False,
        "chat_mode": "open",
        "visibility": "public",
    }
    assert all(key not in e.to_bytes().decode() for e in api.reader.events())  # never the key

    again = await api.http.post("/channels", headers=api.who("alice"))
    assert again.status_code == 409 and again.json()["error"] == "exists"
    view = await api.http.get("/channels/alice", headers=api.who("alice"))
    assert view.status_code == 200 and "publish_key" not in view.json()
    assert view.json()["logged_version"] == 1  # every event acknowledged


async def test_who_may_do_what(api: Api) -> None:
    await api.create("carol")
    bob = api.who("bob")
    for method, path, body in (
        ("GET", "/channels/carol", None),
        ("PATCH", "/channels/carol", {"title": "mine now"}),
        ("POST", "/channels/carol/publish-key", None),
    ):
        denied = await api.http.request(method, path, json=body, headers=bob)
        assert denied.status_code == 403, (method, path, denied.text)
        assert denied.json()["error"] == "forbidden"
        anonymous = await api.http.request(method, path, json=body)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
        missing = await api.http.request(method, path.replace("carol", "nobody_here"), json=body, headers=bob)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    admin = api.who("root", "admin")
    assert (
        await api.http.patch("/channels/carol", json={"title": "moderated"}, headers=admin)
    ).status_code == 200
    assert (await api.http.get("/channels/carol", headers=admin)).json()["title"] == "moderated"
    viewer = await api.http.post("/channels", headers=api.who("dave", "viewer"))
    assert viewer.status_code == 403 and viewer.json()["required_roles"] == ["admin", "streamer"]
    assert (await api.http.post("/channels", headers={"X-Onair-Identity": "not-a-jwt"})).status_code == 401
    bad_path = await api.http.get("/channels/Not-A-Channel", headers=admin)
    assert bad_path.status_code == 422 and bad_path.json()["fields"][0]["field"] == "path.channel"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": "x" * 141}, ["body.title"]),
        ({"title": "two\nlines"}, ["body.title"]),
        ({"title": "   "}, ["body.title"]),
        ({"title": None}, ["body.title"]),
        ({"tags": ["ok", "c++"]}, ["body.tags.1"]),
        ({"tags": [f"t{i}" for i in range(11)]}, ["body.tags"]),
        ({"tags": ["x" * 31]}, ["body.tags.0"]),
        ({"options": {"chat_mode": "chaos"}}, ["body.options.chat_mode"]),
        ({"options": {"adult": "yes"}}, ["body.options.adult"]),
        ({"options": {"colour": "red"}}, ["body.options.colour"]),
        ({"title": "fine", "owner_id": "u-me"}, ["body.owner_id"]),
        ({}, ["body"]),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    if (await api.http.get("/channels/erin", headers=api.who("erin"))).status_code == 404:
        await api.create("erin")
    before = (await api.http.get("/channels/erin", headers=api.who("erin"))).json()
    r = await api.http.patch("/channels/erin", json=body, headers=api.who("erin"))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert [f["field"] for f in r.json()["fields"]] == fields
    after = (await api.http.get("/channels/erin", headers=api.who("erin"))).json()
    assert after == before


async def test_patch_logs_one_event_per_changed_field(api: Api) -> None:
    await api.create("frank")
    r = await api.http.patch(
        "/channels/frank",
        json={"title": "새벽 스피드런", "tags": ["Speedrun", "한국어"], "options": {}},
        headers=api.who("frank"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["channel"]["version"] == 2
    assert set(body["positions"]) == {"title", "tags"}  # options given but unchanged: no event
    assert r.headers["x-onair-position"] == body["positions"]["tags"]
    titles = await api.events("frank", "media.broad_info.title", 2)
    assert [e.seq for e in titles] == [1, 2] and titles[-1].data["title"] == "새벽 스피드런"
    tags = await api.events("frank", "media.broad_info.tags", 2)
    assert tags[-1].data["tags"] == ["speedrun", "한국어"] and tags[-1].seq == 2

    hidden = await api.http.patch(
        "/channels/frank", json={"options": {"visibility": "hidden"}}, headers=api.who("frank")
    )
    assert hidden.status_code == 200 and set(hidden.json()["positions"]) == {"options"}
    options = await api.events("frank", "media.broad_info.options", 2)
    assert options[-1].seq == 3
    assert dict(options[-1].data) == {
        "owner_id": "u-frank",
        "adult": False,
        "chat_mode": "open",
        "visibility": "hidden",
    }

    same = await api.http.patch(
        "/channels/frank", json={"title": " 새벽 스피드런 "}, headers=api.who("frank")
    )
    assert (
        same.status_code == 200 and same.json()["positions"] == {} and "x-onair-position" not in same.headers
    )
    assert same.json()["channel"]["version"] == 3  # nothing changed: no version, no event
    view = (await api.http.get("/channels/frank", headers=api.who("frank"))).json()
    assert view["version"] == view["logged_version"] == 3
    assert len(api.reader.events(topic="media.broad_info.title", entity="frank")) == 2


async def test_rotating_the_key(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    first = (await api.create("gina"))["publish_key"]
    r = await api.http.post("/channels/gina/publish-key", headers=api.who("gina"))
    assert r.status_code == 200, r.text
    second = r.json()["publish_key"]
    assert second != first and r.headers["cache-control"] == "no-store"
    assert set(r.json()["positions"]) == {"publish_key"}
    events = await api.events("gina", "media.broad_info.publish_key", 2)
    assert [e.seq for e in events] == [1, 2]
    assert events[-1].data["key_sha256"] == hashlib.sha256(second.encode()).hexdigest()
    view = (await api.http.get("/channels/gina", headers=api.who("gina"))).json()
    assert view["key_fingerprint"] == "sha256:" + hashlib.sha256(second.encode()).hexdigest()[:8]
    assert all(first not in e.to_bytes().decode() and second not in e.to_bytes().decode() for e in events)
    logged = capfd.readouterr().out
    assert '"event":"publish key rotated"' in logged and '"category":"media.broad_info.publish_key"' in logged
    assert first not in logged and second not in logged  # in no log line either


async def test_openapi_is_truthful(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    patch = doc["paths"]["/channels/{channel}"]["patch"]
    assert {"200", "401", "403", "404", "409", "413", "422", "503"} <= set(patch["responses"])
    assert "X-Onair-Position" in patch["responses"]["200"]["headers"]
    create = doc["paths"]["/channels"]["post"]["responses"]
    assert {"201", "401", "403", "409", "422"} <= set(create)
    assert "ChannelPatch" in doc["components"]["schemas"]
