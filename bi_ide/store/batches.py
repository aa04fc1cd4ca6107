"""Validation of write batches: any accepted shape becomes one typed Arrow table, or an error.

A batch arrives as a polars DataFrame, an Arrow table, or columns decoded from JSON
(``{"run_id": [...], "step": [...], ...}``). JSON columns are checked value by value, because
JSON carries no types of its own: ``true`` is not a step and ``"1.5"`` is not a value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import polars as pl
import pyarrow as pa

from bi_ide.errors import ValidationError

MAX_NAME_CHARS = 200

METRIC_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("name", pa.string()),
        ("value", pa.float64()),
        ("time", pa.timestamp("us", tz="UTC")),
    ]
)

# JSON types each column accepts, and what to call them in an error.
_KINDS = {
    "run_id": ((str,), "a string"),
    "step": ((int,), "an integer"),
    "name": ((str,), "a string"),
    "value": ((int, float), "a number"),
    "time": ((int, float), "a number (seconds since 1970-01-01 UTC)"),
}


def _check_column(field: str, values: Sequence) -> None:
    types, what = _KINDS[field]
    if all(type(v) in types for v in values):
        return
    for i, v in enumerate(values):
        if type(v) not in types:
            raise ValidationError(
                f"{field}[{i}] must be {what}, got {type(v).__name__} {v!r:.40}", field=field
            )


def metric_batch(points, default_run_id: str | None = None) -> pa.Table:
    """Turn ``points`` into an Arrow table with ``METRIC_SCHEMA``, or raise ValidationError.

    ``run_id`` may be omitted when ``default_run_id`` is given (a batch for one run); ``time``
    may be omitted and then means now.
    """
    if isinstance(points, pl.DataFrame):
        columns = {c: points.get_column(c) for c in points.columns}
    elif isinstance(points, pa.Table):
        columns = {c: points.column(c) for c in points.column_names}
    elif isinstance(points, Mapping):
        columns = dict(points)
    else:
        raise ValidationError(
            f"a metrics batch must be a polars DataFrame, an Arrow table or a mapping of columns, "
            f"not {type(points).__name__}",
            field="points",
        )
    unknown = set(columns) - set(METRIC_SCHEMA.names)
    if unknown:
        raise ValidationError(
            f"unknown metric column(s) {sorted(unknown)}; allowed: {METRIC_SCHEMA.names}",
            field=sorted(unknown)[0],
        )
    for required in ("step", "name", "value"):
        if required not in columns:
            raise ValidationError(f"the batch has no '{required}' column", field=required)
    n = len(columns["step"])
    if "run_id" not in columns:
        if default_run_id is None:
            raise ValidationError("the batch has no 'run_id' column", field="run_id")
        columns["run_id"] = [default_run_id] * n
    if "time" not in columns:
        columns["time"] = [time.time()] * n
    for field, col in columns.items():
        if len(col) != n:
            raise ValidationError(
                f"column '{field}' has {len(col)} values but 'step' has {n}; all columns must be equally long",
                field=field,
            )
    arrays = []
    for field in METRIC_SCHEMA.names:
        col = columns[field]
        if isinstance(col, list):
            _check_column(field, col)
            arrays.append(_from_list(field, col))
        else:
            arrays.append(_cast(field, col))
    return pa.Table.from_arrays(arrays, schema=METRIC_SCHEMA)


def _from_list(field: str, values: list) -> pa.Array:
    if field == "time":
        micros = pa.array([round(v * 1e6) for v in values], type=pa.int64())
        return micros.cast(pa.timestamp("us", tz="UTC"))
    return pa.array(values, type=METRIC_SCHEMA.field(field).type)


def _cast(field: str, col) -> pa.Array:
    target = METRIC_SCHEMA.field(field).type
    arr = col.to_arrow() if isinstance(col, pl.Series) else col
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if field == "time" and (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        # Seconds since the epoch, as the JSON form carries them.
        arr = pa.compute.round(pa.compute.multiply(arr.cast(pa.float64()), 1e6)).cast(pa.int64())
    try:
        return arr.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValidationError(f"column '{field}' of type {arr.type} cannot be read as {target}: {e}", field=field) from e


# One pass over the batch in DuckDB: its series, and per series the rows with a missing step or
# value, a negative step, or a non-finite value. Names and run ids are checked on the groups.
BATCH_SERIES = """
SELECT run_id, name,
       count(*) FILTER (step IS NULL OR value IS NULL) AS missing,
       count(*) FILTER (step < 0) AS negative,
       count(*) FILTER (NOT isfinite(value)) AS nonfinite
FROM _batch GROUP BY ALL
"""


def check_series(rows: list[tuple]) -> list[tuple[str, str]]:
    """Check BATCH_SERIES' rows; return the batch's (run_id, name) pairs or raise ValidationError."""
    totals = [sum(r[i] for r in rows) for i in (2, 3, 4)]
    for n, field, message in zip(totals, ("value", "step", "value"), (
        "{n} point(s) miss step or value",
        "{n} point(s) have a negative step; steps start at 0",
        "{n} point(s) have a value that is NaN or infinite; send finite numbers only",
    ), strict=True):
        if n:
            raise ValidationError(message.format(n=n), field=field)
    for run_id, name, *_ in rows:
        if run_id is None:
            raise ValidationError("some points have no run_id", field="run_id")
        if name is None or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise ValidationError(f"name must be 1 to {MAX_NAME_CHARS} characters, got {name!r:.60}", field="name")
    return [(r[0], r[1]) for r in rows]
