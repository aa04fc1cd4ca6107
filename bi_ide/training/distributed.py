"""How a run spreads over processes: one Strategy per way, one training loop in the trainer.

References: torch.nn.parallel.DistributedDataParallel, DeepSpeed's ``deepspeed.initialize`` and
ZeRO (Rajbhandari et al., 2020), torchtitan's split between the loop and its parallelisms.

The trainer calls the same few methods whatever ``TrainConfig.strategy`` says:

  prepare       wrap the model and optimizer (nothing / DDP / a DeepSpeed engine)
  shard         this rank's rows of the global batch
  set_lr, backward, step      one optimizer step over grad_accum micro-batches
  mean, any, broadcast        agree across ranks on losses, stops and the run id
  save_checkpoint, load_checkpoint

Data: every rank reads the same global batch (the sum of the ranks' micro-batches, windows from
the shared data position) and keeps its own slice, so N processes with batch_size B train exactly
like one process with batch_size N·B, and the position advances by the global batch.

Mixed cards (``micro_batch_per_host``): rank r keeps B_r rows and scales its loss by B_r·N / ΣB
before backward, so the all-reduce's plain average of gradients is the mean over the global batch,
as if one process had read all ΣB rows. After a few steps the ranks compare how long their forward
passes take; when the slowest holds the step back by ``SLOWDOWN_WARN`` or more against
micro-batches matched to each machine's speed, rank 0 warns with the expected slowdown and a
better split (``imbalance``).

``SingleProcess`` is the plain loop, op for op (the debug recipe's pinned losses); ``DDP`` adds the
gradient all-reduce and rank-0-only checkpoint writes; ``DeepSpeed`` hands the step to the engine.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import socket
from pathlib import Path

import torch

from bi_ide.errors import ConfigError
from bi_ide.training import checkpoint as ckpt
from bi_ide.training.config import host_name

DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLOWDOWN_WARN = 1.25  # warn when steps take this many times as long as with a speed-matched split


def make_strategy(config) -> SingleProcess:
    """The strategy ``config.strategy`` names, with its process group started (from the launcher's env)."""
    if config.strategy == "single":
        return SingleProcess(config)
    if config.strategy == "ddp":
        return DDP(config)
    return DeepSpeed(config)


class SingleProcess:
    """One process: AdamW, a GradScaler for fp16, clipping — the loop as it always was."""

    name = "single"

    def __init__(self, config):
        self.config = config
        self.rank, self.world_size, self.local_rank, self.local_world_size = 0, 1, 0, 1
        self.hosts = [host_name()]
        self.micro_batches = [config.micro_batch(self.hosts[0], 0)]  # every rank's, in rank order

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def micro(self) -> int:
        """This rank's micro-batch (sequences)."""
        return self.micro_batches[self.rank]

    @property
    def global_batch(self) -> int:
        """Sequences one micro-step reads over all ranks."""
        return sum(self.micro_batches)

    @property
    def loss_weight(self) -> float:
        """B_r·N / ΣB: 1 when every rank has the same micro-batch."""
        return self.micro * self.world_size / self.global_batch

    # -- set-up -------------------------------------------------------------------------------
    def device(self, device: torch.device) -> torch.device:
        return device

    def share_cores(self, device: torch.device) -> None:
        """Split this machine's torch threads between its ranks (CPU training)."""
        if device.type == "cpu" and self.local_world_size > 1:
            torch.set_num_threads(max(1, torch.get_num_threads() // self.local_world_size))

    def autocast(self, device: torch.device, dtype: torch.dtype):
        return torch.amp.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def prepare(self, model, optimizer, device: torch.device, dtype: torch.dtype):
        """Keep what the loop needs; return the module to call for forward passes."""
        self.model, self.optimizer = model, optimizer
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        return self._compile(self._wrap(model))

    def _wrap(self, model):
        return model

    def _compile(self, module):
        return torch.compile(module) if self.config.compile else module

    # -- one step -------------------------------------------------------------------------------
    def shard(self, batch):
        """This rank's rows of a global batch: (inputs, targets), numpy (B, T) each."""
        lo, b = sum(self.micro_batches[:self.rank]), self.micro
        return batch.inputs[lo:lo + b], batch.targets[lo:lo + b]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def micro_batch(self, last: bool):
        """Context around one micro-batch's forward and backward (DDP skips the all-reduce until the last)."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss / self.config.grad_accum).backward()

    def step(self) -> torch.Tensor:
        """Clip, step, zero; return the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # -- agreeing across ranks --------------------------------------------------------------------
    def mean(self, value: float) -> float:
        return value

    def any(self, flag: bool) -> bool:
        return flag

    def broadcast(self, obj):
        return obj

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        return [obj]

    def barrier(self) -> None:
        pass

    def close(self, wait: bool = True) -> None:
        """Leave the process group; ``wait`` for the other ranks first (not after an error: they may be gone)."""

    # -- checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, state: dict, meta: dict) -> ckpt.Checkpoint | None:
        """Write a checkpoint (every rank calls this); the Checkpoint on rank 0, None elsewhere."""
        saved = None
        if self.is_main:
            state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), **state}
            saved = ckpt.save(folder, self.model, state, {**meta, **self.describe()})
        self.barrier()  # nobody runs ahead (or exits) before the checkpoint is whole
        return saved

    def load_checkpoint(self, folder: Path, digest: str | None, device: torch.device) -> tuple[dict, dict]:
        """Load weights and optimizer state into every rank; return (state with "rng", meta)."""
        meta = ckpt.verify(folder, digest=digest)
        if meta.get("strategy") == "deepspeed":
            raise ConfigError(
                f"checkpoint {folder} was written by strategy=deepspeed (its optimizer state is DeepSpeed's); "
                "resume it with strategy=deepspeed"
            )
        state, meta = ckpt.load(folder, self.model, map_location=device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        return state, meta

    def describe(self) -> dict:
        """What a checkpoint records about how it was written."""
        return {"strategy": self.name, "world_size": self.world_size, "zero_stage": None}


class DDP(SingleProcess):
    """torch DistributedDataParallel: gloo on the CPU, nccl on CUDA; gradients averaged across ranks."""

    name = "ddp"

    def __init__(self, config):
        super().__init__(config)
        self._started_group = start_process_group(config)
        self._read_ranks()

    def _read_ranks(self) -> None:
        dist = torch.distributed
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        self.hosts = self.gather(host_name())
        self.micro_batches = self.gather(self.config.micro_batch(self.hosts[self.rank], self.local_rank))

    def device(self, device: torch.device) -> torch.device:
        if device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def _wrap(self, model):
        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        self.ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return self.ddp

    def micro_batch(self, last: bool):
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def mean(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self._comm_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj):
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        torch.distributed.barrier()

    def close(self, wait: bool = True) -> None:
        if self._started_group and torch.distributed.is_initialized():
            if wait:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()  # a clean exit (DeepSpeed's ZeRO-3 could abort without)

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


class DeepSpeed(DDP):
    """DeepSpeed's engine with ZeRO 0–3 (optionally offloading the optimizer to the CPU).

    The config is generated from TrainConfig (``deepspeed_config``), then a user JSON file
    (``TrainConfig.deepspeed_config``) is merged over it. Our AdamW (same param groups, betas, eps,
    weight decay) is handed to the engine, or DeepSpeedCPUAdam with the same groups when
    offloading; our schedule sets the learning rate of the engine's optimizer every step.
    """

    name = "deepspeed"

    def __init__(self, config):
        SingleProcess.__init__(self, config)
        import deepspeed

        self._started_group = not torch.distributed.is_initialized()
        set_single_process_env()  # without a launcher DeepSpeed would look for MPI
        backend = "nccl" if _wants_cuda(config) else "gloo"
        deepspeed.init_distributed(dist_backend=backend, timeout=datetime.timedelta(minutes=30))
        self._read_ranks()

    def autocast(self, device: torch.device, dtype: torch.dtype):
        return contextlib.nullcontext()  # the engine runs the model in the precision of its config

    def prepare(self, model, optimizer, device: torch.device, dtype: torch.dtype):
        import deepspeed

        self.model = model
        self.ds_config = deepspeed_config(self.config, self.world_size, dtype, micro=self.micro)
        if self.config.offload:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            d = optimizer.defaults
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
            optimizer = DeepSpeedCPUAdam(groups, lr=d["lr"], betas=d["betas"], eps=d["eps"], adamw_mode=True)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                                 config=self.ds_config)
        if self.config.compile:
            self.engine.compile()
        return self.engine

    def micro_batch(self, last: bool):
        return contextlib.nullcontext()  # the engine counts micro-batches itself

    def backward(self, loss: torch.Tensor) -> None:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)  # scaled by 1/gradient_accumulation_steps inside
        if boundary and self.config.zero_stage == 0:
            # without ZeRO the engine does not report the norm; the averaged gradients are whole here
            self._grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters()
                                                             if p.grad is not None])
        self.engine.step()  # steps the optimizer only at the accumulation boundary

    def step(self) -> torch.Tensor:
        # the last backward's engine.step() was the accumulation boundary: the optimizer has stepped
        norm = self.engine.get_global_grad_norm() if self.config.zero_stage else self._grad_norm
        return torch.tensor(float(norm))

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def save_checkpoint(self, folder: Path, state: dict, meta: dict) -> ckpt.Checkpoint | None:
        # 1. one staging folder for every rank's shards; 2. the engine writes them, with our step,
        # data position and RNG as client_state; 3. rank 0 adds the whole weights and meta.json.
        from deepspeed.checkpoint.constants import (
            UNIVERSAL_CHECKPOINT_INFO,
            UNIVERSAL_CHECKPOINT_VERSION_KEY,
            UNIVERSAL_CHECKPOINT_VERSION_VALUE,
        )

        tmp = Path(self.broadcast(str(ckpt.staging(folder)) if self.is_main else None))
        self.barrier()
        # no tensor or pipeline parallelism here: an empty layout lets ds_to_universal convert it
        state = {**state, UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}}
        self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", client_state=state, save_latest=False)
        self.barrier()
        saved = None
        with self._whole_weights():
            if self.is_main:
                weights = ckpt.whole_weights(self.model)  # ZeRO 1/2: views into one flat buffer
                saved = ckpt.commit(tmp, folder, weights, None, {**meta, **self.describe()})
        self.barrier()
        return saved

    def load_checkpoint(self, folder: Path, digest: str | None, device: torch.device) -> tuple[dict, dict]:
        meta = ckpt.verify(folder, digest=digest)
        if meta.get("strategy") != "deepspeed":
            raise ConfigError(
                f"checkpoint {folder} was written by strategy={meta.get('strategy', 'single')}; resume it with "
                "strategy=single or ddp (any number of processes)"
            )
        tag = "state"
        if meta["world_size"] != self.world_size and meta["zero_stage"]:
            universal = Path(folder) / "deepspeed" / "universal"
            if not (universal.is_dir() and self.ds_config.get("checkpoint", {}).get("load_universal")):
                raise ConfigError(
                    f"checkpoint {folder} holds ZeRO-{meta['zero_stage']} shards of {meta['world_size']} processes, "
                    f"this run has {self.world_size}; resume with {meta['world_size']} processes, or convert it once: "
                    f"python -m deepspeed.checkpoint.ds_to_universal --input_folder {folder}/deepspeed/state "
                    f"--output_folder {folder}/deepspeed/universal — then resume with a deepspeed_config JSON "
                    'holding {"checkpoint": {"load_universal": true}}'
                )
            tag = "universal"
        path, client = self.engine.load_checkpoint(str(Path(folder) / "deepspeed"), tag=tag,
                                                   load_lr_scheduler_states=False)
        if path is None:
            raise ConfigError(f"DeepSpeed found no checkpoint in {folder}/deepspeed/{tag}")
        return client, meta

    def describe(self) -> dict:
        return {"strategy": self.name, "world_size": self.world_size, "zero_stage": self.config.zero_stage}

    def _whole_weights(self):
        """ZeRO-3 keeps a slice of each parameter per rank: gather them (on every rank) to save."""
        if self.config.zero_stage < 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)


def deepspeed_config(config, world_size: int, dtype: torch.dtype, micro: int | None = None) -> dict:
    """The DeepSpeed JSON for a TrainConfig, with the user's file (config.deepspeed_config) merged over it.

    ``micro`` is this rank's micro-batch (default batch_size). With mixed micro-batches each rank
    gets its own config; DeepSpeed checks train_batch_size = micro × accumulation × world per rank,
    and the loss weight (see the module's docstring) makes its equal average the global mean.
    """
    micro = micro or config.batch_size
    zero = {"stage": config.zero_stage}
    if config.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    generated = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": config.grad_accum,
        "train_batch_size": micro * config.grad_accum * world_size,
        # explicit: DeepSpeed's own default is 1.0 whatever our config says; 0 turns it off
        "gradient_clipping": config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if not config.deepspeed_config:
        return generated
    path = Path(config.deepspeed_config).expanduser()
    try:
        user = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"deepspeed_config={config.deepspeed_config!r} is not a readable JSON file: {e}") from e
    return _merge(generated, user)


def imbalance(micro_batches: list[int], forward_s: list[float], hosts: list[str] | None = None) -> dict:
    """How much the slowest rank holds a synchronous step back, and a split matched to speed.

    Each rank's speed is s_r = B_r / t_r (sequences per second of forward). A step waits for the
    slowest rank: max t_r. Micro-batches proportional to speed would finish together after
    ΣB / Σs. ``slowdown`` is the ratio of the two (1.0: balanced); ``suggested`` is the
    speed-matched split (per host when ``hosts`` is given: the smallest of its ranks').
    """
    speeds = [b / max(t, 1e-9) for b, t in zip(micro_batches, forward_s, strict=True)]
    balanced = sum(micro_batches) / sum(speeds)
    slowest = max(range(len(forward_s)), key=forward_s.__getitem__)
    split = [max(1, round(sum(micro_batches) * s / sum(speeds))) for s in speeds]
    suggested: dict[str, int] = {}
    for name, b in zip(hosts or [f"rank{r}" for r in range(len(split))], split, strict=True):
        suggested[name] = min(b, suggested.get(name, b))
    return {"slowdown": forward_s[slowest] / balanced, "slowest_rank": slowest, "suggested": suggested}


def imbalance_warning(found: dict, hosts: list[str], micro_batches: list[int]) -> str | None:
    """What to tell the user when ``imbalance``'s slowdown reaches SLOWDOWN_WARN; None below it."""
    if found["slowdown"] < SLOWDOWN_WARN:
        return None
    r = found["slowest_rank"]
    split = ",".join(f"{host}={b}" for host, b in found["suggested"].items())
    return (f"rank {r} on {hosts[r]} (micro-batch {micro_batches[r]}) holds the run back: each step takes about "
            f"{found['slowdown']:.1f}x as long as with micro-batches matched to each machine's speed. Try "
            f"--set micro_batch_per_host={split} (as far as the smaller card's memory allows; docs/training.md, "
            "Heterogeneous machines)")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# -- the process group ----------------------------------------------------------------------------
def start_process_group(config) -> bool:
    """Join the launcher's process group (or start a one-process one); True when this call started it."""
    dist = torch.distributed
    if dist.is_initialized():
        return False
    set_single_process_env()
    backend = "nccl" if _wants_cuda(config) else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return True


def set_single_process_env() -> None:
    """Outside a launcher, make this process rank 0 of 1 (on a free local port)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wants_cuda(config) -> bool:
    return config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())


class QuietLog:
    """What ranks other than 0 get instead of a RunLog: only rank 0 writes metrics and status."""

    spooled = 0
    spool = None

    def log(self, *args, **kwargs) -> None:
        pass

    def status(self, **fields) -> None:
        pass

    def checkpoint(self, **fields) -> None:
        pass

    def flush(self) -> bool:
        return True
