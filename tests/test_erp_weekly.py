"""The weekly predictive report: the notebook through papermill, the pipeline, the page it writes."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import papermill
import polars as pl
import pytest

from bi_ide.erp import weekly
from bi_ide.erp.demo import load_demo
from bi_ide.pipelines import load_pipeline, run_pipeline
from bi_ide.pipelines.runner import StoreFile
from bi_ide.store import Store

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "notebooks" / "04-erp-weekly-report.ipynb"
AS_OF = date(2025, 12, 31)


def test_notebook_parameters_feed_write_report():
    params = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(params) == {"as_of", "horizon", "demo_months", "demo_seed", "reports_dir", "db_path"}
    assert params["horizon"]["inferred_type_name"] == "int" and params["as_of"]["default"] == '"2026-10-31"'


@pytest.mark.slow
def test_notebook_through_papermill_writes_and_records_the_report(tmp_path, tmp_db):
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, parameters={
        "as_of": AS_OF.isoformat(), "horizon": 3, "demo_months": 15, "demo_seed": 3, "reports_dir": str(tmp_path)})
    page = tmp_path / "erp-weekly-2025-12-31.html"
    body = page.read_text()
    assert "Weekly business report" in body and "Sales forecast with its interval" in body
    assert "تمر" in body or "قهوة" in body  # Arabic product names in the tables, as they are
    assert "cdn.bokeh.org" not in body  # the page opens offline
    with Store(tmp_db, read_only=True) as store:
        (record,) = store.erp_list_reports().to_dicts()
        assert record["path"] == str(page) and record["as_of"] == AS_OF
        assert record["sha256"] == hashlib.sha256(page.read_bytes()).hexdigest()
        assert store.erp_forecast_run()["horizon"] == 3


@pytest.mark.slow
def test_weekly_pipeline_reports_on_the_stores_own_data(tmp_path, tmp_db):
    with Store(tmp_db) as store:
        load_demo(store, months=14, seed=2, end=AS_OF)
    spec = load_pipeline("weekly-erp", ROOT)
    run = run_pipeline(spec, {"horizon": 2, "reports_dir": str(tmp_path)}, StoreFile(tmp_db),
                       archive_root=tmp_path / "runs")
    assert run["status"] == "done", run
    assert (tmp_path / "erp-weekly-2025-12-31.html").is_file()  # as_of empty: the last invoice's date


def test_rendering_the_same_week_again_replaces_file_and_record(store, tmp_path):
    load_demo(store, months=14, seed=2, end=AS_OF)
    first = weekly.write_report(store, as_of=AS_OF, horizon=2, folder=tmp_path)
    second = weekly.write_report(store, as_of=AS_OF, horizon=2, forecast=False, folder=tmp_path)
    assert first["path"] == second["path"] and store.erp_list_reports()["id"].to_list() == [second["id"]]
    assert [p.name for p in tmp_path.iterdir()] == ["erp-weekly-2025-12-31.html"]  # no temporary file left
    assert second["summary"]["orders_to_place"] == weekly.forecasts.reorder_recommendations(store, as_of=AS_OF).height
    late = weekly.reports.open_purchase_orders(store, as_of=AS_OF).filter(pl.col("days_late") > 0)
    assert second["summary"]["late_supplier_orders"] == late.height
    body = Path(second["path"]).read_text()
    assert "<h2>Late supplier orders</h2>" in body and "<th>on_order</th>" in body
