"""What the training benches share: step clocks and transformers.Trainer on our corpus as the baseline.

No store, no DuckDB: bench/gpu.py imports this on a bare GPU machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bi_ide.training.corpus import TokenShards
from bi_ide.training.hf import hf_from_config
from bi_ide.training.model import ModelConfig

# The optimizer and schedule every trainer gets (TrainConfig names).
OPTIM = dict(learning_rate=6e-4, min_lr=6e-5, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0)
SEED = 1337


class StepClock:
    """perf_counter() at the end of every optimizer step, and tokens/s over the timed ones.

    On CUDA each tick waits for the GPU first, so a step ends when its kernels have.
    """

    def __init__(self, cuda: bool = False):
        self.times: list[float] = []
        self.threads = 0
        self.cuda = cuda

    def tick(self, *_) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.threads = torch.get_num_threads()

    def tokens_per_s(self, warmup: int, timed: int, tokens_per_step: int) -> float:
        if len(self.times) < warmup + timed:
            raise RuntimeError(f"only {len(self.times)} steps were seen, expected at least {warmup + timed}")
        # times[k] is the end of step k + 1: from the end of step `warmup` to the end of step warmup + timed
        return timed * tokens_per_step / (self.times[warmup + timed - 1] - self.times[warmup - 1])


class Windows(torch.utils.data.Dataset):
    """The windows our trainer reads, in its order (TokenShards.batch), as HF examples."""

    def __init__(self, shards: TokenShards, seq_len: int, count: int):
        self.shards, self.seq_len, self.starts, p = shards, seq_len, [], 0
        for _ in range(count):
            if p + seq_len + 1 > len(shards):  # TokenShards.batch starts over at 0 here too
                p = 0
            self.starts.append(p)
            p += seq_len

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        p = self.starts[i]
        ids = torch.from_numpy(self.shards.tokens(p, p + self.seq_len).astype(np.int64))  # (T,)
        return {"input_ids": ids, "labels": ids}  # HF shifts labels inside the model


def run_hf(corpus: Path, vocab_size: int, out: Path, *, preset: str, batch: int, seq_len: int, warmup: int,
           timed: int, device: str = "cpu", bf16: bool = False, compile: bool = False, fused: bool = False,
           threads: int | None = None) -> dict:
    """transformers.Trainer on the GPT2LMHeadModel our model="gpt2" builds (same init, same windows).

    ``bf16``, ``compile`` and ``fused`` are TrainingArguments' bf16, torch_compile and
    optim="adamw_torch_fused": its best settings on a GPU. Returns tokens/s, every step's loss and
    (on CUDA) the peak memory allocated.
    """
    import transformers
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments
    from transformers import Trainer as HFTrainer

    transformers.logging.set_verbosity_error()
    steps = warmup + timed + 1
    cuda = device == "cuda"
    clock, losses = StepClock(cuda), []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    class LossRecorder(HFTrainer):  # our trainer calls loss.item() every step too
        def training_step(self, *a, **kw):
            loss = super().training_step(*a, **kw)
            losses.append(loss.item())
            return loss

    torch.manual_seed(SEED)  # our Trainer seeds the same way before building its model
    shape = ModelConfig.from_preset(preset, vocab_size=vocab_size, dropout=0.0)
    model = hf_from_config("gpt2", **shape.to_dict())
    training_args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        learning_rate=OPTIM["learning_rate"], weight_decay=OPTIM["weight_decay"], adam_beta1=OPTIM["beta1"],
        adam_beta2=OPTIM["beta2"], adam_epsilon=1e-8, max_grad_norm=OPTIM["grad_clip"],
        optim="adamw_torch_fused" if fused else "adamw_torch",
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": OPTIM["min_lr"]},
        warmup_steps=warmup, train_sampling_strategy="sequential", seed=SEED, use_cpu=not cuda,
        bf16=bf16, fp16=False, torch_compile=compile, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to=[], dataloader_num_workers=0, dataloader_pin_memory=cuda, disable_tqdm=True,
    )
    dataset = Windows(TokenShards(corpus, "train"), seq_len, steps * batch)
    if threads:
        torch.set_num_threads(threads)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = LossRecorder(model=model, args=training_args, train_dataset=dataset, callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics dict
    trainer.train()
    result = {"tokens_per_s": clock.tokens_per_s(warmup, timed, batch * seq_len), "losses": losses,
              "threads": clock.threads}
    if cuda:
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        del trainer, model
        torch.cuda.empty_cache()
    return result
