"""Cron schedules of pipelines, and the scheduler loop the hub runs.

A schedule is a row of ``schedules``: a pipeline (name or path), a 5-field cron expression read
in UTC (checked with croniter), params for the run, ``paused``, a ``missed`` policy, and
``next_run_at``. The hub process owns the store, so it runs the loop (``start_scheduler``); every
``interval_s`` seconds one ``Scheduler.tick`` looks at each schedule that is not paused:

- **Due on time** (``next_run_at`` passed less than ``grace_s`` ago, default twice the interval and
  at least a minute): it launches ``bi-ide pipeline run`` in a child process with BI_IDE_HUB
  pointing at the hub, since only the hub may open the store file. The run is recorded with
  trigger ``schedule`` and the schedule's id; the schedule gets ``last_run_at`` and, from the
  child, ``last_run_id``.
- **Missed** (``next_run_at`` passed longer ago: the hub was down or stalled), by the schedule's
  ``missed`` policy:
  ``run-once`` (the default) launches one catch-up run now, however many times were missed;
  ``skip`` launches nothing. ``last_outcome`` says how many times were missed.
- **Overlap**: while a run of the same pipeline is queued or running (from any trigger), or a child
  this scheduler launched for it is alive, nothing is launched; the due time counts in
  ``skipped_runs`` and ``last_outcome`` names the run in the way.
- A run recorded as running on this host whose process is gone is marked failed first, so a
  crashed runner does not block its pipeline for ever.

In every case ``next_run_at`` then moves to the first cron time after now, so a schedule fires
at most once per tick. Resuming a paused schedule starts from the next cron time after the
resume: the paused period is not caught up.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bi_ide import settings
from bi_ide.errors import ConfigError, WorkbenchError

MISSED_POLICIES = ("run-once", "skip")
MAX_COUNTED = 1000  # missed cron times are counted up to this
log = logging.getLogger(__name__)


def now_utc() -> datetime:
    return datetime.now(UTC)


def check_cron(cron: str) -> str:
    """``cron`` if croniter reads it as a 5-field expression, else a ConfigError with an example."""
    from croniter import croniter

    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigError(f"cron {cron!r} is not a 5-field cron expression (minute hour day month weekday, UTC); "
                          'e.g. "0 3 * * *" for 03:00 every day, "*/15 * * * *" for every 15 minutes')
    return cron


def next_run(cron: str, after: datetime) -> datetime:
    """The first time ``cron`` fires strictly after ``after`` (UTC)."""
    from croniter import croniter

    return croniter(check_cron(cron), after.astimezone(UTC)).get_next(datetime)


def missed_times(cron: str, since: datetime, now: datetime) -> int:
    """How many cron times fell in [since, now] (counted up to MAX_COUNTED)."""
    from croniter import croniter

    it, count, t = croniter(cron, since.astimezone(UTC) - timedelta(microseconds=1)), 0, None
    while count < MAX_COUNTED:
        t = it.get_next(datetime)
        if t > now:
            break
        count += 1
    return count


def add_schedule(store, pipeline: str, cron: str, *, params: dict | None = None, missed: str = "run-once",
                 now: datetime | None = None) -> dict:
    """Check ``cron`` and ``missed``, and record the schedule with its first ``next_run_at``."""
    if missed not in MISSED_POLICIES:
        raise ConfigError(f"missed {missed!r} is not one of {', '.join(MISSED_POLICIES)}")
    first = next_run(cron, now or now_utc())
    return store.create_schedule(pipeline, cron, params=params or None, missed=missed, next_run_at=first)


def resume_schedule(store, schedule_id: str, now: datetime | None = None) -> dict:
    """Unpause; the next run is the next cron time from now (the paused period is not caught up)."""
    schedule = store.get_schedule(schedule_id)
    return store.update_schedule(schedule_id, paused=False, next_run_at=next_run(schedule["cron"], now or now_utc()))


@dataclass
class Scheduler:
    """Decides, at each ``tick``, which schedules launch a run; ``clock`` and ``launch`` are injectable.

    ``launch(schedule)`` starts a run of the schedule's pipeline and returns something with
    ``poll()`` (None while it runs), such as a ``subprocess.Popen``.
    """

    store: object
    launch: Callable[[dict], object]
    clock: Callable[[], datetime] = now_utc
    interval_s: float = 30.0
    grace_s: float | None = None
    host: str = field(default_factory=socket.gethostname)
    children: dict[str, object] = field(default_factory=dict)  # pipeline -> its live child
    thread: threading.Thread | None = None  # set by start_scheduler
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        if self.grace_s is None:
            self.grace_s = max(2 * self.interval_s, 60.0)

    def stop(self) -> None:
        """End the loop start_scheduler runs (after the tick in progress)."""
        self.stopping.set()

    def tick(self) -> list[dict]:
        """Act on every due schedule; return what was done, one dict per schedule acted on."""
        now = self.clock()
        self.children = {p: c for p, c in self.children.items() if c.poll() is None}
        done = []
        for schedule in self.store.list_schedules().to_dicts():
            if schedule["paused"] or schedule["next_run_at"] is None or schedule["next_run_at"] > now:
                continue
            done.append(self._due(schedule, now))
        return done

    def _due(self, schedule: dict, now: datetime) -> dict:
        late = (now - schedule["next_run_at"]).total_seconds() > self.grace_s
        missed = missed_times(schedule["cron"], schedule["next_run_at"], now) if late else 0
        update: dict = {"next_run_at": next_run(schedule["cron"], now)}
        blocker = self._blocker(schedule["pipeline"])
        if late and schedule["missed"] == "skip":
            action, outcome = "skipped", f"missed {missed} run(s) while the hub was away; policy skip"
            update["skipped_runs"] = (schedule["skipped_runs"] or 0) + missed
        elif blocker:
            action, outcome = "skipped", f"skipped: {blocker}"
            update["skipped_runs"] = (schedule["skipped_runs"] or 0) + 1
        else:
            params = json.loads(schedule["params"]) if isinstance(schedule["params"], str) else schedule["params"]
            try:
                self.children[schedule["pipeline"]] = self.launch({**schedule, "params": params})
            except (OSError, WorkbenchError) as e:
                action, outcome = "failed", f"launch failed: {e}"
            else:
                action = "launched"
                outcome = f"launched a catch-up run for {missed} missed run(s)" if late else "launched"
                update["last_run_at"] = now
        update["last_outcome"] = f"{now:%Y-%m-%d %H:%M} UTC {outcome}"
        self.store.update_schedule(schedule["id"], **update)
        log.info("schedule %s (%s): %s", schedule["id"], schedule["pipeline"], outcome)
        return {"schedule": schedule["id"], "pipeline": schedule["pipeline"], "action": action, "outcome": outcome}

    def _blocker(self, pipeline: str) -> str | None:
        """Why ``pipeline`` may not start now, or None."""
        if pipeline in self.children:
            return f"the run launched for {pipeline} at the previous due time is still going"
        for status in ("running", "queued"):
            for run in self.store.list_pipeline_runs(pipeline=_run_name(pipeline), status=status).to_dicts():
                if run["host"] == self.host and run["pid"] and not _alive(run["pid"]):
                    self.store.update_pipeline_run(
                        run["id"], status="failed",
                        error=f"the runner process {run['pid']} on {run['host']} is gone; the scheduler closed the run",
                    )
                    continue
                return f"run {run['id']} of {run['pipeline']} is still {status}"
        return None


def _run_name(pipeline: str) -> str:
    """The name runs of ``pipeline`` (a name or a YAML path) are recorded under: its file's ``name:``."""
    from bi_ide.pipelines.spec import load_pipeline

    try:
        return load_pipeline(pipeline, check_notebooks=False).name
    except WorkbenchError:
        return Path(pipeline).stem


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def launch_run(schedule: dict, *, hub_url: str, token: str | None, root: Path | None = None) -> subprocess.Popen:
    """``bi-ide pipeline run`` for ``schedule`` in a child writing through the hub; its output goes to
    ``data/runs/schedules/<schedule id>.log``."""
    root = root or settings.project_root()
    cmd = [sys.executable, "-m", "bi_ide.pipelines.cli", "run", schedule["pipeline"], "--trigger", "schedule",
           "--schedule-id", schedule["id"], "--params-json", json.dumps(schedule.get("params") or {})]
    env = {k: v for k, v in os.environ.items() if k != "BI_IDE_DB"}
    env.update(BI_IDE_HUB=hub_url, BI_IDE_TOKEN=token or "")
    logs = root / "data" / "runs" / "schedules"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{schedule['id']}.log", "ab") as out:
        out.write(f"\n--- {now_utc():%Y-%m-%d %H:%M:%S} UTC {' '.join(cmd[1:])}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def start_scheduler(store, interval_s: float = 30, *, hub_url: str | None = None, token: str | None = None,
                    root: Path | None = None) -> Scheduler:
    """Run ``Scheduler.tick`` every ``interval_s`` in a daemon thread of the hub process.

    Children write through the hub at ``hub_url`` (default: loopback on the port of this
    ``panel serve``) with ``token`` (default: a developer token made for the scheduler, replacing
    the one of the previous hub start). ``scheduler.stop()`` ends the loop.
    """
    hub_url = hub_url or own_url()
    token = token or _scheduler_token(store)
    scheduler = Scheduler(store, lambda s: launch_run(s, hub_url=hub_url, token=token, root=root),
                          interval_s=interval_s)

    def loop():
        while not scheduler.stopping.is_set():
            try:
                scheduler.tick()
            except Exception:  # a bad tick must not end the loop; the next one tries again
                log.exception("scheduler tick failed")
            scheduler.stopping.wait(interval_s)

    scheduler.thread = threading.Thread(target=loop, name="bi-ide-scheduler", daemon=True)
    scheduler.thread.start()
    return scheduler


def own_url(argv: list[str] | None = None) -> str:
    """The hub's loopback URL, from the ``--address``/``--port`` of this ``panel serve`` command line."""
    argv = sys.argv if argv is None else argv
    opts = {}
    for i, arg in enumerate(argv):
        for name in ("--port", "--address"):
            if arg == name and i + 1 < len(argv):
                opts[name] = argv[i + 1]
            elif arg.startswith(name + "="):
                opts[name] = arg.split("=", 1)[1]
    address = opts.get("--address", "127.0.0.1")
    if address in ("0.0.0.0", "::", ""):
        address = "127.0.0.1"
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{opts.get('--port', settings.DEFAULT_PORT)}"


SCHEDULER_TOKEN = "hub scheduler"


def _scheduler_token(store) -> str:
    tokens = store.list_tokens()
    for row in tokens.filter(tokens["name"] == SCHEDULER_TOKEN).to_dicts():
        if row["revoked_at"] is None:
            store.revoke_token(row["id"])
    return store.create_token(SCHEDULER_TOKEN, "developer")[1]
