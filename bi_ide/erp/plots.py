"""The ERP plots as Bokeh figures: the weekly report embeds them, the ERP dashboard shows them."""

from __future__ import annotations

import polars as pl
from bokeh.models import NumeralTickFormatter
from bokeh.plotting import figure

from bi_ide.erp.reports import AGING_BUCKETS

AGING_COLORS = ["#74c476", "#fdd0a2", "#fd8d3c", "#e6550d", "#a63603"]
MONTH_MS = 20 * 86_400_000  # bar width on a datetime axis: about two thirds of a month


def _when(dates: pl.Series):
    """Dates as Bokeh's datetime axis takes them (numpy datetime64); plain dates would draw nothing."""
    return dates.cast(pl.Datetime("ms")).to_numpy()


def _figure(title: str, currency: str | None, **kwargs):
    p = figure(title=f"{title} ({currency or ''})", height=kwargs.pop("height", 260), sizing_mode="stretch_width",
               tools="save", toolbar_location="right", **kwargs)
    p.yaxis.formatter = NumeralTickFormatter(format="0,0")
    return p


def trend(months: pl.DataFrame, currency: str | None):
    """Monthly revenue (bars), gross profit and the 3-month mean (``reports.monthly_sales`` rows)."""
    p = _figure("Monthly revenue and gross profit", currency, x_axis_type="datetime")
    x = _when(months["month"])
    p.vbar(x=x, top=months["revenue"].to_list(), width=MONTH_MS, color="#9ecae1", legend_label="revenue")
    p.line(x, months["gross_profit"].to_list(), color="#31a354", line_width=2, legend_label="gross profit")
    p.line(x, months["rolling_3m"].to_list(), color="#08519c", line_dash="dashed", legend_label="3-month mean")
    p.legend.location = "top_left"
    return p


def forecast(months: pl.DataFrame, ahead: pl.DataFrame, currency: str | None):
    """Actual revenue, then the forecast mean with its interval band (``reports.latest_forecasts`` rows)."""
    p = _figure("Sales forecast with its interval, all products", currency, x_axis_type="datetime")
    p.line(_when(months["month"]), months["revenue"].to_list(), color="#444", line_width=2, legend_label="actual")
    if ahead.height:
        x = _when(ahead["month"])
        p.varea(x=x, y1=ahead["lo"].to_list(), y2=ahead["hi"].to_list(), color="#fdae6b", alpha=0.5,
                legend_label=f"{ahead['level'][0]} % interval")
        p.line(x, ahead["mean"].to_list(), color="#e6550d", line_width=2, legend_label=f"forecast ({ahead['model'][0]})")
    p.legend.location = "top_left"
    return p


def aging(receivables: pl.DataFrame, currency: str | None):
    """Open receivables per age bucket (``reports.ar_aging`` rows summed over customers)."""
    totals = [float(receivables[b].sum()) if receivables.height else 0.0 for b in AGING_BUCKETS]
    p = _figure("Receivables by age in days", currency, x_range=list(AGING_BUCKETS), height=220)
    p.vbar(x=list(AGING_BUCKETS), top=totals, width=0.7, color=AGING_COLORS)
    return p
