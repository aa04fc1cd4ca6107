"""The GPU proof kit: one command that proves the CUDA paths on a GPU machine in minutes.

    python bench/gpu.py --out bench/results/gpu.json                  # one CUDA GPU: about 6 minutes
    python bench/gpu.py --device cpu --smoke --out /tmp/gpu.json      # the same steps, tiny, on the CPU

Sections, each in its own process (a crash or hang costs that section only, and leaves its error):
  1. throughput  the gpt2-124m preset with our Trainer: bf16 autocast, torch.compile, fused AdamW,
                 seq 1024; tokens/s after warm-up, MFU against the card's dense bf16 peak (and against a
                 bf16 matmul measured here), peak memory; then the same model (GPT2LMHeadModel, same
                 shape, init and windows) in transformers.Trainer, eager and compiled, both with bf16
                 and fused AdamW: the best of the two is the baseline of the ratio.
     + nvml      while that run trains: the fleet agent's own sampler (bi_ide.fleet.system.Machine)
                 at 1 Hz for 10 s in another process; every GPU field filled, or NVML's reason for
                 leaving it out; the samples accepted by the hub's checks; the training process found
                 among the GPU's processes under the host and pid its run recorded.
  2. resume      N steps straight (twice: CUDA's own run-to-run spread) against N/2, stop, resume, N/2:
                 losses and final weights, with the default kernels and with deterministic ones.
  3. distributed one-GPU DDP over NCCL and DeepSpeed ZeRO-2, each a real launch (torchrun), fp32:
                 their losses against the single process at the CPU tests' tolerance (rtol 1e-5).
  4. council     the council's local model backend on the GPU: members' answers batched (the shared
                 question run once) against one member at a time, tokens/s.

No store is needed: runs are recorded offline (bi_ide.training.offline), their metrics spooled in
their folders; ``--out`` also gets ``<name>.runs.tar.gz`` with those records, to replay here with
``bi-ide train replay``. A bare GPU machine needs param and DeepSpeed besides what it has:
``tools/gpu-bundle`` puts their wheels and the council model's shape in .gpu/ (docs/benchmarks.md).
Ends with one JSON line of the figures, also written to ``--out`` after every section.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("bi_ide") is None:  # a bare machine: the package from this checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from baseline import OPTIM, SEED, StepClock, run_hf  # noqa: E402

from bi_ide.training.config import TrainConfig  # noqa: E402
from bi_ide.training.offline import OfflineStore, read_record  # noqa: E402

SECTIONS = ("throughput", "resume", "distributed", "council")
LOSS_RTOL = 1e-5  # tests/test_distributed.py's tolerance on every step's loss
GOALS = {"mfu": 0.45, "vs_hf": 1.3}
SHAPE_DIR = ROOT / ".gpu" / "smollm2-shape"  # tools/gpu-bundle writes it; made from the GGUF where it is installed
QUESTION = "Should we train the gpt2-124m preset on this GPU tonight?"


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: ``full`` on a GPU, ``smoke`` (tiny) to keep the kit working on a CPU."""

    preset: str = "gpt2-124m"
    seq_len: int = 1024
    batch: int = 32
    warmup: int = 15  # steps before timing (compilation happens here)
    timed: int = 300
    hf_warmup: int = 10
    hf_timed: int = 60
    nvml_s: int = 10
    resume_preset: str = "small"
    resume_seq: int = 256
    resume_batch: int = 8
    resume_steps: int = 20
    dist_preset: str = "small"
    dist_seq: int = 256
    dist_batch: int = 8
    dist_steps: int = 20
    council_members: int = 8
    council_tokens: int = 32
    corpus_bytes: int = 16 * 2**20
    vocab: int = 50257  # GPT-2's
    budget_s: int = 470  # the whole kit; a section that would not fit in what is left is skipped


FULL = Sizes()
SMOKE = Sizes(preset="tiny", seq_len=64, batch=4, warmup=2, timed=6, hf_warmup=2, hf_timed=4, nvml_s=2,
              resume_preset="tiny", resume_seq=32, resume_batch=2, resume_steps=8, dist_preset="tiny", dist_seq=32,
              dist_batch=4, dist_steps=6, council_members=3, council_tokens=6, corpus_bytes=256 * 1024, vocab=512,
              budget_s=240)
# What each section needs at least, in seconds, before it is started (full sizes; smoke: a tenth).
NEEDS = {"throughput": 150, "resume": 40, "distributed": 60, "council": 30}


# ---------------------------------------------------------------------------------------------
# the orchestrator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where to run (default cuda)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the kit itself in about a minute")
    parser.add_argument("--out", type=Path, help="write the JSON here (and <name>.log, .nvml.json, .runs.tar.gz)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--corpus", type=Path, help="a prepared corpus (default: builtin:stdlib, prepared here)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=int, help="seconds for the whole kit (default 470; smoke 240)")
    parser.add_argument("--council-model", help="a model folder or .gguf for the council (default: SmolLM2-135M)")
    parser.add_argument("--council-shape", type=Path, default=SHAPE_DIR,
                        help="SmolLM2-135M's config and tokenizer, for random weights where its GGUF is missing "
                             "(default .gpu/smollm2-shape, made by tools/gpu-bundle)")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # internal: run one section
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.section:
        ctx = json.loads(args.ctx)
        result = globals()[f"section_{args.section}"](ctx)
        print(json.dumps(result, default=str))
        return None
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("torch sees no CUDA GPU here; on a CPU run the smoke version: --device cpu --smoke")
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bi-ide-gpu-kit-")))
        work.mkdir(parents=True, exist_ok=True)
        figures = orchestrate(args, wanted, work)
    print(json.dumps(figures, default=str))


def orchestrate(args, wanted: list[str], work: Path) -> dict:
    started = time.monotonic()
    sizes = SMOKE if args.smoke else FULL
    budget = args.budget_s or sizes.budget_s
    log = work / "kit.log"
    figures = {"kit": "bench/gpu.py", "smoke": args.smoke, "device": args.device, "sizes": asdict(sizes),
               "machine": machine(args.device), "sections": {}}
    t = time.perf_counter()
    corpus = args.corpus or prepare(work / "corpus", sizes)
    figures["corpus"] = {"path": "builtin:stdlib" if not args.corpus else str(args.corpus),
                         "prepare_s": round(time.perf_counter() - t, 1), **corpus_facts(corpus)}
    ctx = {"device": args.device, "smoke": args.smoke, "sizes": asdict(sizes), "corpus": str(corpus),
           "work": str(work), "council_model": args.council_model, "council_shape": str(args.council_shape)}
    for name in wanted:
        left = budget - (time.monotonic() - started)
        need = NEEDS[name] / (10 if args.smoke else 1)
        if left < need:
            figures["sections"][name] = {"ok": False, "skipped": f"{left:.0f} s left of the {budget} s budget; "
                                                                  f"this section needs about {need:.0f} s"}
        else:
            figures["sections"][name] = run_section(name, ctx, left, log)
        print(f"[{time.monotonic() - started:6.1f} s] {name}: {summary_line(name, figures['sections'][name])}",
              flush=True)
        figures["goals"] = goals(figures["sections"])
        figures["wall_s"] = round(time.monotonic() - started, 1)
        write_outputs(args.out, figures, work)
    print_table(figures)
    return figures


def run_section(name: str, ctx: dict, timeout: float, log: Path) -> dict:
    """One section in a child process; its result (the child's last line), or why there is none."""
    env = child_env()
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(ctx["work"]) / "torch_extensions"))
    if name == "resume":  # cuBLAS is deterministic across streams only with this, set before it starts
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--ctx", json.dumps(ctx)]
    t = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n===== {name} =====\n")
        f.flush()
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, timeout=timeout, env=env,
                                  cwd=ctx["work"])
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            f.write(out)
            return {"ok": False, "error": f"timed out after {timeout:.0f} s (the kit's budget)",
                    "wall_s": round(time.perf_counter() - t, 1)}
        f.write(done.stdout)
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        return {"ok": False, "error": f"exit {done.returncode}: " + " | ".join(tail)[-1500:],
                "wall_s": round(time.perf_counter() - t, 1)}
    result["wall_s"] = round(time.perf_counter() - t, 1)
    return result


def child_env() -> dict:
    """This environment, with the checkout first on the path (a bare machine has bi_ide nowhere else)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def machine(device: str) -> dict:
    """What the figures were measured on."""
    facts = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "hostname": socket.gethostname(),
             "python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
             "platform": platform.platform(terse=True)}
    for package in ("transformers", "deepspeed", "nvidia-ml-py"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            facts[package] = importlib.metadata.version(package)
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        facts.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                     multiprocessors=p.multi_processor_count, cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(), gpu_count=torch.cuda.device_count())
        with contextlib.suppress(Exception):
            import pynvml

            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
            facts["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    return facts


def prepare(folder: Path, sizes: Sizes) -> Path:
    """The stdlib of this Python as a corpus with a BPE of GPT-2's vocabulary size (seconds)."""
    from bi_ide.training.corpus import prepare_corpus

    if not (folder / "manifest.json").is_file():
        prepare_corpus(["builtin:stdlib"], folder, vocab_size=sizes.vocab, max_bytes_per_source=sizes.corpus_bytes,
                       min_frequency=1)
    return folder


def corpus_facts(corpus: Path) -> dict:
    from bi_ide.training.corpus import TokenShards, load_manifest

    manifest, _ = load_manifest(corpus)
    return {"vocab_size": manifest["vocab_size"], "train_tokens": len(TokenShards(corpus, "train"))}


def write_outputs(out: Path | None, figures: dict, work: Path) -> None:
    """--out and its companions, each whole or not at all (a later section may still fail)."""
    if out is None:
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.name.removesuffix(".json")
    atomic_write(out, (json.dumps(figures, default=str) + "\n").encode())
    for src, suffix in ((work / "kit.log", ".log"), (work / "nvml.json", ".nvml.json")):
        if src.is_file():
            atomic_write(out.with_name(stem + suffix), src.read_bytes())
    runs = sorted(work.glob("runs-*/*/run.json"))
    if runs:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for record in runs:  # run.json and spool.jsonl: replayable with `bi-ide train replay`
                for path in (record, record.with_name("spool.jsonl")):
                    if path.is_file():
                        tar.add(path, arcname=f"runs/{record.parent.name}/{path.name}")
        atomic_write(out.with_name(stem + ".runs.tar.gz"), buffer.getvalue())


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# 1. throughput (+ the agent's NVML sampler while it trains)


def section_throughput(ctx: dict) -> dict:
    from bi_ide.training.trainer import Trainer

    s, cuda, work = Sizes(**ctx["sizes"]), ctx["device"] == "cuda", Path(ctx["work"])
    steps = s.warmup + s.timed + 1
    config = TrainConfig(
        run_name="gpu-kit-throughput", preset=s.preset, model="bi", corpus=ctx["corpus"],
        out_dir=str(work / "runs-throughput"), max_steps=steps, batch_size=s.batch, seq_len=s.seq_len,
        warmup_steps=s.warmup, seed=SEED, device=ctx["device"], precision="bf16" if cuda else "fp32", compile=cuda,
        log_interval=10, eval_interval=steps + 1, checkpoint_interval=steps + 1, eval_batches=1, dropout=0.0, **OPTIM,
    )
    store = OfflineStore(config.out_dir)
    clock, sampler, ended = StepClock(cuda), {}, {}
    samples_path = work / "nvml.json"

    def on_step(progress) -> None:
        clock.tick()
        ended["time"] = time.time()
        if progress.step == s.warmup:  # compiled and warm: the agent samples the run at full speed
            sampler["started"] = time.time()
            sampler["proc"] = subprocess.Popen([sys.executable, "-m", "bi_ide.fleet.system", "--seconds",
                                                str(s.nvml_s), "--out", str(samples_path)],
                                               env=child_env())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(config, store, on_step=on_step, handle_signals=False)
    t = time.perf_counter()
    summary = trainer.run()
    wall = time.perf_counter() - t
    tps = clock.tokens_per_s(s.warmup, s.timed, config.tokens_per_step)
    peak = trainer.peak
    ours = {"tokens_per_s": round(tps), "step_ms": round(config.tokens_per_step / tps * 1000, 2),
            "flops_per_token": trainer.flops_per_token, "params": trainer.model_params(),
            "loss_first": summary["losses"][0], "loss_last": summary["losses"][-1], "wall_s": round(wall, 1),
            "compile": config.compile, "precision": config.precision, "fused_adamw": cuda,
            "batch": s.batch, "seq_len": s.seq_len, "timed_steps": s.timed, "run_id": summary["run_id"]}
    if cuda:
        ours["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if peak:
        ours["mfu"] = round(tps * trainer.flops_per_token / peak, 4)
        ours["peak_tflops"] = peak / 1e12
    run = read_record(Path(config.out_dir) / summary["run_id"])
    del trainer, on_step  # the compiled graphs hold the model: drop them before the baseline runs
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    nvml = nvml_report(sampler, samples_path, run, ended.get("time", time.time()))

    hf = {}
    for variant, compiled in (("eager", False), ("compiled", True)) if cuda else (("eager", False),):
        try:
            r = run_hf(Path(ctx["corpus"]), _vocab(ctx["corpus"]), work / f"hf-{variant}", preset=s.preset,
                       batch=s.batch, seq_len=s.seq_len, warmup=s.hf_warmup, timed=s.hf_timed, device=ctx["device"],
                       bf16=cuda, compile=compiled, fused=cuda)
            hf[variant] = {"tokens_per_s": round(r["tokens_per_s"]), "loss_first": r["losses"][0],
                           "loss_last_timed": r["losses"][s.hf_warmup + s.hf_timed - 1],
                           "peak_memory_gb": round(r.get("peak_memory_gb", 0.0), 2), "compile": compiled,
                           "bf16": cuda, "optim": "adamw_torch_fused" if cuda else "adamw_torch"}
            if peak:
                hf[variant]["mfu"] = round(r["tokens_per_s"] * ours["flops_per_token"] / peak, 4)
        except Exception as e:  # one variant failing (e.g. compile) leaves the other as the baseline
            hf[variant] = {"error": f"{type(e).__name__}: {e}"[:800]}
        if cuda:
            torch.cuda.empty_cache()
    timed = {k: v for k, v in hf.items() if "tokens_per_s" in v}
    best = max(timed, key=lambda k: timed[k]["tokens_per_s"]) if timed else None
    result = {"ok": bool(best), "ours": ours, "hf_trainer": hf, "hf_best": best,
              "ratio_vs_hf": round(tps / timed[best]["tokens_per_s"], 3) if best else None, "nvml": nvml}
    if cuda:
        result["matmul_bf16_tflops"] = matmul_tflops()
        result["ours"]["mfu_vs_matmul"] = round(tps * ours["flops_per_token"] / (result["matmul_bf16_tflops"] * 1e12),
                                                4)
    return result


def _vocab(corpus: str) -> int:
    from bi_ide.training.corpus import load_manifest

    return load_manifest(corpus)[0]["vocab_size"]


def matmul_tflops(n: int = 8192, repeat: int = 10) -> float:
    """A bf16 n×n×n matmul's rate on random data (the card's practical ceiling, beside its datasheet peak)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return round(2 * n**3 * repeat / (start.elapsed_time(end) / 1000) / 1e12, 1)


def nvml_report(sampler: dict, path: Path, run: dict, train_ended: float) -> dict:
    """Every GPU field filled or explained; the samples valid for the hub; the run's process found."""
    from bi_ide.errors import ValidationError
    from bi_ide.fleet.samples import GPU, MACHINE, parse_batches

    proc = sampler.get("proc")
    if proc is None:
        return {"ok": False, "error": "the sampler never started (the run ended before its warm-up did)"}
    proc.wait(timeout=60)
    if not path.is_file():
        return {"ok": False, "error": f"the sampler wrote nothing (exit {proc.returncode})"}
    data = json.loads(path.read_text())
    samples = data["samples"]
    report = {"samples": len(samples), "gpus_seen": data["gpus_seen"], "hostname": data["hostname"]}
    try:
        parse_batches([{"key": "gpu-kit", "samples": samples}])
        report["hub_accepts_samples"] = True
    except ValidationError as e:
        report["hub_accepts_samples"] = f"refused: {e}"
    report["machine_fields_missing"] = sorted(k for k in MACHINE if not any(k in x for x in samples))
    if not data["gpus_seen"]:
        report.update(ok=report["hub_accepts_samples"] is True, note="no NVIDIA GPU here: NVML reported none "
                      "(nvmlInit failed, as on every machine without the driver)")
        return report
    fields, unexplained = {}, []
    for name in GPU:
        values = [g[name] for x in samples for g in x["gpus"] if g.get("index") == 0 and name in g]
        if values:
            fields[name] = values[-1] if isinstance(values[-1], str) else _spread(values)
        else:
            why = data["unsupported"].get(f"0:{name}")
            fields[name] = f"not read: {why}" if why else "not read (no reason recorded)"
            if not why:
                unexplained.append(name)
    report["gpu0"] = fields
    report["unexplained_fields"] = unexplained
    during = [x for x in samples if x["time"] <= train_ended]
    mine = [p for x in during for p in x.get("processes", []) if p.get("pid") == run.get("pid")]
    report["run"] = {"id": run["id"], "host": run.get("host"), "pid": run.get("pid")}
    report["samples_while_training"] = len(during)
    report["samples_with_run_process"] = len(mine)
    report["run_process"] = mine[-1] if mine else None
    report["process_visible_to_nvml"] = {p.get("pid") for x in samples for p in x.get("processes", [])} != set()
    report["mapped_to_run"] = bool(mine) and run.get("host") == data["hostname"]
    report["ok"] = (report["hub_accepts_samples"] is True and not unexplained and report["mapped_to_run"])
    if not report["mapped_to_run"]:
        report["why_not_mapped"] = ("NVML lists no processes here (a VM or container that hides them from the "
                                    "driver)" if not report["process_visible_to_nvml"] else
                                    "NVML lists processes, but not the training one under the run's host and pid")
    return report


def _spread(values: list) -> dict | float:
    if len(set(values)) == 1:
        return values[0]
    return {"min": min(values), "mean": round(sum(values) / len(values), 2), "max": max(values)}


# ---------------------------------------------------------------------------------------------
# 2. exact resume


def section_resume(ctx: dict) -> dict:
    """N steps straight against N/2 + resume + N/2, with CUDA's default kernels and deterministic ones."""
    modes = {"default": False, "deterministic": True} if ctx["device"] == "cuda" else {"default": False}
    out = {mode: resume_mode(ctx, deterministic) for mode, deterministic in modes.items()}
    out["ok"] = all(m["equal"] for m in out.values())
    return out


def resume_mode(ctx: dict, deterministic: bool) -> dict:
    from bi_ide.training.trainer import Trainer

    s, cuda = Sizes(**ctx["sizes"]), ctx["device"] == "cuda"
    n, half = s.resume_steps, s.resume_steps // 2
    folder = Path(ctx["work"]) / f"runs-resume-{'det' if deterministic else 'default'}"
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    values = dict(preset=s.resume_preset, corpus=ctx["corpus"], out_dir=str(folder), max_steps=n,
                  batch_size=s.resume_batch, seq_len=s.resume_seq, warmup_steps=max(1, n // 4), seed=SEED,
                  device=ctx["device"], precision="bf16" if cuda else "fp32", log_interval=half, eval_interval=n,
                  eval_batches=2, checkpoint_interval=n + 1, dropout=0.0, **OPTIM)
    store = OfflineStore(folder)

    def run(**overrides) -> tuple[dict, Trainer]:
        trainer = Trainer(TrainConfig(**{**values, **overrides}), store, handle_signals=False)
        return trainer.run(), trainer

    straight, _ = run(run_name="gpu-kit-straight")
    again, _ = run(run_name="gpu-kit-straight-again")
    first = Trainer(TrainConfig(**values, run_name="gpu-kit-resumed"), store, handle_signals=False)
    first.on_step = lambda p: p.step == half - 1 and first.request_stop("gpu kit: stop at N/2")
    part1 = first.run()
    part2, _ = run(resume_from=str(Path(part1["run_dir"]) / f"step-{half:08d}"))
    torch.use_deterministic_algorithms(False)
    final = f"step-{n:08d}"
    spread = compare(straight, again, final)
    resumed = compare(straight, {**part2, "losses": part1["losses"] + part2["losses"]}, final)
    exact = resumed["weights_bitwise_equal"] and resumed["losses_max_rel_diff"] == 0
    # equal: bitwise, or no further apart than two identical straight runs are (CUDA's own spread)
    equal = part1["steps"] == half and (exact or (resumed["losses_max_rel_diff"] <= max(spread["losses_max_rel_diff"],
                                                                                         LOSS_RTOL)
                                                  and resumed["weights_max_abs_diff"] <= spread["weights_max_abs_diff"]))
    return {"equal": bool(equal), "bitwise": bool(exact), "steps": n, "stopped_at": part1["steps"],
            "resumed_vs_straight": resumed, "straight_vs_straight": spread, "deterministic_algorithms": deterministic,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "preset": s.resume_preset, "precision": values["precision"]}


def compare(a: dict, b: dict, checkpoint: str) -> dict:
    """Two runs' per-step losses and final weights (their ``checkpoint`` folders)."""
    from safetensors.torch import load_file

    la, lb = np.array(a["losses"]), np.array(b["losses"])
    if la.shape != lb.shape:
        return {"losses_max_rel_diff": math.inf, "weights_max_abs_diff": math.inf, "weights_bitwise_equal": False,
                "note": f"{len(la)} against {len(lb)} steps"}
    wa = load_file(str(Path(a["run_dir"]) / checkpoint / "model.safetensors"))
    wb = load_file(str(Path(b["run_dir"]) / checkpoint / "model.safetensors"))
    diffs = [float((wa[k].double() - wb[k].double()).abs().max()) for k in wa]
    return {"losses_max_rel_diff": float(np.max(np.abs(la - lb) / np.abs(la))),
            "weights_max_abs_diff": max(diffs), "weights_bitwise_equal": all(torch.equal(wa[k], wb[k]) for k in wa),
            "loss_last": float(la[-1])}


# ---------------------------------------------------------------------------------------------
# 3. distributed: NCCL DDP and DeepSpeed ZeRO-2 on one GPU, against one process


def section_distributed(ctx: dict) -> dict:
    from bi_ide.training.launch_cli import launcher_command
    from bi_ide.training.trainer import Trainer

    s, cuda, work = Sizes(**ctx["sizes"]), ctx["device"] == "cuda", Path(ctx["work"])
    values = dict(preset=s.dist_preset, corpus=ctx["corpus"], out_dir=str(work / "runs-distributed"),
                  max_steps=s.dist_steps, batch_size=s.dist_batch, seq_len=s.dist_seq, warmup_steps=2, seed=SEED,
                  device=ctx["device"], precision="fp32", log_interval=5, eval_interval=s.dist_steps + 1,
                  eval_batches=1, checkpoint_interval=s.dist_steps + 1, dropout=0.0, **OPTIM)
    single = Trainer(TrainConfig(**values, run_name="gpu-kit-single"), OfflineStore(values["out_dir"]),
                     handle_signals=False).run()["losses"]
    out = {"single_loss_last": single[-1], "steps": s.dist_steps, "precision": "fp32", "processes": 1,
           "backend": "nccl" if cuda else "gloo"}
    runs = {"ddp": {"strategy": "ddp"}, "zero2": {"strategy": "deepspeed", "zero_stage": 2}}
    for label, overrides in runs.items():
        if overrides["strategy"] == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            out[label] = {"equal": None, "skipped": "DeepSpeed is not installed here (tools/gpu-bundle carries it)"}
            continue
        config = {**values, **overrides, "run_name": f"gpu-kit-{label}"}
        losses_path = work / f"losses-{label}.json"
        cmd = launcher_command(nproc=1) + ["--config-json", json.dumps(config), "--offline",
                                           "--losses-path", str(losses_path)]
        env = {**child_env(), **({"DS_ACCELERATOR": "cuda"} if cuda else {})}
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work, env=env)
        wall = time.perf_counter() - t
        if done.returncode != 0 or not losses_path.is_file():
            sys.stderr.write(done.stdout[-5000:] + done.stderr[-20000:])
            out[label] = {"equal": False, "error": f"exit {done.returncode}: {done.stderr.strip()[-600:]}"}
            continue
        losses = json.loads(losses_path.read_text())
        rel = float(np.max(np.abs(np.array(losses) - np.array(single)) / np.abs(np.array(single)))) \
            if len(losses) == len(single) else math.inf
        out[label] = {"equal": rel <= LOSS_RTOL, "losses_max_rel_diff": rel, "loss_last": losses[-1],
                      "launch_wall_s": round(wall, 1)}
    out["ok"] = all(out[k]["equal"] is not False for k in runs) and out["ddp"]["equal"] is True
    return out


# ---------------------------------------------------------------------------------------------
# 4. the council's local model on the GPU


def section_council(ctx: dict) -> dict:
    from bi_ide.council.answers import ANSWER_PREFIX, messages, parse_answer
    from bi_ide.council.backends import LocalModelBackend, on_device
    from bi_ide.council.evidence import parse_question
    from bi_ide.council.members import voting_members

    s = Sizes(**ctx["sizes"])
    model, tok, source = council_model(ctx)
    model, tok = on_device(model, tok, ctx["device"])
    backend = LocalModelBackend(max_new_tokens=s.council_tokens, batch_size=s.council_members, loaded=(model, tok))
    q = parse_question(QUESTION)
    findings, findings_source = council_findings(q)
    members = voting_members()[: s.council_members]
    prompts = [backend.prompt(messages(m, q.text, findings), prefix=ANSWER_PREFIX) for m in members]
    backend.generate(prompts[:2])  # warm-up: kernels, caches
    modes = (("batched", s.council_members, True), ("batched_unshared", s.council_members, False),
             ("one_by_one", 1, False))
    best: dict[str, float] = {}
    outputs: dict[str, list[str]] = {}
    for _ in range(2):  # interleaved, the best of each
        for name, batch_size, share in modes:
            backend.batch_size, backend.share_prefix = batch_size, share
            if ctx["device"] == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            outputs[name] = backend.generate(prompts)
            if ctx["device"] == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best.get(name, math.inf), time.perf_counter() - t)
    tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs["batched"])
    parsed = sum(parse_answer(o, m.id, "local", prefixed=True).probability is not None
                 for o, m in zip(outputs["batched"], members, strict=True))
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["one_by_one"], strict=True))
    prompt_tokens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    out = {"model": source, "findings": findings_source, "members": len(members), "max_new_tokens": s.council_tokens,
           "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens)), "generated_tokens": tokens,
           "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
           "answers_parsed": parsed, "batched_same_text_as_one_by_one": same}
    for name, seconds in best.items():
        out[f"{name}_s"] = round(seconds, 3)
        out[f"{name}_tokens_per_s"] = round(tokens / seconds, 1)
    out["speedup_batched_x"] = round(best["one_by_one"] / best["batched"], 2)
    # ok: every mode answered every member; how much faster batching is, is a figure (and a goal), not a check
    out["ok"] = tokens > 0 and all(len(outputs[name]) == len(members) for name, _, _ in modes)
    return out


def council_model(ctx: dict) -> tuple:
    """(model, tokenizer, what it is): SmolLM2-135M-Instruct's real weights where its GGUF is installed
    (or --council-model), else its shape with random weights (.gpu/smollm2-shape): the same
    arithmetic, so the same speed, but answers that mean nothing. Smoke runs shrink the shape."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from bi_ide.training.hf import hf_from_pretrained

    if not ctx["smoke"]:
        path = ctx.get("council_model")
        if path is None:
            with contextlib.suppress(Exception):
                from bi_ide.training.hf import smollm2_gguf

                path = str(smollm2_gguf())
        if path is not None and (importlib.util.find_spec("gguf") or not path.endswith(".gguf")):
            model, tok = hf_from_pretrained(path)
            return model, tok, f"{Path(path).name} (its own weights)"
    folder = smollm2_shape(Path(ctx["council_shape"]))
    config = AutoConfig.from_pretrained(folder)
    if ctx["smoke"]:
        config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config)
    tok = AutoTokenizer.from_pretrained(folder)
    if ctx["smoke"]:
        return model, tok, "SmolLM2-135M's tokenizer, its shape shrunk to 2 layers x 64, random weights (smoke)"
    return model, tok, "SmolLM2-135M's shape, random weights (its GGUF is not on this machine)"


def smollm2_shape(folder: Path) -> Path:
    """SmolLM2-135M-Instruct's config and tokenizer, without its weights (read from the GGUF once)."""
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    from transformers import AutoConfig, AutoTokenizer

    from bi_ide.training.hf import smollm2_gguf

    gguf = smollm2_gguf()  # a clear error where neither the folder nor the wheel is here
    folder.mkdir(parents=True, exist_ok=True)
    AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder


def council_findings(q) -> tuple[list, str]:
    """The evidence the members read: gathered from a store with the example fleet where DuckDB is
    installed, else this machine's own GPUs (a bare GPU box has no store)."""
    from bi_ide.council.evidence import Finding

    if importlib.util.find_spec("duckdb") and importlib.util.find_spec("polars"):
        from bi_ide.council.evidence import gather
        from bi_ide.fleet.examples import example_fleet
        from bi_ide.store import Store

        with Store(memory=True) as store:
            example_fleet(store, box_gb=32)
            return gather(store, q), "gathered from a store holding the example fleet"
    from bi_ide.fleet.nvml import NvmlReader

    reader = NvmlReader()
    gpus, _ = reader.read()
    reader.close()
    findings = [Finding("fleet", "gpu", f"{socket.gethostname()} GPU {g['index']}: {g.get('name')}, "
                        f"{g.get('memory_total_bytes', 0) / 2**30:.0f} GB, {g.get('memory_used_bytes', 0) / 2**30:.1f} "
                        f"GB used, {g.get('utilization', 0):.0f}% busy, {g.get('temperature_c', 0):.0f} °C",
                        0.2, id=f"E{i + 1}") for i, g in enumerate(gpus)]
    return findings, "this machine's GPUs (no store here)"


# ---------------------------------------------------------------------------------------------
# the verdict


def goals(sections: dict) -> dict:
    t, r, d = sections.get("throughput", {}), sections.get("resume", {}), sections.get("distributed", {})
    ours = t.get("ours", {})
    return {
        "mfu_ge_45pct": ours["mfu"] >= GOALS["mfu"] if ours.get("mfu") is not None else None,
        "vs_hf_ge_1_3x": t["ratio_vs_hf"] >= GOALS["vs_hf"] if t.get("ratio_vs_hf") else None,
        "resume_equal": r.get("ok") if "ok" in r and "skipped" not in r else None,
        "ddp_equal": d.get("ddp", {}).get("equal"),
        "zero2_equal": d.get("zero2", {}).get("equal"),
        "nvml_ok": t.get("nvml", {}).get("ok"),
        "council_batched_faster": (sections["council"]["speedup_batched_x"] > 1.0
                                   if "speedup_batched_x" in sections.get("council", {}) else None),
    }


def summary_line(name: str, r: dict) -> str:
    if "skipped" in r or "error" in r:
        return r.get("skipped") or r.get("error")
    if name == "throughput":
        o = r["ours"]
        mfu = f", MFU {o['mfu']:.1%}" if "mfu" in o else ""
        return f"{o['tokens_per_s']:,} tokens/s{mfu}; {r['ratio_vs_hf']}x transformers.Trainer ({r['hf_best']})"
    if name == "resume":
        return ", ".join(f"{m}: {'bitwise' if v['bitwise'] else 'equal' if v['equal'] else 'DIFFERENT'}"
                         for m, v in r.items() if isinstance(v, dict))
    if name == "distributed":
        return ", ".join(f"{k}: {r[k].get('losses_max_rel_diff', r[k].get('skipped') or r[k].get('error'))}"
                         for k in ("ddp", "zero2"))
    return f"batched {r['batched_tokens_per_s']} tokens/s, one by one {r['one_by_one_tokens_per_s']} ({r['model']})"


def print_table(figures: dict) -> None:
    m = figures["machine"]
    print(f"\nGPU proof kit on {m.get('gpu', 'the CPU')} (driver {m.get('driver', '-')}, torch {m['torch']}, "
          f"CUDA {m.get('cuda', '-')}), {m['date']}, wall {figures['wall_s']} s")
    for name, result in figures["sections"].items():
        print(f"  {name:<12} {'ok ' if result.get('ok') else 'NO '} {summary_line(name, result)}")
    print("  goals: " + ", ".join(f"{k} {v}" for k, v in figures["goals"].items()))


if __name__ == "__main__":
    main()
