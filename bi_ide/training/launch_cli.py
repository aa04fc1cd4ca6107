"""``bi-ide train launch``: start a run on several processes or machines (torchrun or DeepSpeed's launcher).

Each process runs ``python -m bi_ide.training.launch`` (bi_ide.training.launch) with the same
TrainConfig; the launcher gives it its rank.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from bi_ide.clikit import db_option
from bi_ide.errors import ConfigError
from bi_ide.training.config import RECIPES, parse_overrides, recipe

ENTRY = "bi_ide.training.launch"


@click.command("launch")
@click.option("--recipe", "recipe_name", type=click.Choice(list(RECIPES)), default="small-cpu", show_default=True,
              help="Named run to start from.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change one TrainConfig parameter (repeatable); strategy=ddp or deepspeed is required.")
@click.option("--nproc", type=click.IntRange(1, 1024), default=None,
              help="Processes on this machine (one per GPU; on a CPU, at most one per core).")
@click.option("--hostfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="DeepSpeed hostfile (`host slots=N` lines): start every machine over ssh.")
@click.option("--nnodes", type=click.IntRange(1, 4096), default=None,
              help="No-ssh mode: machines in the run; run the same command on each with its --node-rank.")
@click.option("--node-rank", type=click.IntRange(0, 4095), default=None, help="No-ssh mode: this machine's rank.")
@click.option("--master-addr", default=None, help="Address of the machine with node rank 0.")
@click.option("--master-port", type=click.IntRange(1, 65535), default=None, help="A free port on that machine.")
@click.option("--launcher", type=click.Choice(["torchrun", "deepspeed"]), default=None,
              help="Who starts the processes; default: deepspeed with --hostfile, else torchrun.")
@click.option("--losses-path", type=click.Path(dir_okay=False), default=None,
              help="Rank 0 writes every step's loss here as a JSON list (tests, benchmarks).")
@click.option("--stop-after-steps", type=click.IntRange(0, None), default=0,
              help="Checkpoint and stop (resumable) at the first log step after this many steps; 0: never.")
@click.option("--dry-run", is_flag=True, help="Print the launcher command instead of running it.")
@db_option
def launch(recipe_name, overrides, nproc, hostfile, nnodes, node_rank, master_addr, master_port, launcher,
           losses_path, stop_after_steps, dry_run, db):
    """Train one run on several processes: DDP or DeepSpeed ZeRO, one machine or many.

    Only rank 0 writes metrics and status (to --db, or through the hub when BI_IDE_HUB is set).
    batch_size is per process: 2 processes with batch_size 8 train like 1 with 16.

    \b
    Example:
      bi-ide train launch --nproc 2 --recipe debug --set strategy=ddp
      bi-ide train launch --nproc 2 --set strategy=deepspeed --set zero_stage=2
      bi-ide train launch --hostfile hosts.txt --set strategy=deepspeed --set zero_stage=3
      bi-ide train launch --nnodes 2 --node-rank 0 --master-addr 10.0.0.5 --master-port 29500 \\
          --nproc 1 --set strategy=ddp      # then the same with --node-rank 1 on the other machine
    """
    config = parse_overrides(recipe(recipe_name), list(overrides))
    cmd = launch_command(config, db=db, losses_path=losses_path, stop_after_steps=stop_after_steps, nproc=nproc,
                         hostfile=hostfile, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                         master_port=master_port, launcher=launcher)
    if dry_run:
        click.echo(shlex.join(cmd))
        return
    code = subprocess.call(cmd, env=launch_env(config, nproc))
    if code:
        raise click.ClickException(f"the launcher exited with status {code}: {shlex.join(cmd[:6])} ...")


def train_distributed(config, *, nproc: int | None = None, hostfile: str | None = None, db=None, **where) -> dict:
    """Train ``config`` on the processes the launcher starts, wait, and return rank 0's summary.

    The Python side of ``bi-ide train launch`` (02-train uses it when ``nproc`` > 1 or a hostfile is
    given): ``where`` takes the command's other placements (nnodes, node_rank, master_addr,
    master_port, launcher). The launcher's output is kept; on failure its last lines are raised.
    """
    summary_path = Path(config.out_dir) / ".launch" / f"summary-{os.getpid()}-{time.monotonic_ns()}.json"
    cmd = launch_command(config, db=db, summary_path=summary_path, nproc=nproc, hostfile=hostfile, **where)
    done = subprocess.run(cmd, env=launch_env(config, nproc), capture_output=True, text=True)
    if done.returncode or not summary_path.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"the distributed run failed (launcher exit status {done.returncode}); its last lines:\n"
                          f"{tail}")
    summary = json.loads(summary_path.read_text())
    summary_path.unlink()
    return summary


def launch_command(config, *, db=None, losses_path=None, summary_path=None, stop_after_steps: int = 0,
                   **where) -> list[str]:
    """The whole command that starts ``config`` where ``where`` says (launcher_command's options)."""
    if config.strategy == "single":
        raise ConfigError("strategy=single runs one process; add --set strategy=ddp or --set strategy=deepspeed "
                          "(or use `bi-ide train run`)")
    rank_args = ["--config-json", str(_write_config(config))]
    for flag, path in (("--db", db), ("--losses-path", losses_path), ("--summary-path", summary_path)):
        if path:
            rank_args += [flag, str(Path(path).resolve())]
    if stop_after_steps:
        rank_args += ["--stop-after-steps", str(stop_after_steps)]
    return launcher_command(**where) + rank_args


def launch_env(config, nproc: int | None) -> dict:
    """The launcher's environment: several CPU ranks on one machine get one OpenMP thread each."""
    env = dict(os.environ)
    if (config.device == "cpu" or not _has_cuda()) and (nproc or 1) > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # ranks share the cores; bi_ide splits torch's threads too
    return env


def launcher_command(*, nproc=None, hostfile=None, nnodes=None, node_rank=None, master_addr=None, master_port=None,
                     launcher=None) -> list[str]:
    """The launcher's argv up to (and including) the per-rank module; the rank's own arguments follow."""
    if hostfile:
        if launcher == "torchrun":
            raise ConfigError("--hostfile drives DeepSpeed's launcher (ssh to every host); for torchrun use "
                              "--nnodes/--node-rank/--master-addr/--master-port on each machine")
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(Path(hostfile).resolve())]
        if master_addr:
            cmd += ["--master_addr", master_addr]
        if master_port:
            cmd += ["--master_port", str(master_port)]
        return [*cmd, "--no_local_rank", "--module", ENTRY]
    if nnodes is not None or node_rank is not None:
        missing = [name for name, v in (("--nnodes", nnodes), ("--node-rank", node_rank),
                                        ("--master-addr", master_addr), ("--master-port", master_port)) if v is None]
        if missing:
            raise ConfigError(f"the no-ssh mode needs --nnodes, --node-rank, --master-addr and --master-port; "
                              f"missing {', '.join(missing)}")
        if node_rank >= nnodes:
            raise ConfigError(f"--node-rank {node_rank} must be below --nnodes {nnodes}")
        if launcher == "deepspeed":
            raise ConfigError("the no-ssh mode starts each machine with torchrun; drop --launcher deepspeed "
                              "(strategy=deepspeed still works under torchrun)")
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node-rank",
                str(node_rank), "--master-addr", master_addr, "--master-port", str(master_port),
                "--nproc-per-node", str(nproc or 1), "-m", ENTRY]
    if nproc is None:
        raise ConfigError("say where to run: --nproc N (this machine), --hostfile FILE (DeepSpeed over ssh), or "
                          "--nnodes/--node-rank/--master-addr/--master-port (one command per machine)")
    if launcher == "deepspeed":
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc)]
        cmd += ["--master_port", str(master_port or _free_port())]
        return [*cmd, "--no_local_rank", "--module", ENTRY]
    port = ["--master-port", str(master_port)] if master_port else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", *port, "--nproc-per-node", str(nproc),
            "-m", ENTRY]


def _write_config(config) -> Path:
    """The config as a JSON file under out_dir (on a shared filesystem every machine reads the same)."""
    folder = Path(config.out_dir) / ".launch"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"config-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    path.write_text(json.dumps(config.to_dict(), indent=2))
    return path.resolve()


def _free_port() -> int:
    from bi_ide.training.distributed import free_port

    return free_port()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
