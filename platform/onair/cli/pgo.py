"""``onair pgo pull|push|list``: the build pipeline's side of the profile store.

``onair pgo pull --app edge --since 24h --limit 32 -o default.pgo`` downloads the merged profile of
the last 24 hours (newest 32 profiles); ``onair pgo push --app edge cpu.pb.gz`` uploads one. The
server and the token come from ``--url``/``--token`` or ``ONAIR_PROFSTORE_URL``/``ONAIR_PROFSTORE_TOKEN``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from onair.cli.common import console, fail, out

app = typer.Typer(no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="ONAIR_PROFSTORE_URL", help="profstore base URL.")]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="ONAIR_PROFSTORE_TOKEN", help="Bearer token.", show_default=False),
]
AppOpt = Annotated[str, typer.Option("--app", help="Application name, e.g. edge.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds per request.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _check_since(since: str) -> None:
    from onair.pgo.times import parse_duration_ms

    try:
        parse_duration_ms(since)
    except ValueError as exc:
        fail(f"--since: {exc}")


def _check_app(name: str) -> str:
    from onair.pgo.storage import InvalidAppName, check_app

    try:
        return check_app(name)
    except InvalidAppName as exc:
        fail(str(exc))


def _request(
    method: str, url: str, token: str | None, timeout: float, *, ok: tuple[int, ...] = (), **kwargs: Any
) -> Any:
    """One HTTP call to the profstore; any failure ends the CLI with one line (statuses in ``ok`` pass)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            resp = client.request(method, url, **kwargs)
    except httpx.InvalidURL as exc:
        fail(f"invalid profstore URL {url!r}: {exc}")
    except httpx.TransportError as exc:
        fail(f"cannot reach the profstore at {url}: {exc.__class__.__name__}: {exc}")
    if resp.status_code >= 400 and resp.status_code not in ok:
        try:
            body = resp.json()
            detail = f"{body.get('error')}: {body.get('detail')}"
        except ValueError:
            detail = resp.text[:200]
        fail(f"profstore answered {resp.status_code} to {method} {url}: {detail}", code=2)
    return resp


@app.command()
def push(
    file: Annotated[Path, typer.Argument(help="A gzip pprof profile (e.g. from runtime/pprof).")],
    app_name: AppOpt,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    at: Annotated[int | None, typer.Option(help="Creation time, unix ms (default: now).")] = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Upload one CPU profile for APP."""
    name = _check_app(app_name)
    if not file.is_file():
        fail(f"{file}: no such file")
    data = file.read_bytes()
    if not data.startswith(b"\x1f\x8b"):
        fail(f"{file}: not a gzip-compressed pprof profile")
    params = {"at": str(at)} if at is not None else {}
    resp = _request(
        "POST", f"{url.rstrip('/')}/v1/profiles/{name}", token, timeout, content=data, params=params
    )
    body = resp.json()
    console.print(f"stored {body['name']} ({body['size']} bytes, {body['samples']} samples)", highlight=False)


@app.command()
def pull(
    app_name: AppOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the merged profile.")] = Path(
        "default.pgo"
    ),
    since: Annotated[str, typer.Option(help="Window: profiles newer than this (90m, 24h, 7d).")] = "24h",
    limit: Annotated[int, typer.Option(min=1, help="Merge at most the newest N profiles.")] = 32,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    allow_empty: Annotated[
        bool, typer.Option(help="Exit 0 without writing when there is no profile (build without PGO).")
    ] = False,
    timeout: TimeoutOpt = 120.0,
) -> None:
    """Download the merged profile of APP (the ``default.pgo`` of ``go build -pgo``)."""
    name = _check_app(app_name)
    _check_since(since)
    endpoint = f"{url.rstrip('/')}/v1/profiles/{name}/merged"
    params = {"from": since, "limit": str(limit)}
    resp = _request("GET", endpoint, token, timeout, ok=(404,) if allow_empty else (), params=params)
    if resp.status_code == 404:
        console.print(f"no profiles for {name} in the last {since}; nothing written", highlight=False)
        return
    data = resp.content
    if not data.startswith(b"\x1f\x8b"):
        fail("the profstore sent something that is not a gzip profile")
    output = output.expanduser()
    if output.parent and not output.parent.is_dir():
        fail(f"{output.parent}: no such directory")
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, output)
    console.print(
        f"wrote {output} ({len(data)} bytes) merged from "
        f"{resp.headers.get('x-onair-profiles', '?')} profile(s)",
        highlight=False,
    )


@app.command("list")
def list_(
    app_name: AppOpt,
    since: Annotated[str, typer.Option(help="Window (90m, 24h, 7d).")] = "7d",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """List APP's stored profiles, newest first."""
    name = _check_app(app_name)
    _check_since(since)
    resp = _request("GET", f"{url.rstrip('/')}/v1/profiles/{name}", token, timeout, params={"from": since})
    for p in resp.json()["profiles"]:
        out.print(f"{p['name']}\t{p['size']}", highlight=False)
