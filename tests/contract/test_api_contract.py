"""Every API tells the truth: requests generated from each service's own OpenAPI, against the
running service with valid credentials, and every answer held to that document (5xx, undocumented
statuses and content types, bodies off their schema, schema-valid requests refused, schema-invalid
ones accepted, security not enforced, 405 without ``Allow``) — see ``onair.service.contract``.

A new service adds itself with one line in ``TARGETS``; ``onair check api --examples N`` runs the
longer pass against a running service or the gateway.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from onair.service.contract import check_app

from .targets import Env, Target, bearer, identity, logging_kept

PROFSTORE_TOKEN = "contract-token"
DATA = Path(__file__).parents[1] / "pgo" / "data"
EXAMPLES = 12  # generated schema-valid requests per operation (half as many schema-invalid ones)
SEED = 16


def _profstore(settings, tmp: Path):  # type: ignore[no-untyped-def]
    from onair_services.profstore.app import create_app
    from onair_services.profstore.settings import ProfstoreSettings

    store = ProfstoreSettings(dir=tmp / "profiles", token=PROFSTORE_TOKEN, max_upload_bytes=256 * 1024)
    return create_app(settings, profstore=store, configure_logs=False)


async def _profstore_seed(url: str, env: Env) -> None:
    """A real profile for the app the schema's example names, so merged/view/list answer 200 too."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {PROFSTORE_TOKEN}"}) as c:
        for i, name in enumerate(("a.pb.gz", "b.pb.gz")):
            r = await c.post(
                "/v1/profiles/edge",
                content=(DATA / name).read_bytes(),
                params={"at": int(time.time() * 1000) - i},
            )
            r.raise_for_status()


def _auth(settings, _tmp: Path):  # type: ignore[no-untyped-def]
    from onair_services.auth.app import create_app
    from onair_services.auth.settings import AuthSettings

    cheap = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
    return create_app(settings, cheap, configure_logs=False)


TARGETS = [
    Target.service("sample", module="service.sample"),  # tests/service: the skeleton's sample
    Target.service("profstore", app=_profstore, credentials=bearer(PROFSTORE_TOKEN), prepare=_profstore_seed),
    Target.service("auth", app=_auth, credentials=identity("alice", ("viewer",))),
    # Target.service("liveinfo", credentials=identity("alice", ("viewer",))),
]


@pytest.mark.parametrize("target", TARGETS, ids=str)
async def test_api_tells_the_truth(target: Target, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = Env(request, tmp_path)
    with logging_kept():
        app = target.app(env.settings(target.spec), tmp_path)
        prepare = (lambda url: target.prepare(url, env)) if target.prepare else None
        report = await check_app(
            app, headers=target.credentials(env), prepare=prepare, examples=EXAMPLES, seed=SEED
        )
    assert report.ok, report.describe()
    assert report.operations > 0 and set(report.statuses) >= {
        f"{m.upper()} {p}" for p, item in app.openapi()["paths"].items() for m in item
    } - {s.split(":")[0] for s in report.skipped if "stream" in s}
