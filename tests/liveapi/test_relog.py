"""A crash between liveapi's commit and its log: the state is re-logged at start and periodically.

The crash is simulated by committing through liveapi's own store without logging (exactly what
the database holds when the process dies after the commit), before and while the app runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from onair.db import create_engine, migrate, session_factory
from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair.testing import IdentityIssuer, TopicReader
from onair_services.liveapi.app import create_app
from onair_services.liveapi.settings import LiveapiSettings
from onair_services.liveapi.store import ChannelStore

TOPICS = [f"media.broad_info.{f}" for f in ("publish_key", "title", "tags", "options")]
OPTIONS = {"adult": False, "chat_mode": "open", "visibility": "public"}


async def test_unlogged_writes_are_relogged_at_start_and_periodically(
    tmp_path: Path, kafka_bootstrap: str, identity_issuer: IdentityIssuer
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'liveapi.db'}"
    engine = create_engine(db)
    await migrate(engine, "onair_services.liveapi:migrations")
    store = ChannelStore(session_factory(engine))
    created = await store.create("relog_ch", "u-relog_ch", "before the crash", ["one"], OPTIONS)
    await store.change("relog_ch", title="committed, never logged")  # version 2, then "crash"

    settings = RuntimeSettings(
        database_url=db,
        kafka_bootstrap=kafka_bootstrap,
        spool_dir=tmp_path / "spool",
        identity_jwks_url=identity_issuer.jwks_url,
    )
    app = create_app(settings, LiveapiSettings(relog_interval_s=0.5, relog_grace_s=0.2))
    owner = identity_issuer.headers(username="relog_ch", roles=("streamer",))
    async with (
        TopicReader(kafka_bootstrap, TOPICS) as reader,
        running_server(app, lifespan="on") as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        # on start: the whole state at version 2, one event per field
        events = await reader.wait_for(lambda evs: len(evs) >= 4, entity="relog_ch")
        assert {e.category for e in events} == set(TOPICS) and {e.seq for e in events} == {2}
        by = {e.category: dict(e.data) for e in events}
        assert by["media.broad_info.title"] == {"owner_id": "u-relog_ch", "title": "committed, never logged"}
        assert by["media.broad_info.tags"]["tags"] == ["one"]
        assert by["media.broad_info.publish_key"]["key_sha256"] == created.channel.key_sha256
        view = (await http.get("/channels/relog_ch", headers=owner)).json()
        assert view["version"] == view["logged_version"] == 2

        # while running: another write that never made it to the log is picked up by the next pass
        await store.change("relog_ch", tags=["two"])
        events = await reader.wait_for(lambda evs: any(e.seq == 3 for e in evs), entity="relog_ch")
        assert next(e for e in events if e.seq == 3 and e.category == "media.broad_info.tags").data[
            "tags"
        ] == ["two"]
        for _ in range(50):
            view = (await http.get("/channels/relog_ch", headers=owner)).json()
            if view["logged_version"] == 3:
                break
            await asyncio.sleep(0.1)
        assert view["version"] == view["logged_version"] == 3

        # a normal write afterwards logs only its own field, seq 4
        r = await http.patch("/channels/relog_ch", json={"title": "back to normal"}, headers=owner)
        assert r.status_code == 200 and set(r.json()["positions"]) == {"title"}
        titles = await reader.wait_for(
            lambda evs: any(e.seq == 4 for e in evs), topic="media.broad_info.title", entity="relog_ch"
        )
        assert [e.seq for e in titles] == [2, 3, 4]  # re-logged at 2 and 3, then the write
    await engine.dispose()
