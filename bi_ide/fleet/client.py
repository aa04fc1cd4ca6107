"""HubClient's fleet calls: a mixin over ``HubClient._request``, answering like the Store's FleetTables.

The agent's own calls (register, samples, next command, report) never retry here: the agent keeps
its samples and retries on its own schedule, with backoff.
"""

from __future__ import annotations

import polars as pl

from bi_ide.hub.wire import frame_from_json


def _times(record: dict | None) -> dict | None:
    from bi_ide.hub.client import _times as convert

    return convert(record) if record is not None else None


class FleetCalls:
    """HubClient methods for workers, their samples, alerts, commands and SLOs."""

    # -- workers and samples ------------------------------------------------------------------
    def register_worker(self, worker_id: str, **fields) -> dict:
        return _times(self._request("POST", "/workers", json={"id": worker_id, **fields}))

    def list_workers(self) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/workers"))

    def get_worker(self, worker_id: str) -> dict:
        return _times(self._request("GET", f"/workers/{worker_id}"))

    def remove_worker(self, worker_id: str) -> None:
        self._request("DELETE", f"/workers/{worker_id}")

    def write_samples(self, worker_id: str, batches: list, *, reconnect: dict | None = None) -> dict:
        body = {"batches": batches, **({"reconnect": reconnect} if reconnect else {})}
        return self._request("POST", f"/workers/{worker_id}/samples", json=body)

    def count_samples(self, worker_id: str) -> dict:
        """One worker's raw sample rows (the route is per worker; the Store also counts all workers)."""
        return self._request("GET", f"/workers/{worker_id}/samples")

    def resources(self) -> dict:
        return self._request("GET", "/fleet/resources")

    def gpu_latest(self, worker_id: str | None = None) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/fleet/gpus", params=_some(worker_id=worker_id)))

    def gpu_series(self, window_s: int = 900, worker_id: str | None = None) -> pl.DataFrame:
        params = _some(window_s=window_s, worker_id=worker_id)
        return frame_from_json(self._request("GET", "/fleet/gpu-series", params=params))

    # -- alerts and SLOs ----------------------------------------------------------------------
    def list_alerts(self, *, status: str | None = None, worker_id: str | None = None, active: bool = False,
                    limit: int = 200) -> pl.DataFrame:
        params = _some(status=status, worker_id=worker_id, active=str(active).lower(), limit=limit)
        return frame_from_json(self._request("GET", "/alerts", params=params))

    def acknowledge_alert(self, alert_id: str, by: str | None = None) -> dict:
        """Acknowledge an alert; the hub records the token's name as who did it (``by`` is not sent)."""
        return _times(self._request("POST", f"/alerts/{alert_id}/ack"))

    def slos(self, window_s: int | None = None) -> list[dict]:
        params = _some(window_s=None if window_s is None else int(window_s))
        return self._request("GET", "/slos", params=params)["objectives"]

    # -- commands -----------------------------------------------------------------------------
    def queue_command(self, worker_id: str, kind: str, payload: dict | None = None, **_) -> dict:
        return _times(self._request("POST", f"/workers/{worker_id}/commands", json={"kind": kind, "payload": payload or {}}))

    def next_command(self, worker_id: str) -> dict | None:
        return _times(self._request("POST", f"/workers/{worker_id}/commands/next")["command"])

    def finish_command(self, command_id: str, status: str, *, result: dict | None = None,
                       error: str | None = None) -> dict:
        body = _some(status=status, result=result, error=error)
        return _times(self._request("PATCH", f"/commands/{command_id}", json=body))

    def cancel_command(self, command_id: str) -> dict:
        return _times(self._request("DELETE", f"/commands/{command_id}"))

    def get_command(self, command_id: str) -> dict:
        return _times(self._request("GET", f"/commands/{command_id}"))

    def list_commands(self, *, worker_id: str | None = None, status: str | None = None, limit: int = 100) -> pl.DataFrame:
        params = _some(worker_id=worker_id, status=status, limit=limit)
        return frame_from_json(self._request("GET", "/commands", params=params))

    # -- runs and the thermal guard -----------------------------------------------------------
    def record_run_process(self, run_id: str, *, host: str, pid: int) -> dict:
        return self._request("PUT", f"/runs/{run_id}/process", json={"host": host, "pid": pid})

    def run_throttles(self, run_id: str) -> pl.DataFrame:
        return frame_from_json(self._request("GET", f"/runs/{run_id}/throttles"))


def _some(**params) -> dict:
    return {k: v for k, v in params.items() if v is not None}
