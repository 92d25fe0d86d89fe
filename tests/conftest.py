"""Test configuration: the real-server fixtures come from onair.testing (the devstack's own code),
and ``whole_platform`` starts the whole platform once per test run for the tests that need it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onair_services.stack import RunningPlatform, running_platform

pytest_plugins = ["onair.testing"]


@pytest.fixture(scope="session")
def whole_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The devstack's servers and every service as a process (`onair serve`), up once for the run.

    Wallet faults are enabled (tests turn them on per request); SQLite per service.
    """
    root = tmp_path_factory.mktemp("platform")
    with running_platform(root, wallet_faults=True) as platform:
        yield platform
