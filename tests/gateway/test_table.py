"""The route table and the identity key: matching, the contract's prefixes, key files and the
shared local key."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from onair.auth import SigningKey
from onair_services.gateway.identity_key import IdentityKeyError, load_identity_keys, local_key
from onair_services.gateway.table import ROUTES, Route, RouteTable

CONTRACT_PREFIXES = {
    "/auth": "auth",
    "/.well-known/jwks.json": "auth",
    "/.well-known/openid-configuration": "auth",
    "/channels": "liveapi",
    "/ingest": "media",
    "/media": "media",
    "/live": "liveinfo",
    "/search": "search",
    "/chat": "chat",
    "/follows": "chat",
    "/notify": "chat",
    "/wallet": "wallet",
    "/bff": "bff",
    "/": "web",
}


def test_every_prefix_of_the_contract_is_routed() -> None:
    table = RouteTable()
    for prefix, service in CONTRACT_PREFIXES.items():
        probe = prefix if prefix.startswith("/.") or prefix == "/" else prefix + "/x"
        route = table.match(probe)
        assert route is not None and route.upstream == service, prefix


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("/live", "/live"),
        ("/live/ranking", "/live"),
        ("/livestream", "/"),  # a prefix matches whole segments
        ("/auth/login", "/auth/login"),  # the longest prefix wins
        ("/auth/login/x", "/auth"),  # exact routes match their path only
        ("/auth/me", "/auth"),
        ("/chat/room1/ws", "/chat"),
        ("/", "/"),
        ("/index.html", "/"),
        ("/.well-known/jwks.json", "/.well-known/jwks.json"),
        ("/.well-known/other", None),  # never sent to the web fallback
    ],
)
def test_match(path: str, prefix: str | None) -> None:
    route = RouteTable().match(path)
    assert (route.prefix if route else None) == prefix


def test_roles_per_method_and_websocket_paths() -> None:
    table = RouteTable()
    channels = table.match("/channels/x")
    assert channels is not None
    assert channels.roles_for("POST") == ("streamer", "admin") and channels.roles_for("GET") == ()
    chat = table.match("/chat/r/ws")
    assert chat is not None and chat.allows_websocket("/chat/r/ws") and not chat.allows_websocket("/chat/r/x")
    assert table.body_limits()["/ingest/"] == 64 << 20


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError):
        Route("/x/", "web")
    with pytest.raises(ValueError):
        Route("/x", "web", auth="public", roles={"*": ("admin",)})
    with pytest.raises(ValueError):
        RouteTable([Route("/x", "a"), Route("/x", "b")])
    assert len({r.prefix for r in ROUTES}) == len(ROUTES)


def test_key_file_bundle_first_signs(tmp_path: Path) -> None:
    first, second = SigningKey.generate("EdDSA"), SigningKey.generate("ES256")
    path = tmp_path / "keys.pem"
    path.write_bytes(first.private_pem() + b"\n" + second.private_pem())
    keys = load_identity_keys(path, tmp_path / "state")
    assert [k.kid for k in keys] == [first.kid, second.kid]


@pytest.mark.parametrize(
    "content", [None, b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"]
)
def test_bad_key_file_is_one_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IdentityKeyError) as error:
        load_identity_keys(path, tmp_path)
    assert str(path) in str(error.value) and "PRIVATE" not in str(error.value).split(":", 1)[0]


def _kid(state: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(local_key(Path(state)).kid)


def test_local_key_is_created_once_for_processes_starting_together(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_kid, args=(str(tmp_path / "state"), out)) for _ in range(4)]
    for p in procs:
        p.start()
    kids = {out.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(30)
    assert len(kids) == 1
    assert (tmp_path / "state" / "identity-key.pem").stat().st_mode & 0o777 == 0o600
    assert local_key(tmp_path / "state").kid in kids
