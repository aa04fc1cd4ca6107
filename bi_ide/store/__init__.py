"""Storage: the DuckDB schema, its migrations and the Store API. The only package that imports duckdb."""

from bi_ide.store.store import ROLES, RUN_STATUSES, Store

__all__ = ["ROLES", "RUN_STATUSES", "Store"]
