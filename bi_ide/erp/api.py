"""The hub's ERP routes: reports, KPIs, file imports with their validation report, forecasts, weekly reports.

Every report of ``bi_ide.erp.reports.REPORTS`` is served under ``/api/v1/erp/reports/NAME`` with
its keyword arguments as query parameters. Imports take the file itself as the body (developer
role); a rejected file answers 400 with the rows and reasons, and nothing is written.
"""

from __future__ import annotations

from datetime import date

from bi_ide.erp import forecasts, reports
from bi_ide.erp.imports import FORMATS, import_file
from bi_ide.errors import ValidationError
from bi_ide.hub.app import ApiHandler, _int_arg
from bi_ide.hub.wire import frame_to_json
from bi_ide.store.erp import ERP_TABLES, ImportRejected

NAME = r"([a-z_]{1,64})"
FORECAST_BODY = {"as_of": (str,), "horizon": (int,), "level": (int,), "regular": (str,)}
REPORT_BODY = {"kind": (str,), "as_of": (str,), "path": (str,), "sha256": (str,), "size_bytes": (int,),
               "summary": (dict,)}


def routes(hub) -> list[tuple]:
    kw = {"hub": hub}
    return [
        (r"/api/v1/erp/counts", CountsHandler, kw),
        (r"/api/v1/erp/reports", ReportsHandler, kw),
        (rf"/api/v1/erp/reports/{NAME}", ReportHandler, kw),
        (r"/api/v1/erp/import", ImportHandler, kw),
        (r"/api/v1/erp/clear", ClearHandler, kw),
        (r"/api/v1/erp/forecasts", ForecastsHandler, kw),
        (r"/api/v1/erp/rendered", RenderedHandler, kw),
    ]


def encode(result) -> dict:
    """A report's answer on the wire: a frame as columns, a dict as it is (dates as ISO text)."""
    if isinstance(result, dict):
        return {"kind": "dict", "value": result}
    return {"kind": "frame", **frame_to_json(result)}


def report_kwargs(name: str, query: dict[str, list[bytes]]) -> dict:
    """The query parameters of report ``name`` converted to the types its signature names."""
    fn = reports.REPORTS.get(name)
    if fn is None:
        raise ValidationError(f"no ERP report {name!r}; reports: {sorted(reports.REPORTS)}", field="name")
    unknown = sorted(set(query) - set(fn.parameters))
    if unknown:
        raise ValidationError(f"report {name} has no parameter(s) {unknown}; it takes {sorted(fn.parameters)}",
                              field=unknown[0])
    return {key: _convert(key, fn.parameters[key], query[key][-1].decode()) for key in query}


def _convert(key: str, annotation: str, raw: str):
    kind = str(annotation)
    try:
        if "date" in kind:
            return date.fromisoformat(raw)
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError as e:
        raise ValidationError(f"parameter {key} must be {kind.split(' ')[0]}, got {raw!r}", field=key) from e
    return raw


class CountsHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.erp_counts))


class ReportsHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send({name: sorted(fn.parameters) for name, fn in sorted(reports.REPORTS.items())})


class ReportHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self, name):
        kwargs = report_kwargs(name, self.request.query_arguments)
        self.send(encode(await self.hub.call(reports.REPORTS[name], self.hub.store, **kwargs)))


class ImportHandler(ApiHandler):
    """POST the file as the body: ?table=invoices&format=csv&name=jan.csv&map=quantity=Qty&date_format=..."""

    roles = {"POST": "developer"}

    async def post(self):
        table = self.get_query_argument("table", "")
        fmt = self.get_query_argument("format", "")
        if table not in ERP_TABLES:
            raise ValidationError(f"table {table!r} is not one of {sorted(ERP_TABLES)}", field="table")
        if fmt not in FORMATS:
            raise ValidationError(f"format {fmt!r} is not one of {list(FORMATS)}", field="format")
        mapping = dict(pair.partition("=")[::2] for pair in self.get_query_arguments("map"))
        name = self.get_query_argument("name", "the upload")[:200]
        try:
            result = await self.hub.call(import_file, self.hub.store, self.request.body, table, mapping, fmt=fmt,
                                         date_format=self.get_query_argument("date_format", None), name=name)
        except ImportRejected as e:
            self.send({"error": "ImportRejected", "field": "file", **e.report()}, 400)
            return
        self.send(result, 201)


class ClearHandler(ApiHandler):
    roles = {"POST": "admin"}

    async def post(self):
        self.body({})
        self.send({"deleted": await self.hub.call(self.hub.store.erp_clear)})


class ForecastsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.erp_forecast_run, self.get_query_argument("run_id", None)))

    async def post(self):
        fields = self.body(FORECAST_BODY)
        if fields.get("as_of"):
            fields["as_of"] = _convert("as_of", "date", fields["as_of"])
        self.send(await self.hub.call(forecasts.run_forecast, self.hub.store, **fields), 201)


class RenderedHandler(ApiHandler):
    """Rendered report files (the weekly report): list them, or record one written beside the hub."""

    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        df = await self.hub.call(self.hub.store.erp_list_reports, kind=self.get_query_argument("kind", None),
                                 limit=_int_arg(self, "limit", 50))
        self.send(frame_to_json(df))

    async def post(self):
        fields = self.body(REPORT_BODY, required=("kind", "as_of", "path", "sha256", "size_bytes"))
        fields["as_of"] = _convert("as_of", "date", fields["as_of"])
        self.send(await self.hub.call(self.hub.store.erp_record_report, fields.pop("kind"), **fields), 201)
