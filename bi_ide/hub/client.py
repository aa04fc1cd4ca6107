"""The store's API over the hub's REST API, for every process that is not the hub.

``bi_ide.connect()`` returns a HubClient when ``BI_IDE_HUB`` is set; it answers like a Store
(polars DataFrames, the same errors), so notebooks, the CLI and trainers need not care which.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import requests

from bi_ide.council.client import CouncilCalls
from bi_ide.erp.client import ErpCalls
from bi_ide.errors import HubUnavailableError, RateLimitError, ValidationError
from bi_ide.fleet.client import FleetCalls
from bi_ide.hub.wire import ARROW_STREAM, NDJSON, error_from_response, frame_from_json
from bi_ide.store.batches import metric_batch

CHUNK_POINTS = 250_000  # points per request: about 8 MB of Arrow, under the hub's 16 MB body limit


class HubClient(FleetCalls, CouncilCalls, ErpCalls):
    """A Store-shaped client of the hub at ``url`` using the API ``token``."""

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 30.0, retries: int = 5):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"HubClient({self.url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------
    def _request(self, method: str, path: str, *, retry: bool = False, **kwargs):
        """One API call; with ``retry``, connection failures, 429 and 503 are retried with backoff."""
        url = f"{self.url}/api/v1{path}"
        delay = 0.25
        for attempt in range(self.retries + 1 if retry else 1):
            try:
                r = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as e:
                err = self._unreachable()
                err.__cause__ = e
            else:
                if r.status_code < 400:
                    return r.json()
                err = _error(r, url)
                if r.status_code not in (429, 503):
                    raise err
                if isinstance(err, RateLimitError):
                    delay = max(delay, float(r.headers.get("Retry-After", delay)))
            if attempt < self.retries and retry:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise err

    def _lines(self, method: str, path: str, **kwargs) -> Iterator[dict]:
        """One API call answered in NDJSON: each line, parsed, as it arrives. Never retried (it may
        not be idempotent); the timeout applies to each wait between lines."""
        url = f"{self.url}/api/v1{path}"
        try:
            r = self.session.request(method, url, timeout=self.timeout_s, stream=True,
                                     headers={"Accept": NDJSON}, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise self._unreachable() from e
        with r:
            if r.status_code >= 400:
                raise _error(r, url)
            try:
                for line in r.iter_lines():
                    if line:
                        yield json.loads(line)
            except (requests.ConnectionError, requests.Timeout) as e:
                raise HubUnavailableError(f"the hub at {self.url} stopped answering part-way through {path}; "
                                          "what it was doing may still finish there") from e

    def _unreachable(self) -> HubUnavailableError:
        return HubUnavailableError(f"cannot reach the hub at {self.url}: start it with `bi-ide serve` (or `make up`), "
                                   "or unset BI_IDE_HUB to use the local store file")

    # -- the Store API ---------------------------------------------------------------------
    def health(self) -> dict:
        return self._request("GET", "/health")

    def summary(self) -> dict:
        return self._request("GET", "/summary")

    def create_run(self, name: str | None = None, **fields) -> dict:
        body = {"name": name, **fields} if name else fields
        return self._request("POST", "/runs", json=body)

    def get_run(self, run_id: str) -> dict:
        return self._request("GET", f"/runs/{run_id}")

    def list_runs(self, *, status: str | None = None, kind: str | None = None, limit: int = 100) -> pl.DataFrame:
        params = {k: v for k, v in {"status": status, "kind": kind, "limit": limit}.items() if v is not None}
        return frame_from_json(self._request("GET", "/runs", params=params))

    def update_run(self, run_id: str, **fields) -> dict:
        return self._request("PATCH", f"/runs/{run_id}", json=fields)

    def write_metrics(self, points, *, run_id: str | None = None, idempotency_key: str | None = None) -> dict:
        """Send a batch in chunks of CHUNK_POINTS, each retried safely under its own idempotency key."""
        table = metric_batch(points, default_run_id=run_id)
        key = idempotency_key or uuid.uuid4().hex
        rows, duplicate, part = 0, True, 0
        for rid in pc.unique(table.column("run_id")).to_pylist():
            one = table.filter(pc.equal(table.column("run_id"), rid)) if table.num_rows else table
            for start in range(0, max(one.num_rows, 1), CHUNK_POINTS):
                chunk = one.slice(start, CHUNK_POINTS)
                result = self._request(
                    "POST", f"/runs/{rid}/metrics", retry=True,
                    data=_arrow_body(chunk),
                    headers={"Content-Type": ARROW_STREAM, "Idempotency-Key": f"{key}:{part}"},
                )
                rows += result["rows"]
                duplicate &= result["duplicate"]
                part += 1
        return {"rows": rows, "duplicate": duplicate and part > 0}

    def read_metrics(self, run_id: str, names: list[str] | None = None, *, points: int | None = None) -> pl.DataFrame:
        params: dict = {"name": list(names)} if names else {}
        if points is not None:
            params["points"] = points
        return frame_from_json(self._request("GET", f"/runs/{run_id}/metrics", params=params))

    def add_checkpoint(self, run_id: str, **fields) -> dict:
        return self._request("POST", f"/runs/{run_id}/checkpoints", json=fields)

    def list_checkpoints(self, run_id: str) -> pl.DataFrame:
        return frame_from_json(self._request("GET", f"/runs/{run_id}/checkpoints"))

    def register_model(self, name: str, **fields) -> dict:
        return self._request("POST", "/models", json={"name": name, **fields})

    def get_model(self, model_id: str) -> dict:
        return self._request("GET", f"/models/{model_id}")

    def list_models(self, *, status: str | None = None) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/models", params={"status": status} if status else {}))

    def set_model_status(self, model_id: str, status: str) -> dict:
        return self._request("PATCH", f"/models/{model_id}", json={"status": status})

    def create_token(self, name: str, role: str) -> tuple[str, str]:
        t = self._request("POST", "/tokens", json={"name": name, "role": role})
        return t["id"], t["token"]

    def list_tokens(self) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/tokens"))

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/tokens/{token_id}")

    def backup(self, dest: str | Path) -> Path:
        """Ask the hub to back the store up into its ``backups/`` folder, named like ``dest``."""
        name = Path(dest).name
        if not name:
            raise ValidationError("give a backup file name such as 2026-11-25.duckdb", field="path")
        return Path(self._request("POST", "/admin/backup", json={"name": name})["path"])

    # -- pipelines ---------------------------------------------------------------------
    def create_pipeline_run(self, pipeline: str, **fields) -> dict:
        return _times(self._request("POST", "/pipeline-runs", json={"pipeline": pipeline, **fields}))

    def get_pipeline_run(self, run_id: str) -> dict:
        return _times(self._request("GET", f"/pipeline-runs/{run_id}"))

    def list_pipeline_runs(self, *, pipeline: str | None = None, status: str | None = None,
                           limit: int = 100) -> pl.DataFrame:
        params = {k: v for k, v in {"pipeline": pipeline, "status": status, "limit": limit}.items() if v is not None}
        return frame_from_json(self._request("GET", "/pipeline-runs", params=params))

    def update_pipeline_run(self, run_id: str, **fields) -> dict:
        return _times(self._request("PATCH", f"/pipeline-runs/{run_id}", json=fields))

    def update_pipeline_step(self, run_id: str, name: str, **fields) -> dict:
        return _times(self._request("PATCH", f"/pipeline-runs/{run_id}/steps/{name}", json=fields))

    def create_schedule(self, pipeline: str, cron: str, **fields) -> dict:
        body = {"pipeline": pipeline, "cron": cron, **_iso(fields)}
        return _times(self._request("POST", "/schedules", json=body))

    def get_schedule(self, schedule_id: str) -> dict:
        return _times(self._request("GET", f"/schedules/{schedule_id}"))

    def list_schedules(self) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/schedules"))

    def update_schedule(self, schedule_id: str, **fields) -> dict:
        return _times(self._request("PATCH", f"/schedules/{schedule_id}", json=_iso(fields)))

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/schedules/{schedule_id}")


def _iso(fields: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}


def _times(record: dict) -> dict:
    """The hub sends times as ISO text; give them back as datetimes, as the Store does."""
    for key, value in record.items():
        if key.endswith("_at") and isinstance(value, str):
            record[key] = datetime.fromisoformat(value)
    for step in record.get("steps") or ():
        _times(step)
    return record


def _arrow_body(chunk: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    table = chunk.drop_columns(["run_id"])
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _error(r: requests.Response, url: str):
    """The WorkbenchError the hub's error answer ``r`` stands for."""
    try:
        body = r.json()
    except ValueError:
        body = None
    return error_from_response(r.status_code, body, url)
