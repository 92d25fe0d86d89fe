"""``onair wallet audit``: every balance equals its ledger, and the money adds up.

Reads the wallet's database (``--database-url``, else ``DATABASE_URL``) in one consistent snapshot,
prints a table of the checks (:mod:`onair_services.wallet.audit`) and exits non-zero naming each
failing check. The wallet's code is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from onair_services.wallet.audit import AuditReport

app = typer.Typer(no_args_is_help=True)


@app.command("audit")
def audit(
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="The wallet's database (default: DATABASE_URL)."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            min=0, help="Sagas still running that changed in the last GRACE seconds are not errors."
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Check the wallet's books: balances vs ledger, transfers, money, sagas, holds, donor totals."""
    import asyncio
    import json

    from rich.table import Table

    from onair.cli.common import fail, out

    if not database_url:
        fail("no database: give --database-url or set DATABASE_URL")
    _check_sqlite_file(database_url)
    report = asyncio.run(_run(database_url, grace))
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        table = Table(title="wallet audit")
        table.add_column("check")
        table.add_column("result")
        table.add_column("problems", justify="right")
        table.add_column("examples")
        for check in report.checks:
            table.add_row(
                check.name,
                "[green]ok[/]" if check.ok else "[bold red]FAILED[/]",
                str(check.count),
                "\n".join(check.problems) or check.description,
            )
        out.print(table)
        totals = report.totals
        out.print(
            f"{totals.get('accounts', 0)} accounts, {totals.get('transfers', 0)} transfers, "
            f"{totals.get('sagas', 0)} sagas; purchased {totals.get('purchased', 0)}, "
            f"held in accounts {totals.get('money_in_accounts', 0)}",
            highlight=False,
        )
    if not report.ok:
        names = ", ".join(f"{c.name} ({c.count})" for c in report.failing)
        fail(f"the wallet's books are wrong: {names}")


def _check_sqlite_file(database_url: str) -> None:
    """An audit never creates a database: a SQLite file that is not there is an error."""
    from sqlalchemy.engine import make_url

    from onair.cli.common import fail
    from onair.db import is_sqlite

    try:
        if not is_sqlite(database_url):
            return
    except ValueError as exc:
        fail(str(exc))
    path = make_url(database_url).database
    if path and path != ":memory:" and not Path(path).is_file():
        fail(f"no SQLite database at {path}")


async def _run(database_url: str, grace: float) -> AuditReport:
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    from onair.cli.common import fail
    from onair.db import create_engine
    from onair_services.wallet.audit import run_audit
    from onair_services.wallet.db import WalletDb

    try:
        engine = create_engine(database_url)
    except ValueError as exc:
        fail(str(exc))
    try:
        return await run_audit(WalletDb(engine), grace_s=grace)
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig).lower()
        if "no such table" in text or "does not exist" in text:
            where = engine.url.render_as_string(hide_password=True)
            fail(f"no wallet tables in {where} (run: onair migrate wallet)")
        fail(f"cannot read the wallet's database: {str(exc.orig).splitlines()[0]}")
    except (DBAPIError, OSError) as exc:
        fail(f"cannot read the wallet's database: {exc}")
    finally:
        await engine.dispose()
