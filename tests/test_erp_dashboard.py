"""The ERP dashboard without a browser: shared state, a tab's filters, imports from the page."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from bi_ide.dashboards.erp import ErpPage
from bi_ide.dashboards.erp_state import ALL, Erp, ErpView, import_upload
from bi_ide.erp import reports
from bi_ide.erp.demo import load_demo

END = date(2026, 10, 31)


@pytest.fixture
def erp(store) -> Erp:
    load_demo(store, months=12, seed=4, end=END)
    return Erp(store=store).refresh()


def test_shared_state_lists_choices_and_moves_its_version_with_the_data(erp, store):
    assert erp.error == "" and erp.counts["invoice_lines"] > 0
    assert "Dates" in erp.categories and any("مؤسسة" in name for name in erp.customers)
    before = erp.version
    erp.refresh()
    assert erp.version == before  # nothing changed
    store.erp_clear()
    erp.refresh()
    assert erp.version != before and erp.categories == [] and erp.customers == {}


def test_a_tabs_filters_recompute_its_figures(erp, store):
    view = ErpView(erp=erp)
    assert view.filters()["end"] == END and view.filters()["start"] == date(2025, 11, 1)  # the last 12 months
    everything = view.kpis["revenue"]
    assert everything == pytest.approx(reports.gross_margin(store, start=date(2025, 11, 1), end=END)["revenue"].sum())
    view.category = "Dates"
    assert 0 < view.kpis["revenue"] < everything
    assert set(view.alerts["category"].to_list()) <= {"Dates"}
    name = next(iter(erp.customers))
    view.customer = name
    code = erp.customers[name]
    assert view.aging["customer"].to_list() in ([code], [])
    assert view.trend["revenue"].sum() == pytest.approx(view.kpis["revenue"])
    view.param.update(category=ALL, customer=ALL, period="Last 3 months")
    assert view.trend.height == 3 and view.sales.height == 3


def test_empty_store_says_what_to_do(store):
    view = ErpView(erp=Erp(store=store).refresh())
    assert "bi-ide erp demo" in view.error and view.kpis == {}


def test_import_upload_reports_rows_or_adds_them(erp, store):
    bad = pl.DataFrame({"Invoice": ["X-1"], "date": ["2026-11-01"], "customer": ["C999"], "product": ["COF-ARB"],
                        "quantity": [0], "unit_price": [5.0]}).write_csv()
    outcome = import_upload(erp, bad.encode(), "bad.csv", "invoices", "invoice=Invoice")
    assert not outcome["ok"] and "nothing was imported" in outcome["message"]
    assert outcome["problems"].select("row", "column").rows() == [(1, "customer"), (1, "quantity")]
    good = bad.replace("C999", "C001").replace(",0,", ",2,")
    lines = erp.counts["invoice_lines"]
    outcome = import_upload(erp, good.encode(), "good.csv", "invoices", "invoice=Invoice")
    assert outcome["ok"] and "1 new" in outcome["message"] and outcome["problems"].is_empty()
    assert erp.counts["invoice_lines"] == lines + 1  # the shared state refreshed at once
    assert not import_upload(erp, b"x", "notes.txt", "invoices")["ok"]


def test_page_builds_and_refuses_imports_to_non_developers(erp, monkeypatch):
    monkeypatch.delenv("BI_IDE_DASHBOARD_DEVELOPERS", raising=False)
    page = ErpPage(erp=erp, user="guest")
    assert "not a developer" in page.refusal and page.run_import.disabled
    assert page.do_import() is None and "not a developer" in page.result.object
    page.__panel__()
    assert page.cards["revenue"].value.endswith("SAR") and page.trend.object is not None
    page.category.value = "Dates"
    assert page.view.category == "Dates"
    page.close()
