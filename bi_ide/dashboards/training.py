"""The training dashboard: runs with filters, overlaid live curves, progress and ETA, checkpoints,
models, and starting and stopping runs.

Every tab follows the process's one ``Training`` state (``training_state()``); a tab only tells it
which runs it shows. Each chart is a HoloViews DynamicMap fed by a Pipe: a refresh sends new
columns to the plot already in the browser; only a new selection builds new plots.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param
import polars as pl
from holoviews.streams import Pipe

from bi_ide.dashboards.overview import _table
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.state import human_duration
from bi_ide.dashboards.template import ControlledPage, served
from bi_ide.dashboards.training_state import (
    CHARTS,
    RunFilter,
    Training,
    dashboard_token,
    hub_url,
    run_progress,
    start_run,
    train_command,
)
from bi_ide.errors import WorkbenchError

hv.renderer("bokeh")  # load the plotting backend, so .opts() knows Bokeh's options

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
DASHES = ("solid", "dashed", "dotted")
Y_LABEL = {"loss": "loss", "lr": "learning rate", "throughput": "tokens/s", "bpb": "bits per byte"}
TABLE_COLUMNS = {"name": "name", "status": "status", "preset": "preset", "progress": "progress",
                 "device": "device", "created_at": "created (UTC)", "id": "id"}
CHECKPOINT_COLUMNS = ("step", "kind", "loss", "size_bytes", "created_at", "path", "id")
MODEL_COLUMNS = ("name", "version", "status", "run_id", "params_count", "created_at", "id")
CURVE_HEIGHT = 320


def training_state() -> Training:
    """This process's Training state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("training", _new_training)


def _new_training() -> Training:
    store, _, error = dashboard_store()
    return Training(error=error) if error else Training(store=store)


def chart(key: str, frames: dict[str, pl.DataFrame], labels: dict[str, str]) -> hv.Overlay:
    """One chart's curves for the runs in ``labels`` (id -> legend name): a colour per run, a dash per series.

    Every run gets every series, empty where it has no points yet, so the plot's parts stay the
    same from one refresh to the next. Training loss carries its min–max band (the spikes the
    downsampling folded into each point).
    """
    title, series = CHARTS[key]
    y = hv.Dimension("value", label=Y_LABEL[key])
    layers = []
    for i, (run_id, label) in enumerate(labels.items()):
        color = PALETTE[i % len(PALETTE)]
        frame = frames.get(run_id)
        for j, (metric, suffix) in enumerate(series):
            rows = frame.filter(pl.col("name") == metric) if frame is not None else None
            steps, values = ((rows["step"].to_numpy(), rows["value"].to_numpy()) if rows is not None
                             else ([], []))
            if metric == "loss":
                band = (steps, rows["min"].to_numpy(), rows["max"].to_numpy()) if rows is not None else ([], [], [])
                layers.append(hv.Area(band, "step", [y, "max"]).opts(color=color, fill_alpha=0.15, line_alpha=0))
            name = f"{label} · {suffix}" if suffix else label
            layers.append(hv.Curve((steps, values), "step", y, label=name).opts(
                color=color, line_dash=DASHES[j % len(DASHES)], line_width=2, tools=["hover"]))
            if metric.startswith("val_"):  # evaluations are sparse: mark each, so the first one shows
                layers.append(hv.Scatter((steps, values), "step", y).opts(color=color, size=6, tools=["hover"]))
    if not layers:
        layers.append(hv.Curve(([], []), "step", y))
    return hv.Overlay(layers).opts(
        title=title, responsive=True, height=CURVE_HEIGHT, min_width=320, show_grid=True, framewise=True,
        legend_position="bottom", legend_cols=2, legend_opts={"label_text_font_size": "9pt"},
    )


class TrainingPage(ControlledPage):
    """The runs table and its filters, overlaid curves, progress, checkpoints, models, start and stop."""

    training = param.ClassSelector(class_=Training, doc="The shared state, usually training_state().")

    filter = param.ClassSelector(class_=RunFilter, doc="This tab's filters and selection.")

    host = param.String(default=None, allow_None=True, doc="""
        Host:port the page was asked for; the trainers it starts reach the hub at this port.""")

    def __init__(self, **params):
        if served():
            params.setdefault("host", pn.state.curdoc.session_context.request.host)
        params.setdefault("filter", RunFilter())
        super().__init__(**params)
        self._labels: dict[str, str] = {}  # the runs the charts show: id -> legend name
        self._sent: dict[str, dict] = {}  # per chart: the columns last sent to its plot
        self._shown_ids: list[str] = []  # the runs table's rows, in order
        self._syncing = False
        self._build_widgets()
        t = self.training
        self._show_runs()
        self._show_models()
        self._watchers = [
            t.param.watch(self._on_runs, ["runs"]),
            t.param.watch(self._on_models, ["models"]),
            t.param.watch(self._on_curves, ["metrics", "checkpoints"]),
            t.param.watch(self._on_error, ["error"]),
        ]
        self.filter.param.watch(self._on_filter, ["status", "preset", "search"])
        self.filter.param.watch(self._on_selected, ["selected"])
        self._on_error()
        if not self.filter.selected:
            self.filter.selected = self._first_shown()
        self._on_selected()
        if served():  # let go of the shared state with the tab
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        """Stop following the shared state and stop its reading of this tab's runs."""
        for w in self._watchers:
            self.training.param.unwatch(w)
        self._watchers = []
        self.training.unwatch(self)

    # -- widgets -----------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        f = self.filter
        self.status = pn.widgets.Select.from_param(f.param.status, label="Status", width=130)
        self.preset = pn.widgets.Select.from_param(f.param.preset, label="Preset", width=150)
        self.search = pn.widgets.TextInput.from_param(f.param.search, label="Name", placeholder="contains…", width=200)
        self.search.param.watch(lambda e: setattr(f, "search", e.new or ""), "value_input")  # filter as one types
        self.runs = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, selectable="checkbox", layout="fit_data_stretch",
            sizing_mode="stretch_width", max_height=320, titles=TABLE_COLUMNS, css_classes=["training-runs"],
        )
        self.runs.param.watch(self._on_table_selection, "selection")
        self.progress = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[PROGRESS_CSS],
                                     css_classes=["training-progress"])
        self.pipes = {key: Pipe(data={}) for key in CHARTS}
        self.plots = {key: pn.pane.HoloViews(self._dynamic(key), sizing_mode="stretch_width",
                                             css_classes=[f"curve-{key}"])
                      for key in CHARTS}
        self.checkpoints_title = pn.pane.Markdown("### Checkpoints", margin=(0, 10))
        self.checkpoints = pn.widgets.Tabulator(None, disabled=True, show_index=False, selectable=False,
                                                layout="fit_data_stretch", sizing_mode="stretch_width",
                                                max_height=220, css_classes=["training-checkpoints"])
        self.models = pn.widgets.Tabulator(None, disabled=True, show_index=False, selectable=1,
                                           layout="fit_data_stretch", sizing_mode="stretch_width", max_height=220,
                                           css_classes=["training-models"])
        self.models.param.watch(lambda _e: self._enable_buttons(), "selection")
        self.promote = pn.widgets.Button(label="Promote to deployed", color="primary", disabled=True)
        self.promote.on_click(self._on_promote)
        self.stop = pn.widgets.Button(label="Stop selected runs", color="danger", disabled=True,
                                      css_classes=["training-stop"])
        self.stop.on_click(self._on_stop)
        self.recipe = pn.widgets.Select(label="Recipe", options=list(_recipes()), value="debug", width=200)
        self.config = _recipes()[self.recipe.value]()
        self.form = pn.Param(self.config, show_name=False, sizing_mode="stretch_width", default_layout=FormGrid,
                             widgets=_number_inputs(self.config))
        self.recipe.param.watch(self._on_recipe, "value")
        self.start = pn.widgets.Button(label="Start run", color="success", css_classes=["training-start"])
        self.start.on_click(self._on_start)
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self.why = pn.pane.Markdown(f"*Start and stop are off: {self.refusal}*" if self.refusal else "",
                                    visible=bool(self.refusal), margin=(0, 10))
        if self.refusal:
            for button in (self.start, self.stop, self.promote):
                button.description = self.refusal
        self.start.disabled = bool(self.refusal)

    def _dynamic(self, key: str) -> hv.DynamicMap:
        labels = dict(self._labels)
        return hv.DynamicMap(lambda data: chart(key, data, labels), streams=[self.pipes[key]])

    # -- following the state ---------------------------------------------------------------------
    def _on_runs(self, *_events) -> None:
        self._show_runs()
        self._show_progress()
        self._enable_buttons()

    def _on_filter(self, *_events) -> None:
        self._show_runs()

    def _show_runs(self) -> None:
        """The filtered runs in the table, the tab's selection kept on the same runs."""
        runs = self.training.runs
        self.filter.presets_from(runs)
        shown = self.filter.apply_to(runs)
        if "step" in shown.columns:
            progress = (pl.when(pl.col("total_steps").is_not_null())
                        .then(pl.format("{}/{}", pl.col("step"), pl.col("total_steps"))).otherwise(pl.lit("")))
            shown = shown.with_columns(progress.alias("progress"))
        shown = shown.select([c for c in TABLE_COLUMNS if c in shown.columns])
        self._shown_ids = shown["id"].to_list() if "id" in shown.columns else []
        table = _table(shown)
        self._syncing = True  # a new value clears Tabulator's selection: that is not the user's doing
        try:
            if self.runs.value is None or not table.equals(self.runs.value):
                self.runs.value = table
        finally:
            self._syncing = False
        self._show_selection()

    def _show_selection(self) -> None:
        wanted = [i for i, r in enumerate(self._shown_ids) if r in self.filter.selected]
        if list(self.runs.selection) != wanted:
            self.runs.selection = wanted

    def _on_table_selection(self, event) -> None:
        if self._syncing:
            return
        visible = set(self._shown_ids)
        picked = [self._shown_ids[i] for i in event.new if i < len(self._shown_ids)]
        hidden = [r for r in self.filter.selected if r not in visible]  # selected, then filtered out: kept
        self.filter.selected = picked + hidden

    def _on_selected(self, *_events) -> None:
        """A new selection: new plots with a part per run, then the curves of the runs now watched."""
        names = {}
        if self.training.runs is not None:
            names = dict(zip(self.training.runs["id"].to_list(), self.training.runs["name"].to_list(), strict=True))
        self._labels = {r: names.get(r, r) for r in self.filter.selected}
        self.training.watch_runs(self, self.filter.selected)  # reads the curves of runs new to this process
        self._sent = self._chart_data()
        for key, pane in self.plots.items():
            self.pipes[key] = Pipe(data=self._sent[key])  # the first picture already has the curves
            pane.object = self._dynamic(key)
        self._show_selection()
        self._on_curves()
        self._enable_buttons()

    def _chart_data(self) -> dict[str, dict[str, pl.DataFrame]]:
        """Per chart: the selected runs' rows of the chart's metrics."""
        metrics = self.training.metrics
        frames = {r: metrics[r] for r in self._labels if r in metrics}
        return {key: {r: f.filter(pl.col("name").is_in([m for m, _ in series])) for r, f in frames.items()}
                for key, (_, series) in CHARTS.items()}

    def _on_curves(self, *_events) -> None:
        """Send each chart the columns of the selected runs that changed."""
        for key, data in self._chart_data().items():
            pipe = self.pipes[key]
            old = self._sent.get(key)
            if old is None or old.keys() != data.keys() or not all(old[r].equals(data[r]) for r in data):
                self._sent[key] = data
                pipe.send(data)
        self._show_progress()
        self._show_checkpoints()

    def _show_progress(self) -> None:
        runs = self.training.runs
        rows = {r["id"]: r for r in runs.iter_rows(named=True)} if runs is not None else {}
        lines = []
        for i, run_id in enumerate(self._labels):
            run = rows.get(run_id)
            if run is None:
                continue
            p = run_progress(run, self.training.metrics.get(run_id))
            pct = f"{p.fraction:.0%}" if p.fraction is not None else "—"
            total = f"{p.total_steps:,}" if p.total_steps else "?"
            eta = f" · ETA {human_duration(p.eta_s)}" if p.eta_s is not None else ""
            rate = f" · {p.seconds_per_step:.2f} s/step" if p.seconds_per_step else ""
            stopping = " · stop requested" if run.get("stop_requested") and run["status"] == "running" else ""
            bar = f'<progress max="1" value="{p.fraction or 0:.4f}"></progress>'
            lines.append(
                f'<div class="bi-progress"><span class="bi-swatch" style="background:{PALETTE[i % len(PALETTE)]}">'
                f'</span><b>{_escape(run["name"])}</b> <span class="bi-status">{run["status"]}</span>{bar}'
                f"<span>step {p.step:,} / {total} ({pct}){rate}{eta}{stopping}</span></div>"
            )
        html = "".join(lines) or '<div class="bi-progress">Select runs in the table to see their curves.</div>'
        if html != self.progress.object:
            self.progress.object = html

    def _show_checkpoints(self) -> None:
        """The selected runs' checkpoints, newest first, each with its run's name."""
        frames = [f.select([c for c in CHECKPOINT_COLUMNS if c in f.columns]).with_columns(run=pl.lit(label))
                  for run_id, label in self._labels.items()
                  if (f := self.training.checkpoints.get(run_id)) is not None and not f.is_empty()]
        self.checkpoints_title.object = "### Checkpoints" if self._labels else "### Checkpoints (select runs)"
        if not frames:
            table = None
        else:
            merged = pl.concat(frames, how="diagonal_relaxed").sort("created_at", descending=True)
            table = _table(merged.select("run", *[c for c in CHECKPOINT_COLUMNS if c in merged.columns]))
        old = self.checkpoints.value
        if (table is None) != (old is None) or (table is not None and not table.equals(old)):
            self.checkpoints.value = table

    def _on_models(self, *_events) -> None:
        self._show_models()
        self._enable_buttons()

    def _show_models(self) -> None:
        models = self.training.models
        if models is None:
            return
        table = _table(models.select([c for c in MODEL_COLUMNS if c in models.columns]))
        if self.models.value is None or not table.equals(self.models.value):
            selected = self._selected_model()
            self.models.value = table
            ids = list(table["id"])
            self.models.selection = [ids.index(selected)] if selected in ids else []

    def _on_error(self, *_events) -> None:
        if self.training.error:
            self._say(f"**The store could not be read.** {self.training.error}", "danger")

    # -- actions -----------------------------------------------------------------------------
    def _first_shown(self) -> list[str]:
        """The run a new tab shows: the newest running one, else the newest of all."""
        runs = self.training.runs
        if runs is None or runs.is_empty():
            return []
        running = runs.filter(pl.col("status") == "running")
        return (running if not running.is_empty() else runs)["id"].head(1).to_list()

    def stoppable(self) -> list[str]:
        """The selected runs that are running and not yet asked to stop."""
        runs = self.training.runs
        if runs is None:
            return []
        rows = runs.filter(pl.col("id").is_in(self.filter.selected) & (pl.col("status") == "running"))
        return [r["id"] for r in rows.iter_rows(named=True) if not r.get("stop_requested")]

    def _selected_model(self) -> str | None:
        value = self.models.value
        if value is None or not self.models.selection or self.models.selection[0] >= len(value):
            return None
        return value["id"].iloc[self.models.selection[0]]

    def _enable_buttons(self) -> None:
        allowed = not self.refusal
        self.stop.disabled = not (allowed and self.stoppable())
        model = self._selected_model()
        status = None
        if model is not None:
            status = self.models.value["status"].iloc[self.models.selection[0]]
        self.promote.disabled = not (allowed and model is not None and status != "deployed")

    def _on_stop(self, _event=None) -> None:
        if self.refusal:
            return self._say(self.refusal, "warning")
        names = []
        try:
            for run_id in self.stoppable():
                names.append(self.training.request_stop(run_id)["name"])
        except WorkbenchError as e:
            return self._say(f"**Stop failed.** {e}", "danger")
        self.training.refresh()
        self._say(f"Stop requested for {', '.join(names)}; the trainer stops at its next log interval.", "success")

    def _on_promote(self, _event=None) -> None:
        model_id = self._selected_model()
        if self.refusal or model_id is None:
            return None
        try:
            model = self.training.promote(model_id)
        except WorkbenchError as e:
            return self._say(f"**Promotion failed.** {e}", "danger")
        self._say(f"{model['name']} v{model['version']} is deployed.", "success")

    def _on_recipe(self, event) -> None:
        self.config = _recipes()[event.new]()
        self.form.object = self.config

    def _on_start(self, _event=None) -> None:
        if self.refusal:
            return self._say(self.refusal, "warning")
        try:
            argv = train_command(self.config, self.recipe.value)
            proc = start_run(argv, hub_url(self.host), dashboard_token(self.training.store))
        except (WorkbenchError, OSError) as e:
            return self._say(f"**The run did not start.** {e}", "danger")
        self._say(f"Started `{' '.join(argv[2:])}` (PID {proc.pid}); it shows in the table once it registers. "
                  f"Output: `{proc.log_path}`", "success")

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        title = {"margin": (0, 10)}
        return pn.Column(
            self.message,
            pn.pane.Markdown("### Runs", **title),
            pn.Row(self.status, self.preset, self.search, self.stop),
            self.why,
            self.runs,
            self.progress,
            pn.Row(*(pn.Column(*pair, sizing_mode="stretch_width") for pair in (("loss", "throughput"), ("lr", "bpb"))
                     for pair in [[self.plots[k] for k in pair]]), sizing_mode="stretch_width"),
            self.checkpoints_title,
            self.checkpoints,
            pn.pane.Markdown("### Models", **title),
            self.models,
            self.promote,
            pn.Card(pn.Row(self.recipe, self.start), self.form, title="Start a run", collapsed=True,
                    sizing_mode="stretch_width", css_classes=["training-start-card"]),
            sizing_mode="stretch_width",
        )


class FormGrid(pn.GridBox):
    """The start form's layout: the TrainConfig widgets in three columns."""

    ncols = param.Integer(default=3, bounds=(1, None), doc="Widgets per row.")


def _number_inputs(config: param.Parameterized) -> dict:
    """Typed boxes rather than sliders: a slider over learning_rate's bounds shows 3e-3 as 0."""
    widgets = {}
    for name, p in config.param.objects().items():
        if isinstance(p, param.Integer):
            widgets[name] = pn.widgets.IntInput
        elif isinstance(p, param.Number):
            widgets[name] = pn.widgets.FloatInput
    return widgets


def _recipes() -> dict:
    from bi_ide.training.config import RECIPES  # imports torch: only when a page is built

    return RECIPES


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


PROGRESS_CSS = """
.bi-progress { display: flex; align-items: center; gap: 10px; margin: 4px 10px; font-size: 14px; }
.bi-progress progress { width: 220px; height: 12px; accent-color: #0f766e; }
.bi-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; }
.bi-status { opacity: 0.7; }
"""
