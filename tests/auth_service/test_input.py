"""Bad input: weak and duplicate sign-ups, bad credentials, malformed bodies; nothing secret logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from onair.db import create_engine

from .conftest import Stack
from .helpers import PASSWORD, auth_process, client, login_body, new_username, signup

WEAK = {
    "one class": "onlylowercaseletters",
    "the username": "{name}XY12",
    "common": "password123",
    "common word dressed up": "P@ssw0rd2024!",
    "keyboard run": "Qwertyuiop1",
    "few characters": "aaaaaaaa11AA",
}


@pytest.mark.parametrize("case", sorted(WEAK))
async def test_weak_passwords_are_400_naming_the_password(sqlite_auth_url: str, case: str) -> None:
    """Rules the schema cannot say: 400 weak_password, naming the field like a validation error."""
    name = new_username("weak")
    async with client(sqlite_auth_url) as api:
        r = await api.post("/auth/signup", json={"username": name, "password": WEAK[case].format(name=name)})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error"] == "weak_password" and [f["field"] for f in body["fields"]] == ["body.password"]
        assert WEAK[case].format(name=name) not in r.text  # the answer never echoes the password
        assert (await api.post("/auth/login", json={"username": name, "password": "x"})).status_code == 401


async def test_signup_input_errors_name_their_field(sqlite_auth_url: str) -> None:
    async with client(sqlite_auth_url) as api:
        cases = {
            "body.username": {"username": "Has Spaces", "password": PASSWORD},
            "body.role": {"username": new_username(), "password": PASSWORD, "role": "admin"},
            "body.roles": {"username": new_username(), "password": PASSWORD, "roles": ["admin"]},
            "body.password": {"username": new_username()},
            "body.password ": {"username": new_username(), "password": "Ab1-short"},  # under 10: schema
        }
        for field, payload in cases.items():
            r = await api.post("/auth/signup", json=payload)
            assert r.status_code == 422, (field, r.text)
            assert field.strip() in [f["field"] for f in r.json()["fields"]], (field, r.json())
        broken = await api.post(
            "/auth/signup",
            content=b'{"username": "x", "password": ',
            headers={"content-type": "application/json"},
        )
        assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"


async def test_duplicate_signups_are_409_also_when_racing(auth_url: str) -> None:
    name = new_username("dup")
    async with client(auth_url) as api:
        answers = await asyncio.gather(
            *(api.post("/auth/signup", json={"username": name, "password": PASSWORD}) for _ in range(3))
        )
        assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.text for a in answers]
        conflict = next(a for a in answers if a.status_code == 409).json()
        assert conflict["error"] == "username_taken" and conflict["field"] == "body.username"
        again = await api.post(
            "/auth/signup", json={"username": name, "password": PASSWORD, "role": "streamer"}
        )
        assert again.status_code == 409
        assert (await login_body(api, name))["user"]["roles"] == ["viewer"]  # the first one won, unchanged


def _verifications() -> float:
    return REGISTRY.get_sample_value("onair_auth_password_hash_seconds_count", {"op": "verify"}) or 0.0


async def test_bad_credentials_look_the_same_whether_the_user_exists_or_not(sqlite_auth_url: str) -> None:
    name = new_username("eve")
    async with client(sqlite_auth_url) as api:
        await signup(api, name)
        before = _verifications()
        wrong = await api.post("/auth/login", json={"username": name, "password": "Wrong-password-1"})
        middle = _verifications()
        unknown = await api.post(
            "/auth/login", json={"username": new_username(), "password": "Wrong-password-1"}
        )
        after = _verifications()
        assert wrong.status_code == unknown.status_code == 401
        assert (
            wrong.json()
            == unknown.json()
            == {"error": "invalid_credentials", "detail": "wrong username or password"}
        )
        same = ("www-authenticate", "content-type", "content-length")
        assert [wrong.headers.get(h) for h in same] == [unknown.headers.get(h) for h in same]
        # the unknown user costs an argon2 verification too (against the dummy hash)
        assert middle - before == 1 and after - middle == 1
        malformed = await api.post("/auth/login", json={"username": name})
        assert malformed.status_code == 422 and malformed.json()["fields"][0]["field"] == "body.password"


async def test_no_password_or_token_is_logged(sqlite_stack: Stack, tmp_path: Path) -> None:
    """``onair serve auth`` at DEBUG through every path that handles a secret; its whole output is
    searched for every password, token and the private key."""
    env = {
        "DATABASE_URL": sqlite_stack.database_url,
        "ONAIR_VALKEY_URL": sqlite_stack.valkey_url,
        "ONAIR_KAFKA_BOOTSTRAP": sqlite_stack.kafka_bootstrap,
        "ONAIR_SPOOL_DIR": str(sqlite_stack.spool),
        "ONAIR_IDENTITY_JWKS_URL": sqlite_stack.identity.jwks_url,
        "ONAIR_LOG_LEVEL": "DEBUG",
        "ONAIR_ACCESS_LOG": "true",
        "ONAIR_AUTH_ARGON2_TIME_COST": "1",
        "ONAIR_AUTH_ARGON2_MEMORY_KIB": "1024",
        "ONAIR_AUTH_ARGON2_PARALLELISM": "1",
    }
    name = new_username("quiet")
    secrets: list[str] = [PASSWORD, "Wrong-password-9", "Weak-pw"]
    async with auth_process(env, tmp_path) as (url, log_path), client(url) as api:
        await api.post("/auth/signup", json={"username": name, "password": "Weak-pw"})
        await api.post(
            "/auth/signup", content=b'{"password": "Weak-pw", ', headers={"content-type": "application/json"}
        )
        await signup(api, name)
        await api.post("/auth/login", json={"username": name, "password": "Wrong-password-9"})
        tokens = await login_body(api, name)
        cookie_login = await api.post("/auth/login", json={"username": name, "password": PASSWORD})
        cookie = cookie_login.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        secrets += [
            tokens["access_token"],
            tokens["refresh_token"],
            cookie_login.json()["access_token"],
            cookie,
        ]
        step = await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        secrets += [step.json()["access_token"], step.json()["refresh_token"]]
        await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
        await api.post("/auth/refresh", headers={"Cookie": f"onair_refresh={cookie}"})
        await api.post("/auth/logout", json={"refresh_token": step.json()["refresh_token"]})
    engine = create_engine(sqlite_stack.database_url)
    try:
        async with engine.connect() as conn:
            pems = (await conn.execute(sa.text("SELECT private_pem FROM signing_keys"))).scalars().all()
    finally:
        await engine.dispose()
    text = log_path.read_text()
    # the output was captured: these lines are there
    for marker in ('"auth.login.failed"', '"user created"', "auth.refresh.reuse_detected", '"http request"'):
        assert marker in text, marker
    for secret in secrets:
        assert secret not in text
        assert secret.split(".")[-1] not in text  # not even a token's signature
    assert pems
    for pem in pems:
        for line in pem.splitlines()[1:-1]:
            assert line not in text
