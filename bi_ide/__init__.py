"""BI-IDE Workbench: training, fleet, council and ERP analytics over one DuckDB store.

>>> import bi_ide
>>> store = bi_ide.connect()          # data/workbench.duckdb, or the hub when BI_IDE_HUB is set
>>> store.list_runs()
"""

from __future__ import annotations

__version__ = "0.1.0"


def connect(path=None, *, hub: str | None = None, token: str | None = None):
    """The store, embedded or through the hub — the same API either way.

    With ``hub`` (or ``BI_IDE_HUB``) set, returns a client of the hub's REST API; otherwise the
    process's own Store on ``path`` (default ``BI_IDE_DB`` or ``data/workbench.duckdb``). Inside the
    hub process this is the store the hub already holds.
    """
    from bi_ide import settings

    hub = hub or (None if path else settings.hub_url())
    if hub:
        from bi_ide.hub.client import HubClient

        return HubClient(hub, token or settings.hub_token())
    from bi_ide.store import Store

    return Store.shared(path or settings.db_path())


__all__ = ["__version__", "connect"]
