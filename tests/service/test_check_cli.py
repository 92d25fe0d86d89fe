"""``onair check api`` against services running under uvicorn: the table, the JSON line last, the
exit code, credentials from ``--header`` and the combined document filtered by ``--service``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from onair.cli.check import parse_header
from onair.cli.main import app as cli
from onair.devstack.probes import free_port
from onair.service import RuntimeSettings, ServiceSpec, create_service_app

from .test_contract_checker import SPEC, liar_router, truthful_router


@contextmanager
def serving(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def app_of(router: Any, tmp: Path, spec: ServiceSpec = SPEC) -> Any:
    return create_service_app(spec, [router], settings=RuntimeSettings(spool_dir=tmp), configure_logs=False)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "api", *args])
    return result.exit_code, result.output


def test_a_truthful_service_passes_and_prints_json_last(tmp_path: Path) -> None:
    with serving(app_of(truthful_router(), tmp_path)) as url:
        code, output = invoke("--url", url, "--examples", "5", "--seed", "7", "--json")
    assert code == 0, output
    assert "GET /lies/strict" in output  # the answers table
    last = json.loads(output.strip().splitlines()[-1])
    assert last["ok"] is True and last["seed"] == 7 and last["findings"] == 0
    assert "422" in last["statuses"]["GET /lies/strict"]["negative"]


def test_findings_fail_with_the_reproducing_request(tmp_path: Path) -> None:
    with serving(app_of(liar_router(), tmp_path)) as url:
        code, output = invoke("--url", url, "--examples", "4", "--json", "-H", "X-Trace: contract")
    assert code == 1
    last = json.loads(output.strip().splitlines()[-1])
    checks = {f["check"] for f in last["finding_list"]}
    assert {"not_a_server_error", "status_code_conformance", "ignored_auth"} <= checks
    crash = next(f for f in last["finding_list"] if f["check"] == "not_a_server_error")
    assert "/lies/crash" in crash["curl"] and "X-Trace: contract" in crash["curl"]
    assert "findings" in output  # the rich table


def test_service_filter_on_a_combined_document(tmp_path: Path) -> None:
    from onair.service.openapi import merge_openapi

    good = app_of(truthful_router(), tmp_path)
    bad = app_of(liar_router(), tmp_path)
    merged = merge_openapi(
        {"/lies/strict": good.openapi(), "/lies/crash": bad.openapi()},
        services={"/lies/strict": "good", "/lies/crash": "bad"},
    )
    good.openapi = lambda: merged  # type: ignore[method-assign]  # a gateway stand-in: one service behind it
    with serving(good) as url:
        code, output = invoke("--url", url, "--service", "good", "--examples", "3", "--json")
        assert code == 0, output
        assert json.loads(output.strip().splitlines()[-1])["operations"] == 1
        code, output = invoke("--url", url, "--examples", "3", "--json")  # bad's route is not there
        assert code == 1
        found = json.loads(output.strip().splitlines()[-1])["finding_list"]
        assert {f["operation"].split()[1] for f in found} == {"/lies/crash"}


def test_bad_input_is_one_line() -> None:
    code, output = invoke("--url", "http://127.0.0.1:9", "-H", "no colon")
    assert code == 1 and "expected 'Name: value'" in output
    code, output = invoke("--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot read" in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("Authorization: Bearer a b", ("Authorization", "Bearer a b")), ("X-A:1", ("X-A", "1"))],
)
def test_parse_header(text: str, parsed: tuple[str, str]) -> None:
    assert parse_header(text) == parsed
