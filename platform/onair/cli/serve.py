"""``onair serve NAME``: run one service (``onair_services.NAME.app:create_app``) under uvicorn."""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated

import typer

from onair.cli.common import fail

# In-flight requests get this long at shutdown; long-lived streams (SSE, WebSocket) are then cut,
# so the lifespan's shutdown (flushing the log stream, closing streams with a log event) runs.
GRACEFUL_SHUTDOWN_S = 5


def service_exists(name: str) -> bool:
    return (
        name.isidentifier()
        and importlib.util.find_spec(f"onair_services.{name}") is not None
        and importlib.util.find_spec(f"onair_services.{name}.app") is not None
    )


def default_port(name: str) -> int:
    """``ONAIR_PORT`` if set, else the service's port in the registry (8000 for unknown ones)."""
    if os.environ.get("ONAIR_PORT"):
        return int(os.environ["ONAIR_PORT"])
    from onair_services.registry import SERVICES

    info = SERVICES.get(name)
    return info.port if info else 8000


def command(
    name: Annotated[str, typer.Argument(help="Service package under onair_services, e.g. liveinfo.")],
    host: Annotated[str, typer.Option(envvar="ONAIR_HOST")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Default: ONAIR_PORT, else the service's port in the registry.")
    ] = None,
) -> None:
    """Serve one onair service over HTTP."""
    if not service_exists(name):
        fail(f"no service {name!r}: expected a package onair_services.{name} with an app module")
    import uvicorn

    os.environ.setdefault("ONAIR_SERVICE_NAME", name)
    uvicorn.run(
        f"onair_services.{name}.app:create_app",
        factory=True,
        host=host,
        port=port if port is not None else default_port(name),
        log_config=None,
        # every service logs its requests itself (the skeleton's access log, in the log contract);
        # uvicorn's own line would be a second one per request, at a cost on every request
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
