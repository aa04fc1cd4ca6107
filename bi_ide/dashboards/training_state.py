"""What the training dashboard shows and does, as param classes and functions that know nothing of Panel.

``Training`` is shared by every tab of the process (the poller refreshes it every 2 s): the train
runs, the models, and the curves and checkpoints of the runs some tab has selected — only those are
read, and a finished run's curves only once. ``RunFilter`` is one tab's filters and selection.
Starting a run launches ``bi-ide train run`` as a child process that writes through this hub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import param
import polars as pl

from bi_ide import settings
from bi_ide.dashboards.state import PolledState
from bi_ide.errors import WorkbenchError
from bi_ide.store import RUN_STATUSES

POINTS = 500  # points per curve: read_metrics buckets each series in DuckDB, keeping min and max
# The charts and the series in each: (metric, what the legend calls it); "" = the run's name alone.
CHARTS = {
    "loss": ("Loss", (("loss", "train"), ("val_loss", "val"))),
    "lr": ("Learning rate", (("lr", ""),)),
    "throughput": ("Throughput (tokens/s)", (("tokens_per_s", ""),)),
    "bpb": ("Validation bits per byte", (("val_bpb_arabic", "arabic"), ("val_bpb_code", "code"),
                                          ("val_bpb_text", "text"))),
}
CURVE_METRICS = [name for _, series in CHARTS.values() for name, _ in series]
RUN_COLUMNS = ("name", "status", "preset", "step", "total_steps", "device", "created_at", "finished_at", "id")
DEVELOPERS_ENV = "BI_IDE_DASHBOARD_DEVELOPERS"
ADMINS_ENV = "BI_IDE_DASHBOARD_ADMINS"
HUB_URL_ENV = "BI_IDE_HUB_URL"
ETA_WINDOW = 10  # metric rows (log intervals) the step rate is measured over


class Training(PolledState):
    """The train runs, the models, and the curves and checkpoints of the runs a tab is watching."""

    per_run = ("metrics", "checkpoints")  # merged per watched run on apply

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the data comes from: a Store, or a HubClient (the same read methods).""")

    limit = param.Integer(default=200, bounds=(1, 10_000), doc="The newest train runs to list.")

    points = param.Integer(default=POINTS, bounds=(10, 100_000), doc="Points per curve (downsampled in DuckDB).")

    runs = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Train runs, newest first, with RUN_COLUMNS; step and total_steps are filled in for running
        and watched runs.""")

    models = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="The model registry.")

    metrics = param.Dict(default={}, doc="Run id -> its curves (name, step, value, min, max, time), watched runs only.")

    checkpoints = param.Dict(default={}, doc="Run id -> its checkpoints, newest first, watched runs only.")

    def __init__(self, **params):
        super().__init__(**params)
        self._read_status: dict[str, str] = {}  # run id -> its status when its curves were last read

    # -- which runs the tabs show ------------------------------------------------------------
    def watch_runs(self, owner, run_ids) -> None:
        """Keep ``run_ids``' curves and checkpoints fresh for ``owner`` (a tab); read new ones now."""
        self._watch(owner, run_ids, self.metrics, self._read_runs)

    # -- the poller's side -------------------------------------------------------------------
    def read(self) -> dict:
        """Query the store and return the new values (no parameter is set here; any thread)."""
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            runs = self.store.list_runs(kind="train", limit=self.limit)
            watched = self.watched
            status = dict(zip(runs["id"].to_list(), runs["status"].to_list(), strict=True))
            detail = [r for r in runs["id"].to_list() if status[r] == "running" or r in watched]
            runs = _with_progress(runs, {r: self.store.get_run(r) for r in detail})
            stale = [r for r in watched if r in status and (self._read_status.get(r) != status[r] or
                                                            status[r] == "running")]
            values = self._read_runs(stale, status)
            values.update(runs=runs, models=self.store.list_models(), updated_at=time.time(), error="")
        except WorkbenchError as e:
            return {"error": str(e)}
        return values

    def _read_runs(self, run_ids, status: dict[str, str] | None = None) -> dict:
        metrics, checkpoints = {}, {}
        for run_id in run_ids:
            status_now = status[run_id] if status else self.store.get_run(run_id)["status"]
            metrics[run_id] = self.store.read_metrics(run_id, CURVE_METRICS, points=self.points)
            checkpoints[run_id] = self.store.list_checkpoints(run_id)
            self._read_status[run_id] = status_now
        return {"metrics": metrics, "checkpoints": checkpoints}

    # -- actions ----------------------------------------------------------------------------
    def request_stop(self, run_id: str) -> dict:
        """Ask a running run to stop: its trainer polls stop_requested at every log interval."""
        return self.store.update_run(run_id, stop_requested=True)

    def promote(self, model_id: str) -> dict:
        """Deploy a model version (the name's deployed version is archived) and show it now."""
        model = self.store.set_model_status(model_id, "deployed")
        self.apply({"models": self.store.list_models()})
        return model


def _with_progress(runs: pl.DataFrame, details: dict[str, dict]) -> pl.DataFrame:
    """The runs with step, total_steps and stop_requested from their full records where read."""
    extra = pl.DataFrame(
        {"id": list(details), "step": [d.get("step") for d in details.values()],
         "total_steps": [d.get("total_steps") for d in details.values()],
         "stop_requested": [bool(d.get("stop_requested")) for d in details.values()],
         "tokens_per_step": [tokens_per_step(d.get("config")) for d in details.values()]},
        schema={"id": pl.String, "step": pl.Int64, "total_steps": pl.Int64, "stop_requested": pl.Boolean,
                "tokens_per_step": pl.Int64},
    )
    joined = runs.join(extra, on="id", how="left", maintain_order="left")
    return joined.select([c for c in RUN_COLUMNS if c in joined.columns] + ["stop_requested", "tokens_per_step"])


def tokens_per_step(config: dict | None) -> int | None:
    """batch_size × grad_accum × seq_len of a run's config; None when it does not say."""
    product = 1
    for key in ("batch_size", "grad_accum", "seq_len"):
        value = (config or {}).get(key)
        if not isinstance(value, int) or value <= 0:
            return None
        product *= value
    return product


# -- one tab's filters and selection ---------------------------------------------------------
class RunFilter(param.Parameterized):
    """One tab's view of the runs: which statuses, which preset, a name search, the selected runs."""

    status = param.Selector(default="all", objects=["all", *RUN_STATUSES], doc="Show runs in this status.")

    preset = param.Selector(default="all", objects=["all"], doc="Show runs of this model preset.")

    search = param.String(default="", doc="Show runs whose name contains this text (any case).")

    selected = param.List(default=[], item_type=str, doc="Ids of the runs whose curves are overlaid.")

    def presets_from(self, runs: pl.DataFrame | None) -> None:
        """Offer the presets the runs use."""
        found = sorted({p for p in runs["preset"].to_list() if p}) if runs is not None else []
        objects = ["all", *found]
        if self.preset not in objects:
            objects.append(self.preset)
        if objects != self.param.preset.objects:
            self.param.preset.objects = objects

    def apply_to(self, runs: pl.DataFrame | None) -> pl.DataFrame:
        """The runs that pass the filters, in the same order."""
        if runs is None:
            return pl.DataFrame(schema={c: pl.String for c in RUN_COLUMNS})
        keep = pl.lit(True)
        if self.status != "all":
            keep &= pl.col("status") == self.status
        if self.preset != "all":
            keep &= pl.col("preset") == self.preset
        if self.search.strip():
            keep &= pl.col("name").str.to_lowercase().str.contains(self.search.strip().lower(), literal=True)
        return runs.filter(keep)


# -- progress and ETA ------------------------------------------------------------------------
@dataclass(frozen=True)
class RunProgress:
    """How far a run is and, while it runs, when it should end."""

    step: int
    total_steps: int | None
    seconds_per_step: float | None
    eta_s: float | None

    @property
    def fraction(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


def run_progress(run: dict, metrics: pl.DataFrame | None, window: int = ETA_WINDOW) -> RunProgress:
    """Step, total and ETA of ``run`` (a row of Training.runs: status, step, total_steps, tokens_per_step).

    The step rate comes from the last ``window`` logged training-loss rows (their step and
    time); with fewer than two, from the last tokens_per_s and the run's tokens per step.
    """
    loss = metrics.filter(pl.col("name") == "loss").sort("step") if metrics is not None else None
    step = int(run.get("step") or 0)
    if loss is not None and not loss.is_empty():
        step = max(step, int(loss["step"][-1]))
    total = run.get("total_steps")
    per_step = _seconds_per_step(loss.tail(window)) if loss is not None else None
    if per_step is None and metrics is not None:
        per_step = _seconds_per_step_from_throughput(metrics, run.get("tokens_per_step"))
    eta = None
    if run.get("status") == "running" and total and per_step is not None:
        eta = max(0, total - step) * per_step
    return RunProgress(step=step, total_steps=total, seconds_per_step=per_step, eta_s=eta)


def _seconds_per_step(rows: pl.DataFrame) -> float | None:
    if rows.height < 2:
        return None
    steps = rows["step"][-1] - rows["step"][0]
    seconds = (rows["time"][-1] - rows["time"][0]).total_seconds()
    return seconds / steps if steps > 0 and seconds > 0 else None


def _seconds_per_step_from_throughput(metrics: pl.DataFrame, per_step: int | None) -> float | None:
    tps = metrics.filter(pl.col("name") == "tokens_per_s").sort("step")
    if tps.is_empty() or not per_step or not tps["value"][-1] > 0:
        return None
    return per_step / tps["value"][-1]


# -- who may start and stop runs ---------------------------------------------------------------
def control_refusal(user: str | None, developers: str | None = None, *, role: str = "developer",
                    admins: str | None = None) -> str:
    """Why ``user`` may not act as ``role`` ("developer" or "admin") from a dashboard; "" when they may.

    No user means no dashboard login is configured, which `bi-ide serve` allows on loopback only:
    whoever reaches the page is on this machine. Behind a login, developers are the users named in
    BI_IDE_DASHBOARD_DEVELOPERS and admins those in BI_IDE_DASHBOARD_ADMINS (comma-separated); as
    with API tokens, an admin may do everything a developer may.
    """
    if role not in ("developer", "admin"):
        raise ValueError(f"role {role!r} is not developer or admin")
    if user is None:
        return ""
    allowed = _names(admins, ADMINS_ENV) | (_names(developers, DEVELOPERS_ENV) if role == "developer" else set())
    if user in allowed:
        return ""
    if role == "admin":
        return (f"{user!r} is not an admin on this hub: list the user in {ADMINS_ENV} (comma-separated) "
                "where the hub runs, and restart it")
    return (f"{user!r} is not a developer on this hub: list the user in {DEVELOPERS_ENV} "
            "(comma-separated) where the hub runs, and restart it")


def _names(value: str | None, env: str) -> set[str]:
    """The comma-separated user names in ``value``, or in the environment variable ``env`` when None."""
    return {n.strip() for n in (os.environ.get(env, "") if value is None else value).split(",")} - {""}


# -- starting a run ---------------------------------------------------------------------------
def train_command(config, recipe: str) -> list[str]:
    """The argv that trains ``config``: the recipe, then ``--set`` for each field that differs from it."""
    from bi_ide.training.config import RECIPES

    base = RECIPES[recipe]().to_dict()
    values = config.to_dict()
    argv = [sys.executable, "-m", "bi_ide.cli", "train", "run", "--recipe", recipe]
    for key in (k for k in config.param if k in values):  # in the order the config declares them
        value = values[key]
        if value != base.get(key):
            argv += ["--set", f"{key}={_cli_value(value)}"]
    return argv


def _cli_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hub_url(host: str | None) -> str:
    """The URL a trainer on this machine reaches this hub at: BI_IDE_HUB_URL, else loopback and the page's port."""
    env = os.environ.get(HUB_URL_ENV, "").strip()
    if env:
        return env.rstrip("/")
    found = re.search(r"(?<=[^:]):(\d+)$", host or "")  # host:5006 and [::1]:5006, not a bare ::1
    return f"http://127.0.0.1:{found[1] if found else settings.DEFAULT_PORT}"


_TOKEN: dict[int, str] = {}  # id(store) -> the secret of this process' dashboard token (never logged)
_TOKEN_LOCK = threading.Lock()
LAUNCHED: list[subprocess.Popen] = []  # the trainers this process started (reaped on the next start)


def dashboard_token(store) -> str:
    """A developer API token for the trainers this process starts, created once per process."""
    with _TOKEN_LOCK:
        secret = _TOKEN.get(id(store))
        if secret is None:
            _, secret = store.create_token("dashboard", "developer")
            _TOKEN[id(store)] = secret
        return secret


def start_run(argv: list[str], url: str, token: str, log_dir: Path | None = None) -> subprocess.Popen:
    """Launch ``argv`` (see train_command) writing through the hub at ``url``; its output goes to a log file."""
    LAUNCHED[:] = [p for p in LAUNCHED if p.poll() is None]  # reap the ones that ended
    folder = log_dir or settings.data_dir() / "runs" / "launched"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{len(LAUNCHED)}.log"
    env = dict(os.environ, BI_IDE_HUB=url, BI_IDE_TOKEN=token)
    env.pop("BI_IDE_DB", None)  # the hub owns the file; the trainer must not try to open it
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=settings.project_root(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    proc.log_path = log_path
    LAUNCHED.append(proc)
    return proc
