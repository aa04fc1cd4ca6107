"""What papermill adds to each step of a pipeline.

Builds, in a temporary folder, a pipeline of N steps (5; 2 with --quick) whose notebooks each do
the same small fixed work (a parameters cell, then one cell computing sum(range(n))), and prints:
  1. the end-to-end time of `run_pipeline` on it (against Store(memory=True)), against the same
     cells run directly in this process (exec, no kernel: the baseline), and the ratio;
  2. papermill's overhead per step = (pipeline time - direct time) / N (issue goal: <= 3 s);
  3. that overhead split into the kernel's start and papermill's bookkeeping (the step's time
     less the time its cells ran, from the executed notebooks' papermill metadata) against the
     cells' own execution time, and a bare kernel start/stop (jupyter_client) for scale.
Ends with one JSON line of the figures.

    python bench/pipeline.py            # 5 steps
    python bench/pipeline.py --quick    # 2 steps, a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from bi_ide.pipelines import load_pipeline, run_pipeline
from bi_ide.store import Store

PARAMS = "n: int = 1_000_000  # how much work"
WORK = "total = sum(range(n))\nprint(total)"
GOAL_S = 3.0


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(WORK)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def build(folder: Path, steps: int, n: int):
    """A project with ``steps`` notebooks, each step needing the one before."""
    lines = ["name: overhead", f"params: {{n: {n}}}", "steps:"]
    for i in range(steps):
        write_notebook(folder / "notebooks" / f"step{i}.ipynb")
        needs = f", needs: [s{i - 1}]" if i else ""
        lines.append(f"  - {{name: s{i}, notebook: notebooks/step{i}.ipynb, params: {{n: \"{{{{ n }}}}\"}}{needs}}}")
    (folder / "pipelines").mkdir()
    path = folder / "pipelines" / "overhead.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_pipeline(path, folder)


def direct(steps: int, n: int) -> float:
    """The same cells, run with exec in this process, once per step."""
    code = compile(WORK.replace("print(total)", "total"), "<work>", "exec")
    t = time.perf_counter()
    for _ in range(steps):
        exec(code, {"n": n})
    return time.perf_counter() - t


def cell_seconds(path: str) -> float:
    """The time the cells of an executed notebook ran, as papermill recorded it."""
    nb = nbformat.read(path, as_version=4)
    return sum(c.metadata.get("papermill", {}).get("duration") or 0.0 for c in nb.cells if c.cell_type == "code")


def bare_kernel_start(repeat: int) -> float:
    """Median seconds to start a python3 kernel, wait for it to answer, and shut it down."""
    from jupyter_client.manager import start_new_kernel

    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps, for a smoke run")
    parser.add_argument("--steps", type=int, help="number of steps (default 5, 2 with --quick)")
    parser.add_argument("--n", type=int, default=1_000_000, help="each step computes sum(range(n))")
    args = parser.parse_args()
    steps = args.steps or (2 if args.quick else 5)

    t = time.perf_counter()
    import papermill  # noqa: F401  (run_pipeline imports it; its import is counted apart)
    import_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="bi-ide-bench-") as tmp:
        folder = Path(tmp)
        spec = build(folder, steps, args.n)
        direct(1, args.n)  # warm
        direct_s = min(direct(steps, args.n) for _ in range(3))
        with Store(memory=True) as store:
            t = time.perf_counter()
            run = run_pipeline(spec, None, store, archive_root=folder / "runs")
            pipeline_s = time.perf_counter() - t
        if run["status"] != "done":
            raise SystemExit(f"the pipeline failed: {run.get('error')}")
        step_s = [s["duration_s"] for s in run["steps"]]
        cells_s = [cell_seconds(s["output_path"]) for s in run["steps"]]
        kernel_s = bare_kernel_start(1 if args.quick else 3)

    overhead = (pipeline_s - direct_s) / steps
    setup = statistics.mean(s - c for s, c in zip(step_s, cells_s, strict=True))  # kernel start + papermill
    runner = (pipeline_s - sum(step_s)) / steps  # store records, archive, outside papermill
    print(f"pipeline         {pipeline_s:>8.2f} s for {steps} steps   direct in-process {direct_s:>8.3f} s   "
          f"ratio {pipeline_s / direct_s:.0f}x")
    print(f"overhead         {overhead:>8.2f} s per step   (goal <= {GOAL_S:.0f} s: "
          f"{'met' if overhead <= GOAL_S else 'NOT met'})")
    print(f"  of which       {setup:>8.2f} s kernel start + papermill (step time less its cells' "
          f"{statistics.mean(cells_s):.3f} s)   {runner:.3f} s runner/store per step")
    print(f"bare kernel      {kernel_s:>8.2f} s to start and stop a python3 kernel (jupyter_client)   "
          f"papermill import {import_s:.2f} s (once, not counted)")

    print(json.dumps({
        "papermill_overhead_s_per_step": round(overhead, 3),
        "steps": steps,
        "pipeline_s": round(pipeline_s, 3),
        "direct_s": round(direct_s, 4),
        "pipeline_vs_direct_ratio": round(pipeline_s / direct_s, 1),
        "step_setup_s_mean": round(setup, 3),
        "cell_exec_s_mean": round(statistics.mean(cells_s), 4),
        "runner_store_s_per_step": round(runner, 4),
        "bare_kernel_start_s": round(kernel_s, 3),
        "papermill_import_s": round(import_s, 3),
        "goal_s_per_step": GOAL_S,
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
