"""The ERP tables: customers, products, invoices, payments, expenses, stock moves, purchase orders,
forecasts, reports.

A mixin of Store: the methods use its cursor and transactions. Batches arrive checked by
``bi_ide.erp.imports`` (types and row rules); here they are checked against what the store holds
(unknown products, customers, invoices) and written in one transaction, as upserts by natural key.
Rows equal to what is stored are not written again, so re-importing a file changes nothing.
"""

from __future__ import annotations

import json
from contextlib import contextmanager, suppress

import duckdb
import polars as pl

from bi_ide.errors import ValidationError
from bi_ide.store.values import check_text, new_id, to_json

# import table -> (store table, natural key, columns written)
ERP_TABLES = {
    "customers": ("erp_customers", ("code",), ("code", "name", "segment", "terms_days", "currency")),
    "products": ("erp_products", ("sku",), ("sku", "name", "category", "unit_cost", "unit_price", "currency",
                                            "lead_time_days", "order_cost", "holding_rate")),
    "payments": ("erp_payments", ("reference",), ("reference", "invoice", "date", "amount", "currency")),
    "expenses": ("erp_expenses", ("reference",), ("reference", "date", "category", "vendor", "amount", "currency")),
    "stock_moves": ("erp_stock_moves", ("reference",), ("reference", "date", "product", "quantity", "kind",
                                                        "purchase_order")),
    "purchase_orders": ("erp_purchase_orders", ("reference",), ("reference", "date", "supplier", "product", "quantity",
                                                                "unit_cost", "expected_date", "status", "currency")),
    "invoices": ("erp_invoice_lines", ("invoice", "line"), ("invoice", "line", "date", "customer", "product",
                                                           "quantity", "unit_price", "discount", "unit_cost",
                                                           "amount", "currency")),
}
# Which column of an import table must name a row that exists elsewhere: (column, table, key, what).
ERP_REFERENCES = {
    "invoices": (("customer", "erp_customers", "code", "customer"), ("product", "erp_products", "sku", "product")),
    "payments": (("invoice", "erp_invoices", "number", "invoice"),),
    "stock_moves": (("product", "erp_products", "sku", "product"),
                    ("purchase_order", "erp_purchase_orders", "reference", "purchase order line")),
    "purchase_orders": (("product", "erp_products", "sku", "product"),),
}
ERP_DATA_TABLES = ("erp_invoice_lines", "erp_invoices", "erp_payments", "erp_expenses", "erp_stock_moves",
                   "erp_purchase_orders", "erp_forecasts", "erp_forecast_runs", "erp_products", "erp_customers")
MAX_PROBLEMS = 200  # problem rows kept in a rejection report; the count covers all of them


class ImportRejected(ValidationError):
    """A file broke the import rules; nothing of it was written. ``problems`` lists rows and reasons."""

    def __init__(self, source: str, problems: list[dict], rows: int):
        self.problems = problems[:MAX_PROBLEMS]
        self.count = len(problems)
        self.rows = rows
        shown = "; ".join(f"row {p['row']} {p['column']}: {p['reason']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{source} was rejected, nothing was imported: {len(problems)} problem(s) in "
                         f"{len({p['row'] for p in problems})} of {rows} rows: {shown}{more}. "
                         "Fix the file (or the column mapping) and import it again", field="file")

    def report(self) -> dict:
        return {"accepted": False, "rows": self.rows, "problem_count": self.count, "problems": self.problems,
                "message": str(self)}


class ErpTables:
    """Store methods for the ERP tables: customers, products, invoices, payments, expenses, stock, forecasts, reports."""

    # -- imports -----------------------------------------------------------------------------
    def erp_write(self, table: str, batch: pl.DataFrame, *, source: str = "the batch",
                  problems: list[dict] | None = None) -> dict:
        """Upsert a checked batch (``bi_ide.erp.imports`` shapes it) into ``table`` in one transaction.

        Refuses the whole batch (ImportRejected) when ``problems`` (found by the import's checks)
        is not empty or a row names an unknown customer, product or invoice; the report lists both.
        Returns {table, rows, new, changed}; rows equal to the stored ones are left alone.
        """
        if table not in ERP_TABLES:
            raise ValidationError(f"table {table!r} is not one of {sorted(ERP_TABLES)}", field="table")
        with self.transaction() as cur:
            if table == "payments":  # a payment is in its invoice's currency unless the file says otherwise
                batch = _with_invoice_currency(cur, batch)
            elif table == "purchase_orders":  # cost, expected date and currency default to the product's
                batch = _with_product_defaults(cur, batch)
            with _registered(cur, _erp_batch=batch.with_row_index("_row", offset=1).to_arrow()):
                problems = [*(problems or []), *self._erp_unknown_references(cur, table)]
                if table == "stock_moves":
                    problems += self._erp_receipts_off_their_order(cur)
                if problems:
                    raise ImportRejected(source, sorted(problems, key=lambda p: (p["row"], p["column"])),
                                         batch.height)
                counts = (self._erp_write_invoices(cur, batch) if table == "invoices"
                          else self._erp_upsert(cur, *ERP_TABLES[table]))
        return {"table": table, "rows": batch.height, **counts}

    @staticmethod
    def _erp_unknown_references(cur, table: str) -> list[dict]:
        problems = []
        for column, target, key, what in ERP_REFERENCES.get(table, ()):
            rows = cur.execute(  # an optional reference left empty names nothing
                f"SELECT _row, {column} FROM _erp_batch b WHERE {column} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {target} t WHERE t.{key} = b.{column}) ORDER BY _row LIMIT ?", [MAX_PROBLEMS]
            ).fetchall()
            problems += [{"row": r, "column": column, "reason": f"unknown {what} {v!r}; import it first"}
                         for r, v in rows]
        return problems

    @staticmethod
    def _erp_receipts_off_their_order(cur) -> list[dict]:
        """Receipts whose purchase-order line is for another product, or dated before the order."""
        rows = cur.execute(
            "SELECT b._row, o.product, b.date < o.date FROM _erp_batch b JOIN erp_purchase_orders o "
            "ON o.reference = b.purchase_order WHERE b.product <> o.product OR b.date < o.date ORDER BY b._row LIMIT ?",
            [MAX_PROBLEMS]).fetchall()
        return [{"row": r, "column": "purchase_order",
                 "reason": "is dated before its order" if early else f"the order line is for product {product!r}"}
                for r, product, early in rows]

    @staticmethod
    def _erp_upsert(cur, target: str, key: tuple, columns: tuple) -> dict:
        cols = ", ".join(columns)
        on = " AND ".join(f"t.{k} = b.{k}" for k in key)
        differs = f"row({', '.join(f'b.{c}' for c in columns)}) IS DISTINCT FROM row({', '.join(f't.{c}' for c in columns)})"
        (new, changed), = cur.execute(
            f"SELECT count(*) FILTER (WHERE t.{key[0]} IS NULL), count(*) FILTER (WHERE t.{key[0]} IS NOT NULL "
            f"AND {differs}) FROM _erp_batch b LEFT JOIN {target} t ON {on}"
        ).fetchall()
        if new or changed:
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
            cur.execute(
                f"INSERT INTO {target} ({cols}) SELECT {cols} FROM _erp_batch b WHERE NOT EXISTS "
                f"(SELECT 1 FROM {target} t WHERE {on} AND NOT ({differs})) "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
            )
        return {"new": new, "changed": changed}

    @staticmethod
    def _erp_write_invoices(cur, batch: pl.DataFrame) -> dict:
        """Write the invoices that are new or whose lines or header differ from the stored ones.

        unit_cost, currency and due date default to the product's cost, the customer's currency
        and the invoice date + the customer's terms. Bulk imports of new invoices skip every
        comparison: only invoices already stored are compared, line by line.
        """
        lines, heads = _invoice_tables(cur, batch)
        columns = ", ".join(ERP_TABLES["invoices"][2])
        head_columns = "number, customer, date, due_date, total, currency"
        with _registered(cur, _erp_lines=lines.to_arrow(), _erp_heads=heads.to_arrow()):
            known = "invoice IN (SELECT number FROM erp_invoices)"
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _erp_changed AS "
                f"SELECT invoice, true AS new FROM _erp_heads WHERE NOT {known} UNION SELECT invoice, false FROM ("
                f"SELECT invoice FROM (SELECT {columns} FROM _erp_lines WHERE {known} EXCEPT SELECT {columns} "
                "FROM erp_invoice_lines WHERE invoice IN (SELECT invoice FROM _erp_heads)) UNION ALL "
                f"SELECT invoice FROM (SELECT {columns} FROM erp_invoice_lines WHERE invoice IN "
                f"(SELECT invoice FROM _erp_heads) EXCEPT SELECT {columns} FROM _erp_lines WHERE {known}) UNION ALL "
                f"SELECT invoice FROM (SELECT {head_columns.replace('number', 'invoice')} FROM _erp_heads WHERE {known} "
                f"EXCEPT SELECT {head_columns} FROM erp_invoices WHERE number IN (SELECT invoice FROM _erp_heads)))"
            )
            (changed, new), = cur.execute("SELECT count(*), count(*) FILTER (WHERE new) FROM _erp_changed").fetchall()
            everything = changed == heads.height  # a bulk import of new invoices: no filtering
            only = "" if everything else " WHERE invoice IN (SELECT invoice FROM _erp_changed)"
            if changed > new:
                cur.execute("DELETE FROM erp_invoice_lines WHERE invoice IN (SELECT invoice FROM _erp_changed)")
                cur.execute("DELETE FROM erp_invoices WHERE number IN (SELECT invoice FROM _erp_changed)")
            if changed:
                cur.execute(f"INSERT INTO erp_invoice_lines ({columns}) SELECT {columns} FROM _erp_lines{only}")
                cur.execute(f"INSERT INTO erp_invoices ({head_columns}) SELECT "
                            f"{head_columns.replace('number', 'invoice')} FROM _erp_heads{only}")
            cur.execute("DROP TABLE _erp_changed")
        return {"new": new, "changed": changed - new}

    # -- what is there ----------------------------------------------------------------------
    def erp_counts(self) -> dict:
        """Rows per ERP table, by import-table name."""
        names = {"erp_invoices": "invoices", "erp_invoice_lines": "invoice_lines"}
        tables = [t for t in ERP_DATA_TABLES if t not in ("erp_forecasts", "erp_forecast_runs")]
        counts = self._rows(" UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables))
        return {names.get(t, t.removeprefix("erp_")): n for t, n in counts}

    def erp_clear(self) -> dict:
        """Delete every ERP row (the demo business, before importing one's own files); reports stay."""
        counts = self.erp_counts()
        with self.transaction() as cur:
            for table in ERP_DATA_TABLES:
                cur.execute(f"DELETE FROM {table}")
        return counts

    # -- forecasts ----------------------------------------------------------------------------
    def erp_save_forecast(self, rows: pl.DataFrame, *, as_of, horizon: int, level: int,
                          backtest: dict | None = None) -> dict:
        """Store one forecast run: ``rows`` has target, series, month, model, pattern, mean, lo, hi."""
        wanted = ["target", "series", "month", "model", "pattern", "mean", "lo", "hi"]
        missing = sorted(set(wanted) - set(rows.columns))
        if missing:
            raise ValidationError(f"forecast rows lack column(s) {missing}", field=missing[0])
        run_id = new_id()
        series = rows.select(pl.struct("target", "series").n_unique()).item() if rows.height else 0
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO erp_forecast_runs (id, as_of, horizon, level, series, backtest) VALUES (?, ?, ?, ?, ?, ?)",
                [run_id, as_of, horizon, level, series, to_json(backtest)],
            )
            with _registered(cur, _erp_forecast=rows.select(wanted).with_columns(pl.lit(run_id).alias("run_id"))
                             .to_arrow()):
                cur.execute(f"INSERT INTO erp_forecasts (run_id, {', '.join(wanted)}) "
                            f"SELECT run_id, {', '.join(wanted)} FROM _erp_forecast")
        return self.erp_forecast_run(run_id)

    def erp_forecast_run(self, run_id: str | None = None) -> dict | None:
        """A forecast run (the newest when ``run_id`` is None) with its decoded backtest; None if none."""
        df = self.sql("SELECT * FROM erp_forecast_runs WHERE (?::VARCHAR IS NULL OR id = ?) "
                      "ORDER BY created_at DESC, id LIMIT 1", [run_id, run_id])
        if df.is_empty():
            return None
        row = df.row(0, named=True)
        row["backtest"] = json.loads(row["backtest"]) if row["backtest"] else None
        return row

    # -- rendered reports -------------------------------------------------------------------------
    def erp_record_report(self, kind: str, *, as_of, path: str, sha256: str, size_bytes: int,
                          summary: dict | None = None) -> dict:
        """Record a report file written under data/reports/ (the file itself is written by the caller)."""
        check_text("kind", kind, 40)
        check_text("path", path, 4096)
        if len(sha256) != 64:
            raise ValidationError(f"sha256 must be 64 hex digits, got {sha256!r:.80}", field="sha256")
        report_id = new_id()
        with self.transaction() as cur:
            # Rendering the same report again replaces the file, so it replaces the record too.
            cur.execute("DELETE FROM erp_reports WHERE path = ?", [path])
            cur.execute(
                "INSERT INTO erp_reports (id, kind, as_of, path, sha256, size_bytes, summary) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [report_id, kind, as_of, path, sha256, size_bytes, to_json(summary)],
            )
        return self._erp_report(report_id)

    def _erp_report(self, report_id: str) -> dict:
        row = self.sql("SELECT * FROM erp_reports WHERE id = ?", [report_id]).row(0, named=True)
        row["summary"] = json.loads(row["summary"]) if row["summary"] else None
        return row

    def erp_list_reports(self, *, kind: str | None = None, limit: int = 50) -> pl.DataFrame:
        """Recorded reports, newest first."""
        if not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be 1..10000, got {limit}", field="limit")
        return self.sql("SELECT id, kind, as_of, path, sha256, size_bytes, created_at FROM erp_reports "
                        "WHERE (?::VARCHAR IS NULL OR kind = ?) ORDER BY created_at DESC, id LIMIT ?",
                        [kind, kind, limit])


def _invoice_tables(cur, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The batch's lines with their defaults and amounts filled in, and one header row per invoice."""
    products = cur.sql("SELECT sku AS product, unit_cost AS product_cost FROM erp_products").pl()
    customers = cur.sql("SELECT code AS customer, terms_days, currency AS customer_currency "
                            "FROM erp_customers").pl()
    lines = batch.join(products, on="product", how="left").join(customers, on="customer", how="left").select(
        "invoice", "line", "date", "customer", "product", "quantity", "unit_price", "discount",
        pl.coalesce("unit_cost", "product_cost").alias("unit_cost"),
        (pl.col("quantity") * pl.col("unit_price") * (1 - pl.col("discount"))).alias("amount"),
        pl.coalesce("currency", "customer_currency").alias("currency"),
        pl.coalesce("due_date", pl.col("date") + pl.duration(days="terms_days")).alias("due_date"),
    )
    heads = lines.group_by("invoice").agg(pl.col("customer", "date", "due_date").first(),
                                          pl.col("amount").sum().alias("total"), pl.col("currency").first())
    return lines.drop("due_date"), heads


def _with_invoice_currency(cur, batch: pl.DataFrame) -> pl.DataFrame:
    invoices = cur.sql("SELECT number AS invoice, currency AS invoice_currency FROM erp_invoices "
                       "WHERE list_contains(?, number)", params=[batch["invoice"].unique().to_list()]).pl()
    return (batch.join(invoices, on="invoice", how="left", maintain_order="left")
            .with_columns(pl.coalesce("currency", "invoice_currency").alias("currency")).drop("invoice_currency"))


def _with_product_defaults(cur, batch: pl.DataFrame) -> pl.DataFrame:
    """Purchase-order lines with unit_cost, currency and expected_date (date + lead time) from their product."""
    products = cur.sql("SELECT sku AS product, unit_cost AS product_cost, currency AS product_currency, "
                       "lead_time_days FROM erp_products WHERE list_contains(?, sku)",
                       params=[batch["product"].unique().to_list()]).pl()
    return (batch.join(products, on="product", how="left", maintain_order="left")
            .with_columns(pl.coalesce("unit_cost", "product_cost").alias("unit_cost"),
                          pl.coalesce("currency", "product_currency").alias("currency"),
                          pl.coalesce("expected_date", pl.col("date") + pl.duration(days="lead_time_days"))
                          .alias("expected_date"))
            .drop("product_cost", "product_currency", "lead_time_days"))


@contextmanager
def _registered(cur, **tables):
    """Arrow tables visible to SQL under these names while the block runs."""
    for name, table in tables.items():
        cur.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            with suppress(duckdb.Error):  # after a failed statement DuckDB refuses until the rollback
                cur.unregister(name)
