"""ERP through a real hub: reports, imports with their validation report, forecasts, roles."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
import requests

from bi_ide.erp import forecasts, reports
from bi_ide.erp.demo import load_demo
from bi_ide.erp.imports import import_file
from bi_ide.erp.weekly import write_report
from bi_ide.errors import ForbiddenError, ValidationError
from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess
from bi_ide.store import Store
from bi_ide.store.erp import ImportRejected

pytestmark = pytest.mark.slow
END = date(2026, 10, 31)
AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    db = tmp_path_factory.mktemp("erp-hub") / "workbench.duckdb"
    with Store(db) as store:
        load_demo(store, months=24, seed=5, end=END)
        tokens = {role: store.create_token(f"test {role}", role)[1] for role in ("viewer", "developer", "admin")}
        expected = {"monthly_sales": reports.monthly_sales(store, category="Coffee"),
                    "ar_aging": reports.ar_aging(store, as_of=AS_OF), "kpis": reports.kpis(store, as_of=AS_OF)}
    with HubProcess(db) as proc:
        proc.tokens, proc.expected = tokens, expected
        yield proc


def client(hub, role: str) -> HubClient:
    return HubClient(hub.url, hub.tokens[role])


def test_reports_through_the_hub_equal_the_embedded_ones(hub):
    viewer = client(hub, "viewer")
    assert reports.monthly_sales(viewer, category="Coffee").equals(hub.expected["monthly_sales"])
    assert reports.ar_aging(viewer, as_of=AS_OF).equals(hub.expected["ar_aging"])
    assert reports.kpis(viewer, as_of=AS_OF) == hub.expected["kpis"]
    listed = requests.get(f"{hub.url}/api/v1/erp/reports", headers={"Authorization": f"Bearer {hub.tokens['viewer']}"},
                          timeout=10).json()
    assert listed["stock_status"] == ["as_of", "category", "days", "service_level"]


def test_report_parameters_are_checked(hub):
    viewer = client(hub, "viewer")
    with pytest.raises(ValidationError, match="no parameter"):
        viewer.erp_report("monthly_sales", region="north")
    with pytest.raises(ValidationError, match="must be date"):
        viewer.erp_report("ar_aging", as_of="yesterday")
    with pytest.raises(ValidationError, match="no ERP report 'profit'"):
        viewer.erp_report("profit")
    assert requests.get(f"{hub.url}/api/v1/erp/reports/kpis", timeout=10).status_code == 401


def test_import_needs_developer_and_returns_the_validation_report(hub, tmp_path):
    path = tmp_path / "lines.csv"
    pl.DataFrame({"invoice": ["H-1", "H-1"], "date": ["2026-11-01", "2026-11-02"], "customer": ["C001", "C001"],
                  "product": ["COF-ARB", "NOPE"], "quantity": [1, 2], "unit_price": [42.0, 1.0]}).write_csv(path)
    with pytest.raises(ForbiddenError):
        import_file(client(hub, "viewer"), path, "invoices")
    developer = client(hub, "developer")
    with pytest.raises(ImportRejected) as caught:
        import_file(developer, path, "invoices")
    found = {(p["row"], p["column"]) for p in caught.value.problems}
    assert found == {(1, "invoice"), (2, "invoice"), (2, "product")}  # two dates for one number; unknown SKU
    assert "lines.csv was rejected" in str(caught.value)
    pl.DataFrame({"invoice": ["H-1"], "date": ["2026-11-01"], "customer": ["C001"], "product": ["COF-ARB"],
                  "quantity": [1], "unit_price": [42.0]}).write_csv(path)
    assert import_file(developer, path, "invoices")["new"] == 1
    assert import_file(developer, path, "invoices")["new"] == 0


def test_forecast_and_weekly_report_through_the_hub(hub, tmp_path):
    developer = client(hub, "developer")
    with pytest.raises(ForbiddenError):
        forecasts.run_forecast(client(hub, "viewer"), as_of=AS_OF)
    record = write_report(developer, as_of=AS_OF, horizon=3, folder=tmp_path)
    assert record["path"] == str(tmp_path / "erp-weekly-2026-06-30.html") and record["size_bytes"] > 10_000
    assert record["summary"]["as_of"] == "2026-06-30"
    run = developer.erp_forecast_run()
    assert run["horizon"] == 3 and set(run["backtest"]) == {"quantity", "sales"}
    df = reports.latest_forecasts(developer)
    assert df["month"].min() == date(2026, 7, 1) and df["month"].dtype == pl.Date
    assert developer.erp_list_reports()["path"].to_list() == [record["path"]]


def test_clear_needs_admin_then_the_demo_loads_through_the_hub(hub):
    with pytest.raises(ForbiddenError):
        client(hub, "developer").erp_clear()
    admin = client(hub, "admin")
    assert admin.erp_clear()["invoice_lines"] > 0
    loaded = load_demo(admin, months=6, seed=1, end=END)
    assert admin.erp_counts()["invoice_lines"] == loaded["invoices"] > 0
