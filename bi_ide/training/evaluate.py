"""Evaluate a registered model, and the small steps the notebooks share.

``evaluate_model`` measures validation loss and bits per byte for each domain of a corpus with a
registered model, over the same windows the trainer's evaluation uses, so its numbers for a run's
best checkpoint on its own corpus equal the run's best validation numbers. ``sample_table`` continues
a few prompts. The rest keeps notebooks to one call per cell: paths relative to the project (a
notebook runs in ``notebooks/``, its data belongs in the project's ``data/``), the store a
``db_path`` parameter names, and tables of a corpus, a run's metrics and a run's summary.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl
import torch

import bi_ide
from bi_ide import settings
from bi_ide.errors import ConfigError, NotFoundError
from bi_ide.training.arabic import DOMAINS, is_arabic
from bi_ide.training.corpus import TokenShards, load_manifest


# -- paths and the store -----------------------------------------------------------------------
def project_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute: a relative one is taken from the project folder, not the current one.

    >>> project_path("data/corpora/demo") == settings.project_root() / "data/corpora/demo"
    True
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else settings.project_root() / path


def open_store(db_path: str | os.PathLike = ""):
    """The store file ``db_path`` (relative to the project), or ``bi_ide.connect()`` when empty
    (``BI_IDE_DB``, else data/workbench.duckdb; the hub when ``BI_IDE_HUB`` is set)."""
    return bi_ide.connect(project_path(db_path)) if str(db_path) else bi_ide.connect()


def run_training(config, db_path: str | os.PathLike = "", *, nproc: int = 1, hostfile: str = "") -> tuple:
    """Train ``config``; return (the open store, the run's summary).

    One process trains here. With ``nproc`` > 1 or a DeepSpeed ``hostfile`` the launcher starts the
    processes (as ``bi-ide train launch`` does) and rank 0 records the run; the store is opened
    once they are done, since a store file takes one writer at a time.
    """
    if nproc > 1 or hostfile:
        from bi_ide.training.launch_cli import train_distributed

        summary = train_distributed(config, nproc=None if hostfile else nproc, hostfile=hostfile or None,
                                    db=project_path(db_path) if str(db_path) else None)
        return open_store(db_path), summary
    from bi_ide.training.trainer import train

    store = open_store(db_path)
    return store, train(config, store, handle_signals=False)


def local_store(store):
    """``store`` when it is a store file or memory store, else None (a hub client cannot record a
    corpus: ``prepare_corpus`` writes its tables directly)."""
    from bi_ide.store import Store

    return store if isinstance(store, Store) else None


def split_list(text: str, sep: str = ",") -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: a list parameter given as one string."""
    return [part.strip() for part in text.split(sep) if part.strip()]


# -- corpora ------------------------------------------------------------------------------------
def corpus_overview(manifest: dict) -> dict:
    """What a corpus is made of, without sizes: those depend on the machine's sources (the standard
    library differs from one Python build to the next)."""
    val = manifest["splits"]["val"]["domains"]
    return {
        "name": manifest["name"],
        "vocab_size": manifest["vocab_size"],
        "dtype": manifest["dtype"],
        "sources": [s["source"] for s in manifest["sources"]],
        "val_domains": [d for d in DOMAINS if val[d]["documents"]],
    }


def corpus_table(manifest: dict, digits: int = 3) -> pl.DataFrame:
    """One row per split and domain: documents, MiB, tokens and fertility, rounded."""
    rows = []
    for split in ("train", "val"):
        for domain, s in manifest["splits"][split]["domains"].items():
            if not s["documents"]:
                continue
            rows.append({
                "split": split, "domain": domain, "documents": s["documents"],
                "mib": round(s["bytes"] / 2**20, digits), "tokens": s["tokens"],
                "tokens_per_word": round(s["tokens"] / s["words"], digits) if s["words"] else None,
                "tokens_per_byte": round(s["tokens"] / s["bytes"], digits) if s["bytes"] else None,
            })
    return pl.DataFrame(rows, schema={"split": pl.String, "domain": pl.String, "documents": pl.Int64,
                                      "mib": pl.Float64, "tokens": pl.Int64, "tokens_per_word": pl.Float64,
                                      "tokens_per_byte": pl.Float64})


# -- runs ---------------------------------------------------------------------------------------
def run_overview(summary: dict) -> dict:
    """A training summary without ids, paths or measured numbers: what every machine agrees on."""
    model = summary.get("model") or {}
    losses = summary.get("losses") or []
    half = max(1, len(losses) // 4)
    return {
        "status": summary["status"],
        "steps": summary["steps"],
        "model": model.get("name"),  # its version depends on the store's earlier runs
        "val_domains": sorted({k.removeprefix("val_bpb_") for k in summary.get("val", {}) if k.startswith("val_bpb_")}),
        # the mean of the last quarter of the steps against the first quarter's
        "loss_fell": bool(losses) and sum(losses[-half:]) / half < sum(losses[:half]) / half,
    }


def val_table(values: dict, digits: int = 3) -> pl.DataFrame:
    """``{"val_loss_arabic": ..., "val_bpb_arabic": ...}`` as one row per domain, rounded."""
    domains = [d for d in DOMAINS if f"val_loss_{d}" in values]
    return pl.DataFrame({
        "domain": domains,
        "val_loss": [round(values[f"val_loss_{d}"], digits) for d in domains],
        "val_bpb": [round(values[f"val_bpb_{d}"], digits) for d in domains],
    }, schema={"domain": pl.String, "val_loss": pl.Float64, "val_bpb": pl.Float64})


def metrics_table(store, run_id: str, names: tuple[str, ...] = ("loss", "val_loss", "val_bpb_arabic", "val_bpb_code"),
                  points: int = 8, digits: int = 3) -> pl.DataFrame:
    """A run's metrics downsampled to ``points`` steps, one column per metric (a loss curve as a table)."""
    df = store.read_metrics(run_id, list(names), points=points)
    if df.is_empty():
        return pl.DataFrame({"step": []}, schema={"step": pl.Int64})
    wide = df.select("step", "name", pl.col("value").round(digits)).pivot(on="name", index="step", values="value")
    return wide.sort("step").select("step", *[n for n in names if n in wide.columns])


def write_summary(summary: dict, path: str | os.PathLike) -> Path:
    """The run's id, status, step count, model and last validation values as JSON at ``path``
    (relative to the project), for the next step of a pipeline."""
    model = summary.get("model") or {}
    record = {
        "run_id": summary["run_id"], "status": summary["status"], "steps": summary["steps"],
        "model_id": model.get("id"), "model_name": model.get("name"), "model_version": model.get("version"),
        "best_val_loss": None if summary.get("best_val_loss") in (None, math.inf) else summary["best_val_loss"],
        "val": summary.get("val", {}), "run_dir": summary.get("run_dir"),
    }
    out = project_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


# -- models -------------------------------------------------------------------------------------
def newest_model(store) -> str:
    """The id of the most recently registered model."""
    models = store.list_models()
    if models.is_empty():
        raise NotFoundError("no model is registered yet; train one first (notebooks/02-train.ipynb or "
                            "`bi-ide train run --recipe debug`)")
    return models.sort(["created_at", "version"], descending=True).row(0, named=True)["id"]


def checkpoint_meta(record: dict) -> dict:
    """The ``meta.json`` of a model record's checkpoint (its training config, corpus, vocabulary)."""
    meta = Path(record.get("checkpoint_path") or "") / "meta.json"
    if not record.get("checkpoint_path") or not meta.is_file():
        raise NotFoundError(f"the checkpoint of model {record['name']} v{record['version']} is missing")
    return json.loads(meta.read_text(encoding="utf-8"))


def _load(store, model: str, device: str):
    from bi_ide.training.sampling import load_model

    net, tokenizer, record = load_model(store, model or newest_model(store), device)
    return net, tokenizer, record, checkpoint_meta(record)


@torch.no_grad()
def evaluate_model(store, model: str = "", corpus: str | os.PathLike = "", *, batches: int = 0,
                   batch_size: int = 0, seq_len: int = 0, device: str = "cpu") -> dict:
    """Validation loss (nats per token) and bits per byte for each domain of ``corpus``.

    ``model`` is a model id or name (empty: the newest registered model); ``corpus`` a corpus folder
    made with the model's tokenizer (empty: the corpus the model was trained on). ``batches``,
    ``batch_size`` and ``seq_len`` default (0) to the run's ``eval_batches``, ``batch_size`` and
    ``seq_len``, so the windows are the trainer's. Returns ``{"model", "version", "model_id", "corpus",
    "windows", "domains": {domain: {"loss", "bpb", "tokens"}}, "val_loss"}``; a domain whose
    validation split is shorter than one window is left out.
    """
    net, _, record, meta = _load(store, model, device)
    trained = meta["config"]
    batches = batches or trained["eval_batches"]
    batch_size = batch_size or trained["batch_size"]
    seq_len = seq_len or trained["seq_len"]
    for key, value in (("batches", batches), ("batch_size", batch_size), ("seq_len", seq_len)):
        if value < 1:
            raise ConfigError(f"{key} must be a positive integer (0: the run's own), got {value!r}")
    own, _ = load_manifest(meta["corpus"])
    manifest, folder = load_manifest(project_path(corpus) if str(corpus) else meta["corpus"])
    if manifest["tokenizer_sha256"] != own["tokenizer_sha256"]:
        raise ConfigError(f"corpus {manifest['name']!r} was made with another tokenizer than model "
                          f"{record['name']} (trained on {own['name']!r}); prepare it with the model's tokenizer")
    domains, losses = {}, []
    for domain in DOMAINS:
        data = TokenShards(folder, "val", domain=domain)
        if len(data) <= seq_len + 1:
            continue
        total = 0.0
        for i in range(batches):  # the trainer's windows: same positions, same wrap-around
            position = (i * batch_size * seq_len) % max(1, len(data) - seq_len - 1)
            batch = data.batch(position, batch_size, seq_len)
            _, loss = net(torch.from_numpy(batch.inputs).to(device), torch.from_numpy(batch.targets).to(device))
            total += loss.item()
        mean = total / batches
        losses.append(mean)
        domains[domain] = {"loss": mean, "bpb": data.bits_per_byte(mean), "tokens": len(data)}
    return {
        "model": record["name"], "version": record["version"], "model_id": record["id"], "corpus": manifest["name"],
        "windows": {"batches": batches, "batch_size": batch_size, "seq_len": seq_len},
        "domains": domains, "val_loss": sum(losses) / len(losses) if losses else None,
    }


def evaluation_table(result: dict, digits: int = 3) -> pl.DataFrame:
    """``evaluate_model``'s result as one row per domain, rounded."""
    return val_table({f"val_{k}_{d}": v[k] for d, v in result["domains"].items() for k in ("loss", "bpb")}, digits)


@torch.no_grad()
def sample_table(store, model: str = "", prompts: list[str] | str = ("def fib(n):",), *, max_new_tokens: int = 40,
                 temperature: float = 0.0, top_k: int | None = 50, seed: int = 0, device: str = "cpu") -> pl.DataFrame:
    """Each prompt and the text the model continues it with (greedy when ``temperature`` is 0).

    The model is loaded once; each prompt starts from ``seed``, and a continuation ends early at
    the end-of-text token.
    """
    if isinstance(prompts, str):
        prompts = split_list(prompts, "|")
    if not 1 <= max_new_tokens <= 4096:
        raise ConfigError(f"max_new_tokens must be 1..4096, got {max_new_tokens!r}")
    net, tokenizer, _, _ = _load(store, model, device)
    completions = []
    for prompt in prompts:
        torch.manual_seed(seed)
        ids = tokenizer.encode(prompt, "arabic" if is_arabic(prompt) else "text") or [tokenizer.eot_id]
        out = net.generate(torch.tensor([ids], dtype=torch.long, device=device), max_new_tokens,
                           temperature=temperature, top_k=None if temperature == 0 else top_k,
                           eos_id=tokenizer.eot_id)
        new = [t for t in out[0].tolist()[len(ids):] if t != tokenizer.eot_id]
        completions.append(tokenizer.decode(new))
    return pl.DataFrame({"prompt": list(prompts), "completion": completions},
                        schema={"prompt": pl.String, "completion": pl.String})
