"""The store: one DuckDB file, opened by one process, read as polars DataFrames.

This is the only module (with its package) that imports duckdb. Values always travel as ``?``
parameters; a ``duckdb.Error`` leaves here as a ``StoreError`` with the DuckDB error attached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from bi_ide.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreLockedError,
    ValidationError,
)
from bi_ide.store import migrate as migrations
from bi_ide.store.batches import SeriesBatch, metric_batch
from bi_ide.store.council import CouncilTables
from bi_ide.store.erp import ErpTables
from bi_ide.store.fleet import FleetTables
from bi_ide.store.pipelines import PipelineTables
from bi_ide.store.values import check_text, new_id, to_json

ROLES = ("viewer", "developer", "admin")
RUN_STATUSES = ("queued", "running", "stopped", "done", "failed")
# Which status a run may move to from each status. A stopped or failed run may be resumed.
RUN_TRANSITIONS = {
    "queued": {"running", "stopped", "failed"},
    "running": {"running", "stopped", "done", "failed"},
    "stopped": {"queued", "running"},
    "failed": {"queued", "running"},
    "done": set(),
}
METRIC_FRAME = {"name": pl.String, "step": pl.Int64, "value": pl.Float64, "min": pl.Float64,
                "max": pl.Float64, "time": pl.Datetime("us", "UTC")}
RUN_FIELDS = ("name", "preset", "config", "worker_id", "device", "params_count", "error", "step", "total_steps",
              "stop_requested")
MODEL_STATUSES = ("ready", "deployed", "archived")
CHECKPOINT_KINDS = ("step", "best", "last")
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the hub's routes accept as an id

# DuckDB's words for "another process holds the file": POSIX lock wording, then Windows'.
_LOCKED = re.compile(r"Could not set lock on file|Conflicting lock|being used by another process", re.IGNORECASE)
_PID = re.compile(r"PID (\d+)")


def hash_secret(secret: str) -> str:
    # API secrets are 256 random bits, so one sha256 is enough; nothing to salt against.
    return hashlib.sha256(secret.encode()).hexdigest()


def _open(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as e:
        if _LOCKED.search(str(e)):
            pid = _PID.search(str(e))
            holder = f" (PID {pid[1]})" if pid else ""
            raise StoreLockedError(
                f"the store {path} is held by another process{holder}. DuckDB lets one process "
                "write a file: start the hub once with `bi-ide serve` and point everything else at it "
                "with BI_IDE_HUB=http://<hub host>:5006 (and BI_IDE_TOKEN), or stop the other process"
            ) from e
        raise StoreError(f"cannot open the store {path}: {e}") from e
    except duckdb.Error as e:
        raise StoreError(f"cannot open the store {path} (is it a DuckDB file?): {e}") from e
    con.execute("SET TimeZone = 'UTC'")
    # Metric batches are large; checkpoint the WAL every 256 MB rather than every 16 MB.
    con.execute("SET checkpoint_threshold = '256MB'")
    return con


class Store(PipelineTables, FleetTables, CouncilTables, ErpTables):
    """The workbench's tables in one DuckDB file (or in memory, for tests and notebooks).

    >>> store = Store(memory=True)
    >>> run = store.create_run("demo")
    >>> store.write_metrics({"step": [0, 1], "name": ["loss"] * 2, "value": [2.0, 1.5]}, run_id=run["id"])
    {'rows': 2, 'duplicate': False}
    """

    _shared: dict[str, Store] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike | None = None, *, memory: bool = False,
                 read_only: bool = False, migrate: bool = True):
        if memory == (path is not None):
            raise ValueError("give either a path or memory=True")
        self.path = None if memory else Path(path).expanduser().resolve()
        if self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.read_only = read_only
        self._con = _open(":memory:" if memory else str(self.path), read_only)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        if migrate and not read_only:
            self.migrate()

    # -- plumbing -------------------------------------------------------------------------
    @classmethod
    def shared(cls, path: str | os.PathLike) -> Store:
        """The one Store of this process for ``path``: the hub and its apps share it."""
        key = str(Path(path).expanduser().resolve())
        with cls._shared_lock:
            store = cls._shared.get(key)
            if store is None or store.closed:
                store = cls._shared[key] = cls(key)
            return store

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path) if self.path else 'memory=True'})"

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # DuckDB connections are not safe to share between threads; each thread gets a cursor.
        if self._con is None:
            raise StoreError("the store is closed; open it again with bi_ide.connect()")
        cur = getattr(self._local, "cursor", None)
        if cur is None or getattr(self._local, "owner", None) is not self._con:
            cur = self._local.cursor = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.owner = self._con
        return cur

    def sql(self, query: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query with ``?`` parameters and return a polars DataFrame."""
        try:
            return self._cursor().sql(query, params=params).pl()
        except duckdb.Error as e:
            raise StoreError(f"query failed: {e}") from e

    def _rows(self, query: str, params: list | None = None) -> list[tuple]:
        try:
            return self._cursor().execute(query, params or []).fetchall()
        except duckdb.Error as e:
            raise StoreError(f"query failed: {e}") from e

    @contextmanager
    def transaction(self):
        """One write transaction; everything inside commits together or not at all."""
        with self._write_lock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException as e:
                cur.execute("ROLLBACK")
                if isinstance(e, duckdb.Error):
                    raise StoreError(f"write failed and was rolled back: {e}") from e
                raise
            else:
                cur.execute("COMMIT")

    # -- schema -------------------------------------------------------------------------
    def migrate(self, target: int | None = None, folder: Path | None = None) -> list[int]:
        """Apply pending migrations (up to ``target``); return the versions applied."""
        with self._write_lock:
            return migrations.migrate(self._cursor(), migrations.load_migrations(folder), target)

    def schema_version(self) -> int:
        return max(migrations.applied_versions(self._cursor()), default=0)

    def tables(self) -> list[str]:
        rows = self._rows("SELECT table_name FROM information_schema.tables ORDER BY table_name")
        return [r[0] for r in rows]

    def size_bytes(self) -> int:
        if self.path is None:
            return 0
        wal = self.path.with_name(self.path.name + ".wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    # -- runs -------------------------------------------------------------------------
    def create_run(self, name: str | None = None, *, kind: str = "train", config: dict | None = None,
                   preset: str | None = None, worker_id: str | None = None, device: str | None = None,
                   status: str = "queued", id: str | None = None) -> dict:
        """Record a new run and return it. ``id`` keeps the id a run got elsewhere (a run recorded
        offline on a machine without the store, imported by ``bi-ide train replay``)."""
        if status not in RUN_STATUSES:
            raise ValidationError(f"status {status!r} is not one of {list(RUN_STATUSES)}", field="status")
        if id is not None and (not isinstance(id, str) or not RUN_ID.fullmatch(id)):
            raise ValidationError(f"id {id!r} is not a run id: 1 to 64 letters, digits, '_' or '-'", field="id")
        run_id = id or new_id()
        name = name or f"{kind}-{run_id[:6]}"
        check_text("name", name)
        check_text("kind", kind, 40)
        started = "now()" if status == "running" else "NULL"
        with self.transaction() as cur:
            if id is not None and cur.execute("SELECT 1 FROM runs WHERE id = ?", [id]).fetchall():
                raise ConflictError(f"a run with id {id!r} exists already; `bi-ide runs list` shows the runs")
            cur.execute(
                f"INSERT INTO runs (id, name, kind, status, preset, config, worker_id, device, started_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, {started})",
                [run_id, name, kind, status, preset, to_json(config), worker_id, device],
            )
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> dict:
        df = self.sql("SELECT * FROM runs WHERE id = ?", [run_id])
        if df.is_empty():
            raise NotFoundError(f"no run with id {run_id!r}; `bi-ide runs list` shows the runs")
        row = df.row(0, named=True)
        row["config"] = json.loads(row["config"]) if row["config"] else None
        return row

    def list_runs(self, *, status: str | None = None, kind: str | None = None, limit: int = 100) -> pl.DataFrame:
        """Runs, newest first, optionally filtered by status and kind."""
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError(f"status {status!r} is not one of {list(RUN_STATUSES)}", field="status")
        if not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be 1..10000, got {limit}", field="limit")
        return self.sql(
            "SELECT id, name, kind, status, preset, worker_id, device, params_count, error, step, total_steps, "
            "stop_requested, created_at, started_at, finished_at, updated_at FROM runs "
            "WHERE (? IS NULL OR status = ?) AND (? IS NULL OR kind = ?) "
            "ORDER BY created_at DESC, id LIMIT ?",
            [status, status, kind, kind, limit],
        )

    def update_run(self, run_id: str, *, status: str | None = None, **fields) -> dict:
        """Change a run's status (checked against RUN_TRANSITIONS) and/or its fields."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise ValidationError(
                f"cannot update run field(s) {sorted(unknown)}; allowed: {list(RUN_FIELDS)} and status",
                field=sorted(unknown)[0],
            )
        if "config" in fields:
            fields["config"] = to_json(fields["config"])
        if "name" in fields:
            check_text("name", fields["name"])
        sets = [f"{k} = ?" for k in fields]
        params = list(fields.values())
        with self.transaction() as cur:
            found = cur.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchall()
            if not found:
                raise NotFoundError(f"no run with id {run_id!r}; `bi-ide runs list` shows the runs")
            if status is not None:
                if status not in RUN_STATUSES:
                    raise ValidationError(f"status {status!r} is not one of {list(RUN_STATUSES)}", field="status")
                current = found[0][0]
                if status not in RUN_TRANSITIONS[current]:
                    allowed = sorted(RUN_TRANSITIONS[current]) or "none (it is final)"
                    raise ConflictError(f"run {run_id} is {current} and cannot become {status}; allowed: {allowed}")
                sets.append("status = ?")
                params.append(status)
                if status == "running":
                    sets.append("started_at = coalesce(started_at, now())")
                if status in ("stopped", "done", "failed"):
                    sets.append("finished_at = now()")
            if sets:
                sets.append("updated_at = now()")
                cur.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", [*params, run_id])
        return self.get_run(run_id)

    # -- metrics ---------------------------------------------------------------------
    def write_metrics(self, points, *, run_id: str | None = None, idempotency_key: str | None = None) -> dict:
        """Append a batch of metric points in one transaction; all of it or none.

        ``points`` has columns run_id (or pass ``run_id``), step, name, value and optionally
        time (seconds since the epoch, or a timestamp). A batch sent again with the same
        ``idempotency_key`` is not stored twice: the second call reports ``duplicate: True``.
        """
        batch = SeriesBatch(metric_batch(points, default_run_id=run_id))
        if idempotency_key is not None:
            check_text("idempotency_key", idempotency_key, 200)
        with self.transaction() as cur:
            if idempotency_key is not None:
                seen = cur.execute("SELECT rows FROM write_batches WHERE key = ?", [idempotency_key]).fetchall()
                if seen:
                    return {"rows": seen[0][0], "duplicate": True}
            ids = self._series_ids(cur, batch.pairs)
            cur.register("_points", batch.points(ids))
            try:
                cur.execute("INSERT INTO metric_points SELECT series_id, step, value, time FROM _points")
            finally:
                cur.unregister("_points")
            if idempotency_key is not None:
                cur.execute(
                    "INSERT INTO write_batches (key, kind, rows) VALUES (?, 'metrics', ?)",
                    [idempotency_key, batch.table.num_rows],
                )
        return {"rows": batch.table.num_rows, "duplicate": False}

    @staticmethod
    def _series_ids(cur, pairs: list[tuple[str, str]]) -> list[int]:
        """The ids of the metric series ``pairs``, creating new ones; refuse unknown runs."""
        if not pairs:
            return []
        run_ids = sorted({r for r, _ in pairs})
        known = {r for (r,) in cur.execute("SELECT id FROM runs WHERE list_contains(?, id)", [run_ids]).fetchall()}
        missing = [r for r in run_ids if r not in known]
        if missing:
            raise NotFoundError(f"the batch names unknown run(s) {missing[:5]}; create the run first")
        wanted = "(SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::VARCHAR[]) AS name, unnest(range(?)) AS i)"
        params = [[r for r, _ in pairs], [n for _, n in pairs]]
        cur.execute(
            "INSERT INTO metric_series SELECT nextval('metric_series_id'), run_id, name "
            f"FROM {wanted} ANTI JOIN metric_series USING (run_id, name) ORDER BY i",
            [*params, len(pairs)],
        )
        rows = cur.execute(
            f"SELECT s.id FROM {wanted} w JOIN metric_series s USING (run_id, name) ORDER BY w.i",
            [*params, len(pairs)],
        ).fetchall()
        return [r[0] for r in rows]

    def read_metrics(self, run_id: str, names: list[str] | None = None, *, points: int | None = None) -> pl.DataFrame:
        """A run's metrics as (name, step, value, min, max, time).

        With ``points``, each series is cut into that many equal step ranges and each range gives
        one row: its last step and value, and the min and max value in it — so a plot keeps the
        spikes a plain every-n-th sample would drop. The bucketing runs in DuckDB.
        """
        if points is not None and not 1 <= points <= 100_000:
            raise ValidationError(f"points must be 1..100000, got {points}", field="points")
        series = self._rows(
            "SELECT id, name FROM metric_series WHERE run_id = ? AND (? IS NULL OR list_contains(?, name))",
            [run_id, names, names],
        )
        ids = [i for i, _ in series]
        if not ids:
            return pl.DataFrame(schema=METRIC_FRAME)
        if points is None:
            df = self.sql(
                "SELECT series_id, step, value, value AS min, value AS max, time FROM metric_points "
                "WHERE list_contains(?, series_id) ORDER BY series_id, step", [ids],
            )
        else:
            # Phase 1: the step range of the selected series (zone maps make this nearly free).
            (lo, hi), = self._rows(
                "SELECT min(step), max(step) FROM metric_points WHERE list_contains(?, series_id)", [ids]
            )
            # Phase 2: one scan, bucketed by a constant width, so no per-series join is needed.
            df = self.sql(
                "SELECT series_id, max(step) AS step, arg_max(value, step) AS value, min(value) AS min, "
                "max(value) AS max, max(time) AS time FROM metric_points WHERE list_contains(?, series_id) "
                "GROUP BY series_id, (step - ?) * ? // ? ORDER BY series_id, step",
                [ids, lo, points, hi - lo + 1],
            )
        names_by_id = pl.DataFrame({"series_id": ids, "name": [n for _, n in series]},
                                   schema={"series_id": pl.Int32, "name": pl.String})
        return df.join(names_by_id, on="series_id").select(METRIC_FRAME.keys()).sort("name", "step")

    def metric_names(self, run_id: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT name FROM metric_series WHERE run_id = ? ORDER BY 1", [run_id])]

    # -- checkpoints and models ------------------------------------------------------------
    def add_checkpoint(self, run_id: str, *, step: int, path: str, kind: str = "step", sha256: str | None = None,
                       size_bytes: int | None = None, loss: float | None = None, epoch: int | None = None) -> dict:
        """Record a checkpoint written to ``path`` (the trainer writes the files itself)."""
        if kind not in CHECKPOINT_KINDS:
            raise ValidationError(f"kind {kind!r} is not one of {list(CHECKPOINT_KINDS)}", field="kind")
        check_text("path", path, 4096)
        self.get_run(run_id)
        checkpoint_id = new_id()
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO checkpoints (id, run_id, step, epoch, kind, loss, path, size_bytes, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [checkpoint_id, run_id, step, epoch, kind, loss, path, size_bytes, sha256],
            )
        return self.sql("SELECT * FROM checkpoints WHERE id = ?", [checkpoint_id]).row(0, named=True)

    def list_checkpoints(self, run_id: str) -> pl.DataFrame:
        """A run's checkpoints, newest first."""
        return self.sql("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY created_at DESC, step DESC", [run_id])

    def register_model(self, name: str, *, run_id: str | None = None, checkpoint_id: str | None = None,
                       params_count: int | None = None, metrics: dict | None = None) -> dict:
        """Add the next version of model ``name`` (status ready)."""
        check_text("name", name)
        model_id = new_id()
        with self.transaction() as cur:
            (version,), = cur.execute("SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = ?", [name]).fetchall()
            cur.execute(
                "INSERT INTO models (id, name, version, run_id, checkpoint_id, params_count, metrics) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [model_id, name, version, run_id, checkpoint_id, params_count, to_json(metrics)],
            )
        return self.get_model(model_id)

    def get_model(self, model_id: str) -> dict:
        df = self.sql(
            "SELECT m.*, c.path AS checkpoint_path, c.sha256 AS checkpoint_sha256 FROM models m "
            "LEFT JOIN checkpoints c ON c.id = m.checkpoint_id WHERE m.id = ?", [model_id]
        )
        if df.is_empty():
            raise NotFoundError(f"no model with id {model_id!r}; `bi-ide models list` shows the models")
        row = df.row(0, named=True)
        row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else None
        return row

    def list_models(self, *, status: str | None = None) -> pl.DataFrame:
        return self.sql(
            "SELECT id, name, version, status, run_id, checkpoint_id, params_count, metrics, created_at, updated_at "
            "FROM models WHERE (? IS NULL OR status = ?) ORDER BY name, version DESC", [status, status]
        )

    def set_model_status(self, model_id: str, status: str) -> dict:
        """ready -> deployed -> archived; deploying a version archives the name's deployed one."""
        if status not in MODEL_STATUSES:
            raise ValidationError(f"status {status!r} is not one of {list(MODEL_STATUSES)}", field="status")
        name = self.get_model(model_id)["name"]
        with self.transaction() as cur:
            if status == "deployed":
                cur.execute(
                    "UPDATE models SET status = 'archived', updated_at = now() "
                    "WHERE name = ? AND status = 'deployed' AND id <> ?", [name, model_id]
                )
            cur.execute("UPDATE models SET status = ?, updated_at = now() WHERE id = ?", [status, model_id])
        return self.get_model(model_id)

    # -- API tokens ------------------------------------------------------------------
    def create_token(self, name: str, role: str) -> tuple[str, str]:
        """Create an API token; return (token id, secret). Only the secret's hash is stored."""
        if role not in ROLES:
            raise ValidationError(f"role {role!r} is not one of {list(ROLES)}", field="role")
        check_text("name", name, 100)
        token_id = new_id()
        secret = f"bi_{token_id}_{secrets.token_urlsafe(32)}"
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO api_tokens (id, name, role, token_hash) VALUES (?, ?, ?, ?)",
                [token_id, name, role, hash_secret(secret)],
            )
        return token_id, secret

    def verify_token(self, secret: str) -> dict:
        """The token record for ``secret``; AuthError when unknown or revoked."""
        rows = self._rows(
            "SELECT id, name, role, revoked_at FROM api_tokens WHERE token_hash = ?", [hash_secret(secret)]
        )
        if not rows:
            raise AuthError("unknown API token; create one with `bi-ide token create --role developer`")
        token_id, name, role, revoked = rows[0]
        if revoked is not None:
            raise AuthError(f"API token {token_id} ({name}) was revoked; create a new one")
        return {"id": token_id, "name": name, "role": role}

    def touch_token(self, token_id: str) -> None:
        """Record that a token was just used (shown by `bi-ide token list`)."""
        with self.transaction() as cur:
            cur.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = ?", [token_id])

    def list_tokens(self) -> pl.DataFrame:
        return self.sql(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at"
        )

    def revoke_token(self, token_id: str) -> None:
        with self.transaction() as cur:
            hit = cur.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE id = ? AND revoked_at IS NULL RETURNING id",
                [token_id],
            ).fetchall()
        if not hit:
            raise NotFoundError(f"no active token with id {token_id!r}; `bi-ide token list` shows them")

    # -- overview ----------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts for the landing page: runs by status, workers, open alerts, points, size."""
        runs = dict(self._rows("SELECT status, count(*) FROM runs GROUP BY status"))
        (workers,), = self._rows("SELECT count(*) FROM workers")
        (alerts,), = self._rows("SELECT count(*) FROM alerts WHERE status <> 'resolved'")
        (points,), = self._rows("SELECT count(*) FROM metric_points")
        return {
            "runs": {s: runs.get(s, 0) for s in RUN_STATUSES},
            "runs_total": sum(runs.values()),
            "workers": workers,
            "open_alerts": alerts,
            "metric_points": points,
            "size_bytes": self.size_bytes(),
            "schema_version": self.schema_version(),
            "path": str(self.path) if self.path else ":memory:",
        }

    # -- backup and restore --------------------------------------------------------------
    def backup(self, dest: str | os.PathLike) -> Path:
        """Copy the whole store into a new DuckDB file at ``dest``, atomically."""
        dest = Path(dest).expanduser().resolve()
        if self.path is not None and dest == self.path:
            raise ValidationError("the backup path is the store itself; choose another file", field="path")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        with self._write_lock:
            cur = self._cursor()
            (db,), = cur.execute("SELECT current_database()").fetchall()
            try:
                cur.execute(f"ATTACH '{_sql_path(tmp)}' AS bi_backup")
                try:
                    cur.execute(f'COPY FROM DATABASE "{db}" TO bi_backup')
                finally:
                    cur.execute("DETACH bi_backup")
            except duckdb.Error as e:
                tmp.unlink(missing_ok=True)
                raise StoreError(f"backup to {dest} failed: {e}") from e
        os.replace(tmp, dest)
        return dest

    @staticmethod
    def restore(source: str | os.PathLike, target: str | os.PathLike) -> Path:
        """Replace the store file ``target`` with the backup ``source``.

        The backup is checked first (it must open and carry a schema); the target must not be
        held by a running hub. The swap is a rename, so a crash leaves the old or the new file.
        """
        source, target = Path(source).expanduser().resolve(), Path(target).expanduser().resolve()
        if not source.is_file():
            raise NotFoundError(f"no backup file at {source}")
        with Store(source, read_only=True) as backup:
            if backup.schema_version() == 0:
                raise ValidationError(f"{source} is a DuckDB file but not a workbench store (no schema)")
        if target.exists():
            _open(str(target), read_only=False).close()  # raises StoreLockedError while a hub holds it
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.restore")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        target.with_name(target.name + ".wal").unlink(missing_ok=True)
        return target


def _sql_path(path: Path) -> str:
    # ATTACH takes no parameters; escape quotes in the path instead.
    return str(path).replace("'", "''")

