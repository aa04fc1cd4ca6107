"""``bi-ide erp``: import business files, load the demo, read reports, forecast, write the weekly report."""

from __future__ import annotations

import json
from datetime import date

import click
import polars as pl

from bi_ide.clikit import Group, db_option, open_store
from bi_ide.erp import forecasts, reports
from bi_ide.erp.imports import COLUMNS, FORMATS, import_file, parse_mapping
from bi_ide.store.erp import ImportRejected

DATE = click.DateTime(formats=["%Y-%m-%d"])


def _as_date(value) -> date | None:
    return value.date() if value is not None else None


def _show(result, as_json: bool) -> None:
    if as_json:
        click.echo(result.write_json() if isinstance(result, pl.DataFrame) else json.dumps(result, default=str))
        return
    if isinstance(result, pl.DataFrame):
        with pl.Config(tbl_rows=100, tbl_cols=14, fmt_str_lengths=30, tbl_hide_dataframe_shape=True,
                       float_precision=2, tbl_formatting="ASCII_MARKDOWN"):
            click.echo(result)
        return
    for key, value in result.items():
        click.echo(f"{key:<18} {round(value, 4) if isinstance(value, float) else value}")


@click.group(cls=Group)
def erp():
    """ERP analytics: import files, reports, forecasts and the weekly predictive report.

    \b
    Example:
      bi-ide erp demo --months 36 --seed 7 && bi-ide erp report kpis
    """


@erp.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--table", required=True, type=click.Choice(sorted(COLUMNS)), help="The table the file fills.")
@click.option("--map", "pairs", multiple=True, metavar="OURS=THEIRS",
              help="Our column = the file's column, for each name that differs (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Default: from the file's suffix.")
@click.option("--date-format", default=None, help="strftime format of the file's dates (default: ISO, YYYY-MM-DD).")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the rejection report) as JSON.")
def import_(file, table, pairs, fmt, date_format, db, as_json):
    """Import FILE (CSV, Parquet or Excel) into TABLE: all its rows, or none.

    A bad file is rejected whole with its rows and reasons (exit status 1); a good one is written
    in one transaction. Importing the same file again changes nothing. Invoice files have one row
    per line: invoice, date, customer, product, quantity, unit_price (+ discount, unit_cost,
    due_date, line, line_total, invoice_total).

    \b
    Example:
      bi-ide erp import sales.xlsx --table invoices --map invoice=InvoiceNo --map quantity=Qty
    """
    with open_store(db) as store:
        try:
            result = import_file(store, file, table, parse_mapping(pairs), fmt=fmt, date_format=date_format)
        except ImportRejected as e:
            if as_json:
                click.echo(json.dumps(e.report(), default=str))
            else:
                for p in e.problems:
                    click.echo(f"row {p['row']:>7}  {p['column']:<14} {p['reason']}", err=True)
            raise
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{table}: {result['rows']} rows read, {result['new']} new, {result['changed']} changed")


@erp.command()
@click.option("--months", type=click.IntRange(3, 120), default=36, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed and end, same business.")
@click.option("--end", type=DATE, default=None, help="Last day of the demo (default: end of last month).")
@click.option("--if-empty", is_flag=True, help="Do nothing (exit 0) when the store already holds ERP data.")
@db_option
def demo(months, seed, end, if_empty, db):
    """Load a seeded demo business (a trading company, Arabic and English names) into an empty store.

    \b
    Example:
      bi-ide erp demo --months 36 --seed 7
    """
    from bi_ide.erp.demo import load_demo

    with open_store(db) as store:
        loaded = load_demo(store, months=months, seed=seed, end=_as_date(end), if_empty=if_empty)
    if "skipped" in loaded:
        click.echo(f"ERP data already there {loaded['skipped']}; the demo was not loaded")
        return
    click.echo("demo loaded: " + ", ".join(f"{n} {t}" for t, n in loaded.items()))


@erp.command()
@click.option("--yes", is_flag=True, help="Really delete every ERP row.")
@db_option
def clear(yes, db):
    """Delete all ERP data (e.g. the demo, before importing your own files). Rendered reports stay.

    \b
    Example:
      bi-ide erp clear --yes
    """
    if not yes:
        raise click.ClickException("this deletes every ERP row; run it again with --yes")
    with open_store(db) as store:
        deleted = store.erp_clear()
    click.echo("deleted: " + ", ".join(f"{n} {t}" for t, n in deleted.items()))


@erp.command()
@click.argument("name", required=False)
@click.option("-p", "pairs", multiple=True, metavar="KEY=VALUE", help="A report parameter (repeatable).")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report(name, pairs, db, as_json):
    """Print report NAME (without NAME: list the reports and their parameters).

    \b
    Example:
      bi-ide erp report monthly_sales -p start=2025-01-01 -p category=Coffee
      bi-ide erp report ar_aging -p as_of=2026-10-31
    """
    from bi_ide.erp.api import report_kwargs

    if name is None:
        for key, fn in sorted(reports.REPORTS.items()):
            click.echo(f"{key:<26} {', '.join(fn.parameters)}")
        return
    mapping = parse_mapping(pairs)
    kwargs = report_kwargs(name, {k: [v.encode()] for k, v in mapping.items()})
    with open_store(db) as store:
        _show(reports.REPORTS[name](store, **kwargs), as_json)


@erp.command()
@click.option("--as-of", type=DATE, default=None, help="Forecast from the last full month at this date.")
@click.option("--horizon", type=click.IntRange(1, 24), default=6, show_default=True, help="Months ahead.")
@click.option("--level", type=click.Choice(["50", "80", "90", "95", "99"]), default="80", show_default=True,
              help="Prediction interval, %.")
@click.option("--model", "regular", type=click.Choice(forecasts.REGULAR_MODELS), default="ets", show_default=True,
              help="For regular series: ets (STL + AutoETS, fast) or arima (AutoARIMA, slow).")
@db_option
def forecast(as_of, horizon, level, regular, db):
    """Forecast each product's demand and total sales; backtest against seasonal naive; store the run.

    \b
    Example:
      bi-ide erp forecast --horizon 6 --level 80
    """
    with open_store(db) as store:
        run = forecasts.run_forecast(store, as_of=_as_date(as_of), horizon=horizon, level=int(level), regular=regular)
    click.echo(f"forecast {run['id']}: {run['series']} series from {run['as_of']}, {horizon} months, {level} % intervals")
    for target, check in (run["backtest"] or {}).items():
        model, naive = check["model"], check["seasonal_naive"]
        click.echo(f"  backtest {target:<8} MASE {model['mase']:.3f} (seasonal naive {naive['mase']:.3f}), "
                   f"sMAPE {model['smape']:.1f} % ({naive['smape']:.1f} %)")


@erp.command()
@click.option("--as-of", type=DATE, default=None, help="The report's date (default: the last invoice's).")
@click.option("--horizon", type=click.IntRange(1, 24), default=6, show_default=True, help="Months to forecast.")
@db_option
def weekly(as_of, horizon, db):
    """Forecast and write the weekly predictive report to data/reports/ (scheduled: pipelines/weekly-erp.yaml).

    \b
    Example:
      bi-ide erp weekly --as-of 2026-10-31
    """
    from bi_ide.erp.weekly import write_report

    with open_store(db) as store:
        record = write_report(store, as_of=_as_date(as_of), horizon=horizon)
    click.echo(record["path"])


@erp.command()
@db_option
def status(db):
    """Rows per ERP table and the latest forecast run.

    \b
    Example:
      bi-ide erp status
    """
    with open_store(db) as store:
        counts = store.erp_counts()
        run = store.erp_forecast_run()
    for table, n in counts.items():
        click.echo(f"{table:<14} {n}")
    click.echo(f"forecast       {run['id'] + ' from ' + str(run['as_of']) if run else 'none yet (bi-ide erp forecast)'}")


COMMANDS = [erp]
