"""``bi-ide train``, ``bi-ide models`` and ``bi-ide sample``: a thin click layer over the trainer."""

from __future__ import annotations

import json
import sys

import click
import polars as pl

from bi_ide.clikit import Group, db_option, open_store
from bi_ide.errors import ConfigError
from bi_ide.store import RUN_STATUSES
from bi_ide.training.config import RECIPES, parse_overrides, recipe
from bi_ide.training.launch_cli import launch


@click.group(cls=Group)
def train():
    """Train language models: start a run, watch it, stop it.

    \b
    Example:
      bi-ide train run --recipe small-cpu --set max_steps=300
    """


@train.command("run")
@click.option("--recipe", "recipe_name", type=click.Choice(list(RECIPES)), default="small-cpu", show_default=True,
              help="Named run to start from.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change one TrainConfig parameter (repeatable); `bi-ide train params` lists them.")
@db_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_(recipe_name, overrides, db, quiet):
    """Train until max_steps/epochs, a stop request, or Ctrl-C (which checkpoints and stops cleanly).

    Writes through the hub when BI_IDE_HUB is set; otherwise into the store file itself.

    \b
    Example:
      bi-ide train run --recipe debug --set corpus=data/corpora/quran-stdlib
      bi-ide train run --recipe small-cpu --set resume_from=3f9a0c1d2e4b
    """
    from bi_ide.training.trainer import Trainer

    config = parse_overrides(recipe(recipe_name), list(overrides))
    with open_store(db) as store:
        bar = None if quiet else _ProgressBar()
        trainer = Trainer(config, store, on_step=bar)
        try:
            summary = trainer.run()
        finally:
            if bar:
                bar.close()
    click.echo(f"run {summary['run_id']} {summary['status']} after {summary['steps']} steps "
               f"(last loss {summary['losses'][-1]:.4f})" if summary["losses"] else
               f"run {summary['run_id']} {summary['status']} after {summary['steps']} steps")
    for key, value in sorted(summary["val"].items()):
        click.echo(f"  {key:18} {value:.4f}")
    if summary["model"]:
        click.echo(f"model {summary['model']['name']} v{summary['model']['version']} ({summary['model']['id']}) ready")
    if summary["spooled"]:
        click.echo("some metrics could not reach the store and wait in the run's spool.jsonl; they are sent "
                   "on the next run that resumes it, or with `bi-ide train replay RUN`", err=True)


class _ProgressBar:
    """A click progress bar fed by the trainer's on_step callback."""

    def __init__(self):
        self.bar = None

    def __call__(self, p) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=p.total_steps, label="training", file=sys.stderr,
                                         item_show_func=lambda s: s, show_eta=True)
            self.bar.__enter__()
            self.bar.update(p.step - 1)
        self.bar.update(1, f"loss {p.loss:.3f} · {p.tokens_per_s:,.0f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


train.add_command(launch)


@train.command("params")
@click.option("--recipe", "recipe_name", type=click.Choice(list(RECIPES)), default="small-cpu", show_default=True)
def params(recipe_name):
    """List TrainConfig parameters with the recipe's values, bounds and help.

    \b
    Example:
      bi-ide train params --recipe debug
    """
    config = recipe(recipe_name)
    for name, p in config.param.objects("existing").items():
        if name == "name":
            continue
        allowed = f"one of {p.objects}" if getattr(p, "objects", None) else (f"in {p.bounds}" if getattr(
            p, "bounds", None) else "")
        click.echo(f"{name:20} {getattr(config, name)!r:28} {allowed:36} {p.doc}")


@train.command("status")
@click.argument("run_id", required=False)
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None)
@db_option
def status(run_id, status, db):
    """Show training runs with their progress, or one run in full.

    \b
    Example:
      bi-ide train status --status running
    """
    with open_store(db) as store:
        if run_id:
            run = store.get_run(run_id)
            click.echo(json.dumps(run, indent=2, default=str))
            return
        df = store.list_runs(kind="train", status=status)
    if df.is_empty():
        click.echo("no training runs yet: bi-ide train run --recipe debug")
        return
    df = df.select("id", "name", "status", "preset", pl.format("{}/{}", "step", "total_steps").alias("progress"),
                   "created_at")
    with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        click.echo(df)


@train.command("stop")
@click.argument("run_id")
@db_option
def stop(run_id, db):
    """Ask a running run to checkpoint and stop (it checks every log_interval steps).

    \b
    Example:
      bi-ide train stop 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        run = store.get_run(run_id)
        if run["status"] not in ("queued", "running"):
            raise ConfigError(f"run {run_id} is {run['status']}; only queued or running runs can be stopped")
        store.update_run(run_id, stop_requested=True)
    click.echo(f"stop requested for {run_id}; it checkpoints and ends within log_interval steps")


@train.command("replay")
@click.argument("run_id")
@click.option("--out-dir", default="data/runs", show_default=True, help="Folder of run folders.")
@db_option
def replay_(run_id, out_dir, db):
    """Send a run's spooled metrics (kept while the store was unreachable) to the store.

    A run trained offline (on a machine without the store, e.g. by bench/gpu.py) is created first
    from the run.json in its folder, under the same id.

    \b
    Example:
      bi-ide train replay 3f9a0c1d2e4b
      bi-ide train replay 3f9a0c1d2e4b --out-dir bench/results/runs
    """
    from pathlib import Path

    from bi_ide.errors import NotFoundError
    from bi_ide.training.offline import RECORD, import_run
    from bi_ide.training.runlog import replay

    folder = Path(out_dir) / run_id
    spool = folder / "spool.jsonl"
    if not spool.exists() and not (folder / RECORD).exists():
        click.echo(f"nothing spooled for {run_id}")
        return
    with open_store(db) as store:
        if (folder / RECORD).exists():
            try:
                store.get_run(run_id)
            except NotFoundError:
                import_run(store, folder)
                click.echo(f"imported the offline run {run_id} from {folder / RECORD}")
        done = replay(store, run_id, spool)
    click.echo("replayed; spool empty" if done else "the store went away again; the rest stays spooled")


@click.group(cls=Group)
def models():
    """The model registry: finished runs' best checkpoints, ready / deployed / archived.

    \b
    Example:
      bi-ide models list
    """


@models.command("list")
@click.option("--status", type=click.Choice(["ready", "deployed", "archived"]), default=None)
@db_option
def models_list(status, db):
    """List registered models, newest version first.

    \b
    Example:
      bi-ide models list --status deployed
    """
    with open_store(db) as store:
        df = store.list_models(status=status)
    if df.is_empty():
        click.echo("no models yet: a finished training run registers its best checkpoint")
        return
    with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        click.echo(df.select("id", "name", "version", "status", "params_count", "run_id", "created_at"))


@models.command("promote")
@click.argument("model_id")
@click.option("--to", "to", type=click.Choice(["ready", "deployed", "archived"]), default="deployed",
              show_default=True)
@db_option
def models_promote(model_id, to, db):
    """Change a model's status; deploying one archives the name's previously deployed version.

    \b
    Example:
      bi-ide models promote 3f9a0c1d2e4b --to deployed
    """
    with open_store(db) as store:
        model = store.set_model_status(model_id, to)
    click.echo(f"{model['name']} v{model['version']} is {model['status']}")


@click.command()
@click.argument("model")
@click.option("--prompt", default="", help="Text to continue.")
@click.option("--tokens", "max_new_tokens", type=click.IntRange(1, 4096), default=100, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 5.0), default=0.8, show_default=True,
              help="0 is greedy.")
@click.option("--top-k", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@db_option
def sample(model, prompt, max_new_tokens, temperature, top_k, seed, db):
    """Generate text from a registered model (id, or name: its deployed version, else its newest).

    \b
    Example:
      bi-ide sample bi-small --prompt "def fib(n):" --tokens 80
    """
    from bi_ide.training.sampling import generate

    with open_store(db) as store:
        text = generate(store, model, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_k=top_k, seed=seed)
    click.echo(text)
