"""Run a pipeline: each notebook through papermill, in dependency order, recorded in the store.

``run_pipeline`` is the one way a pipeline runs: the CLI calls it, the hub's scheduler calls it
(through ``bi-ide pipeline run`` in a child process) and a worker machine can call it with a
HubClient as ``store``. It needs only the store API, so it writes the same records embedded or
through the hub:

1. a ``pipeline_runs`` row (queued) with one ``pipeline_steps`` row per step (pending);
2. the run becomes running; each step runs with papermill and its executed copy is archived as
   ``data/runs/<pipeline run id>/<step>.ipynb``;
3. a step that raises is failed with the failing cell's index (in the executed notebook, as
   papermill counts) and the error; every step that needs it is skipped; independent steps run;
4. the run ends done, or failed naming the first failed step.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from bi_ide.errors import NotFoundError, StoreLockedError
from bi_ide.pipelines.spec import Pipeline

KERNEL = "python3"


def run_pipeline(spec: Pipeline, params: dict | None, store, trigger: str = "manual", worker_id: str | None = None,
                 *, schedule_id: str | None = None, archive_root: Path | None = None,
                 on_step: Callable[[dict], None] | None = None, kernel_name: str = KERNEL) -> dict:
    """Run every step of ``spec`` with ``params`` (overrides of its defaults); return the run's record.

    ``store`` is a Store, a HubClient or a StoreFile. ``on_step`` gets each step's record when it
    ends (done, failed or skipped). The record returned has ``status`` done or failed and ``steps``.
    """
    import papermill  # imports nbclient, jupyter_client, ...: only when a pipeline runs

    values = spec.resolve(params)
    step_params = {s.name: spec.step_params(s, values) for s in spec.steps}
    run = store.create_pipeline_run(
        spec.name, params=values, trigger=trigger, worker_id=worker_id, schedule_id=schedule_id,
        host=socket.gethostname(), pid=os.getpid(),
        steps=[{"name": s.name, "notebook": s.notebook, "params": step_params[s.name]} for s in spec.steps],
    )
    run_id = run["id"]
    if schedule_id is not None:
        _link_schedule(store, schedule_id, run_id)
    archive = (archive_root or spec.root / "data" / "runs") / run_id
    archive.mkdir(parents=True, exist_ok=True)
    store.update_pipeline_run(run_id, status="running", archive_path=str(archive))
    failed: dict[str, str] = {}  # step name -> why it did not produce its outputs
    current = None
    try:
        for step in spec.steps:
            blocked = [n for n in step.needs if n in failed]
            if blocked:
                failed[step.name] = "skipped"
                record = store.update_pipeline_step(run_id, step.name, status="skipped",
                                                    error=f"not run: it needs {blocked[0]}, which did not finish")
                _tell(on_step, record)
                continue
            current = step.name
            out = archive / f"{step.name}.ipynb"
            store.update_pipeline_step(run_id, step.name, status="running", output_path=str(out))
            start = time.monotonic()
            outcome = _execute(papermill, spec.notebook_path(step), out, step_params[step.name], spec.root,
                               kernel_name)
            current = None
            if outcome["status"] == "failed":
                failed[step.name] = outcome["error"]
            record = store.update_pipeline_step(run_id, step.name, duration_s=round(time.monotonic() - start, 3),
                                                **outcome)
            _tell(on_step, record)
    except BaseException as e:
        # Ctrl-C, or the store failing under us: leave a record that says so, then let it propagate.
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"the runner failed: {type(e).__name__}: {e}"
        _close_quietly(store, run_id, current, why, "stopped" if isinstance(e, KeyboardInterrupt) else "failed")
        raise
    first = next((s for s in spec.steps if s.name in failed and failed[s.name] != "skipped"), None)
    if first is None:
        store.update_pipeline_run(run_id, status="done")
    else:
        step = next(s for s in store.get_pipeline_run(run_id)["steps"] if s["name"] == first.name)
        store.update_pipeline_run(run_id, status="failed", error=failure_line(step))
    return store.get_pipeline_run(run_id)


def failure_line(step: dict) -> str:
    """``step 'train' failed at cell 4: ValueError: ...`` from a step record."""
    cell = f" at cell {step['failed_cell']}" if step.get("failed_cell") is not None else ""
    return f"step {step['name']!r} failed{cell}: {step.get('error')}"


def _execute(papermill, notebook: Path, out: Path, params: dict, cwd: Path, kernel_name: str) -> dict:
    """Run one notebook; the step record's fields: status, and failed_cell and error on failure."""
    try:
        with _kernel_transport() as config:
            papermill.execute_notebook(
                str(notebook), str(out), parameters=params, cwd=str(cwd), kernel_name=kernel_name,
                progress_bar=False, log_output=False, **config,
            )
    except papermill.PapermillExecutionError as e:
        return {"status": "failed", "failed_cell": e.cell_index, "error": _short(f"{e.ename}: {e.evalue}")}
    except Exception as e:  # no such kernel, a broken .ipynb, a kernel that died: the step failed, not the runner
        return {"status": "failed", "error": _short(f"{type(e).__name__}: {e}")}
    return {"status": "done"}


@contextmanager
def _kernel_transport():
    """Where the kernel can, it talks to the runner over Unix sockets in a private folder rather than
    TCP on loopback, which any local user could connect to (and the kernel warns about)."""
    if os.name == "nt":  # no IPC transport on Windows: loopback TCP, as Jupyter does there
        yield {}
        return
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="bi-ide-kernel-") as folder:
        os.chmod(folder, 0o700)
        yield {"config": Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "k")}})}


def _short(text: str, limit: int = 2000) -> str:
    text = text.strip() or "(no message)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tell(on_step, record: dict) -> None:
    if on_step is not None:
        on_step(record)


def _link_schedule(store, schedule_id: str, run_id: str) -> None:
    try:
        store.update_schedule(schedule_id, last_run_id=run_id)
    except NotFoundError:  # removed since it launched this run; the run still names it
        pass


def _close_quietly(store, run_id: str, current: str | None, why: str, status: str) -> None:
    try:
        if current is not None:
            store.update_pipeline_step(run_id, current, status="failed", error=why)
        for step in store.get_pipeline_run(run_id)["steps"]:
            if step["status"] == "pending":
                store.update_pipeline_step(run_id, step["name"], status="skipped", error=why)
        store.update_pipeline_run(run_id, status=status, error=why)
    except Exception:  # the original error matters more than a failed clean-up
        pass


class StoreFile:
    """The store file, opened for each call and closed after it.

    A pipeline run without a hub must not hold the DuckDB file while its notebooks run: each kernel
    is another process, and a notebook that records to the store opens the same file. Between the
    runner's few writes the file is free; a call that finds it held waits up to ``wait_s``.
    """

    def __init__(self, path: str | os.PathLike, *, wait_s: float = 30.0):
        self.path = Path(path)
        self.wait_s = wait_s

    def __repr__(self) -> str:
        return f"StoreFile({str(self.path)!r})"

    def __getattr__(self, name: str):
        from bi_ide.store import Store

        if name.startswith("_") or not callable(getattr(Store, name, None)):
            raise AttributeError(name)

        def call(*args, **kwargs):
            delay, deadline = 0.1, time.monotonic() + self.wait_s
            while True:
                try:
                    store = Store(self.path)
                except StoreLockedError:  # raised on open, before anything is written: safe to retry
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                with store:
                    return getattr(store, name)(*args, **kwargs)

        return call

    def close(self) -> None:
        """Nothing stays open between calls."""

    def __enter__(self) -> StoreFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
