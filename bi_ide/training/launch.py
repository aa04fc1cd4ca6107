"""One rank of a multi-process run: what torchrun or the deepspeed launcher starts on every process.

    python -m bi_ide.training.launch --config-json run.json [--db FILE | --offline] [--losses-path FILE]

``bi-ide train launch`` builds this command (see bi_ide.training.launch_cli). The launcher sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; only rank 0 opens the store (a store
file takes one writer; with BI_IDE_HUB set it writes through the hub) and creates the run, the
other ranks get its id from rank 0. With ``--offline`` (a machine without the store, see
bi_ide.training.offline) rank 0 records the run in its folder and spools its metrics there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from bi_ide.errors import WorkbenchError


def read_config(value: str) -> dict:
    """``--config-json``: inline JSON (starts with ``{``) or the path of a JSON file."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bi_ide.training.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", required=True, help="TrainConfig values: inline JSON or a .json file")
    parser.add_argument("--db", default=None, help="store file for rank 0 (default: $BI_IDE_DB / BI_IDE_HUB)")
    parser.add_argument("--offline", action="store_true",
                        help="no store: rank 0 writes run.json and spools metrics in the run's folder "
                             "(bi-ide train replay sends them later)")
    parser.add_argument("--losses-path", default=None, help="rank 0 writes every step's loss here (JSON list)")
    parser.add_argument("--summary-path", default=None, help="rank 0 writes the run's summary here (JSON)")
    parser.add_argument("--stop-after-steps", type=int, default=0,
                        help="ask for a stop after this many steps: the run checkpoints and stops, resumable, at "
                             "the next log step (e.g. to hand the machines back); 0: never")
    args = parser.parse_args(argv)

    from bi_ide.training.config import TrainConfig
    from bi_ide.training.distributed import make_strategy

    try:
        config = TrainConfig.from_dict(read_config(args.config_json))
        strategy = make_strategy(config)
    except WorkbenchError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finished = False
    try:
        if strategy.is_main:
            with _store(config, args) as store:
                summary = _trainer(config, store, strategy, args.stop_after_steps).run()
            _report(summary, strategy, args.losses_path, args.summary_path)
        else:
            _trainer(config, None, strategy, args.stop_after_steps).run()
        finished = True
    except WorkbenchError as e:
        print(f"Error (rank {strategy.rank}): {e}", file=sys.stderr)
        return 1
    finally:
        strategy.close(wait=finished)
    return 0


def _store(config, args):
    if args.offline:
        from bi_ide.training.offline import OfflineStore

        return contextlib.nullcontext(OfflineStore(config.out_dir))
    from bi_ide.clikit import open_store

    return open_store(Path(args.db) if args.db else None)


def _trainer(config, store, strategy, stop_after_steps: int):
    from bi_ide.training.trainer import Trainer

    trainer = Trainer(config, store, strategy=strategy)
    if stop_after_steps:
        # every rank asks at the same step; they agree to stop at the next log step
        trainer.on_step = lambda p: p.step == stop_after_steps and trainer.request_stop("--stop-after-steps")
    return trainer


def _report(summary: dict, strategy, losses_path: str | None, summary_path: str | None) -> None:
    if losses_path:
        Path(losses_path).write_text(json.dumps(summary["losses"]))
    if summary_path:  # whole or not at all: the reader takes a missing file for a failed run
        tmp = Path(summary_path).with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, default=str))
        tmp.replace(summary_path)
    last = f" (last loss {summary['losses'][-1]:.4f})" if summary["losses"] else ""
    print(f"run {summary['run_id']} {summary['status']} after {summary['steps']} steps{last} "
          f"on {strategy.world_size} processes ({strategy.name})", flush=True)
    if summary["model"]:
        m = summary["model"]
        print(f"model {m['name']} v{m['version']} ({m['id']}) ready", flush=True)


if __name__ == "__main__":
    sys.exit(main())
