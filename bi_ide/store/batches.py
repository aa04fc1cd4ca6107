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
import pyarrow.compute as pc

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
        arr = pc.round(pc.multiply(arr.cast(pa.float64()), 1e6)).cast(pa.int64())
    try:
        return arr.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValidationError(f"column '{field}' of type {arr.type} cannot be read as {target}: {e}", field=field) from e


class SeriesBatch:
    """A checked batch split into its series: the distinct (run_id, name) pairs, and per point
    the index of its pair — found with Arrow dictionary encoding, not a join on two strings."""

    def __init__(self, table: pa.Table):
        for field in ("run_id", "name", "step", "value"):
            nulls = table.column(field).null_count
            if nulls:
                raise ValidationError(f"{nulls} point(s) have no {field}", field=field)
        self.table = table
        if table.num_rows == 0:
            self.pairs, self.pair_index = [], pa.array([], pa.int64())
            return
        if pc.min(table.column("step")).as_py() < 0:
            raise ValidationError("steps start at 0; the batch has a negative step", field="step")
        if not pc.all(pc.is_finite(table.column("value"))).as_py():
            raise ValidationError("a value is NaN or infinite; send finite numbers only", field="value")
        runs = table.column("run_id").combine_chunks().dictionary_encode()
        names = table.column("name").combine_chunks().dictionary_encode()
        for name in names.dictionary.to_pylist():
            if not 1 <= len(name) <= MAX_NAME_CHARS:
                raise ValidationError(f"name must be 1 to {MAX_NAME_CHARS} characters, got {name!r:.60}", field="name")
        width = len(names.dictionary)
        combo = pc.add(pc.multiply(runs.indices.cast(pa.int64()), width), names.indices.cast(pa.int64()))
        present = pc.unique(combo).to_pylist()
        run_list, name_list = runs.dictionary.to_pylist(), names.dictionary.to_pylist()
        self.pairs = [(run_list[c // width], name_list[c % width]) for c in present]
        slot = {c: i for i, c in enumerate(present)}
        # combo -> position in self.pairs, as a dense lookup table over all run x name combinations.
        dense = [slot.get(c, -1) for c in range(len(run_list) * width)]
        self.pair_index = pc.take(pa.array(dense, pa.int64()), combo)

    def points(self, series_ids: list[int]) -> pa.Table:
        """The batch as (series_id, step, value, time), ``series_ids`` given in the order of pairs."""
        ids = pc.take(pa.array(series_ids, pa.int32()), self.pair_index)
        t = self.table
        return pa.table({"series_id": ids, "step": t.column("step"), "value": t.column("value"), "time": t.column("time")})
