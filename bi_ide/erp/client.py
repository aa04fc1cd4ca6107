"""HubClient's erp calls: a mixin over ``HubClient._request``, answering like the Store's ErpTables.

The reports, imports and forecasts run in the hub (next to the store); these calls carry their
arguments and answers, so ``bi_ide.erp`` functions work the same with a Store or a HubClient.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import requests

from bi_ide.errors import HubUnavailableError
from bi_ide.hub.wire import error_from_response, frame_from_json
from bi_ide.store.erp import ImportRejected


def decode(answer: dict):
    """A report's answer from the wire (see ``bi_ide.erp.api.encode``), dates as dates again."""
    if answer["kind"] == "dict":
        value = answer["value"]
        if isinstance(value.get("as_of"), str):
            value["as_of"] = date.fromisoformat(value["as_of"])
        return value
    df = frame_from_json(answer)
    dates = [name for name, kind in answer["schema"].items() if kind == "Date"]
    return df.with_columns(pl.col(dates).str.to_date()) if dates else df


def _query(kwargs: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in kwargs.items() if v is not None}


class ErpCalls:
    """HubClient methods for the ERP tables: customers, products, invoices, payments, expenses, stock, forecasts, reports."""

    def erp_report(self, name: str, **kwargs):
        """Run report ``name`` of ``bi_ide.erp.reports`` in the hub."""
        return decode(self._request("GET", f"/erp/reports/{name}", params=_query(kwargs), retry=True))

    def erp_counts(self) -> dict:
        return self._request("GET", "/erp/counts", retry=True)

    def erp_clear(self) -> dict:
        return self._request("POST", "/erp/clear", json={})["deleted"]

    def erp_import(self, data: bytes, table: str, mapping: dict[str, str] | None = None, *, fmt: str,
                   date_format: str | None = None, name: str = "the upload") -> dict:
        """Send a file to the hub to check and import; ImportRejected carries the hub's report."""
        params = {"table": table, "format": fmt, "name": name,
                  "map": [f"{ours}={theirs}" for ours, theirs in (mapping or {}).items()]}
        if date_format:
            params["date_format"] = date_format
        url = f"{self.url}/api/v1/erp/import"
        try:
            r = self.session.post(url, params=params, data=data, timeout=self.timeout_s,
                                  headers={"Content-Type": "application/octet-stream"})
        except (requests.ConnectionError, requests.Timeout) as e:
            raise HubUnavailableError(f"cannot reach the hub at {self.url} to import {name}") from e
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else None
        if r.status_code < 400:
            return body
        if body and body.get("error") == "ImportRejected":
            raise _rejected(name, body)
        raise error_from_response(r.status_code, body, url)

    def erp_run_forecast(self, **fields) -> dict:
        return self._request("POST", "/erp/forecasts", json=_query(fields))

    def erp_forecast_run(self, run_id: str | None = None) -> dict | None:
        return self._request("GET", "/erp/forecasts", params=_query({"run_id": run_id}), retry=True)

    def erp_record_report(self, kind: str, *, as_of, path: str, sha256: str, size_bytes: int,
                          summary: dict | None = None) -> dict:
        return self._request("POST", "/erp/rendered", json=_query({
            "kind": kind, "as_of": as_of, "path": path, "sha256": sha256, "size_bytes": size_bytes,
            "summary": summary}))

    def erp_list_reports(self, *, kind: str | None = None, limit: int = 50) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/erp/rendered", params=_query({"kind": kind, "limit": limit}),
                                             retry=True))


def _rejected(name: str, body: dict) -> ImportRejected:
    error = ImportRejected(name, body["problems"], body["rows"])
    error.count = body["problem_count"]
    error.args = (body["message"],)
    return error
