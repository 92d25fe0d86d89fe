"""The CLI against a running profstore (uvicorn on a free port), and the benchmark's smoke run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from onair.bench.pgo import running_profstore
from onair.cli.main import app as cli
from onair.pgo import pprof
from onair_services.profstore.settings import ProfstoreSettings

from .profiles import DATA

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = ProfstoreSettings(dir=tmp_path_factory.mktemp("profiles"), token=TOKEN)
    with running_profstore(settings) as url:
        yield url


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    # A command may configure process logging (the bench does): leave it as it was for other tests.
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, list(args), env=env)
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, result.output


def test_push_then_pull_gives_the_merged_profile(server: str, tmp_path: Path) -> None:
    env = {"ONAIR_PROFSTORE_URL": server, "ONAIR_PROFSTORE_TOKEN": TOKEN}
    for name in ("a.pb.gz", "b.pb.gz"):
        code, out = invoke("pgo", "push", "--app", "burn", str(DATA / name), env=env)
        assert code == 0, out
        assert "stored burn/" in out
    target = tmp_path / "default.pgo"
    code, out = invoke(
        "pgo", "pull", "--app", "burn", "--since", "1h", "--limit", "32", "-o", str(target), env=env
    )
    assert code == 0, out
    assert "merged from 2 profile(s)" in out
    merged = pprof.loads(target.read_bytes())
    theirs = pprof.loads((DATA / "merged.pb.gz").read_bytes())
    assert pprof.function_totals(merged, 1) == pprof.function_totals(theirs, 1)
    code, out = invoke("pgo", "list", "--app", "burn", env=env)
    assert code == 0 and out.count("burn/") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", "--app", "x", "/does/not/exist.pb.gz"], "no such file"),
        (["push", "--app", "../x", str(DATA / "a.pb.gz")], "invalid app name"),
        (["push", "--app", "x", str(DATA / "README.md")], "not a gzip"),
        (["pull", "--app", "x", "--since", "yesterday"], "--since"),
        (["pull", "--app", "nothing-here"], "404"),
    ],
)
def test_bad_inputs_fail_with_one_clear_line(server: str, args: list[str], message: str) -> None:
    code, out = invoke("pgo", *args, "--url", server, env={"ONAIR_PROFSTORE_TOKEN": TOKEN})
    assert code != 0
    assert message in out and "Traceback" not in out


def test_unreachable_server_and_wrong_token(server: str, tmp_path: Path) -> None:
    code, out = invoke("pgo", "pull", "--app", "x", "--url", "http://127.0.0.1:9", "-o", str(tmp_path / "o"))
    assert code != 0 and "cannot reach the profstore" in out
    code, out = invoke(
        "pgo", "push", "--app", "x", str(DATA / "a.pb.gz"), "--url", server, "--token", "wrong"
    )
    assert code != 0 and "401" in out
    code, out = invoke(
        "pgo", "pull", "--app", "none", "--url", server, "--allow-empty", "-o", str(tmp_path / "o")
    )
    assert code == 0 and not (tmp_path / "o").exists()


def test_bench_smoke_prints_the_json_keys() -> None:
    code, out = invoke("bench", "pgo", "--profiles", "2", "--size-kb", "8", "--uploads", "2", "--json")
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("merge_32_s", "merge_peak_mb", "upload_per_s", "pull_merged_s"):
        assert isinstance(result[key], int | float), key
    assert result["profiles"] == 2 and result["samples_out"] > 0
