"""`bi-ide erp`: demo, import with its rejection report, reports, forecast, clear; and bench/erp.py --quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from bi_ide.erp.cli import erp

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(erp, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture
def db(tmp_db) -> str:
    run("demo", "--months", "14", "--seed", "2", "--end", "2026-10-31", "--db", str(tmp_db))
    return str(tmp_db)


def test_demo_refuses_a_second_time_unless_if_empty(db):
    assert "already holds ERP data" in run("demo", "--db", db, ok=False).output
    assert "was not loaded" in run("demo", "--if-empty", "--db", db).output


def test_reports_print_and_list(db):
    listed = run("report").output
    assert "monthly_sales" in listed and "stock_status" in listed and "reorder_recommendations" in listed
    kpis = json.loads(run("report", "kpis", "-p", "as_of=2026-10-31", "--json", "--db", db).output)
    assert kpis["currency"] == "SAR" and kpis["as_of"] == "2026-10-31"
    table = run("report", "monthly_sales", "-p", "category=Dates", "--db", db).output
    assert "| month" in table and "2026-10-01" in table
    assert "must be date" in run("report", "ar_aging", "-p", "as_of=soon", "--db", db, ok=False).output


def test_import_prints_rows_and_reasons_and_exits_1(db, tmp_path):
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"Nr": ["Z1"], "date": ["2026-13-01"], "customer": ["C001"], "product": ["COF-ARB"],
                  "quantity": [-2], "unit_price": [1.0]}).write_csv(bad)
    result = run("import", str(bad), "--table", "invoices", "--map", "invoice=Nr", "--db", db, ok=False)
    assert "row       1  date" in result.output and "row       1  quantity" in result.output
    assert "nothing was imported" in result.output
    report = json.loads(run("import", str(bad), "--table", "invoices", "--map", "invoice=Nr", "--json", "--db", db,
                            ok=False).output.splitlines()[0])
    assert report["accepted"] is False and report["problem_count"] == 2
    good = tmp_path / "good.csv"
    pl.DataFrame({"Nr": ["Z1"], "date": ["2026-11-01"], "customer": ["C001"], "product": ["COF-ARB"],
                  "quantity": [2], "unit_price": [1.0]}).write_csv(good)
    assert "1 rows read, 1 new, 0 changed" in run("import", str(good), "--table", "invoices", "--map", "invoice=Nr",
                                                   "--db", db).output
    assert "0 new, 0 changed" in run("import", str(good), "--table", "invoices", "--map", "invoice=Nr", "--db", db).output


def test_forecast_status_and_clear(db):
    out = run("forecast", "--horizon", "2", "--db", db).output
    assert "backtest quantity MASE" in out and "seasonal naive" in out
    assert "forecast " in run("status", "--db", db).output
    assert "--yes" in run("clear", "--db", db, ok=False).output
    assert "deleted:" in run("clear", "--yes", "--db", db).output
    assert "invoice_lines  0" in run("status", "--db", db).output


@pytest.mark.slow
def test_quick_bench_ends_with_figures(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "erp.py"), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["quick"] is True and figures["lines"] == 20_000 and figures["forecast_products"] == 40
    assert figures["import_rows_per_s"] > 0 and figures["trend_plus_margin_s"] > 0
    assert figures["mase"] > 0 and figures["naive_mase"] > 0
