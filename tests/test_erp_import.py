"""Importing ERP files: the bad-file matrix (nothing imported), idempotent re-imports, formats, mappings."""

from __future__ import annotations

import polars as pl
import pytest

from bi_ide.erp.imports import import_file, import_frame, parse_mapping, read_file
from bi_ide.errors import ValidationError
from bi_ide.store.erp import ImportRejected

MASTER = {
    "customers": pl.DataFrame({"code": ["C1", "C2"], "name": ["Acme", "شركة الواحة"], "terms_days": [30, 45]}),
    "products": pl.DataFrame({"sku": ["P1", "P2"], "name": ["Widget", "تمر سكري"], "category": ["A", "Dates"],
                              "unit_cost": [2.0, 30.0], "unit_price": [5.0, 55.0]}),
}
# An invoice file as an ERP exports it: its own column names, two invoices, totals given.
GOOD = pl.DataFrame({
    "InvoiceNo": ["INV-1", "INV-1", "INV-2"], "Date": ["2024-01-10", "2024-01-10", "2024-02-01"],
    "Customer": ["C1", "C1", "C2"], "Item": ["P1", "P2", "P1"], "Qty": ["2", "1", "10"],
    "Price": ["5", "55", "5"], "Disc": ["0", "0.1", "0"], "LineTotal": ["10", "49.5", "50"],
    "InvoiceTotal": ["59.5", "59.5", "50"],
})
MAPPING = {"invoice": "InvoiceNo", "date": "Date", "customer": "Customer", "product": "Item", "quantity": "Qty",
           "unit_price": "Price", "discount": "Disc", "line_total": "LineTotal", "invoice_total": "InvoiceTotal"}


@pytest.fixture
def master(store):
    for table, frame in MASTER.items():
        import_frame(store, frame, table)
    return store


def write(frame: pl.DataFrame, path) -> str:
    if path.suffix == ".csv":
        frame.write_csv(path)
    elif path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_excel(path)
    return str(path)


def snapshot(store) -> dict:
    return {t: store.sql(f"SELECT * FROM erp_{t} ORDER BY ALL").to_dicts()
            for t in ("invoices", "invoice_lines", "customers", "products", "payments")}


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_good_file_imports_once_and_again_changes_nothing(master, tmp_path, suffix):
    path = write(GOOD, tmp_path / f"sales{suffix}")
    first = import_file(master, path, "invoices", MAPPING)
    assert (first["rows"], first["new"], first["changed"]) == (3, 2, 0)
    lines = master.sql("SELECT invoice, line, amount, unit_cost, currency FROM erp_invoice_lines ORDER BY ALL")
    assert lines.rows() == [("INV-1", 1, 10.0, 2.0, "USD"), ("INV-1", 2, 49.5, 30.0, "USD"),
                            ("INV-2", 1, 50.0, 2.0, "USD")]  # cost and currency from the product / customer
    header = master.sql("SELECT total, due_date::VARCHAR AS due FROM erp_invoices ORDER BY number").rows()
    assert header == [(59.5, "2024-02-09"), (50.0, "2024-03-17")]  # due after the customer's terms
    before = snapshot(master)
    again = import_file(master, path, "invoices", MAPPING)
    assert (again["new"], again["changed"]) == (0, 0)
    assert snapshot(master) == before


def test_changed_invoice_replaces_its_lines(master, tmp_path):
    import_file(master, write(GOOD, tmp_path / "a.csv"), "invoices", MAPPING)
    edited = GOOD.with_columns(pl.when(pl.col("InvoiceNo") == "INV-2").then(pl.lit("12")).otherwise("Qty").alias("Qty"),
                               pl.when(pl.col("InvoiceNo") == "INV-2").then(pl.lit("60")).otherwise("LineTotal")
                               .alias("LineTotal"),
                               pl.when(pl.col("InvoiceNo") == "INV-2").then(pl.lit("60")).otherwise("InvoiceTotal")
                               .alias("InvoiceTotal")).head(3)
    result = import_file(master, write(edited, tmp_path / "b.csv"), "invoices", MAPPING)
    assert (result["new"], result["changed"]) == (0, 1)
    assert master.sql("SELECT total FROM erp_invoices WHERE number = 'INV-2'").item() == 60
    assert master.sql("SELECT count(*) AS n FROM erp_invoice_lines").item() == 3


BAD_CASES = {
    "not a date": ({"Date": ["2024-01-10", "2024-02-30", "2024-02-01"]}, 2, "date", "is not a date"),
    "zero quantity": ({"Qty": ["2", "0", "10"], "LineTotal": ["10", "0", "50"], "InvoiceTotal": ["10", "10", "50"]},
                      2, "quantity", "must be > 0"),
    "negative quantity": ({"Qty": ["2", "1", "-10"], "LineTotal": ["10", "49.5", "-50"],
                           "InvoiceTotal": ["59.5", "59.5", "-50"]}, 3, "quantity", "must be > 0"),
    "not a number": ({"Price": ["5", "5x", "5"]}, 2, "unit_price", "is not a number"),
    "missing value": ({"Customer": ["C1", "C1", ""]}, 3, "customer", "is missing"),
    "unknown product": ({"Item": ["P1", "P9", "P1"]}, 2, "product", "unknown product 'P9'"),
    "unknown customer": ({"Customer": ["C1", "C1", "C7"]}, 3, "customer", "unknown customer 'C7'"),
    "duplicate invoice number": ({"InvoiceNo": ["INV-1", "INV-1", "INV-1"], "InvoiceTotal": ["109.5"] * 3},
                                 3, "invoice", "duplicate invoice number"),
    "line total off": ({"LineTotal": ["10", "55", "50"]}, 2, "line_total", "does not equal quantity"),
    "invoice total off": ({"InvoiceTotal": ["59.5", "59.5", "51"]}, 3, "invoice_total", "sum of the invoice"),
    "discount out of range": ({"Disc": ["0", "1.5", "0"]}, 2, "discount", "share in [0, 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_is_rejected_whole_with_rows_and_reasons(master, tmp_path, case):
    changes, row, column, reason = BAD_CASES[case]
    bad = GOOD.with_columns(*(pl.Series(name, values) for name, values in changes.items()))
    before = snapshot(master)
    with pytest.raises(ImportRejected) as caught:
        import_file(master, write(bad, tmp_path / "bad.csv"), "invoices", MAPPING)
    problems = caught.value.problems
    assert any(p["row"] == row and p["column"] == column and reason in p["reason"] for p in problems), problems
    assert "nothing was imported" in str(caught.value) and "bad.csv" in str(caught.value)
    assert snapshot(master) == before  # the good rows of the bad file are not imported either


def test_one_report_lists_every_problem(master, tmp_path):
    bad = GOOD.with_columns(pl.Series("Date", ["2024-01-10", "2024-01-10", "soon"]),
                            pl.Series("Item", ["P1", "P9", "P1"]))
    with pytest.raises(ImportRejected) as caught:
        import_file(master, write(bad, tmp_path / "bad.csv"), "invoices", MAPPING)
    assert {(p["row"], p["column"]) for p in caught.value.problems} == {(2, "product"), (3, "date")}
    assert caught.value.report()["problem_count"] == 2


@pytest.mark.parametrize(("table", "frame", "column", "reason"), [
    ("customers", pl.DataFrame({"code": ["C1", "C1"], "name": ["a", "b"]}), "code", "duplicate code"),
    ("products", pl.DataFrame({"sku": ["X"], "name": ["x"], "category": ["c"], "unit_cost": [-1.0],
                               "unit_price": [1.0]}), "unit_cost", "must not be negative"),
    ("payments", pl.DataFrame({"reference": ["R1"], "invoice": ["NOPE"], "date": ["2024-01-01"], "amount": [5.0]}),
     "invoice", "unknown invoice"),
    ("payments", pl.DataFrame({"reference": ["R1"], "invoice": ["INV-1"], "date": ["2024-01-01"], "amount": [0.0]}),
     "amount", "must be > 0"),
    ("stock_moves", pl.DataFrame({"reference": ["M1"], "date": ["2024-01-01"], "product": ["P1"], "quantity": [-3.0]}),
     "quantity", "a receipt must be > 0"),
])
def test_other_tables_rules(master, table, frame, column, reason):
    with pytest.raises(ImportRejected) as caught:
        import_frame(master, frame, table)
    assert any(p["column"] == column and reason in p["reason"] for p in caught.value.problems), caught.value.problems


ORDERS = pl.DataFrame({"reference": ["PO-1/1", "PO-1/2"], "date": ["2024-03-01", "2024-03-01"],
                       "supplier": ["مزارع القصيم", "Acme Supply"], "product": ["P2", "P1"], "quantity": ["100", "40"],
                       "unit_cost": [None, "1.8"], "expected_date": [None, "2024-03-05"]})


def test_purchase_orders_take_the_products_defaults_and_receipts_fill_them(master):
    assert import_frame(master, ORDERS, "purchase_orders")["new"] == 2
    rows = master.sql("SELECT reference, unit_cost, expected_date::VARCHAR, status, currency FROM erp_purchase_orders "
                      "ORDER BY reference").rows()  # P2's cost, and the order date + its 14-day lead time
    assert rows == [("PO-1/1", 30.0, "2024-03-15", "open", "USD"), ("PO-1/2", 1.8, "2024-03-05", "open", "USD")]
    receipt = pl.DataFrame({"reference": ["RC-1"], "date": ["2024-03-16"], "product": ["P2"], "quantity": [60.0],
                            "purchase_order": ["PO-1/1"]})
    assert import_frame(master, receipt, "stock_moves")["new"] == 1
    assert import_frame(master, ORDERS, "purchase_orders") == {"table": "purchase_orders", "rows": 2, "new": 0,
                                                                "changed": 0}


@pytest.mark.parametrize(("table", "frame", "column", "reason"), [
    ("purchase_orders", ORDERS.with_columns(pl.lit("0").alias("quantity")), "quantity", "must be > 0"),
    ("purchase_orders", ORDERS.with_columns(pl.lit("2024-02-01").alias("expected_date")), "expected_date",
     "before the order date"),
    ("purchase_orders", ORDERS.with_columns(pl.lit("cancelled").alias("status")), "status", "open or closed"),
    ("purchase_orders", ORDERS.with_columns(pl.lit("NOPE").alias("product")), "product", "unknown product"),
    ("stock_moves", pl.DataFrame({"reference": ["M1"], "date": ["2024-03-20"], "product": ["P1"], "quantity": [5.0],
                                  "purchase_order": ["PO-9/9"]}), "purchase_order", "unknown purchase order line"),
    ("stock_moves", pl.DataFrame({"reference": ["M1"], "date": ["2024-03-20"], "product": ["P1"], "quantity": [5.0],
                                  "purchase_order": ["PO-1/1"]}), "purchase_order", "for product 'P2'"),
    ("stock_moves", pl.DataFrame({"reference": ["M1"], "date": ["2024-02-20"], "product": ["P2"], "quantity": [5.0],
                                  "purchase_order": ["PO-1/1"]}), "purchase_order", "dated before its order"),
    ("stock_moves", pl.DataFrame({"reference": ["M1"], "date": ["2024-03-20"], "product": ["P2"], "quantity": [-5.0],
                                  "kind": ["adjustment"], "purchase_order": ["PO-1/1"]}), "purchase_order",
     "only a receipt"),
])
def test_purchase_order_rules(master, table, frame, column, reason):
    import_frame(master, ORDERS, "purchase_orders")
    before = master.erp_counts()
    with pytest.raises(ImportRejected) as caught:
        import_frame(master, frame, table)
    assert any(p["column"] == column and reason in p["reason"] for p in caught.value.problems), caught.value.problems
    assert master.erp_counts() == before


def test_missing_column_and_bad_mapping_say_what_to_do(master, tmp_path):
    path = write(GOOD, tmp_path / "sales.csv")
    with pytest.raises(ValidationError, match="--map invoice=<your column>"):
        import_file(master, path, "invoices")
    with pytest.raises(ValidationError, match="does not have"):
        import_file(master, path, "invoices", {**MAPPING, "quantity": "Quantity"})
    with pytest.raises(ValidationError, match="OURS=THEIRS"):
        parse_mapping(["quantity"])
    with pytest.raises(ValidationError, match="format 'txt'"):
        read_file(tmp_path / "sales.txt")


def test_pizzaplace_orders_import_as_invoices(store, tmp_path):
    """great_tables' pizzaplace: 49,574 real-shaped order lines of one year, imported with a mapping."""
    data = pytest.importorskip("great_tables.data")
    orders = pl.from_pandas(data.pizzaplace).with_columns(pl.format("{}_{}", "name", "size").alias("sku"))
    products = orders.group_by("sku").agg(pl.col("name").first(), pl.col("type").first().alias("category"),
                                          pl.col("price").max().alias("unit_price"))
    import_frame(store, products.with_columns((pl.col("unit_price") * 0.35).round(2).alias("unit_cost")), "products")
    import_frame(store, pl.DataFrame({"code": ["WALK-IN"], "name": ["Walk-in customer"], "terms_days": [0]}),
                 "customers")
    path = write(orders.with_columns(pl.lit("WALK-IN").alias("customer"), pl.lit(1).alias("qty")),
                 tmp_path / "pizzaplace.parquet")
    mapping = {"invoice": "id", "product": "sku", "quantity": "qty", "unit_price": "price"}
    result = import_file(store, path, "invoices", mapping)
    assert (result["rows"], result["new"]) == (orders.height, orders["id"].n_unique())
    revenue = store.sql("SELECT sum(amount) AS r FROM erp_invoice_lines").item()
    assert revenue == pytest.approx(orders["price"].sum())
    assert import_file(store, path, "invoices", mapping)["new"] == 0


@pytest.mark.parametrize("order", [[0, 1, 2], [0, 2, 1]], ids=["grouped", "interleaved"])
def test_lines_are_numbered_and_reused_numbers_found_in_any_order(master, order):
    lines = pl.DataFrame({"invoice": ["A", "A", "B"], "date": ["2024-01-01"] * 3, "customer": ["C1", "C1", "C2"],
                          "product": ["P1", "P2", "P1"], "quantity": [1, 2, 3], "unit_price": [5.0] * 3})[order]
    import_frame(master, lines, "invoices")
    got = master.sql("SELECT invoice, line, product FROM erp_invoice_lines ORDER BY ALL").rows()
    assert got == [("A", 1, "P1"), ("A", 2, "P2"), ("B", 1, "P1")]
    clash = lines.with_columns(pl.when(pl.col("product") == "P2").then(pl.lit("2024-01-02")).otherwise("date")
                               .alias("date"))
    with pytest.raises(ImportRejected) as caught:
        import_frame(master, clash, "invoices")
    assert {p["column"] for p in caught.value.problems} == {"invoice"} and len(caught.value.problems) == 2
