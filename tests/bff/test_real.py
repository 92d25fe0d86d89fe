"""The BFF composing from the real services (the session's ``whole_platform``, through the
gateway): a live channel's page with its chat, donors, related channels, the caller's balance and
follow state, each as the owning service has it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from onair_services.stack import RunningPlatform

PASSWORD = "correct horse battery staple"


def _until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def _user(http: httpx.Client, role: str) -> tuple[str, dict[str, str]]:
    name = f"{role[0]}_{uuid.uuid4().hex[:10]}"
    r = http.post("/auth/signup", json={"username": name, "password": PASSWORD, "role": role})
    assert r.status_code == 201, r.text
    r = http.post("/auth/login", json={"username": name, "password": PASSWORD, "refresh_in_body": True})
    assert r.status_code == 200, r.text
    return name, {"Authorization": f"Bearer {r.json()['access_token']}"}


def _live_channel(http: httpx.Client, tags: list[str]) -> tuple[str, dict[str, str]]:
    name, auth = _user(http, "streamer")
    r = http.post("/channels", json={"title": f"{name} live", "tags": tags}, headers=auth)
    assert r.status_code == 201, r.text
    _until(lambda: http.post(f"/media/channels/{name}/simulate", headers=auth).status_code == 201)
    _until(lambda: http.get(f"/live/{name}").json().get("status") == "live")
    return name, auth


def test_a_page_composed_from_the_real_services(whole_platform: RunningPlatform) -> None:
    tag = f"t{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=whole_platform.gateway_url, timeout=20) as http:
        channel, _ = _live_channel(http, [tag, "bff"])
        other, _ = _live_channel(http, [tag])
        viewer, auth = _user(http, "viewer")
        _until(
            lambda: (
                http.post(f"/chat/{channel}/messages", json={"text": "hi bff"}, headers=auth).status_code
                == 201
            )
        )
        assert http.put(f"/follows/{channel}", headers=auth).status_code == 204
        bought = http.post(
            "/wallet/purchase", json={"amount": 1000}, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
        )
        assert bought.status_code == 201, bought.text
        donated = http.post(
            "/wallet/donations",
            json={"channel": channel, "amount": 300, "message": "for the bff"},
            headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert donated.status_code in (201, 202), donated.text

        def whole() -> dict[str, Any] | None:
            page: dict[str, Any] = http.get(f"/bff/web/live/{channel}", headers=auth).json()
            done = (
                not page["degraded"]
                and any(d["donor"] == viewer for d in page["donors"])
                and any(m["type"] == "donation" for m in page["chat"]["messages"])
                and any(r["channel"] == other for r in page["related"])
            )
            return page if done else None

        page = _until(whole, timeout_s=45)
        assert page["channel"]["status"] == "live" and page["channel"]["title"] == f"{channel} live"
        texts = [m.get("text") for m in page["chat"]["messages"]]
        assert "hi bff" in texts and "for the bff" in texts
        assert page["wallet"]["balance"] == 700
        assert page["follow"] == {"following": True}
        assert all(r["channel"] != channel for r in page["related"])
        mobile = http.get(f"/bff/mobile/live/{channel}", headers=auth).json()
        assert mobile["wallet"] == {"balance": 700} and mobile["follow"] == {"following": True}
        assert mobile["channel"]["renditions"][0] == "1080p"
        anonymous = http.get(f"/bff/web/live/{channel}").json()
        assert anonymous["signed_in"] is False and anonymous["wallet"] is None and anonymous["follow"] is None

        def listed() -> bool:  # the home lists both (newest sessions first)
            home = http.get("/bff/web/home").json()
            return home["on_air"] is not None and {channel, other} <= {
                i["channel"] for i in home["on_air"]["items"]
            }

        _until(listed)
