"""The devstack starts real servers, reuses them, reports them, and fails with one clear line."""

import asyncio
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onair.cli.main import app
from onair.devstack import Devstack, DevstackError, temporary_stack
from onair.devstack.process import alive


def test_session_stack_runs_all_servers(devstack: Devstack) -> None:
    rows = {r["name"]: r for r in devstack.status()}
    assert set(rows) == {"valkey", "nats", "s3", "kafka"}
    assert all(r["running"] for r in rows.values())
    assert str(rows["valkey"]["version"]).startswith("9.")
    assert str(rows["nats"]["version"]).startswith("2.")
    assert "tansu" in str(rows["kafka"]["version"])


def test_up_is_idempotent(devstack: Devstack) -> None:
    before = {r["name"]: r["pid"] for r in devstack.status()}
    again = devstack.up()
    assert {n: s.pid for n, s in again.items()} == before


def test_env_exports_every_url(devstack: Devstack) -> None:
    env = devstack.env()
    for key in ("ONAIR_VALKEY_URL", "ONAIR_NATS_URL", "ONAIR_KAFKA_BOOTSTRAP", "DATABASE_URL"):
        assert env[key]
    assert env["ONAIR_VALKEY_URL"].startswith("redis://127.0.0.1:")


def test_down_leaves_no_process(private_devstack: Callable[..., Devstack]) -> None:
    stack = private_devstack(servers=("valkey", "nats", "kafka"))
    pids = [r["pid"] for r in stack.status()]
    assert len(pids) == 3 and all(alive(int(str(p))) for p in pids)
    stopped = stack.down()
    assert sorted(stopped) == sorted(pids)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(str(pid)), 0)
    assert stack.status() == []


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_temporary_stack_stops_what_it_started_and_only_that(tmp_path: Path) -> None:
    # A throwaway stack: the server runs inside the block, and nothing is left afterwards.
    with temporary_stack(("nats",)) as env:
        port = int(env["ONAIR_NATS_URL"].rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # A developer's stack reused: its running Valkey survives, the NATS started here does not.
    mine = Devstack(tmp_path, servers=("valkey",))
    valkey = mine.up()["valkey"]
    try:
        with temporary_stack(("valkey", "nats"), root=tmp_path) as env:
            assert env["ONAIR_VALKEY_URL"] == valkey.url
            nats = {str(r["name"]): r for r in Devstack(tmp_path).status()}["nats"]
            assert alive(int(str(nats["pid"])))
        rows = {str(r["name"]): r for r in Devstack(tmp_path).status()}
        assert rows["valkey"]["running"] and rows["valkey"]["pid"] == valkey.pid
        assert not alive(int(str(nats["pid"])))
    finally:
        Devstack(tmp_path).down()


def test_missing_binary_is_one_actionable_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONAIR_VALKEY_BIN", str(tmp_path / "nowhere" / "valkey-server"))
    with pytest.raises(DevstackError, match=r"valkey: ONAIR_VALKEY_BIN=.* is not an executable file"):
        Devstack(tmp_path / "s", servers=("valkey",)).up()


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DevstackError, match=rf"valkey: port 127.0.0.1:{port} is already in use"):
            Devstack(tmp_path / "s", servers=("valkey",)).up(ports={"valkey": port})


def test_early_death_shows_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = _script(tmp_path / "fake-nats", "echo 'fatal: cannot open config' >&2\nexit 3\n")
    monkeypatch.setenv("ONAIR_NATS_BIN", str(bogus))
    with pytest.raises(DevstackError, match=r"nats exited with code 3 during start-up") as info:
        Devstack(tmp_path / "s", servers=("nats",)).up()
    assert "fatal: cannot open config" in str(info.value)


def test_start_timeout_kills_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hung = _script(tmp_path / "fake-valkey", "echo 'waiting forever'\nexec sleep 60\n")
    monkeypatch.setenv("ONAIR_VALKEY_BIN", str(hung))
    with pytest.raises(DevstackError, match=r"did not answer its readiness probe within 1s") as info:
        Devstack(tmp_path / "s", servers=("valkey",), start_timeout_s=1).up()
    assert "waiting forever" in str(info.value)


def test_restart_keeps_the_port(private_devstack: Callable[..., Devstack]) -> None:
    stack = private_devstack(servers=("valkey",))
    first = stack.up()["valkey"]
    again = stack.restart_server("valkey", hard=True)
    assert again.port == first.port and again.pid != first.pid
    assert not alive(first.pid)


def test_kafka_s3_storage_survives_broker_restart(private_devstack: Callable[..., Devstack]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    stack = private_devstack(servers=("s3", "kafka"), kafka_storage="s3")
    bootstrap = stack.env()["ONAIR_KAFKA_BOOTSTRAP"]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait("durable", f"m{i}".encode(), key=b"k")
        finally:
            await producer.stop()

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer("durable", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < 20:
                    batch = await consumer.getmany(timeout_ms=500)
                    got += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        finally:
            await consumer.stop()
        return got

    asyncio.run(produce())
    stack.restart_server("kafka")
    assert asyncio.run(consume()) == [f"m{i}".encode() for i in range(20)]


def test_cli_up_status_env_down(tmp_path: Path) -> None:
    runner = CliRunner()
    root = str(tmp_path / "cli")
    up = runner.invoke(app, ["devstack", "up", "--root", root, "--only", "valkey,nats"])
    assert up.exit_code == 0, up.output
    assert "export ONAIR_VALKEY_URL=redis://127.0.0.1:" in up.stdout
    status = runner.invoke(app, ["devstack", "status", "--root", root])
    assert status.exit_code == 0 and "valkey" in status.stdout and "running" in status.stdout
    env = runner.invoke(app, ["devstack", "env", "--root", root])
    assert "export ONAIR_NATS_URL=nats://127.0.0.1:" in env.stdout
    down = runner.invoke(app, ["devstack", "down", "--root", root])
    assert down.exit_code == 0 and "stopped 2 server(s)" in down.output
    missing = runner.invoke(app, ["devstack", "env", "--root", root])
    assert missing.exit_code == 1 and "no devstack is running" in missing.output


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_port = runner.invoke(app, ["devstack", "up", "--root", str(tmp_path), "--port", "valkey=x"])
    assert bad_port.exit_code == 1 and "expected NAME=PORT" in bad_port.output
    bad_only = runner.invoke(app, ["devstack", "up", "--root", str(tmp_path), "--only", "redis"])
    assert bad_only.exit_code == 1 and "unknown server(s) redis" in bad_only.output
