"""Browser tests against the whole platform (the session's ``whole_platform``: the devstack's
servers, every service as a process, one gateway in front); Playwright drives Debian's Chromium.

The browser is ``/usr/bin/chromium`` (``ONAIR_CHROMIUM`` overrides): Playwright's own browser
download is not used. A missing browser fails these tests — it never skips them (``.ci/run``
installs Debian's ``chromium`` when it is missing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from onair.fleet import Fleet
from onair_services.stack import RunningPlatform

CHROMIUM = os.environ.get("ONAIR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"


@dataclass
class Platform:
    fleet: Fleet
    url: str  # the gateway: the only address a browser uses

    def signup(self, role: str = "viewer", prefix: str = "u") -> str:
        """A new account (through the gateway's public API); returns its username."""
        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        r = httpx.post(
            f"{self.url}/auth/signup",
            json={"username": username, "password": PASSWORD, "role": role},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return username

    def token(self, username: str) -> str:
        r = httpx.post(
            f"{self.url}/auth/login",
            json={"username": username, "password": PASSWORD, "refresh_in_body": True},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token


@pytest.fixture(scope="session")
def platform(whole_platform: RunningPlatform) -> Platform:
    return Platform(whole_platform.fleet, whole_platform.gateway_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one module. Not longer: while Playwright's sync API is running it holds an
    event loop of its own in this thread, and asyncio tests (pytest-asyncio) cannot run then."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``ONAIR_WEB_SCREENSHOTS`` (e.g. docs/screenshots), else the test's tmp."""
    where = Path(os.environ.get("ONAIR_WEB_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def eventually_ok(
    url: str, *, timeout_s: float = 30.0, headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET ``url`` until it answers 200 (a projection catching up); the last answer otherwise."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(url, headers=headers, timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.25)


@pytest.fixture
def channel(platform: Platform) -> tuple[str, str]:
    """A streamer with a channel liveinfo and chat already know: (username, access token)."""
    name = platform.signup("streamer", "s")
    token = platform.token(name)
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{platform.url}/channels", json={"title": f"{name} plays", "tags": ["test"]}, headers=auth
    )
    assert r.status_code == 201, r.text
    assert eventually_ok(f"{platform.url}/live/{name}").status_code == 200
    assert eventually_ok(f"{platform.url}/chat/{name}/recent").status_code == 200
    return name, token


def simulate(platform: Platform, name: str, token: str, *, live: bool) -> None:
    """Start (or stop) the channel's simulated encoder; waits for media to know a new channel."""
    import time

    url = f"{platform.url}/media/channels/{name}/simulate"
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        r = httpx.post(url, headers=auth, timeout=10) if live else httpx.delete(url, headers=auth, timeout=10)
        if r.status_code in (200, 201) or r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert r.status_code in (200, 201), r.text
