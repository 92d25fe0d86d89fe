"""``onair devstack up|down|status|env``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onair.cli.common import console, fail, out
from onair.devstack import SERVER_NAMES, Devstack, DevstackError

app = typer.Typer(no_args_is_help=True)

RootOpt = Annotated[Path, typer.Option("--root", envvar="ONAIR_DEVSTACK_DIR", help="State and data folder.")]


def parse_ports(values: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for value in values:
        name, sep, port = value.partition("=")
        if not sep or name not in SERVER_NAMES or not port.isdigit() or not 0 < int(port) < 65536:
            fail(f"--port {value!r}: expected NAME=PORT with NAME one of {', '.join(SERVER_NAMES)}")
        ports[name] = int(port)
    return ports


def parse_servers(only: str | None) -> tuple[str, ...]:
    if not only:
        return SERVER_NAMES
    names = tuple(n.strip() for n in only.split(",") if n.strip())
    bad = [n for n in names if n not in SERVER_NAMES]
    if bad:
        fail(f"--only: unknown server(s) {', '.join(bad)}; choose from {', '.join(SERVER_NAMES)}")
    return names


def start_stack(
    root: Path, only: str | None, kafka_storage: str, database_url: str | None, port: list[str]
) -> Devstack:
    ports = parse_ports(port)
    try:
        stack = Devstack(
            root, servers=parse_servers(only), kafka_storage=kafka_storage, database_url=database_url
        )
        with console.status("starting servers…"):
            stack.up(ports=ports, progress=lambda msg: console.print(f"  [green]✓[/] {msg}", highlight=False))
    except DevstackError as exc:
        fail(str(exc))
    return stack


@app.command()
def up(
    root: RootOpt = Path(".onair"),
    only: Annotated[str | None, typer.Option(help="Comma-separated subset, e.g. valkey,nats.")] = None,
    kafka_storage: Annotated[
        str, typer.Option(help="memory (default) or s3: s3 keeps topics across broker restarts.")
    ] = "memory",
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="Database to export (default: SQLite in --root)."),
    ] = None,
    port: Annotated[list[str], typer.Option(help="Fixed port, NAME=PORT (repeatable).")] = [],  # noqa: B006
) -> None:
    """Start the servers (a second `up` reuses those already running)."""
    stack = start_stack(root, only, kafka_storage, database_url, port)
    print_env(stack)


@app.command()
def down(root: RootOpt = Path(".onair")) -> None:
    """Stop every server of the stack."""
    try:
        pids = Devstack(root).down(progress=lambda msg: console.print(f"  {msg}", highlight=False))
    except DevstackError as exc:
        fail(str(exc))
    console.print(f"stopped {len(pids)} server(s)")


@app.command()
def status(root: RootOpt = Path(".onair")) -> None:
    """Show each server with its version, port and pid."""
    rows = Devstack(root).status()
    if not rows:
        fail(f"no devstack under {root.resolve()}; run 'onair devstack up'")
    table = Table("server", "version", "port", "pid", "state", "url")
    for row in rows:
        state = "[green]running[/]" if row["running"] else "[red]down[/]"
        table.add_row(
            str(row["name"]), str(row["version"]), str(row["port"]), str(row["pid"]), state, str(row["url"])
        )
    out.print(table)


@app.command()
def env(root: RootOpt = Path(".onair")) -> None:
    """Print `export` lines for the running stack: eval "$(onair devstack env)"."""
    try:
        print_env(Devstack(root))
    except DevstackError as exc:
        fail(str(exc))


def print_env(stack: Devstack) -> None:
    for key, value in stack.env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")
