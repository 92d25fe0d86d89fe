"""Locust scenarios against a running onair deployment.

    locust -f load/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 1m

``ProfileUploader`` plays running services that push CPU profiles on a schedule, ``BuildPipeline``
plays builds that pull the merged ``default.pgo``; the ``ONAIR_PROFSTORE_TOKEN`` environment variable
is sent as the bearer token.
"""

from __future__ import annotations

import gzip
import os
import random

from locust import HttpUser, between, task

TOKEN = os.environ.get("ONAIR_PROFSTORE_TOKEN", "dev-token")
APPS = [f"svc{i}" for i in range(5)]


def _sample_profile() -> bytes:
    """A valid ~64 KB CPU profile with Go's sample types (built once per simulated user)."""
    from onair.pgo.synth import make_profiles  # imported lazily: locust workers need onair installed

    return make_profiles(1, 64_000, seed=random.randrange(1, 1 << 30))[0]


class ProfileUploader(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.profile = _sample_profile()

    @task
    def upload(self) -> None:
        self.client.post(
            f"/v1/profiles/{random.choice(APPS)}",
            data=self.profile,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
            name="/v1/profiles/{app} [upload]",
        )


class BuildPipeline(HttpUser):
    wait_time = between(2.0, 5.0)

    @task(3)
    def pull_merged(self) -> None:
        with self.client.get(
            f"/v1/profiles/{random.choice(APPS)}/merged?limit=32",
            name="/v1/profiles/{app}/merged",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                gzip.decompress(resp.content)  # a broken body fails the request
                resp.success()
            elif resp.status_code == 404:
                resp.success()  # nothing uploaded for that app yet

    @task(1)
    def list_profiles(self) -> None:
        self.client.get(f"/v1/profiles/{random.choice(APPS)}", name="/v1/profiles/{app} [list]")
