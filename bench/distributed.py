"""How fast several processes train on this machine, and what DeepSpeed costs against plain PyTorch.

Prints, in one run:
  1. training tokens/s of one process (strategy=single, all cores) against two processes (one
     core each; DDP, then DeepSpeed ZeRO 0, 1, 2 and 3), all with the same global batch;
  2. the overhead of DeepSpeed (ZeRO 0, one process, no launcher) against strategy=single in one
     process: 1 - deepspeed / single tokens/s. Goal (issue): <= 10 %.

Every run is a real launch (python -m bi_ide.training.launch; torchrun for two processes) of the
same TrainConfig: fp32 on the CPU, no evaluation or checkpoint before the last step. tokens/s is
what rank 0 logs every log_interval steps (the store's tokens_per_s): the first window (warm-up)
is dropped and the median of the rest kept. Runs alternate ``--repeats`` times, best kept.
Ends with one JSON line of the figures.

    python bench/distributed.py            # "small" shape: 4 layers, 256 wide, seq 128, global batch 16
    python bench/distributed.py --quick    # "tiny" shape, few steps: a smoke run
    python bench/distributed.py --device cuda --preset medium   # on GPUs: bf16, one GPU per process

On CUDA the runs needing more processes than there are GPUs are left out (and said so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bi_ide.store import Store
from bi_ide.training.config import TrainConfig
from bi_ide.training.corpus import TokenShards, prepare_corpus
from bi_ide.training.launch_cli import launcher_command

ROOT = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, "-m", "bi_ide.training.launch"]
SEED = 1337
# (label, processes, strategy overrides)
RUNS = [
    ("single", 1, {"strategy": "single"}),
    ("deepspeed-zero0-1proc", 1, {"strategy": "deepspeed", "zero_stage": 0}),
    ("ddp-2proc", 2, {"strategy": "ddp"}),
    ("zero0-2proc", 2, {"strategy": "deepspeed", "zero_stage": 0}),
    ("zero1-2proc", 2, {"strategy": "deepspeed", "zero_stage": 1}),
    ("zero2-2proc", 2, {"strategy": "deepspeed", "zero_stage": 2}),
    ("zero3-2proc", 2, {"strategy": "deepspeed", "zero_stage": 3}),
]


def run(label: str, nproc: int, overrides: dict, corpus: Path, folder: Path, args) -> dict:
    """One launch; tokens/s from rank 0's logged windows, the losses, the wall time."""
    steps = args.log_interval * (args.windows + 1)
    config = TrainConfig(
        run_name=f"bench-{label}", preset=args.preset, corpus=str(corpus), out_dir=str(folder / "runs"),
        max_steps=steps, batch_size=args.global_batch // nproc, seq_len=args.seq_len, warmup_steps=2, seed=SEED,
        device=args.device, precision=args.precision, learning_rate=6e-4, min_lr=6e-5, weight_decay=0.1, grad_clip=1.0,
        log_interval=args.log_interval, eval_interval=steps + 1, checkpoint_interval=steps + 1, eval_batches=1,
        **overrides,
    )
    config_file = folder / f"{label}.json"
    config_file.write_text(json.dumps(config.to_dict()))
    db, losses = folder / f"{label}.duckdb", folder / f"{label}-losses.json"
    cmd = launcher_command(nproc=nproc) if nproc > 1 else ENTRY  # one process: no launcher at all
    cmd = [*cmd, "--config-json", str(config_file), "--db", str(db), "--losses-path", str(losses)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    if args.device == "cuda":
        env.pop("OMP_NUM_THREADS")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    t = time.perf_counter()
    with open(folder / f"{label}.log", "w") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if code:
        tail = (folder / f"{label}.log").read_text()[-3000:]
        raise SystemExit(f"{label} failed (exit {code}):\n{tail}")
    with Store(db) as store:
        run_id = store.list_runs().row(0, named=True)["id"]
        windows = store.read_metrics(run_id, ["tokens_per_s"]).sort("step")["value"].to_list()
    return {"tokens_per_s": statistics.median(windows[1:]), "losses": json.loads(losses.read_text()),
            "wall_s": wall, "batch_size": config.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape and few steps, for a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="alternating rounds; best of each kept")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: one GPU per process")
    parser.add_argument("--preset", default=None, help="model shape (default: small, tiny with --quick)")
    args = parser.parse_args()
    if args.device == "cuda" and not _gpus():
        raise SystemExit("--device cuda: this machine has no CUDA GPU (torch.cuda.device_count() is 0)")
    args.precision = "bf16" if args.device == "cuda" else "fp32"
    preset = args.preset
    if args.quick:
        args.preset, args.seq_len, args.global_batch, args.log_interval, args.windows = "tiny", 64, 8, 5, 2
        vocab, corpus_bytes = 512, 256 * 1024
    else:
        args.preset, args.seq_len, args.global_batch, args.log_interval, args.windows = "small", 128, 16, 10, 3
        vocab, corpus_bytes = 4096, 2 * 2**20
    args.preset = preset or args.preset
    args.repeats = args.repeats or 1
    runs = [r for r in RUNS if args.device == "cpu" or r[1] <= _gpus()]
    for label, nproc, _ in RUNS:
        if (label, nproc, _) not in runs:
            print(f"{label}: left out, needs {nproc} GPUs and this machine has {_gpus()}")
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bi-ide-bench-distributed-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        corpus = folder / "corpus"
        manifest = prepare_corpus(["builtin:stdlib"], corpus, vocab_size=vocab, max_bytes_per_source=corpus_bytes)
        print(f"corpus: builtin:stdlib, {len(TokenShards(corpus, 'train')):,} train tokens, vocab "
              f"{manifest['vocab_size']}, prepared in {time.perf_counter() - t:.1f} s")
        steps = args.log_interval * (args.windows + 1)
        where = (f"{args.precision} on {_gpus()} × {_gpu_name()}" if args.device == "cuda" else
                 f"fp32 on {cores} CPU cores (1 process: {cores} threads; 2 processes: {max(1, cores // 2)} each)")
        print(f"preset {args.preset}, seq_len {args.seq_len}, global batch {args.global_batch}, {where}; {steps} steps, "
              f"tokens/s = median of {args.windows} windows of {args.log_interval} steps after the first; "
              f"best of {args.repeats}")
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for label, nproc, overrides in runs:
                result = run(label, nproc, overrides, corpus, folder, args)
                if label not in best or result["tokens_per_s"] > best[label]["tokens_per_s"]:
                    best[label] = result

    single = best["single"]["tokens_per_s"]
    print(f"\n{'run':<24}{'processes':>10}{'tokens/s':>12}{'vs single':>11}{'loss 1st':>10}{'loss last':>11}"
          f"{'wall s':>9}")
    for label, nproc, _ in runs:
        b = best[label]
        print(f"{label:<24}{nproc:>10}{b['tokens_per_s']:>12,.0f}{b['tokens_per_s'] / single:>11.2f}"
              f"{b['losses'][0]:>10.3f}{b['losses'][-1]:>11.3f}{b['wall_s']:>9.1f}")
    overhead = 1 - best["deepspeed-zero0-1proc"]["tokens_per_s"] / single
    print(f"\nDeepSpeed (ZeRO 0, 1 process) against plain PyTorch: {overhead:+.1%} overhead (goal <= 10 %)")
    print("(wall s includes process start, DeepSpeed's start-up and the final evaluation and checkpoint)")

    figures = {f"{label.replace('-', '_')}_tokens_per_s": round(best[label]["tokens_per_s"], 1) for label, _, _ in runs}
    figures.update({
        "deepspeed_overhead_1proc": round(overhead, 4),
        "speedup_ddp_2proc": round(best["ddp-2proc"]["tokens_per_s"] / single, 3) if "ddp-2proc" in best else None,
        "device": args.device if args.device == "cpu" else _gpu_name(), "precision": args.precision,
        "preset": args.preset, "seq_len": args.seq_len, "global_batch": args.global_batch, "steps": steps,
        "cores": cores, "repeats": args.repeats, "quick": args.quick,
        "load_avg_1m_start": round(load_start, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2),
    })
    print(json.dumps(figures))


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


if __name__ == "__main__":
    main()
