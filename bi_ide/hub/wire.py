"""How tables and errors travel between the hub and its clients.

A DataFrame goes as columns (``{"schema": {...}, "columns": {name: [values]}}``), datetimes as
integer microseconds since the epoch, so a frame read through the hub equals the embedded one.
"""

from __future__ import annotations

import polars as pl

from bi_ide import errors

ARROW_STREAM = "application/vnd.apache.arrow.stream"  # Content-Type of bulk metric batches
NDJSON = "application/x-ndjson"  # a long call's answer, a JSON object a line as it goes

_BY_STATUS = {
    400: errors.ValidationError,
    401: errors.AuthError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    429: errors.RateLimitError,
    503: errors.HubUnavailableError,
}


def frame_to_json(df: pl.DataFrame) -> dict:
    schema, columns = {}, {}
    for name, dtype in df.schema.items():
        col = df.get_column(name)
        if isinstance(dtype, pl.Datetime):
            schema[name] = f"datetime:{dtype.time_zone or ''}"
            columns[name] = col.dt.epoch("us").to_list()
        else:
            schema[name] = str(dtype)
            columns[name] = col.to_list()
    return {"schema": schema, "columns": columns}


def frame_from_json(obj: dict) -> pl.DataFrame:
    cols = []
    for name, kind in obj["schema"].items():
        values = obj["columns"][name]
        if kind.startswith("datetime:"):
            s = pl.Series(name, values, dtype=pl.Int64).cast(pl.Datetime("us"))
            tz = kind.split(":", 1)[1]
            cols.append(s.dt.replace_time_zone(tz) if tz else s)
        else:
            cols.append(pl.Series(name, values, dtype=_DTYPES.get(kind)))
    return pl.DataFrame(cols)


_DTYPES = {
    "String": pl.String,
    "Int64": pl.Int64,
    "Int32": pl.Int32,
    "Float64": pl.Float64,
    "Boolean": pl.Boolean,
}


def error_body(exc: errors.WorkbenchError) -> dict:
    body = {"error": type(exc).__name__, "message": str(exc)}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    return body


def error_from_response(status: int, body: dict | None, url: str) -> errors.WorkbenchError:
    """Rebuild the hub's error on the client side, so callers catch the same classes."""
    message = (body or {}).get("message") or f"the hub answered HTTP {status} for {url}"
    name = (body or {}).get("error")
    cls = getattr(errors, name, None) if name else None
    if not (isinstance(cls, type) and issubclass(cls, errors.WorkbenchError)):
        cls = _BY_STATUS.get(status, errors.WorkbenchError)
    if cls is errors.ValidationError:
        return cls(message, field=(body or {}).get("field"))
    return cls(message)
