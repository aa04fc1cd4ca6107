"""Numbered schema migrations: ``NNNN_name.sql`` files applied in order, one transaction each.

Applied versions are recorded in ``schema_migrations`` with the file's sha256, so an edited
migration that was already applied is detected instead of silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from bi_ide.errors import MigrationError, SchemaVersionError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the package's own), sorted by version."""
    files = folder.iterdir() if folder else resources.files("bi_ide.store.migrations").iterdir()
    found = []
    for f in files:
        m = _NAME.match(f.name)
        if m:
            found.append(Migration(int(m[1]), m[2], f.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3, ... without gaps; found {versions}")
    return found


def applied_versions(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Applied version -> sha256 of its file; empty for a file no migration has touched."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    if not exists:
        return {}
    return dict(con.execute("SELECT version, sha256 FROM schema_migrations").fetchall())


def migrate(con: duckdb.DuckDBPyConnection, migrations: list[Migration], target: int | None = None) -> list[int]:
    """Apply every pending migration up to ``target``; return the versions applied now."""
    con.execute(_LEDGER)
    done = applied_versions(con)
    known = {m.version for m in migrations}
    newer = sorted(set(done) - known)
    if newer:
        raise SchemaVersionError(
            f"the store has schema version {max(done)} but this workbench knows only up to "
            f"{max(known, default=0)}; update this workbench (git pull, then make install or "
            "pip install -e .) to open it"
        )
    for m in migrations:
        if m.version in done and done[m.version] != m.sha256:
            raise MigrationError(
                f"migration {m.version:04d}_{m.name}.sql changed after it was applied; "
                "never edit an applied migration — add a new numbered one instead"
            )
    applied = []
    for m in migrations:
        if m.version in done or (target is not None and m.version > target):
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(m.sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (?, ?, ?)",
                [m.version, m.name, m.sha256],
            )
            con.execute("COMMIT")
        except duckdb.Error as e:
            con.execute("ROLLBACK")
            raise MigrationError(
                f"migration {m.version:04d}_{m.name}.sql failed and was rolled back: {e}"
            ) from e
        applied.append(m.version)
    return applied
