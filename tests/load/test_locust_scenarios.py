"""The Locust scenarios run against a real profstore without a single failed request."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from onair.devstack.probes import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_locust_profstore_scenario_has_no_failures(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ONAIR_PORT": str(port),
        "ONAIR_PROFSTORE_BACKEND": "dir",
        "ONAIR_PROFSTORE_DIR": str(tmp_path / "profiles"),
        "ONAIR_PROFSTORE_TOKEN": "load-token",
    }
    server = subprocess.Popen([str(BIN / "onair"), "serve", "profstore"], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "profstore exited at start"
                assert time.monotonic() < deadline, "profstore never became healthy"
                time.sleep(0.2)
        run = subprocess.run(
            [
                str(BIN / "locust"),
                "-f",
                str(ROOT / "load" / "locustfile.py"),
                "--headless",
                "--host",
                f"http://127.0.0.1:{port}",
                "-u",
                "6",
                "-r",
                "6",
                "-t",
                "6s",
                "--only-summary",
                "--stop-timeout",
                "2",
            ],
            env={**env, "ONAIR_PROFSTORE_TOKEN": "load-token"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        summary = run.stdout + run.stderr
        assert run.returncode == 0, summary
        assert "/v1/profiles/{app} [upload]" in summary
        uploads = list((tmp_path / "profiles").rglob("*.pb.gz"))
        assert uploads, "the scenario uploaded nothing"
    finally:
        server.terminate()
        server.wait(timeout=10)
