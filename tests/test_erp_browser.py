"""The ERP dashboard and the weekly report page in a real headless Chromium, served by a real hub."""

from __future__ import annotations

import time
from datetime import date

import polars as pl
import pytest

from bi_ide.erp import forecasts
from bi_ide.erp.demo import load_demo
from bi_ide.erp.weekly import write_report
from bi_ide.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOT = "/tmp/erp.png"
REPORT_SCREENSHOT = "/tmp/erp-weekly.png"
END = date(2026, 10, 31)


@pytest.fixture
def hub(tmp_db, tmp_path, start_hub):
    with Store(tmp_db) as store:  # closed before the hub starts: one process writes the file
        load_demo(store, months=24, seed=3, end=END)
        forecasts.run_forecast(store, horizon=3)
        report = write_report(store, as_of=END, horizon=3, forecast=False, folder=tmp_path)
    proc = start_hub(tmp_db)
    return {"url": proc.url, "log": proc.log_path, "report": report["path"]}


def card(tab, key: str) -> str:
    """The text of KPI card ``key`` (it lives in the indicator's shadow DOM)."""
    return " ".join(tab.locator(f".kpi-{key} div").all_inner_texts())


def test_erp_page_filters_shows_arabic_names_and_reports_a_bad_import(browser, hub, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    outside = []
    tab.on("request", lambda r: None if r.url.startswith((hub["url"], "data:", "blob:")) else outside.append(r.url))
    try:
        tab.goto(hub["url"] + "/erp")
        tab.locator(".kpi-revenue").get_by_text("SAR").wait_for(timeout=30_000)
        assert tab.title() == "ERP"
        tab.locator(".erp-trend canvas").first.wait_for(timeout=30_000)
        tab.locator(".erp-forecast canvas").first.wait_for(timeout=30_000)
        arabic = tab.locator(".erp-aging .tabulator-cell", has_text="مؤسسة").first
        arabic.wait_for(timeout=10_000)
        assert arabic.evaluate("e => getComputedStyle(e).unicodeBidi") == "plaintext"  # read right to left
        assert tab.locator(".erp-alerts .tabulator-row").count() > 0
        assert tab.locator(".erp-abc").get_by_text("A", exact=True).first.is_visible()

        everything = card(tab, "revenue")
        assert "SAR" in everything and "%" in card(tab, "margin")
        tab.locator(".erp-category select").select_option("Dates")
        deadline = time.monotonic() + 10
        while card(tab, "revenue") == everything:  # the tab's view recomputes for the category
            assert time.monotonic() < deadline, "the category filter did not change the revenue card"
            tab.wait_for_timeout(200)
        tab.set_viewport_size({"width": 1400, "height": 2200})
        tab.wait_for_timeout(1_500)
        tab.screenshot(path=SCREENSHOT, full_page=True)

        bad = tmp_path / "bad.csv"
        pl.DataFrame({"invoice": ["B-1", "B-2"], "date": ["2026-11-01", "not a day"], "customer": ["C001", "C001"],
                      "product": ["COF-ARB", "تمر مجهول"], "quantity": [2, 1], "unit_price": [42.0, 1.0]}).write_csv(bad)
        tab.get_by_text("Import", exact=True).first.click()
        tab.locator(".erp-upload input[type=file]").set_input_files(str(bad))
        tab.wait_for_timeout(1_000)  # the file travels to the server
        tab.locator(".erp-import button").click()
        result = tab.locator(".erp-import-result")
        result.get_by_text("rejected").wait_for(timeout=20_000)
        assert result.get_by_text("nothing was imported", exact=False).is_visible()
        problems = tab.locator(".erp-problems")
        problems.get_by_text("unknown product 'تمر مجهول'", exact=False).wait_for(timeout=10_000)
        assert problems.get_by_text("is not a date", exact=False).is_visible()
        tab.screenshot(path="/tmp/erp-import.png", full_page=True)
        assert outside == [], "the page must render offline: no request may leave the hub"
        assert "Traceback" not in hub["log"].read_text()
    finally:
        context.close()


def test_weekly_report_page_opens_offline(browser, hub):
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    tab = context.new_page()
    outside = []
    tab.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else outside.append(r.url))
    try:
        tab.goto("file://" + hub["report"])
        tab.locator("canvas").first.wait_for(timeout=20_000)
        assert tab.locator(".bk-Canvas, canvas").count() >= 3
        assert tab.get_by_text("Receivables to chase").is_visible()
        cell = tab.locator("td", has_text="مؤسسة").first
        assert cell.get_attribute("dir") == "auto"
        tab.wait_for_timeout(1_000)
        tab.screenshot(path=REPORT_SCREENSHOT, full_page=True)
        assert outside == []
    finally:
        context.close()
