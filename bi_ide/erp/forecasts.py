"""Demand and sales forecasts with statsforecast, backtested against seasonal naive.

Each product's monthly demand is classified by ADI (average months between sales) and CV²
(squared coefficient of variation of the non-zero sales), after Syntetos and Boylan: smooth and
erratic series get AutoETS after STL takes out the season (or AutoARIMA, slower), intermittent and lumpy ones Croston's method
(CrostonOptimized) with conformal prediction intervals. The last ``horizon`` months are held out
first to score the chosen models against SeasonalNaive (MASE, sMAPE); then the full history is
forecast and stored with the model each series used. Reorder recommendations combine the
forecast with stock on hand.
"""

from __future__ import annotations

import math
import warnings
from datetime import date, timedelta

import numpy as np
import polars as pl

from bi_ide.erp import reports
from bi_ide.erp.reports import as_of_date, report
from bi_ide.errors import ValidationError

ADI_CUT, CV2_CUT = 1.32, 0.49  # Syntetos-Boylan boundaries between the four demand patterns
REGULAR_MODELS = ("ets", "arima")
SEASON = 12
MIN_MONTHS = 8


def last_full_month(as_of: date) -> date:
    """The first day of the last month that is complete on ``as_of``."""
    following = as_of + timedelta(days=1)
    month = following.replace(day=1)
    return shift_months(month, -1)


def shift_months(month: date, n: int) -> date:
    """The first day of the month ``n`` months after ``month``'s."""
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def monthly_history(store, *, as_of: date | None = None, target: str = "quantity") -> pl.DataFrame:
    """Monthly series up to the last full month at ``as_of``: unique_id (SKU or '*'), ds, y.

    quantity: units sold per product and month (zero months included, from the product's first
    sale); sales: the revenue of all products per month, as one series '*'.
    """
    if target not in ("quantity", "sales"):
        raise ValidationError(f"target {target!r} is not one of ['quantity', 'sales']", field="target")
    end = last_full_month(as_of_date(store, as_of))
    key, value = ("product", "quantity") if target == "quantity" else ("'*'", "amount")
    return store.sql(
        f"WITH m AS (SELECT {key} AS unique_id, date_trunc('month', date)::DATE AS ds, sum({value}) AS y "
        "FROM erp_invoice_lines WHERE date < ?::DATE + INTERVAL 1 MONTH GROUP BY ALL), "
        "span AS (SELECT unique_id, min(ds) AS first FROM m GROUP BY 1), "
        "grid AS (SELECT unique_id, unnest(range(first, ?::DATE + INTERVAL 1 DAY, INTERVAL 1 MONTH))::DATE AS ds "
        "FROM span) SELECT unique_id, ds, coalesce(y, 0)::DOUBLE AS y FROM grid LEFT JOIN m USING (unique_id, ds) "
        "ORDER BY unique_id, ds",
        [end, end],
    )


def classify(history: pl.DataFrame) -> pl.DataFrame:
    """ADI, CV² and the demand pattern of each series.

    ADI = months / months with demand; CV² = (sd / mean)² of the non-zero demands;
    smooth: ADI < 1.32 and CV² < 0.49; erratic: ADI < 1.32, CV² ≥ 0.49;
    intermittent: ADI ≥ 1.32, CV² < 0.49; lumpy: ADI ≥ 1.32, CV² ≥ 0.49.
    """
    nonzero = pl.col("y").filter(pl.col("y") > 0)
    stats = history.group_by("unique_id").agg(
        (pl.len() / (pl.col("y") > 0).sum()).alias("adi"),
        ((nonzero.std() / nonzero.mean()) ** 2).fill_null(0.0).fill_nan(0.0).alias("cv2"),
    )
    regular, steady = pl.col("adi") < ADI_CUT, pl.col("cv2") < CV2_CUT
    return stats.with_columns(
        pl.when(regular & steady).then(pl.lit("smooth")).when(regular).then(pl.lit("erratic"))
        .when(steady).then(pl.lit("intermittent")).otherwise(pl.lit("lumpy")).alias("pattern")
    ).sort("unique_id")


def _statsforecast():
    """statsforecast, imported on first use (it compiles with numba); its tqdm import warns in notebooks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import statsforecast
        import statsforecast.models
        import statsforecast.utils
    return statsforecast


def _models(pattern_regular: bool, regular: str, horizon: int, months: int) -> tuple[object, str]:
    """The statsforecast model for a group of series, and the name stored with its forecasts."""
    models, utils = _statsforecast().models, _statsforecast().utils
    seasonal = months >= 2 * SEASON
    if pattern_regular and regular == "arima":
        return models.AutoARIMA(season_length=SEASON if seasonal else 1), "AutoARIMA"
    if pattern_regular and seasonal:
        # Two or three years of months are too few for AutoETS' own seasonal models (AICc drops
        # them); STL takes the season out and AutoETS forecasts what is left.
        return models.MSTL(season_length=SEASON, trend_forecaster=models.AutoETS(model="ZZN")), "MSTL+AutoETS"
    if pattern_regular:
        return models.AutoETS(season_length=1), "AutoETS"
    windows = max(1, min(3, (months - 2) // horizon - 1))
    intervals = utils.ConformalIntervals(h=horizon, n_windows=windows)
    return models.CrostonOptimized(prediction_intervals=intervals), "CrostonOptimized"


def _fit_forecast(history: pl.DataFrame, patterns: pl.DataFrame, *, horizon: int, level: int,
                  regular: str, n_jobs: int = 1) -> pl.DataFrame:
    """Forecast each series with its pattern's model: series, month, model, pattern, mean, lo, hi."""
    months = history.group_by("unique_id").len()["len"].min()
    parts = []
    for is_regular, names in ((True, ("smooth", "erratic")), (False, ("intermittent", "lumpy"))):
        ids = patterns.filter(pl.col("pattern").is_in(names)).select("unique_id", "pattern")
        if ids.is_empty():
            continue
        model, label = _models(is_regular, regular, horizon, months)
        name = type(model).__name__
        out = _statsforecast().StatsForecast(models=[model], freq="1mo", n_jobs=n_jobs).forecast(
            df=history.join(ids.select("unique_id"), on="unique_id"), h=horizon, level=[level])
        parts.append(out.join(ids, on="unique_id").select(
            pl.col("unique_id").alias("series"), pl.col("ds").alias("month"), pl.lit(label).alias("model"),
            "pattern", pl.col(name).clip(0).alias("mean"), pl.col(f"{name}-lo-{level}").clip(0).alias("lo"),
            pl.col(f"{name}-hi-{level}").clip(0).alias("hi")))
    return pl.concat(parts).sort("series", "month")


def _seasonal_naive(history: pl.DataFrame, horizon: int) -> pl.DataFrame:
    sf = _statsforecast()
    out = sf.StatsForecast(models=[sf.models.SeasonalNaive(season_length=SEASON)], freq="1mo").forecast(
        df=history, h=horizon)
    return out.select(pl.col("unique_id").alias("series"), pl.col("ds").alias("month"),
                      pl.col("SeasonalNaive").alias("mean"))


def scores(train: pl.DataFrame, test: pl.DataFrame, forecast: pl.DataFrame) -> dict:
    """MASE and sMAPE of ``forecast`` (series, month, mean) on ``test`` (unique_id, ds, y).

    MASE = mean |y − ŷ| over the test months / mean |y_t − y_(t−12)| over the training months
    (lag 1 when the training is shorter than two years), averaged over series with a non-zero
    scale; sMAPE = mean of 200 · |y − ŷ| / (|y| + |ŷ|) over all test points (0 when both are 0).
    """
    lag = SEASON if train.group_by("unique_id").len()["len"].min() > SEASON else 1
    scale = (train.sort("ds").group_by("unique_id", maintain_order=True)
             .agg((pl.col("y") - pl.col("y").shift(lag)).abs().mean().alias("scale")))
    joined = test.join(forecast, left_on=["unique_id", "ds"], right_on=["series", "month"])
    err = joined.with_columns((pl.col("y") - pl.col("mean")).abs().alias("e"))
    per_series = err.group_by("unique_id").agg(pl.col("e").mean().alias("mae")).join(scale, on="unique_id")
    mase = per_series.filter(pl.col("scale") > 0).select((pl.col("mae") / pl.col("scale")).mean()).item()
    denom = pl.col("y").abs() + pl.col("mean").abs()
    smape = err.select(pl.when(denom > 0).then(200 * pl.col("e") / denom).otherwise(0.0).mean()).item()
    return {"mase": mase, "smape": smape}


def backtest(history: pl.DataFrame, *, horizon: int = 6, level: int = 80, regular: str = "ets",
             n_jobs: int = 1) -> dict:
    """Hold out each series' last ``horizon`` months; score the chosen models and SeasonalNaive on them."""
    cut = history.group_by("unique_id").agg(pl.col("ds").max().alias("last"))
    history = history.join(cut, on="unique_id")
    boundary = pl.col("ds") > pl.col("last").dt.offset_by(f"-{horizon}mo")
    train, test = history.filter(~boundary).drop("last"), history.filter(boundary).drop("last")
    patterns = classify(train)
    chosen = _fit_forecast(train, patterns, horizon=horizon, level=level, regular=regular, n_jobs=n_jobs)
    naive = _seasonal_naive(train, horizon)
    by_pattern = {}
    for pattern in patterns["pattern"].unique().sort().to_list():
        ids = patterns.filter(pl.col("pattern") == pattern)["unique_id"].implode()
        mine = pl.col("unique_id").is_in(ids)
        train_p, test_p = train.filter(mine), test.filter(mine)
        by_pattern[pattern] = {
            "series": ids.list.len().item(),
            "model": scores(train_p, test_p, chosen.filter(pl.col("series").is_in(ids))),
            "seasonal_naive": scores(train_p, test_p, naive.filter(pl.col("series").is_in(ids))),
        }
    return {"horizon": horizon, "series": patterns.height, "model": scores(train, test, chosen),
            "seasonal_naive": scores(train, test, naive), "by_pattern": by_pattern}


def run_forecast(store, *, as_of: date | None = None, horizon: int = 6, level: int = 80, regular: str = "ets",
                 n_jobs: int = 1) -> dict:
    """Backtest, forecast every product's demand and total sales, store the run; returns the run.

    The forecast starts the month after the last full month at ``as_of``.
    """
    if not 1 <= horizon <= 24:
        raise ValidationError(f"horizon must be 1..24 months, got {horizon}", field="horizon")
    if level not in (50, 80, 90, 95, 99):
        raise ValidationError(f"level must be one of [50, 80, 90, 95, 99], got {level}", field="level")
    if regular not in REGULAR_MODELS:
        raise ValidationError(f"regular {regular!r} is not one of {list(REGULAR_MODELS)}", field="regular")
    if not hasattr(store, "erp_save_forecast"):  # a HubClient: the hub forecasts from its store
        return store.erp_run_forecast(as_of=as_of, horizon=horizon, level=level, regular=regular)
    as_of = as_of_date(store, as_of)
    rows, checks = [], {}
    for target in ("quantity", "sales"):
        history = monthly_history(store, as_of=as_of, target=target)
        history = history.filter(pl.len().over("unique_id") >= MIN_MONTHS)
        if history.is_empty():
            continue
        if history.group_by("unique_id").len()["len"].min() > horizon + MIN_MONTHS:
            checks[target] = backtest(history, horizon=horizon, level=level, regular=regular, n_jobs=n_jobs)
        forecast = _fit_forecast(history, classify(history), horizon=horizon, level=level, regular=regular,
                                 n_jobs=n_jobs)
        rows.append(forecast.with_columns(pl.lit(target).alias("target")))
    if not rows:
        raise ValidationError(f"no product has {MIN_MONTHS} months of sales up to {as_of}; import more "
                              "invoices or load the demo with `bi-ide erp demo`", field="as_of")
    return store.erp_save_forecast(pl.concat(rows), as_of=as_of, horizon=horizon, level=level, backtest=checks)


@report
def reorder_recommendations(store, *, as_of: date | None = None, service_level: float = 0.95) -> pl.DataFrame:
    """What to order now, from the latest demand forecast and the stock on hand at ``as_of``.

    lead_demand = Σ forecast mean over the lead time (monthly means pro rata, L / 30.4 months);
    safety_stock as in ``stock_status``; need = lead_demand + safety_stock − on_hand − on_order
    (open purchase orders, ``stock_status``'s position);
    order = max(need, EOQ) rounded up when need > 0, else 0. Only products that need an order.
    """
    status = reports.stock_status(store, as_of=as_of, service_level=service_level)
    forecast = reports.latest_forecasts(store, target="quantity")
    if forecast.is_empty():
        return status.head(0).with_columns(pl.lit(0.0).alias("lead_demand"), pl.lit(0.0).alias("order"))
    by_product = forecast.group_by("series").agg(pl.col("mean").sort_by("month").alias("means"))
    leads = dict(zip(status["product"], status["lead_time_days"], strict=True))
    lead_demand = {row["series"]: _over_lead_time(row["means"], leads.get(row["series"], 0))
                   for row in by_product.iter_rows(named=True)}
    need = pl.col("lead_demand") + pl.col("safety_stock") - pl.col("position")
    return (status.with_columns(pl.col("product").replace_strict(lead_demand, default=None, return_dtype=pl.Float64)
                                .alias("lead_demand"))
            .filter(pl.col("lead_demand").is_not_null())
            .with_columns(pl.when(need > 0).then(pl.max_horizontal(need, pl.col("eoq").fill_null(0)).ceil())
                          .otherwise(0.0).alias("order"))
            .filter(pl.col("order") > 0).sort("order", descending=True))


def _over_lead_time(means: list[float], lead_days: int) -> float:
    months = lead_days / 30.4
    whole = math.floor(months)
    total = float(np.sum(means[:whole]))
    if whole < len(means):
        total += means[whole] * (months - whole)
    return total
