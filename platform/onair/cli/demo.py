"""``onair demo``: bring the devstack up in the foreground and stop it cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from onair.cli.common import console
from onair.cli.devstack import RootOpt, print_env, start_stack
from onair.devstack import Devstack


def command(
    root: RootOpt = Path(".onair"),
    seconds: Annotated[float, typer.Option(help="Stop by itself after this long (0: wait for Ctrl-C).")] = 0,
) -> None:
    """Run the demo: servers up, where everything listens, Ctrl-C stops it all."""
    # Handlers first: a Ctrl-C at any moment from here on ends in a clean stop, never a traceback.
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        stack = start_stack(root, None, "memory", None, [])
        if not done.is_set():
            console.print("[bold]onair demo is up.[/] Servers and their URLs:")
            print_env(stack)
            console.print("Press Ctrl-C to stop.")
            done.wait(seconds or None)
    finally:
        pids = Devstack(root).down()
        console.print(f"stopped {len(pids)} server(s); bye")
