"""``onair check api``: requests generated from a running service's OpenAPI, answers held to it.

``onair check api --url http://127.0.0.1:8109 --header 'Authorization: Bearer dev-token'`` runs
:func:`onair.service.contract.check_api` (``--examples`` schema-valid requests per operation,
half as many schema-invalid ones, ``--seed`` for a run that repeats) and prints what it found: a
table of findings with the request that reproduces each, the statuses every operation answered,
and a summary; ``--json`` adds one JSON line last. Exit 1 when anything was found.

Without ``--url`` the service's mesh URL is used (``--service NAME``: ``ONAIR_<NAME>_URL``), or
the gateway's. Against the gateway's combined document, ``--service`` keeps that service's
operations only (``x-onair-service``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from onair.cli.common import console, fail, out

app = typer.Typer(no_args_is_help=True)


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ValueError(f"--header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


@app.command("api")
def api(
    url: Annotated[
        str | None,
        typer.Option("--url", help="Base URL of the service or gateway (default: from --service)."),
    ] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service", help="Service name: its URL when --url is not given; its operations at a gateway."
        ),
    ] = None,
    examples: Annotated[int, typer.Option(min=0, help="Schema-valid requests per operation.")] = 100,
    negative: Annotated[
        int | None,
        typer.Option(min=0, help="Schema-invalid requests per operation (default: half of --examples)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated requests (same seed, same requests).")] = 0,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", help="'Name: value' sent with every request (credentials); repeatable."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 10.0,
    probes: Annotated[
        bool, typer.Option("--probes/--no-probes", help="Also probe every path with a method it lacks (405).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON line with everything last.")] = False,
) -> None:
    """Check that a running service (or the gateway) answers as its OpenAPI says."""
    from onair.service.contract import ContractError, check_api, only_service

    headers: dict[str, str] = {}
    for text in header or ():
        try:
            name, value = parse_header(text)
        except ValueError as exc:
            fail(str(exc))
        headers[name] = value
    base = url or _default_url(service)
    try:
        from onair.service.contract import load_openapi

        doc = load_openapi(base, headers, timeout)
        if service and url:
            doc = only_service(doc, service)
        with console.status(f"checking {base} ({examples} example(s) per operation, seed {seed})"):
            report = check_api(
                base,
                openapi=doc,
                headers=headers,
                examples=examples,
                negative_examples=negative,
                seed=seed,
                timeout=timeout,
                probes=probes,
            )
    except ContractError as exc:
        fail(str(exc))
    _print(report)
    if as_json:
        out.print(
            json.dumps(report.to_dict(), separators=(",", ":")), markup=False, highlight=False, soft_wrap=True
        )
    if not report.ok:
        raise typer.Exit(1)


def _default_url(service: str | None) -> str:
    from onair_services.registry import ServiceUrls

    urls = ServiceUrls()
    try:
        return urls.of(service) if service else urls.of("gateway")
    except KeyError:
        fail(f"no service {service!r}: give --url")


def _print(report: Any) -> None:
    if report.findings:
        table = Table(title="findings", show_lines=True)
        for col in ("check", "operation", "status", "mode", "seen", "what", "reproduce"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            what = f.title + (
                "\n" + "\n".join(f.message.strip().splitlines()[:4]) if f.message.strip() else ""
            )
            table.add_row(f.check, f.operation, str(f.status or "-"), f.mode, str(f.count), what, f.curl)
        out.print(table)
    answers = Table(title="answers (status: count)")
    for col in ("operation", "schema-valid requests", "schema-invalid requests"):
        answers.add_column(col)
    for op, modes in report.statuses.items():
        answers.add_row(op, _counts(modes.get("positive", {})), _counts(modes.get("negative", {})))
    out.print(answers)
    for line in report.errors:
        console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    for line in report.warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    for line in report.skipped:
        console.print(f"[dim]skipped: {line}[/]", highlight=False, soft_wrap=True)
    s = report.summary()
    colour = "green" if report.ok else "red"
    out.print(
        f"[{colour}]{s['findings']} finding(s), {s['errors']} error(s)[/] in {s['operations']} operation(s), "
        f"{s['requests']} request(s), {s['seconds']} s (seed {s['seed']}, {s['examples']} example(s))",
        highlight=False,
    )


def _counts(seen: dict[str, int]) -> str:
    return "  ".join(f"{status}: {n}" for status, n in sorted(seen.items())) or "-"
