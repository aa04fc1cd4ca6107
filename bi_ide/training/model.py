"""The BI Transformer: a GPT-2-style decoder-only language model in one file.

The seed plan's model (§II.E, ``ai/models/bi_transformer.py``) written the way nanoGPT writes it:
pre-norm blocks (LayerNorm -> causal self-attention -> residual, LayerNorm -> GELU MLP -> residual),
learned position embeddings, token embeddings tied to the output head, GPT-2 initialisation.

References:
1) nanoGPT's model.py (Karpathy): https://github.com/karpathy/nanoGPT/blob/master/model.py
2) GPT-2: Radford et al., "Language Models are Unsupervised Multitask Learners" (2019), §2.3:
   pre-norm, a final LayerNorm, residual projections scaled by 1/sqrt(N) at init.
3) HuggingFace transformers' GPT2LMHeadModel: ``bi_ide.training.hf.to_hf_gpt2`` copies our
   weights into it and tests/test_model.py checks that the logits agree.

Where this differs from the seed's sketch:
- ``targets`` are already shifted (``targets[:, t]`` is the token after ``idx[:, t]``) and -100 is
  ignored; the seed fed unshifted ``labels`` to cross_entropy, which trains a copy task.
- One fused qkv projection (``c_attn``) and ``scaled_dot_product_attention(is_causal=True)``
  instead of four Linear layers and a hand-written mask; the weights are the same in number.
- The vocabulary is padded up to a multiple of 64 for fast matmuls. The padded rows of the
  (tied) embedding start at zero and the logits are cut back to the real vocabulary, so those rows
  never receive a gradient, never enter the loss and are never sampled.
- Dropout defaults to 0.0 (the seed used 0.1); set ``dropout`` for small-data runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

from bi_ide.errors import ConfigError
from bi_ide.training.presets import PRESETS, SEED_ESTIMATES

PAD_MULTIPLE = 64
IGNORE_INDEX = -100


def padded_vocab(vocab_size: int) -> int:
    """The vocabulary size rounded up to a multiple of 64 (the embedding's row count)."""
    return ((vocab_size + PAD_MULTIPLE - 1) // PAD_MULTIPLE) * PAD_MULTIPLE


@dataclass
class ModelConfig:
    vocab_size: int = 32000  # the tokenizer's real vocabulary; the embedding has padded_vocab rows
    block_size: int = 1024  # longest context (position embeddings); the seed's max_seq_len
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256  # the seed's d_model
    n_ff: int = 1024  # the seed's d_ff: the MLP's hidden width
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2 and the seed

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ModelConfig.{name}={value!r}: want a positive integer")
        if self.n_embd % self.n_head:
            allowed = [h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0 and h <= 64]
            raise ConfigError(
                f"ModelConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"with n_embd={self.n_embd}, n_head may be one of {allowed}, or change n_embd to a "
                f"multiple of {self.n_head} (e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelConfig.dropout={self.dropout!r}: want a value in [0, 1)")

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab(self.vocab_size)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ModelConfig:
        """A preset's shape with ``overrides`` (usually ``vocab_size=`` of the real tokenizer)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s) {unknown}; valid fields: {', '.join(names)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        # key, query, value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x):
        B, T, C = x.size()  # batch, sequence length, n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_ff, bias=config.bias)
        self.gelu = nn.GELU()  # exact (erf) GELU, as the seed; GPT2Config(activation_function="gelu")
        self.c_proj = nn.Linear(config.n_ff, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.gelu(self.c_fc(x))  # (B, T, n_ff)
        return self.dropout(self.c_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class BITransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        # weight tying: one tensor is both the input embedding and the output projection
        self.transformer.wte.weight = self.lm_head.weight

        # init: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * n_layer) (GPT-2 §2.3)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        with torch.no_grad():
            self.lm_head.weight[config.vocab_size :].zero_()  # padded rows: unused, kept at zero

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters that take part in the output, the tied embedding counted once.

        The padded vocabulary rows are left out (they stay zero and get no gradient), so this is
        ``sum(p.numel())`` minus ``(padded_vocab - vocab_size) * n_embd``. With ``non_embedding``
        the position embeddings are left out too, as nanoGPT's ``get_num_params`` (which defaults
        to it): the token embeddings stay in, because they are also the output layer's weights.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        n -= (self.config.padded_vocab_size - self.config.vocab_size) * self.config.n_embd
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), as nanoGPT's estimate_mfu / PaLM App. B.

        6N for the matmuls with the weights plus 12 * L * H * Q * T for attention scores and values.
        """
        cfg = self.config
        N = self.num_params(non_embedding=True)
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.head_size, seq_len or cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    def _features(self, idx):
        B, T = idx.size()
        if T > self.config.block_size:  # noqa: SIM300 (T is a length, not a constant)
            raise ConfigError(
                f"sequence length {T} is longer than block_size={self.config.block_size}; "
                f"crop the input or build the model with a larger block_size"
            )
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)  # (B, T, C)
        return self.transformer.ln_f(x)  # (B, T, C)

    def _logits(self, x):
        # padded vocabulary columns are cut off: they never enter the softmax
        return self.lm_head(x)[..., : self.config.vocab_size]  # (B, T, vocab_size)

    def forward(self, idx, targets=None):
        """``idx`` (B, T) token ids; ``targets`` (B, T) the next token for each position, -100 ignored.

        Returns ``(logits, loss)``: logits (B, T, vocab_size), loss the mean cross-entropy over the
        targets that are not -100 (``None`` without targets).
        """
        logits = self._logits(self._features(idx))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, eos_id=None):
        """Append ``max_new_tokens`` tokens to ``idx`` (B, T) and return the longer (B, T') tensor.

        ``temperature == 0`` is greedy (argmax); otherwise sample from softmax(logits / temperature),
        restricted to the ``top_k`` most likely tokens when given. With ``eos_id``, a row that has
        produced it is filled with ``eos_id`` after that, and generation stops once every row has.
        Runs in eval mode (no dropout) and puts the model back in the mode it was in.
        """
        check_sampling(temperature, top_k)
        was_training = self.training
        self.eval()
        try:
            done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
            for _ in range(max_new_tokens):
                # 1. crop the context to block_size and take the last position's logits
                idx_cond = idx[:, -self.config.block_size :]  # (B, <=block_size)
                logits = self._logits(self._features(idx_cond)[:, -1, :])  # (B, V)
                # 2. pick the next token: argmax, or a sample from the tempered top-k distribution
                idx_next = next_token(logits, temperature, top_k)  # (B, 1)
                # 3. rows that already ended keep emitting eos; stop when all have ended
                if eos_id is not None:
                    idx_next = idx_next.masked_fill(done.unsqueeze(1), eos_id)  # (B, 1)
                    done |= idx_next.squeeze(1) == eos_id
                idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
                if eos_id is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return idx


def check_sampling(temperature: float, top_k: int | None) -> None:
    if temperature < 0:
        raise ConfigError(f"temperature={temperature!r}: want 0 (greedy) or a positive value")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k={top_k!r}: want None or a positive integer")


def next_token(logits, temperature: float = 1.0, top_k: int | None = None):
    """The next token (B, 1) from last-position logits (B, V): argmax when temperature == 0."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature  # (B, V), a new tensor: the caller's logits stay as they were
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))  # (B, k)
        logits[logits < v[:, [-1]]] = -float("inf")
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1)  # (B, 1)


def count_params(config: ModelConfig, non_embedding: bool = False) -> int:
    """``BITransformer(config).num_params(non_embedding)`` without building the model."""
    C, F_, L, b = config.n_embd, config.n_ff, config.n_layer, int(config.bias)
    per_layer = (
        (2 * C + 2 * b * C)  # ln_1, ln_2
        + (3 * C * C + b * 3 * C)  # attn.c_attn
        + (C * C + b * C)  # attn.c_proj
        + (C * F_ + b * F_)  # mlp.c_fc
        + (F_ * C + b * C)  # mlp.c_proj
    )
    n = config.vocab_size * C + L * per_layer + (C + b * C)  # wte (= lm_head), blocks, ln_f
    if not non_embedding:
        n += config.block_size * C  # wpe
    return n


def param_report(vocab_size: int, block_size: int | None = None) -> list[dict]:
    """Per preset: the real parameter count with this vocabulary next to the seed's estimate.

    ``params`` is ``num_params()`` of the model built (on the meta device) with ``vocab_size``.

    ``block_size`` overrides each preset's context length (it changes the position embeddings).
    ``seed_estimate`` is ``None`` where the seed quotes none (``tiny``, ``gpt2-124m``); ``ratio`` is
    real / seed.
    """
    rows = []
    for name in PRESETS:
        overrides = {"vocab_size": vocab_size} | ({"block_size": block_size} if block_size else {})
        cfg = ModelConfig.from_preset(name, **overrides)
        with torch.device("meta"):  # shapes without memory: xlarge "builds" in milliseconds
            params = BITransformer(cfg).num_params()
        seed = SEED_ESTIMATES[name]
        rows.append(
            dict(
                preset=name,
                n_layer=cfg.n_layer,
                n_head=cfg.n_head,
                n_embd=cfg.n_embd,
                n_ff=cfg.n_ff,
                block_size=cfg.block_size,
                vocab_size=cfg.vocab_size,
                padded_vocab=cfg.padded_vocab_size,
                params=params,
                layer_params=params - (cfg.vocab_size + cfg.block_size) * cfg.n_embd,  # blocks + ln_f
                seed_estimate=seed,
                ratio=round(params / seed, 3) if seed else None,
            )
        )
    return rows
