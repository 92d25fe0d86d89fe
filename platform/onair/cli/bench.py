"""``onair bench <pattern>``: each pattern's benchmark registers itself from ``onair.bench.<pattern>``."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(no_args_is_help=True)

for _name in ("cache", "projection", "fanout", "pgo", "wallet", "chat", "gateway", "e2e"):
    if importlib.util.find_spec(f"onair.bench.{_name}") is not None:
        importlib.import_module(f"onair.bench.{_name}").register(app)
