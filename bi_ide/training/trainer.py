"""The trainer: one loop for the BI Transformer and HuggingFace models, on CPU, MPS or CUDA.

AdamW (fused on CUDA), linear warm-up then cosine decay to ``min_lr``, autocast through torch.amp
(a GradScaler only for fp16), gradient accumulation and clipping, validation loss and bits per
byte for each domain (Arabic, code), early stopping, best and last checkpoints. The run lives in
the store: its status (queued → running → done / stopped / failed), its metrics every
``log_interval`` steps, its checkpoints and, when it finishes, its best checkpoint as a model.

Resuming is exact: a checkpoint carries the optimizer, scaler and every RNG state, and the data
position, so on the CPU an interrupted and resumed run ends with the same losses and weights as an
uninterrupted one (tests/test_trainer.py checks it).

The same loop runs in one process or several (``strategy``: single, ddp, deepspeed): what differs
— wrapping, backward, optimizer step, the rank's slice of the global batch, checkpoints — is behind
bi_ide.training.distributed's Strategy. Only rank 0 creates the run and writes metrics and status.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

import bi_ide
from bi_ide.errors import ConfigError, NotFoundError, WorkbenchError
from bi_ide.fleet import thermal
from bi_ide.training import checkpoint as ckpt
from bi_ide.training.config import TrainConfig
from bi_ide.training.corpus import TokenShards, load_manifest
from bi_ide.training.distributed import QuietLog, imbalance, imbalance_warning, make_strategy
from bi_ide.training.hardware import GPUReader, apply_caps, peak_flops, pick_device, pick_precision
from bi_ide.training.runlog import RunLog

EVAL_DOMAINS = ("arabic", "code", "text")
IMBALANCE_STEPS = 5  # steps (after the first) whose forward times the ranks compare
log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What a progress bar or a notebook wants to show after each optimizer step."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    val: dict = field(default_factory=dict)


class StopRequested(Exception):
    """Internal: a stop was asked for (signal, CLI or dashboard)."""


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at total_steps."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (config.learning_rate - config.min_lr)


def build_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """The model the config names, shaped for the corpus' vocabulary."""
    from bi_ide.training import hf
    from bi_ide.training.model import BITransformer, ModelConfig

    if config.model == "pretrained":
        if not config.init_from:
            raise ConfigError("model=pretrained needs init_from: a local model folder or .gguf file")
        model, _ = hf.hf_from_pretrained(config.init_from, load_tokenizer=False)
        wrapped = hf.HFCausalLM(model)
        if wrapped.vocab_size < vocab_size:
            raise ConfigError(
                f"the pretrained model's vocabulary ({wrapped.vocab_size}) is smaller than the corpus' "
                f"({vocab_size}); prepare the corpus with that model's tokenizer (bi-ide data prepare --tokenizer)"
            )
        _check_context(config.seq_len, wrapped.block_size, "the pretrained model")
        return wrapped
    shape = ModelConfig.from_preset(config.preset, vocab_size=vocab_size, dropout=config.dropout)
    _check_context(config.seq_len, shape.block_size, f"preset {config.preset}")
    if config.model == "bi":
        return BITransformer(shape)
    return hf.HFCausalLM(hf.hf_from_config(config.model, **shape.to_dict()))


def _check_context(seq_len: int, block_size: int, what: str) -> None:
    if seq_len > block_size:
        raise ConfigError(f"seq_len={seq_len} is longer than {what}'s context of {block_size}; "
                          f"use seq_len <= {block_size}")


class Trainer:
    """Runs one TrainConfig to the end (or to a stop) and records it in the store."""

    def __init__(self, config: TrainConfig, store=None, *, on_step=None, handle_signals: bool = True,
                 strategy=None):
        self.config = config
        # A strategy passed in (bi_ide.training.launch) is the caller's to close; one made here is ours.
        self._owns_strategy = strategy is None
        self.strategy = strategy if strategy is not None else make_strategy(config)
        if store is None and self.strategy.is_main:
            store = bi_ide.connect()
        self.store = store  # None on ranks other than 0: they never touch the store
        self.on_step = on_step
        self.handle_signals = handle_signals
        self._stop_reason: str | None = None
        self.losses: list[float] = []  # every step's training loss, from this process' first step
        self.last_loss: float | None = None
        self.tokens_per_s = 0.0

    # -- set-up -------------------------------------------------------------------------------
    def _setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        np.random.seed(c.seed)
        self.device = self.strategy.device(pick_device(c.device))
        self.dtype = pick_precision(self.device, c.precision)
        apply_caps(self.device, c.cpu_percent, c.gpu_percent)
        self.strategy.share_cores(self.device)
        self.manifest, _ = load_manifest(c.corpus)
        self.train_data = TokenShards(c.corpus, "train")
        self.val_data = {}
        for domain in EVAL_DOMAINS:
            with contextlib.suppress(WorkbenchError):
                shards = TokenShards(c.corpus, "val", domain=domain)
                if len(shards) > c.seq_len + 1:
                    self.val_data[domain] = shards
        # one optimizer step reads every rank's micro-batch, grad_accum times: the global batch
        self.step_tokens = self.strategy.global_batch * c.grad_accum * c.seq_len
        if len(self.train_data) <= self.step_tokens:
            raise ConfigError(
                f"the corpus' train split has {len(self.train_data)} tokens, less than one step's "
                f"{self.step_tokens} (micro-batches of all processes × grad_accum × seq_len); use a bigger corpus or "
                "smaller batch"
            )
        steps_per_epoch = len(self.train_data) // self.step_tokens
        total = c.max_steps or c.epochs * steps_per_epoch
        if c.max_tokens:
            total = min(total, max(1, c.max_tokens // self.step_tokens))
        self.total_steps, self.steps_per_epoch = total, steps_per_epoch

        self.model = build_model(c, self.manifest["vocab_size"]).to(self.device)
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.learning_rate, betas=(c.beta1, c.beta2), fused=self.device.type == "cuda",
        )
        # counted before the strategy wraps the model: ZeRO-3 leaves each rank a slice of every weight
        self.params_count = sum(p.numel() for p in self.model.parameters()) if not hasattr(
            self.model, "num_params") else self.model.num_params()
        self.peak = peak_flops(self.device)
        self.flops_per_token = self._flops_per_token()
        self.autocast = self.strategy.autocast(self.device, self.dtype)
        self.forward = self.strategy.prepare(self.model, self.optimizer, self.device, self.dtype)
        self.gpu = GPUReader(self.device)

    def _flops_per_token(self) -> float:
        if hasattr(self.model, "flops_per_token"):
            return float(self.model.flops_per_token(self.config.seq_len))
        return 6.0 * sum(p.numel() for p in self.model.parameters())

    # -- the run record -------------------------------------------------------------------------
    def _start_run(self) -> None:
        c = self.config
        self.position, self.step, self.tokens_seen = 0, 0, 0
        self.best_val, self.evals_since_best = math.inf, 0
        if c.resume_from:
            self._resume(c.resume_from)
        else:
            run_id = None
            if self.strategy.is_main:
                name = c.run_name or f"{c.preset}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
                run = self.store.create_run(name, kind="train", config=c.to_dict(), preset=c.preset,
                                            device=str(self.device))
                run_id = run["id"]
            self.run_id = self.strategy.broadcast(run_id)
        self.run_dir = Path(c.out_dir) / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.store, self.run_id, self.run_dir / "spool.jsonl") if self.strategy.is_main \
            else QuietLog()
        params = self.params_count if hasattr(self.model, "num_params") else None
        self.log.status(status="running", device=str(self.device), params_count=params,
                        total_steps=self.total_steps, step=self.step, stop_requested=False)

    def _resume(self, source: str) -> None:
        # rank 0 asks the store which checkpoint; every rank then loads it
        found = self._find_checkpoint(source) if self.strategy.is_main else None
        folder, digest = self.strategy.broadcast(found)
        state, meta = self.strategy.load_checkpoint(folder, digest, self.device)
        ckpt.set_rng_state(state["rng"])
        self.run_id = meta["run_id"]
        self.step, self.position, self.tokens_seen = meta["step"], meta["position"], meta["tokens_seen"]
        self.best_val, self.evals_since_best = meta["best_val"], meta["evals_since_best"]

    def _find_checkpoint(self, source: str) -> tuple[Path, str | None]:
        path = Path(source)
        if (path / "meta.json").is_file():
            return path, None
        try:
            checkpoints = self.store.list_checkpoints(source)
        except NotFoundError:
            checkpoints = None
        if checkpoints is None or checkpoints.is_empty():
            raise ConfigError(f"resume_from={source!r} is neither a checkpoint folder nor a run with checkpoints")
        latest = checkpoints.sort("step", descending=True).row(0, named=True)
        return Path(latest["path"]), latest["sha256"]

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train to the end, a stop or an error; return a summary of the run."""
        finished = False
        try:
            self._setup()
            self._start_run()
            previous = self._install_signals()
            try:
                self._loop()
                self._finish("done")
            except StopRequested:
                self._finish("stopped")
            except BaseException as e:
                self.log.status(status="failed", error=f"{type(e).__name__}: {e}"[:2000])
                self.log.flush()
                raise
            finally:
                self._restore_signals(previous)
            finished = True
        finally:
            if self._owns_strategy:
                self.strategy.close(wait=finished)
        return self.summary

    def _loop(self) -> None:
        c = self.config
        if self.step == 0 and self.val_data:
            self._evaluate()  # the starting point of the validation curves
        self.model.train()
        window_start, window_tokens = time.perf_counter(), 0
        weight = self.strategy.loss_weight  # 1 unless the ranks' micro-batches differ
        forward_s = []  # this rank's forward time per step, for the imbalance check
        while self.step < self.total_steps:
            # 1. the learning rate of this step
            lr = lr_at(self.step, c, self.total_steps)
            self.strategy.set_lr(lr)
            # 2. forward and backward over grad_accum micro-batches, each rank on its slice of the global batch
            micro_losses, forward_time = [], 0.0
            timing = self.strategy.world_size > 1 and len(forward_s) < IMBALANCE_STEPS + 1
            for i in range(c.grad_accum):
                batch = self.train_data.batch(self.position, self.strategy.global_batch, c.seq_len)
                self.position = batch.next_position
                inputs, targets = self.strategy.shard(batch)
                x, y = self._to_device(inputs), self._to_device(targets)  # (B, T) each
                with self.strategy.micro_batch(last=i == c.grad_accum - 1):
                    started = time.perf_counter()
                    with self.autocast:
                        _, loss = self.forward(x, y)
                    if weight != 1:
                        loss = loss * weight  # the all-reduce's average becomes the global batch's mean
                    if timing:
                        loss.item()  # waits for the forward pass: the ranks compare these times
                        forward_time += time.perf_counter() - started
                    micro_losses.append(loss.detach())  # read after the step: no wait between forward and backward
                    self.strategy.backward(loss)
            # 3. clip, step, zero
            grad_norm = self.strategy.step()
            self.step += 1
            self.tokens_seen += self.step_tokens
            window_tokens += self.step_tokens
            loss_sum = sum(torch.stack(micro_losses).tolist())  # one wait for the GPU per step
            self.last_loss = self.strategy.mean(loss_sum / c.grad_accum)  # the global batch's loss
            self.losses.append(self.last_loss)
            if self.strategy.world_size > 1 and len(forward_s) < IMBALANCE_STEPS + 1:
                forward_s.append(forward_time)
                if len(forward_s) == IMBALANCE_STEPS + 1:  # the first step warms up: left out
                    self._check_imbalance(sorted(forward_s[1:])[IMBALANCE_STEPS // 2])
            # 4. metrics, evaluation, checkpoints, stop requests
            val = {}
            last = self.step == self.total_steps
            if self.step % c.log_interval == 0 or last:
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / elapsed if elapsed > 0 else 0.0
                self._log_step(lr, float(grad_norm), tps)
                window_start, window_tokens = time.perf_counter(), 0
                self._check_stop()
            if self.step % c.eval_interval == 0 or last:
                val = self._evaluate()
            if self.step % c.checkpoint_interval == 0 and not last:
                self._checkpoint("step")
            if self.on_step:
                self.on_step(Progress(self.step, self.total_steps, self.last_loss, lr, self.tokens_per_s, val))
            if c.patience and self.evals_since_best >= c.patience:
                break

    def _to_device(self, rows) -> torch.Tensor:
        """A numpy batch on the run's device; on CUDA through pinned memory, so the copy does not wait."""
        t = torch.from_numpy(rows)
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _check_imbalance(self, forward_s: float) -> None:
        """Compare the ranks' forward times (every rank calls this at the same step); rank 0 warns."""
        s = self.strategy
        found = imbalance(s.micro_batches, s.gather(forward_s), s.hosts)
        self.imbalance = found
        if not s.is_main:
            return
        self.log.log(self.step, time.time(), {"batch_slowdown": found["slowdown"]})
        warning = imbalance_warning(found, s.hosts, s.micro_batches)
        if warning:
            log.warning(warning)

    def _log_step(self, lr: float, grad_norm: float, tokens_per_s: float) -> None:
        self.tokens_per_s = tokens_per_s
        values = {"loss": self.last_loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                  "epoch": self.tokens_seen / max(1, len(self.train_data))}
        if self.peak:
            values["mfu"] = tokens_per_s * self.flops_per_token / (self.peak * self.strategy.world_size)
        values.update(self.gpu.read())
        self.log.log(self.step, time.time(), values)
        self.log.flush()
        self.log.status(step=self.step)

    @torch.no_grad()
    def _evaluate(self) -> dict:
        """Validation loss and bits per byte for each domain, over the same windows every time."""
        c = self.config
        self.model.eval()
        values, losses = {}, []
        for domain, data in self.val_data.items():
            total, n = 0.0, 0
            for i in range(c.eval_batches):
                position = (i * c.batch_size * c.seq_len) % max(1, len(data) - c.seq_len - 1)
                batch = data.batch(position, self.strategy.micro, c.seq_len)
                x = torch.from_numpy(batch.inputs).to(self.device)
                y = torch.from_numpy(batch.targets).to(self.device)
                with self.autocast:
                    _, loss = self.forward(x, y)
                total += loss.item()
                n += 1
            # every rank evaluates (its micro-batch of the same windows); they agree on best and patience
            mean = self.strategy.mean(total / n * self.strategy.loss_weight)
            losses.append(mean)
            values[f"val_loss_{domain}"] = mean
            values[f"val_bpb_{domain}"] = data.bits_per_byte(mean)
        self.model.train()
        if losses:
            values["val_loss"] = sum(losses) / len(losses)
            self.log.log(self.step, time.time(), values)
            self.log.flush()
            if values["val_loss"] < self.best_val:
                self.best_val, self.evals_since_best = values["val_loss"], 0
                self._checkpoint("best")
            else:
                self.evals_since_best += 1
        self.last_val = values
        return values

    def _checkpoint(self, kind: str) -> ckpt.Checkpoint | None:
        """Every rank takes part; rank 0 records it (and gets the Checkpoint, None elsewhere)."""
        meta = {"run_id": self.run_id, "step": self.step, "position": self.position, "kind": kind,
                "tokens_seen": self.tokens_seen, "best_val": self.best_val, "evals_since_best": self.evals_since_best,
                "config": self.config.to_dict(), "vocab_size": self.manifest["vocab_size"],
                "corpus": str(self.config.corpus)}
        folder = self.run_dir / ("best" if kind == "best" else f"step-{self.step:08d}")
        saved = self.strategy.save_checkpoint(folder, {"rng": ckpt.rng_state()}, meta)
        if saved is None:
            return None
        self.log.checkpoint(step=self.step, path=str(folder.resolve()), kind=kind, sha256=saved.digest,
                            size_bytes=saved.size_bytes, loss=self.last_loss)
        if kind != "best":
            self._prune()
        return saved

    def _prune(self) -> None:
        steps = sorted(self.run_dir.glob("step-*"))
        for old in steps[: -self.config.keep_checkpoints]:
            shutil.rmtree(old)  # a DeepSpeed checkpoint has a deepspeed/ subfolder

    # -- ending ----------------------------------------------------------------------------------
    def _finish(self, status: str) -> None:
        self._checkpoint("last")
        self.log.status(status=status, step=self.step)
        flushed = self.log.flush()
        model = None
        if status == "done" and flushed and self.strategy.is_main:
            model = self._register_best()
        self.summary = {"run_id": self.run_id, "status": status, "steps": self.step, "losses": self.losses,
                        "best_val_loss": self.best_val, "val": getattr(self, "last_val", {}),
                        "run_dir": str(self.run_dir), "model": model, "spooled": not flushed,
                        "stop_reason": self._stop_reason}

    def _register_best(self) -> dict | None:
        """Register the run's best checkpoint as the next version of its model."""
        checkpoints = self.store.list_checkpoints(self.run_id).filter(kind="best")
        if checkpoints.is_empty():
            return None
        best = checkpoints.sort("step", descending=True).row(0, named=True)
        name = self.config.run_name or (f"{Path(self.config.init_from).stem}-ft" if self.config.model == "pretrained"
                                        else f"bi-{self.config.preset}")
        return self.store.register_model(name, run_id=self.run_id, checkpoint_id=best["id"],
                                         params_count=self.model_params(), metrics=getattr(self, "last_val", {}))

    def model_params(self) -> int:
        return self.params_count

    # -- stopping --------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        self._stop_reason = reason

    def _check_stop(self) -> None:
        if self._stop_reason is None and self.strategy.is_main:
            with contextlib.suppress(WorkbenchError):
                run = self.store.get_run(self.run_id)
                if run.get("stop_requested"):
                    self._stop_reason = "stop requested through the store"
                thermal.pace(self.store, run)  # the fleet's thermal guard: half rate while its GPU is hot
        # all ranks stop at the same step, or the others would wait for them forever
        if self.strategy.any(self._stop_reason is not None):
            raise StopRequested(self._stop_reason or "another process was asked to stop")

    def _install_signals(self):
        if not self.handle_signals:
            return None
        try:
            return {sig: signal.signal(sig, lambda s, f: self.request_stop(f"signal {s}"))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: stops come through the store only
            return None

    def _restore_signals(self, previous) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)


def train(config: TrainConfig, store=None, **kwargs) -> dict:
    """Run ``config`` and return the run's summary (see Trainer.run)."""
    return Trainer(config, store, **kwargs).run()
