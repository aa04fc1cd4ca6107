"""Checkpoints: a folder written whole or not at all, verified by sha256 when read back.

A checkpoint folder holds
  model.safetensors   the weights (shared tensors such as tied embeddings stored once)
  state.pt            optimizer, scheduler, grad scaler, RNG states, step and data position
  meta.json           step, kind, config, and the sha256 of the two files above
It is written into a hidden temporary folder, flushed, and renamed into place, so a crash leaves
either the previous checkpoint or the new one. ``digest`` (the sha256 of meta.json) is what the
store records; loading checks it and each file's own sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from bi_ide.errors import NotFoundError, ValidationError

FILES = ("model.safetensors", "state.pt")


@dataclass
class Checkpoint:
    path: Path
    step: int
    digest: str
    size_bytes: int


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(folder: Path, model: torch.nn.Module, state: dict, meta: dict) -> Checkpoint:
    """Write a checkpoint folder atomically; ``state`` is torch-saveable, ``meta`` JSON-able."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        meta = {**meta, "files": {name: sha256(tmp / name) for name in FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        for name in (*FILES, "meta.json"):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if folder.exists():  # re-saving the same step: move the old one aside, then swap
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in folder.iterdir())
    return Checkpoint(folder, int(meta["step"]), sha256(folder / "meta.json"), size)


def load(folder: Path, model: torch.nn.Module, *, digest: str | None = None, map_location="cpu") -> tuple[dict, dict]:
    """Verify a checkpoint, load its weights into ``model``; return (state, meta)."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise NotFoundError(f"no checkpoint at {folder} (meta.json missing)")
    if digest is not None and sha256(meta_path) != digest:
        raise ValidationError(f"checkpoint {folder} does not match the sha256 recorded in the store; it was changed")
    meta = json.loads(meta_path.read_text())
    for name, expected in meta["files"].items():
        if not (folder / name).is_file() or sha256(folder / name) != expected:
            raise ValidationError(f"checkpoint file {folder / name} is missing or corrupt (sha256 mismatch)")
    missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False, device=str(map_location))
    if unexpected or [m for m in missing if not _is_tied(model, m)]:
        raise ValidationError(
            f"checkpoint {folder} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "resume with the same preset and vocabulary"
        )
    state = torch.load(folder / "state.pt", map_location=map_location, weights_only=False)
    return state, meta


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    # safetensors stores a shared tensor once; the other name is reported missing but is loaded.
    params = dict(model.named_parameters(remove_duplicate=False))
    tensor = params.get(name)
    return tensor is not None and any(p is tensor and n != name for n, p in params.items())
