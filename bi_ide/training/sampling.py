"""Text from a registered model: find it in the store, verify its checkpoint, generate."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bi_ide.errors import NotFoundError
from bi_ide.training import checkpoint as ckpt
from bi_ide.training.arabic import is_arabic
from bi_ide.training.config import TrainConfig
from bi_ide.training.tokenizer import BPETokenizer


def find_model(store, model: str) -> dict:
    """A model record by id, or by name (the deployed version, else the newest)."""
    try:
        return store.get_model(model)
    except NotFoundError:
        pass
    versions = store.list_models().filter(name=model)
    if versions.is_empty():
        raise NotFoundError(f"no model with id or name {model!r}; `bi-ide models list` shows the models")
    deployed = versions.filter(status="deployed")
    chosen = (deployed if not deployed.is_empty() else versions).sort("version", descending=True).row(0, named=True)
    return store.get_model(chosen["id"])


def load_model(store, model: str, device: str = "cpu") -> tuple[torch.nn.Module, BPETokenizer, dict]:
    """(model in eval mode, its tokenizer, its record) for a registered model."""
    from bi_ide.training.trainer import build_model

    record = find_model(store, model)
    if not record.get("checkpoint_path"):
        raise NotFoundError(f"model {record['name']} v{record['version']} has no checkpoint recorded")
    folder = Path(record["checkpoint_path"])
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else None
    if meta is None:
        raise NotFoundError(f"the checkpoint of {record['name']} v{record['version']} is gone from {folder}")
    config = TrainConfig.from_dict({k: v for k, v in meta["config"].items() if k != "resume_from"})
    net = build_model(config, meta["vocab_size"])
    ckpt.load(folder, net, digest=record.get("checkpoint_sha256"), map_location=device)
    tokenizer = BPETokenizer.load(Path(meta["corpus"]) / "tokenizer.json")
    return net.to(device).eval(), tokenizer, record


def generate(store, model: str, prompt: str, *, max_new_tokens: int = 100, temperature: float = 0.8,
             top_k: int | None = 50, seed: int = 0) -> str:
    """The prompt continued by ``max_new_tokens`` tokens of the model's choosing."""
    net, tokenizer, _ = load_model(store, model)
    torch.manual_seed(seed)
    domain = "arabic" if prompt and is_arabic(prompt) else "text"
    ids = tokenizer.encode(prompt, domain) if prompt else [tokenizer.eot_id]  # a model's tokenizer: its eos
    idx = torch.tensor([ids], dtype=torch.long)  # (1, T)
    out = net.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k)
    return tokenizer.decode(out[0].tolist()[len(ids) if prompt else 1:]) if not prompt else tokenizer.decode(out[0].tolist())
