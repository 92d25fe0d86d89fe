"""``onair serve NAME``: run one service (``onair_services.NAME.app:create_app``) under uvicorn."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from onair.cli.common import fail


def command(
    name: Annotated[str, typer.Argument(help="Service package under onair_services, e.g. profstore.")],
    host: Annotated[str, typer.Option(envvar="ONAIR_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="ONAIR_PORT")] = 8000,
) -> None:
    """Serve one onair service over HTTP."""
    if (
        not name.isidentifier()
        or importlib.util.find_spec(f"onair_services.{name}") is None
        or importlib.util.find_spec(f"onair_services.{name}.app") is None
    ):
        fail(f"no service {name!r}: expected a package onair_services.{name} with an app module")
    import uvicorn

    uvicorn.run(f"onair_services.{name}.app:create_app", factory=True, host=host, port=port, log_config=None)
