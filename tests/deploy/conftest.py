"""The ``code_facts`` fixture: what the services' code says, for the deploy checks (manifests.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .manifests import CodeFacts


@pytest.fixture(scope="session")
def code_facts(tmp_path_factory: pytest.TempPathFactory) -> CodeFacts:
    """Routes of every written service and the metric families, from ``create_app()`` built with no
    server running (tests/deploy/inspect_services.py in a subprocess)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # Closed ports: building an app must not need any of them.
        "ONAIR_VALKEY_URL": "redis://127.0.0.1:9/0",
        "ONAIR_NATS_URL": "nats://127.0.0.1:9",
        "ONAIR_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "ONAIR_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
        "ONAIR_PROFSTORE_BACKEND": "dir",
    }
    run = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("inspect_services.py"))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path_factory.mktemp("inspect"),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert not out["errors"], "create_app() failed without servers:\n" + "\n".join(
        f"{name}: {err}" for name, err in out["errors"].items()
    )
    return CodeFacts(
        routes={name: set(s["routes"]) for name, s in out["services"].items()},
        migrations={name: s["migrations"] for name, s in out["services"].items()},
        stores={name: set(s["stores"]) for name, s in out["services"].items()},
        metrics=set(out["metrics"]),
    )
