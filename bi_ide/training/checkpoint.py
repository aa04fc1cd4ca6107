"""Checkpoints: a folder written whole or not at all, verified by sha256 when read back.

A checkpoint folder holds
  model.safetensors   the weights (shared tensors such as tied embeddings stored once)
  state.pt            optimizer, scheduler, grad scaler, RNG states, step and data position
  deepspeed/          instead of state.pt when strategy=deepspeed: the engine's per-rank shards
  meta.json           step, kind, config, and the sha256 of every file above
It is written into a hidden temporary folder, flushed, and renamed into place, so a crash leaves
either the previous checkpoint or the new one. ``digest`` (the sha256 of meta.json) is what the
store records; loading checks it and each file's own sha256.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model

from bi_ide.errors import NotFoundError, ValidationError
from bi_ide.training.files import file_sha256

FILES = ("model.safetensors", "state.pt")  # what a single-process or DDP checkpoint holds


@dataclass
class Checkpoint:
    path: Path
    step: int
    digest: str
    size_bytes: int


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    # torch wants the generators' states as CPU byte tensors, wherever the checkpoint was loaded to
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(folder: Path, model: torch.nn.Module, state: dict, meta: dict) -> Checkpoint:
    """Write a checkpoint folder atomically; ``state`` is torch-saveable, ``meta`` JSON-able."""
    return commit(staging(folder), folder, model, state, meta)


def staging(folder: Path) -> Path:
    """A fresh hidden folder beside ``folder`` to write a checkpoint into before ``commit``.

    Several processes can write into it (DeepSpeed's per-rank shards) before one of them commits.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, folder: Path, model: torch.nn.Module | dict, state: dict | None, meta: dict) -> Checkpoint:
    """Add the weights, ``state`` and meta.json to a staging folder and rename it to ``folder``.

    meta.json records the sha256 of every file in the folder (subfolders included), so files that
    other processes put there are verified on load too. ``state=None`` writes no state.pt.
    ``model`` is a module, or the dict that ``whole_weights`` makes of one.
    """
    folder, tmp = Path(folder), Path(tmp)
    try:
        if isinstance(model, dict):
            save_file(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            save_model(model, str(tmp / "model.safetensors"))
        if state is not None:
            torch.save(state, tmp / "state.pt")
        names = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
        meta = {**meta, "files": {name: file_sha256(tmp / name) for name in names}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        for name in (*names, "meta.json"):
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
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return Checkpoint(folder, int(meta["step"]), file_sha256(folder / "meta.json"), size)


def whole_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights as separate CPU tensors, a tied weight once (under its first name).

    For modules whose parameters are views into one flat buffer (DeepSpeed ZeRO 1/2), which
    safetensors' save_model refuses to save.
    """
    weights, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:
            continue  # tied: loading the first name fills both
        seen.add(key)
        weights[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return weights


def verify(folder: Path, *, digest: str | None = None) -> dict:
    """Check a checkpoint's meta.json against ``digest`` and every file against meta.json; return meta."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise NotFoundError(f"no checkpoint at {folder} (meta.json missing)")
    if digest is not None and file_sha256(meta_path) != digest:
        raise ValidationError(f"checkpoint {folder} does not match the sha256 recorded in the store; it was changed")
    meta = json.loads(meta_path.read_text())
    for name, expected in meta["files"].items():
        if not (folder / name).is_file() or file_sha256(folder / name) != expected:
            raise ValidationError(f"checkpoint file {folder / name} is missing or corrupt (sha256 mismatch)")
    return meta


def load(folder: Path, model: torch.nn.Module, *, digest: str | None = None, map_location="cpu") -> tuple[dict, dict]:
    """Verify a checkpoint, load its weights into ``model``; return (state, meta)."""
    folder = Path(folder)
    meta = verify(folder, digest=digest)
    load_weights(folder, model, map_location=map_location)
    state = {}  # a DeepSpeed checkpoint keeps its state in deepspeed/ (see bi_ide.training.distributed)
    if (folder / "state.pt").is_file():
        state = torch.load(folder / "state.pt", map_location=map_location, weights_only=False)
    return state, meta


def load_weights(folder: Path, model: torch.nn.Module, *, map_location="cpu") -> None:
    """Load model.safetensors of a (verified) checkpoint into ``model``."""
    folder = Path(folder)
    missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False, device=str(map_location))
    if unexpected or [m for m in missing if not _is_tied(model, m)]:
        raise ValidationError(
            f"checkpoint {folder} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "resume with the same preset and vocabulary"
        )


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    # safetensors stores a shared tensor once; the other name is reported missing but is loaded.
    params = dict(model.named_parameters(remove_duplicate=False))
    tensor = params.get(name)
    return tensor is not None and any(p is tensor and n != name for n, p in params.items())
