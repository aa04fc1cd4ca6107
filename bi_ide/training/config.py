"""TrainConfig: every knob of a training run, checked, and the named runs built from it.

The seed's ``TrainingConfig`` (§II.B: preset, epochs, batch size, learning rate, cpu/gpu percent
caps, devices, distributed, resume_from) plus what a modern trainer needs. A named run is a function
returning a full config; a variant calls its base and changes a few fields. Overrides from the CLI
(``--set key=value``) or papermill keep each parameter's type and refuse unknown names.
"""

from __future__ import annotations

import os
import socket

import param

from bi_ide.errors import ConfigError
from bi_ide.training.presets import PRESETS


class TrainConfig(param.Parameterized):
    """One training run's settings. Bad values are refused with the parameter named."""

    # -- what to train -------------------------------------------------------------------
    run_name = param.String(default="", doc="Name shown in the store and dashboards; empty: preset and time.")
    preset = param.Selector(default="small", objects=list(PRESETS), doc="BI Transformer shape (seed §II.E).")
    model = param.Selector(default="bi", objects=["bi", "gpt2", "llama", "pretrained"],
                           doc="bi: the BI Transformer; gpt2/llama: a transformers model of the preset's "
                               "shape; pretrained: fine-tune init_from.")
    init_from = param.String(default="", doc="Local model folder or .gguf file to fine-tune (model=pretrained).")
    corpus = param.String(default="data/corpora/quran-stdlib",
                          doc="Corpus folder made by `bi-ide data prepare` (default: its built-in sources).")
    dropout = param.Number(default=0.0, bounds=(0.0, 0.9), doc="Dropout probability in attention and MLP.")

    # -- how long ------------------------------------------------------------------------
    epochs = param.Integer(default=1, bounds=(1, 10_000), doc="Passes over the train split (seed field).")
    max_steps = param.Integer(default=0, bounds=(0, None), doc="Stop after this many optimizer steps; 0: use epochs.")
    max_tokens = param.Integer(default=0, bounds=(0, None), doc="Stop after this many training tokens; 0: no cap.")

    # -- batch and optimizer -------------------------------------------------------------
    batch_size = param.Integer(default=16, bounds=(1, 4096), doc="Sequences per micro-batch (seed field).")
    grad_accum = param.Integer(default=1, bounds=(1, 1024), doc="Micro-batches per optimizer step.")
    seq_len = param.Integer(default=256, bounds=(8, 32_768), doc="Tokens per sequence (≤ the model's block size).")
    learning_rate = param.Number(default=6e-4, bounds=(1e-7, 1.0), doc="Peak learning rate (seed field).")
    min_lr = param.Number(default=6e-5, bounds=(0.0, 1.0), doc="Learning rate at the end of the cosine decay.")
    warmup_steps = param.Integer(default=100, bounds=(0, None), doc="Linear warm-up steps before the cosine decay.")
    weight_decay = param.Number(default=0.1, bounds=(0.0, 1.0), doc="AdamW weight decay on matrices (not biases/norms).")
    beta1 = param.Number(default=0.9, bounds=(0.0, 0.9999), doc="AdamW beta1.")
    beta2 = param.Number(default=0.95, bounds=(0.0, 0.9999), doc="AdamW beta2.")
    grad_clip = param.Number(default=1.0, bounds=(0.0, 1000.0), doc="Clip the gradient norm to this; 0: no clipping.")

    # -- where and how ---------------------------------------------------------------------
    device = param.Selector(default="auto", objects=["auto", "cpu", "cuda", "mps"],
                            doc="auto: CUDA, then Apple MPS, then CPU (seed field `devices`).")
    precision = param.Selector(default="auto", objects=["auto", "bf16", "fp16", "fp32"],
                               doc="auto: bf16 on CUDA cards that have it, else fp16 on CUDA, fp32 elsewhere.")
    compile = param.Boolean(default=False, doc="torch.compile the model (CUDA; slow to start).")
    cpu_percent = param.Integer(default=100, bounds=(1, 100), doc="Share of CPU cores for torch threads (seed cap).")
    gpu_percent = param.Integer(default=100, bounds=(1, 100), doc="Share of GPU memory this run may take (seed cap).")
    seed = param.Integer(default=1337, bounds=(0, 2**31 - 1), doc="Seed of every random number generator.")

    # -- several processes (bi-ide train launch; docs/training.md, "Distributed") ---------------
    strategy = param.Selector(default="single", objects=["single", "ddp", "deepspeed"],
                              doc="single: one process; ddp: torch DistributedDataParallel; deepspeed: DeepSpeed's "
                                  "engine with ZeRO. batch_size is per process: N processes train like one with "
                                  "N × batch_size.")
    zero_stage = param.Integer(default=0, bounds=(0, 3),
                               doc="DeepSpeed ZeRO stage: 0 plain data parallel, 1 shards the optimizer state, "
                                   "2 also gradients, 3 also the weights (strategy=deepspeed).")
    offload = param.Boolean(default=False, doc="ZeRO: keep the optimizer state in CPU memory and step it there "
                                               "(DeepSpeedCPUAdam; strategy=deepspeed, zero_stage >= 1).")
    deepspeed_config = param.String(default="", doc="A DeepSpeed JSON file merged over the config generated from "
                                                    "these settings (strategy=deepspeed); empty: generated only.")
    micro_batch_per_host = param.String(
        default="", doc="Mixed cards: each machine's micro-batch, e.g. 'rtx5090=16,laptop=4' (HOST=N for every "
                        "process of a host, HOST:LOCAL_RANK=N for one GPU of it); others use batch_size. A "
                        "process' host is $BI_IDE_HOST or its hostname.")

    # -- evaluation and checkpoints ------------------------------------------------------
    log_interval = param.Integer(default=10, bounds=(1, None), doc="Steps between metric writes to the store.")
    eval_interval = param.Integer(default=200, bounds=(1, None), doc="Steps between validation evaluations.")
    eval_batches = param.Integer(default=20, bounds=(1, 10_000), doc="Batches per domain in one evaluation.")
    checkpoint_interval = param.Integer(default=500, bounds=(1, None), doc="Steps between checkpoints.")
    keep_checkpoints = param.Integer(default=2, bounds=(1, 100), doc="Step checkpoints kept on disk (best is always kept).")
    patience = param.Integer(default=0, bounds=(0, 10_000),
                             doc="Stop after this many evaluations without a better val loss; 0: never.")
    resume_from = param.String(default="", doc="Checkpoint folder, or a run id to resume its last checkpoint (seed field).")
    out_dir = param.String(default="data/runs", doc="Folder for run folders (checkpoints, spool).")

    @param.depends("min_lr", "learning_rate", watch=True, on_init=True)
    def _check_lr(self):
        if self.min_lr > self.learning_rate:
            raise ConfigError(
                f"min_lr={self.min_lr} is above learning_rate={self.learning_rate}; min_lr must be ≤ learning_rate"
            )

    @param.depends("strategy", "zero_stage", "offload", "deepspeed_config", watch=True, on_init=True)
    def _check_strategy(self):
        if self.strategy != "deepspeed":
            for name, default in (("zero_stage", 0), ("offload", False), ("deepspeed_config", "")):
                if getattr(self, name) != default:
                    raise ConfigError(f"{name}={getattr(self, name)!r} is a DeepSpeed setting; set strategy=deepspeed "
                                      f"or leave {name} at {default!r}")
        elif self.offload and self.zero_stage == 0:
            raise ConfigError("offload=True needs ZeRO: set zero_stage to 1, 2 or 3")

    @param.depends("micro_batch_per_host", watch=True, on_init=True)
    def _check_hosts(self):
        parse_micro_batches(self.micro_batch_per_host)

    def micro_batch(self, host: str | None = None, local_rank: int | None = None) -> int:
        """This process' micro-batch: its entry in micro_batch_per_host, else batch_size."""
        host = host or host_name()
        local_rank = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else local_rank
        table = parse_micro_batches(self.micro_batch_per_host)
        return table.get(f"{host}:{local_rank}", table.get(host, self.batch_size))

    @property
    def tokens_per_step(self) -> int:
        """Tokens one process reads per optimizer step (times the number of processes for the run's)."""
        return self.batch_size * self.grad_accum * self.seq_len

    def to_dict(self) -> dict:
        return {k: v for k, v in self.param.values().items() if k != "name"}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return build(cls(), values)


def parse_micro_batches(text: str) -> dict[str, int]:
    """``'rtx5090=16,laptop:0=4'`` -> ``{"rtx5090": 16, "laptop:0": 4}``; a clear error otherwise."""
    table = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, raw = item.rpartition("=")
        host = host.strip()
        if not sep or not host or not raw.strip().isdigit() or not 1 <= int(raw) <= 4096:
            raise ConfigError(f"micro_batch_per_host: {item!r} is not HOST=N (N from 1 to 4096), e.g. "
                              "'rtx5090=16,laptop=4' or 'box:1=4' for the second GPU of box")
        if host in table:
            raise ConfigError(f"micro_batch_per_host names {host!r} twice")
        table[host] = int(raw)
    return table


def host_name() -> str:
    """The name micro_batch_per_host knows this machine by: $BI_IDE_HOST, else the hostname."""
    return os.environ.get("BI_IDE_HOST") or socket.gethostname()


def build(config: TrainConfig, values: dict) -> TrainConfig:
    """Set ``values`` on ``config``, turning param's errors into ConfigError naming the parameter."""
    valid = [k for k in config.param if k != "name"]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(f"unknown TrainConfig parameter(s) {unknown}; valid: {', '.join(valid)}")
    for key, value in values.items():  # each value alone first, so an error names its parameter
        try:
            config.param[key]._validate(value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"TrainConfig.{key}={value!r} is not allowed: {_first_line(e)}") from e
    config.param.update(**values)  # then all together: cross-checks see the final values
    return config


def parse_overrides(config: TrainConfig, pairs: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings, converting each value to its parameter's type."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"override {pair!r} is not key=value, e.g. max_steps=200")
        key = key.strip()
        p = config.param[key] if key in config.param and key != "name" else None
        if p is None:
            build(config, {key: raw})  # raises the unknown-parameter error
        values[key] = _convert(key, p, raw.strip())
    return build(config, values)


def _convert(key: str, p: param.Parameter, raw: str):
    try:
        if isinstance(p, param.Boolean):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("want true or false")
            return raw.lower() in ("true", "1", "yes")
        if isinstance(p, param.Integer):
            return int(raw)
        if isinstance(p, param.Number):
            return float(raw)
    except ValueError as e:
        kind = {"Boolean": "true/false", "Integer": "an integer", "Number": "a number"}[type(p).__name__]
        raise ConfigError(f"TrainConfig.{key}={raw!r} is not {kind}: {e}") from e
    return raw


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# -- named runs ---------------------------------------------------------------------------
def debug(**overrides) -> TrainConfig:
    """The tiny recipe: seconds on a CPU; tests pin its loss curve."""
    return build(TrainConfig(
        preset="tiny", seq_len=64, batch_size=8, max_steps=60, warmup_steps=10, learning_rate=3e-3,
        min_lr=3e-4, log_interval=5, eval_interval=20, eval_batches=4, checkpoint_interval=20,
        weight_decay=0.0, grad_clip=1.0,
    ), overrides)


def small_cpu(**overrides) -> TrainConfig:
    """The seed's small preset for a few minutes on a laptop CPU: visible progress, real bpb drop."""
    return build(debug(
        preset="small", seq_len=128, batch_size=8, max_steps=400, warmup_steps=40, learning_rate=1e-3,
        min_lr=1e-4, log_interval=10, eval_interval=50, eval_batches=8, checkpoint_interval=100,
    ), overrides)


def gpt2_124m(**overrides) -> TrainConfig:
    """A GPT-2-124M-sized run for a CUDA card: bf16, compiled."""
    return build(TrainConfig(
        preset="gpt2-124m", seq_len=1024, batch_size=16, grad_accum=8, max_steps=5000, warmup_steps=200,
        learning_rate=6e-4, min_lr=6e-5, precision="auto", compile=True, device="cuda",
    ), overrides)


RECIPES = {"debug": debug, "small-cpu": small_cpu, "gpt2-124m": gpt2_124m, "default": TrainConfig}


def recipe(name: str, **overrides) -> TrainConfig:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    config = RECIPES[name]()
    return build(config, overrides)
