"""The store the council's question set runs on: a fleet, a model registry, runs and the ERP demo.

Written through the Store API as the workbench itself would write it, so the council reads it
the way it reads the user's own data:

- the fleet: a Windows laptop with a 6 GB RTX 4050 and the "rtx-box", a Linux machine with a
  32 GB RTX 5090 (``bi_ide.fleet.examples``);
- the registry: ``bi-arabic`` v1 deployed (val bpb 1.10 on Arabic) and v2 ready but worse (1.35);
  ``bi-code`` v1 deployed (0.95 on code) and v2 ready and better (0.88); both on the same corpus;
- runs: the four runs behind those versions (done, with falling validation curves), a failed
  ``large`` run on the laptop (out of memory) and a running ``medium`` one on the box;
- the ERP demo business (coffee, dates, spices, tea, household goods, sweets; ``bi_ide.erp.demo``).
"""

from __future__ import annotations

import time
from datetime import date

from bi_ide.fleet.examples import example_fleet

CORPUS = "data/corpora/quran-stdlib"
# (model, version's val bpb per domain, deployed?)
REGISTRY = (
    ("bi-arabic", "small", {"val_bpb_arabic": 1.10, "val_bpb_code": 1.62}, True),
    ("bi-arabic", "small", {"val_bpb_arabic": 1.35, "val_bpb_code": 1.70}, False),
    ("bi-code", "medium", {"val_bpb_arabic": 1.80, "val_bpb_code": 0.95}, True),
    ("bi-code", "medium", {"val_bpb_arabic": 1.78, "val_bpb_code": 0.88}, False),
)
ERP_END = date(2026, 10, 31)  # the demo's last day: the same business whatever today is


def example_store(store, *, erp: bool = True) -> dict:
    """Fill ``store`` (empty, or without these names) with the example; returns what it made."""
    workers = example_fleet(store, laptop_gb=6, box_gb=32)
    made = {"workers": workers, "models": [], "runs": []}
    for name, preset, bpb, deployed in REGISTRY:
        run = _run(store, f"{name}-{preset}", preset, "rtx-box", "done", bpb)
        model = store.register_model(name, run_id=run["id"], params_count=None,
                                     metrics={**bpb, "corpus": CORPUS})
        if deployed:
            store.set_model_status(model["id"], "deployed")
        made["runs"].append(run["id"])
        made["models"].append(model["id"])
    failed = _run(store, "large-on-laptop", "large", "laptop", "failed", None,
                  error="CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 6.00 GiB total capacity)")
    running = _run(store, "medium-nightly", "medium", "rtx-box", "running", {"val_bpb_arabic": 1.3})
    made["runs"] += [failed["id"], running["id"]]
    if erp:
        from bi_ide.erp.demo import load_demo

        made["erp"] = load_demo(store, months=24, seed=7, end=ERP_END, if_empty=True)
    return made


def _run(store, name: str, preset: str, worker: str, status: str, bpb: dict | None, error: str | None = None) -> dict:
    """A run with its validation curve: each bpb falls over five evaluations to ``bpb``."""
    run = store.create_run(name, kind="train", preset=preset, worker_id=worker, device="cuda",
                           config={"preset": preset, "corpus": CORPUS}, status="running")
    if bpb:
        now = time.time()
        steps, names, values, times = [], [], [], []
        for i, step in enumerate(range(0, 1000, 200)):
            for metric, last in bpb.items():
                steps.append(step)
                names.append(metric)
                values.append(last * (1 + 0.4 * (4 - i) / 4))
                times.append(now - (5 - i) * 60)
        store.write_metrics({"step": steps, "name": names, "value": values, "time": times}, run_id=run["id"])
    if status != "running":
        fields = {"error": error} if error else {}
        run = store.update_run(run["id"], status=status, step=1000 if status == "done" else 120, **fields)
    return run


# -- the question set -------------------------------------------------------------------------------
EXPECTATIONS = ("approved", "rejected", "deferred", "not-approved")


def load_questions(path) -> list[dict]:
    """The question set (tests/council_questions.yaml): id, lang, question, expect, cites, why; checked."""
    from pathlib import Path

    import yaml

    from bi_ide.errors import ValidationError

    rows = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValidationError(f"{path} is not a list of questions")
    for i, row in enumerate(rows):
        missing = [k for k in ("id", "lang", "question", "expect", "cites") if k not in row]
        if missing or row["expect"] not in EXPECTATIONS or row["lang"] not in ("ar", "en"):
            raise ValidationError(f"{path}: question {i + 1} ({row.get('id')}) needs id, lang (ar/en), question, "
                                  f"expect ({'/'.join(EXPECTATIONS)}) and cites; missing {missing}")
    return rows


def judge(decision: dict, row: dict) -> dict:
    """Whether a stored decision meets a question's expectation and evidence; what it decided."""
    expected, got = row["expect"], decision["decision"]
    right = got != "approved" if expected == "not-approved" else got == expected
    evidence = decision.get("evidence") or []
    if row["cites"] == "not_found":
        cited = any(e.get("facts", {}).get("not_found") is not None for e in evidence)
    else:
        cited = any(row["cites"] in (e.get("facts", {}).get("entities") or []) for e in evidence)
    return {"id": row["id"], "lang": row["lang"], "expect": expected, "decision": got, "right": right,
            "cites": row["cites"], "cited": cited, "language": (decision.get("meta") or {}).get("language")}
