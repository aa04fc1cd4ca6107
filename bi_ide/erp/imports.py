"""Import CSV, Parquet and Excel files into the ERP tables, all rows or none.

A file is read with polars, its columns renamed by a mapping (``{"quantity": "Qty"}``: our name
from theirs), cast to the table's types and checked row by row: values that are not dates or
numbers, missing values, zero or negative quantities, duplicate keys, invoice numbers reused for
another invoice, and totals that don't add up. Any problem rejects the whole file with a report
of the rows and reasons (``ImportRejected``), together with the rows naming unknown products,
customers or invoices, which the store finds before it upserts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from bi_ide.errors import ValidationError
from bi_ide.store.erp import ERP_TABLES

FORMATS = ("csv", "parquet", "xlsx")
TOLERANCE = 0.01  # money: totals may differ from the recomputed ones by this much (rounding to cents)
MAX_TEXT = 200


@dataclass(frozen=True)
class Column:
    name: str
    dtype: type[pl.DataType] | pl.DataType
    required: bool = True
    default: object = None


TEXT, MONEY, DATE, INT = pl.String, pl.Float64, pl.Date, pl.Int32
# The columns each import table takes, in order; optional ones get their default (None: filled in by
# the store from the product or customer, e.g. an invoice line's unit_cost and due date).
COLUMNS = {
    "customers": (Column("code", TEXT), Column("name", TEXT), Column("segment", TEXT, False),
                  Column("terms_days", INT, False, 30), Column("currency", TEXT, False, "USD")),
    "products": (Column("sku", TEXT), Column("name", TEXT), Column("category", TEXT), Column("unit_cost", MONEY),
                 Column("unit_price", MONEY), Column("currency", TEXT, False, "USD"),
                 Column("lead_time_days", INT, False, 14), Column("order_cost", MONEY, False, 50.0),
                 Column("holding_rate", MONEY, False, 0.25)),
    "invoices": (Column("invoice", TEXT), Column("line", INT, False), Column("date", DATE),
                 Column("due_date", DATE, False), Column("customer", TEXT), Column("product", TEXT),
                 Column("quantity", MONEY), Column("unit_price", MONEY), Column("discount", MONEY, False, 0.0),
                 Column("unit_cost", MONEY, False), Column("currency", TEXT, False),
                 Column("line_total", MONEY, False), Column("invoice_total", MONEY, False)),
    "payments": (Column("reference", TEXT), Column("invoice", TEXT), Column("date", DATE), Column("amount", MONEY),
                 Column("currency", TEXT, False)),
    "expenses": (Column("reference", TEXT), Column("date", DATE), Column("category", TEXT), Column("vendor", TEXT),
                 Column("amount", MONEY), Column("currency", TEXT, False, "USD")),
    "stock_moves": (Column("reference", TEXT), Column("date", DATE), Column("product", TEXT),
                    Column("quantity", MONEY), Column("kind", TEXT, False, "receipt"),
                    Column("purchase_order", TEXT, False)),
    "purchase_orders": (Column("reference", TEXT), Column("date", DATE), Column("supplier", TEXT),
                        Column("product", TEXT), Column("quantity", MONEY), Column("unit_cost", MONEY, False),
                        Column("expected_date", DATE, False), Column("status", TEXT, False, "open"),
                        Column("currency", TEXT, False)),
}
# Row rules: (column, polars condition that is true for a bad row, reason).
RULES = {
    "customers": (("terms_days", ~pl.col("terms_days").is_between(0, 365), "payment terms must be 0..365 days"),),
    "products": (("unit_cost", pl.col("unit_cost") < 0, "must not be negative"),
                 ("unit_price", pl.col("unit_price") < 0, "must not be negative"),
                 ("lead_time_days", ~pl.col("lead_time_days").is_between(0, 365), "must be 0..365 days"),
                 ("order_cost", pl.col("order_cost") < 0, "must not be negative"),
                 ("holding_rate", pl.col("holding_rate") <= 0, "must be > 0 (a share of unit cost per year)")),
    "invoices": (("quantity", pl.col("quantity") <= 0, "must be > 0 (returns are credit notes, not lines)"),
                 ("unit_price", pl.col("unit_price") < 0, "must not be negative"),
                 ("unit_cost", pl.col("unit_cost") < 0, "must not be negative"),
                 ("discount", ~pl.col("discount").is_between(0, 1, closed="left"), "must be a share in [0, 1)"),
                 ("line", pl.col("line") < 1, "must be >= 1"),
                 ("due_date", pl.col("due_date") < pl.col("date"), "is before the invoice date")),
    "payments": (("amount", pl.col("amount") <= 0, "must be > 0"),),
    "expenses": (("amount", pl.col("amount") <= 0, "must be > 0"),),
    "stock_moves": (("quantity", pl.col("quantity") == 0, "must not be 0"),
                    ("kind", ~pl.col("kind").is_in(["receipt", "adjustment"]), "must be receipt or adjustment"),
                    ("quantity", (pl.col("kind") == "receipt") & (pl.col("quantity") < 0),
                     "a receipt must be > 0 (use an adjustment to remove stock)"),
                    ("purchase_order", pl.col("purchase_order").is_not_null() & (pl.col("kind") != "receipt"),
                     "only a receipt fills a purchase order")),
    "purchase_orders": (("quantity", pl.col("quantity") <= 0, "must be > 0"),
                        ("unit_cost", pl.col("unit_cost") < 0, "must not be negative"),
                        ("expected_date", pl.col("expected_date") < pl.col("date"), "is before the order date"),
                        ("status", ~pl.col("status").is_in(["open", "closed"]), "must be open or closed")),
}


def read_file(source: str | Path | bytes, fmt: str | None = None, *, name: str = "the file") -> pl.DataFrame:
    """The file as a DataFrame (CSV read as text, to be cast and checked column by column)."""
    if fmt is None:
        if isinstance(source, bytes):
            raise ValidationError(f"say which format {name} is: one of {list(FORMATS)}", field="format")
        suffix = Path(source).suffix.lower().lstrip(".")
        fmt = {"xls": "xlsx"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ValidationError(f"cannot import {name}: format {fmt!r} is not one of {list(FORMATS)}", field="format")
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        if fmt == "csv":
            return pl.read_csv(data, infer_schema=False)
        if fmt == "parquet":
            return pl.read_parquet(data)
        return pl.read_excel(data, engine="calamine")
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise ValidationError(f"cannot read {name} as {fmt}: {e}", field="file") from e


def prepare(frame: pl.DataFrame, table: str, mapping: dict[str, str] | None = None, *,
            source: str = "the file", date_format: str | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """Rename, cast and check ``frame`` for ``table``: the typed batch and its problems (rows, reasons).

    A file without a required column, or a mapping that names unknown columns, is a ValidationError.
    """
    if table not in COLUMNS:
        raise ValidationError(f"table {table!r} is not one of {sorted(COLUMNS)}", field="table")
    frame = _rename(frame, table, mapping or {}, source)
    typed, problems = _cast(frame, table, date_format)
    problems += _row_rules(typed, table)
    if table == "invoices":
        grouped = _grouped(typed)
        problems += _invoice_rules(typed, grouped)
        typed = _number_lines(typed, grouped).drop("line_total", "invoice_total")
    else:
        problems += _duplicates(typed, ERP_TABLES[table][1])
    return typed, problems


def import_file(store, source: str | Path | bytes, table: str, mapping: dict[str, str] | None = None, *,
                fmt: str | None = None, date_format: str | None = None, name: str | None = None) -> dict:
    """Read, check and write one file; returns {table, rows, new, changed}. Nothing is written on a problem."""
    name = name or (Path(source).name if not isinstance(source, bytes) else "the upload")
    if not hasattr(store, "erp_write"):  # a HubClient: the hub reads and checks the file
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        fmt = fmt or Path(name).suffix.lower().lstrip(".")
        return store.erp_import(data, table, mapping, fmt=fmt, date_format=date_format, name=name)
    batch, problems = prepare(read_file(source, fmt, name=name), table, mapping, source=name, date_format=date_format)
    return store.erp_write(table, batch, source=name, problems=problems)


def parse_mapping(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["quantity=Qty", ...]`` (our column = the file's column) as a dict."""
    mapping = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValidationError(f"a column mapping is OURS=THEIRS (e.g. quantity=Qty), got {pair!r}", field="map")
        mapping[ours.strip()] = theirs.strip()
    return mapping


# -- the steps ----------------------------------------------------------------------------------------
def _rename(frame: pl.DataFrame, table: str, mapping: dict[str, str], source: str) -> pl.DataFrame:
    known = {c.name for c in COLUMNS[table]}
    wrong = sorted(set(mapping) - known)
    if wrong:
        raise ValidationError(f"the mapping names {wrong}, which {table} does not have; its columns: "
                              f"{[c.name for c in COLUMNS[table]]}", field="map")
    absent = sorted(theirs for theirs in mapping.values() if theirs not in frame.columns)
    if absent:
        raise ValidationError(f"the mapping names column(s) {absent} that {source} does not have; it has "
                              f"{frame.columns[:30]}", field="map")
    theirs_to_ours = {theirs: ours for ours, theirs in mapping.items()}
    frame = frame.select([pl.col(c).alias(theirs_to_ours.get(c, c)) for c in frame.columns
                          if theirs_to_ours.get(c, c) in known])
    missing = [c.name for c in COLUMNS[table] if c.required and c.name not in frame.columns]
    if missing:
        raise ValidationError(f"{source} has no column(s) {missing} for {table}; map yours with "
                              f"--map {missing[0]}=<your column>", field=missing[0])
    return frame


def _cast(frame: pl.DataFrame, table: str, date_format: str | None) -> tuple[pl.DataFrame, list[dict]]:
    """Every column of the table in its type; a value that does not convert is a problem."""
    exprs, problems = [], []
    for col in COLUMNS[table]:
        if col.name not in frame.columns:
            exprs.append(pl.lit(col.default, dtype=col.dtype).alias(col.name))
            continue
        raw = frame.get_column(col.name)
        if raw.dtype == pl.String:
            raw = raw.str.strip_chars().replace("", None)
        typed = _convert(raw, col.dtype, date_format)
        filled = typed if col.default is None else typed.fill_null(col.default)
        bad = raw.is_not_null() & typed.is_null()
        problems += _problems(bad, col.name, f"is not {_what(col.dtype)}", raw)
        if col.required:
            problems += _problems(raw.is_null(), col.name, "is missing", raw)
        if col.dtype == pl.String:
            problems += _problems(filled.str.len_chars() > MAX_TEXT, col.name, f"is over {MAX_TEXT} characters", raw)
        exprs.append(filled.alias(col.name))
    return frame.select(exprs), problems


def _convert(raw: pl.Series, dtype, date_format: str | None) -> pl.Series:
    if dtype == pl.Date and raw.dtype == pl.String:
        return raw.str.to_date(date_format, strict=False)
    if dtype == pl.Date and raw.dtype == pl.Datetime:
        return raw.dt.date()
    if dtype == pl.Int32 and raw.dtype == pl.String:
        raw = raw.str.replace_all(",", "").cast(pl.Float64, strict=False)
    if dtype == pl.Int32 and raw.dtype.is_float():
        whole = pl.when(pl.col("v") == pl.col("v").round()).then(pl.col("v").cast(pl.Int32, strict=False))
        return pl.DataFrame({"v": raw}).select(whole).to_series()
    if dtype == pl.Float64 and raw.dtype == pl.String:
        return raw.str.replace_all(",", "").cast(pl.Float64, strict=False)
    return raw.cast(dtype, strict=False)


def _what(dtype) -> str:
    return {pl.Date: "a date (YYYY-MM-DD, or give --date-format)", pl.Int32: "a whole number",
            pl.Float64: "a number"}.get(dtype, "text")


def _problems(bad: pl.Series, column: str, reason: str, values: pl.Series | None = None) -> list[dict]:
    rows = bad.fill_null(False).arg_true()
    shown = values.gather(rows).to_list() if values is not None else [None] * len(rows)
    return [{"row": int(r) + 1, "column": column,
             "reason": reason if v is None else f"{reason}: {repr(v) if isinstance(v, str) else v}"[:len(reason) + 62]}
            for r, v in zip(rows.to_list(), shown, strict=True)]


def _row_rules(typed: pl.DataFrame, table: str) -> list[dict]:
    problems = []
    for column, bad, reason in RULES.get(table, ()):
        flags = typed.select(bad.fill_null(False)).to_series()
        problems += _problems(flags, column, reason, typed.get_column(column))
    return problems


def _duplicates(typed: pl.DataFrame, key: tuple[str, ...]) -> list[dict]:
    dup = typed.select(pl.struct(key).is_duplicated()).to_series() & typed.select(
        pl.all_horizontal(pl.col(key).is_not_null())).to_series()
    return _problems(dup, key[0], f"duplicate {'/'.join(key)} in the file", typed.get_column(key[0]))


def _invoice_rules(typed: pl.DataFrame, grouped: bool) -> list[dict]:
    """One invoice number is one invoice; line and invoice totals add up when the file gives them.

    ``grouped``: each invoice's lines are together in the file, so comparing a line with the one
    before it finds an invoice number that names two invoices, without hashing every row.
    """
    header = ("date", "customer", "due_date", "currency")
    if grouped:
        invoice = pl.col("invoice")
        same = invoice == invoice.shift(1)
        differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in header)
        reused = typed.filter(same.fill_null(False) & differs)["invoice"].unique()
    else:
        reused = typed.select("invoice", *header).unique().group_by("invoice").len().filter(pl.col("len") > 1)["invoice"]
    problems = _problems(typed.get_column("invoice").is_in(reused.implode()), "invoice", "duplicate invoice "
                         "number: the same number has another date, customer, due date or currency",
                         typed.get_column("invoice"))
    if typed.get_column("line").is_not_null().any():
        problems += _duplicates(typed, ("invoice", "line"))
    amount = pl.col("quantity") * pl.col("unit_price") * (1 - pl.col("discount"))
    totals = (("line_total", amount, "does not equal quantity × unit_price × (1 − discount)"),
              ("invoice_total", amount.sum().over("invoice"), "does not equal the sum of the invoice's lines"))
    for column, computed, reason in totals:
        if typed.get_column(column).is_null().all():  # the file has no such column: nothing to check
            continue
        off = (pl.col(column) - computed).abs() > TOLERANCE + 1e-9 * computed.abs()
        problems += _problems(typed.select(off.fill_null(False)).to_series(), column, reason, typed.get_column(column))
    return problems


def _run_starts() -> pl.Expr:
    """True on each row whose invoice differs from the row before (the start of a run of lines)."""
    return (pl.col("invoice") != pl.col("invoice").shift(1)).fill_null(True)


def _grouped(typed: pl.DataFrame) -> bool:
    """Whether each invoice's lines are next to each other: no invoice starts two runs."""
    return typed.filter(_run_starts()).get_column("invoice").is_unique().all()


def _number_lines(typed: pl.DataFrame, grouped: bool) -> pl.DataFrame:
    """Lines without a number are numbered 1, 2, ... within their invoice in file order."""
    if typed.get_column("line").is_not_null().all():
        return typed
    if grouped:  # count from each run's start, without grouping
        row = pl.int_range(pl.len(), dtype=pl.Int32)
        number = row - pl.when(_run_starts()).then(row).forward_fill() + 1
    else:
        number = pl.col("invoice").cum_count().over("invoice").cast(pl.Int32)
    return typed.with_columns(pl.coalesce("line", number).alias("line"))


def import_frame(store, frame: pl.DataFrame, table: str, *, name: str = "the batch") -> dict:
    """Check and write a DataFrame as if it were a file (a HubClient sends it to the hub as Parquet)."""
    if not hasattr(store, "erp_write"):
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return store.erp_import(buffer.getvalue(), table, None, fmt="parquet", name=name)
    batch, problems = prepare(frame, table, source=name)
    return store.erp_write(table, batch, source=name, problems=problems)
