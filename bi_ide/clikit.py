"""What every ``bi-ide`` command group shares: one-line errors, the --db option, opening the store."""

from __future__ import annotations

from pathlib import Path

import click

from bi_ide import settings
from bi_ide.errors import WorkbenchError


class Group(click.Group):
    """A click group that turns a workbench error into ``Error: ...`` and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WorkbenchError as e:
            raise click.ClickException(str(e)) from e


def db_option(f):
    return click.option(
        "--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="DuckDB file (default: $BI_IDE_DB or data/workbench.duckdb).",
    )(f)


def open_store(db: Path | None):
    """The store for one command: the hub's when BI_IDE_HUB is set (and no --db), else the file.

    Unlike bi_ide.connect(), the file is closed when the command ends (use it in a ``with``).
    """
    url = None if db else settings.hub_url()
    if url:
        from bi_ide.hub.client import HubClient

        return HubClient(url, settings.hub_token())
    from bi_ide.store import Store

    return Store(db or settings.db_path())
