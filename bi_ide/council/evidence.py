"""Evidence: what the question is about, and what the workbench's own data says about it.

``parse_question`` finds the intent (train, deploy, restock or general), the model preset, a GPU
memory size, a laptop or machine, and run or product names, in English or Arabic. Each provider
reads the store and returns ``Finding``s: a sentence the decision cites, the topic it is about, and
its effect on the log-odds of approval (negative: against). A provider that fails gives one finding
saying so; the session goes on.

- fleet: GPU memory against the memory a training run of the preset needs, temperature, last seen.
- training: the run named (status, validation bpb trend, registered models), recent runs of a preset.
- erp: the product named (stock against its reorder point, sales trend, margin) through
  ``bi_ide.erp.reports``; "no ERP data" when its tables are empty.
- history: earlier council decisions on similar questions, and whether they were right.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from bi_ide.council import aggregate
from bi_ide.council.similarity import Index, normalize
from bi_ide.errors import WorkbenchError

GB = 1 << 30
FIT_MARGIN = 0.9  # a run should leave a tenth of the card free (CUDA context, fragmentation)
HOT_C, WARM_C = 85.0, 75.0  # seed §XIII: 85 °C throttles training
STALE_S = 300  # a worker not seen for 5 minutes is taken as away
SIMILAR_AT = 0.35
INTENT_WORDS = {
    "train": ("train", "training", "fine-tune", "finetune", "pretrain", "درب", "تدريب", "ندرب"),
    "deploy": ("deploy", "ship", "release", "ready", "production", "نشر", "ننشر", "جاهز"),
    "restock": ("restock", "reorder", "stock", "inventory", "replenish", "مخزون", "تخزين", "نطلب", "نعيد"),
}
ARABIC_PRESETS = {"ضخم": "xlarge", "كبير جدا": "xlarge", "كبير": "large", "متوسط": "medium", "صغير": "small"}
LAPTOP_WORDS = ("laptop", "notebook", "لابتوب", "محمول")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(?:gb|gib|g\b|جيجا|غيغا|جيجابايت)")


@dataclass
class Finding:
    """One piece of evidence: where from, about what, what it says, and its pull on approval."""

    source: str
    topic: str
    text: str
    effect: float = 0.0
    facts: dict = field(default_factory=dict)
    id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Question:
    """What a question asks about, as far as simple rules can tell."""

    text: str
    words: str
    intent: str = "general"
    preset: str | None = None
    memory_gb: float | None = None
    laptop: bool = False

    def mentions(self, name: str | None) -> bool:
        """Whether ``name`` (a hostname, run name, id, product) appears as a word in the question."""
        if not name:
            return False
        return re.search(rf"(?<!\w){re.escape(normalize(str(name)))}(?!\w)", self.words) is not None


def parse_question(text: str) -> Question:
    from bi_ide.training.model import PRESETS

    words = normalize(text)
    q = Question(text=text, words=words)
    q.intent = next((intent for intent, keys in INTENT_WORDS.items() if any(_has(words, k) for k in keys)),
                    "general")
    q.preset = next((p for p in PRESETS if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", words)), None)
    if q.preset is None:
        q.preset = next((p for ar, p in ARABIC_PRESETS.items() if normalize(ar) in words), None)
    m = _MEMORY.search(words)
    q.memory_gb = float(m[1]) if m else None
    q.laptop = any(w in words for w in LAPTOP_WORDS)
    return q


def _has(words: str, key: str) -> bool:
    """An English key as a whole word; an Arabic one anywhere (Arabic words carry prefixes)."""
    if key.isascii():
        return re.search(rf"(?<!\w){re.escape(key)}", words) is not None
    return key in words


def training_memory_bytes(preset: str, *, batch_size: int | None = None, seq_len: int | None = None) -> dict:
    """What training the preset takes in GPU memory with TrainConfig's defaults (an estimate).

    Weights, gradients and AdamW's two moments in fp32: 16 bytes a parameter. Activations kept for
    the backward pass, per layer: about (34·C + 5·H·T)·T·B bytes in 16-bit (Korthikanti et al. 2022).
    """
    from bi_ide.training.config import TrainConfig
    from bi_ide.training.model import ModelConfig, count_params

    defaults = TrainConfig.param
    b = batch_size or defaults["batch_size"].default
    cfg = ModelConfig.from_preset(preset)
    t = min(seq_len or defaults["seq_len"].default, cfg.block_size)
    params = count_params(cfg)
    states = 16 * params
    activations = cfg.n_layer * (34 * cfg.n_embd + 5 * cfg.n_head * t) * t * b * 2
    return {"preset": preset, "params": params, "batch_size": b, "seq_len": t, "bytes": states + activations}


# -- providers -----------------------------------------------------------------------------------
def fleet_findings(store, q: Question) -> list[Finding]:
    facts = store.council_fleet_facts()
    gpus = fleet_gpus(facts)
    if not gpus:
        return [Finding("fleet", "availability", "No GPU machine is registered in the fleet.", 0.0)]
    targets = _targets(gpus, q)
    out = []
    if q.intent == "train" and q.preset:
        need = training_memory_bytes(q.preset)
        for g in targets:
            out.append(_memory_finding(need, g))
    for g in targets:
        temp = g.get("temperature_c")
        if temp is not None and temp >= WARM_C:
            hot = temp >= HOT_C
            out.append(Finding("fleet", "thermal", f"{g['label']} runs at {temp:.0f} °C"
                               + (" (training throttles to half at 85 °C)." if hot else "."),
                               -1.0 if hot else -0.3, {"worker_id": g["worker_id"], "temperature_c": temp}))
        age = g.get("seen_s")
        if age is None or age > STALE_S:
            seen = "never reported" if age is None else f"was last seen {age / 60:.0f} min ago"
            out.append(Finding("fleet", "availability", f"{g['label']} {seen}.", -0.8,
                               {"worker_id": g["worker_id"], "seen_s": age}))
    return out


def fleet_gpus(facts: dict) -> list[dict]:
    """One entry per GPU: memory from its latest sample (or as registered), temperature, age."""
    now = datetime.now(UTC)
    sampled = {(r["worker_id"], r["gpu_index"]): r for r in facts["gpus"].to_dicts()}
    out = []
    for w in facts["workers"].to_dicts():
        registered = json.loads(w["gpus"]) if w["gpus"] else []
        labels = json.loads(w["labels"]) if w["labels"] else {}
        indexes = sorted({i for (wid, i) in sampled if wid == w["id"]} | set(range(len(registered))))
        for i in indexes:
            info = registered[i] if i < len(registered) and isinstance(registered[i], dict) else {}
            sample = sampled.get((w["id"], i), {})
            total = sample.get("memory_total_bytes") or _registered_memory(info)
            seen = w["last_seen_at"] or sample.get("time")
            out.append({
                "worker_id": w["id"], "hostname": w["hostname"], "gpu_index": i,
                "name": info.get("name") or f"GPU {i}", "memory_bytes": total,
                "temperature_c": sample.get("temperature_c"), "labels": labels, "os": w["os"] or "",
                "seen_s": (now - seen).total_seconds() if seen else None,
                "label": f"{w['hostname']}'s {info.get('name') or f'GPU {i}'}",
            })
    return out


def _registered_memory(info: dict) -> int | None:
    for key, scale in (("memory_total_bytes", 1), ("memory_bytes", 1), ("memory_total", 1), ("memory_mb", 1 << 20),
                       ("memory_gb", GB)):
        if info.get(key):
            return int(float(info[key]) * scale)
    return None


def _targets(gpus: list[dict], q: Question) -> list[dict]:
    """The GPUs the question is about: named machines, the laptop, the memory size; else every GPU."""
    named = [g for g in gpus if q.mentions(g["hostname"]) or q.mentions(g["worker_id"]) or q.mentions(g["name"])]
    if named:
        return named
    if q.laptop:
        laptops = [g for g in gpus if _is_laptop(g)]
        if laptops:
            return laptops
    if q.memory_gb:
        sized = [g for g in gpus if g["memory_bytes"] and abs(g["memory_bytes"] / GB - q.memory_gb) < 0.75]
        if sized:
            return sized
    return gpus


def _is_laptop(g: dict) -> bool:
    text = normalize(" ".join([g["hostname"], g["name"], json.dumps(g["labels"])]))
    return any(w in text for w in LAPTOP_WORDS)


def _memory_finding(need: dict, g: dict) -> Finding:
    total = g["memory_bytes"]
    facts = {"worker_id": g["worker_id"], "gpu_index": g["gpu_index"], "need_bytes": need["bytes"],
             "memory_bytes": total, "params": need["params"]}
    how = (f"training {need['preset']} needs about {need['bytes'] / GB:.1f} GB ({need['params'] / 1e6:.0f}M "
           f"parameters, AdamW in fp32, batch {need['batch_size']} × {need['seq_len']} tokens)")
    if not total:
        return Finding("fleet", "memory", f"{how}; {g['label']} reports no memory size.", 0.0, facts)
    if need["bytes"] > FIT_MARGIN * total:
        return Finding("fleet", "memory", f"{_sentence(how)}, but {g['label']} has {total / GB:.1f} GB: it does "
                       "not fit.", -3.0, facts)
    return Finding("fleet", "memory", f"{_sentence(how)}; {g['label']} has {total / GB:.1f} GB: it fits.", 1.5, facts)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def training_findings(store, q: Question) -> list[Finding]:
    facts = store.council_training_facts()
    runs = facts["runs"].to_dicts()
    out = []
    named = [r for r in runs if q.mentions(r["id"]) or q.mentions(r["name"])]
    for run in named[:3]:
        out += _run_findings(run, facts)
    if q.intent == "train" and q.preset and not named:
        same = [r for r in runs if r["preset"] == q.preset and r["status"] in ("done", "failed")][:5]
        failed = sum(r["status"] == "failed" for r in same)
        if same:
            out.append(Finding("training", "training", f"{failed} of the last {len(same)} finished {q.preset} runs "
                               "failed.", 0.6 - 0.6 * failed, {"preset": q.preset, "failed": failed,
                                                                "finished": len(same)}))
    if not out and not runs:
        out.append(Finding("training", "training", "No training run is recorded yet.", 0.0))
    return out


def _run_findings(run: dict, facts: dict) -> list[Finding]:
    name = f"run {run['name']} ({run['id']})"
    effect = {"done": 1.0, "failed": -2.5, "running": -1.5, "queued": -1.5, "stopped": -1.0}[run["status"]]
    why = f": {run['error'].splitlines()[0][:160]}" if run["status"] == "failed" and run["error"] else ""
    out = [Finding("training", "deploy", f"{name} is {run['status']}{why}.", effect,
                   {"run_id": run["id"], "status": run["status"]})]
    for row in facts["bpb"].filter(facts["bpb"]["run_id"] == run["id"]).to_dicts():
        if row["points"] < 2:
            continue
        change = (row["last"] - row["first"]) / max(row["first"], 1e-9)
        effect = 0.8 if change < -0.02 else (-1.2 if change > 0.02 else -0.2)
        trend = "fell" if change < -0.02 else ("rose" if change > 0.02 else "stayed flat")
        out.append(Finding("training", "quality", f"{name}: {row['name']} {trend} from {row['first']:.3f} to "
                           f"{row['last']:.3f} over {row['points']} evaluations.", effect,
                           {"run_id": run["id"], "metric": row["name"], "first": row["first"], "last": row["last"]}))
    models = facts["models"].filter(facts["models"]["run_id"] == run["id"]).to_dicts()
    if models:
        m = models[0]
        out.append(Finding("training", "deploy", f"{name} is registered as model {m['name']} v{m['version']} "
                           f"({m['status']}).", 0.5, {"model_id": m["id"]}))
    return out


def history_findings(store, q: Question) -> list[Finding]:
    past = store.list_council_decisions(limit=500).to_dicts()
    if not past:
        return []
    scores = Index([p["question"] for p in past]).scores(q.text)
    ranked = sorted(((s, p) for s, p in zip(scores, past, strict=True) if s >= SIMILAR_AT),
                    key=lambda sp: -sp[0])[:3]
    out = []
    for score, p in ranked:
        if p["outcome"] is not None:
            approve = aggregate.approval_was_right(p["decision"], p["outcome"], p["probability"] or 0.5)
            effect = (1.0 if approve else -1.0) * score * 2
            text = f"A similar question ({score:.0%} alike) was {p['decision']} and that was {p['outcome']}."
        else:
            effect = {"approved": 0.4, "rejected": -0.4}.get(p["decision"], 0.0) * score
            text = f"A similar question ({score:.0%} alike) was {p['decision']}; its outcome is not known yet."
        out.append(Finding("history", "history", text, effect, {"decision_id": p["id"], "similarity": round(score, 3)}))
    return out


def erp_findings(store, q: Question) -> list[Finding]:
    """Stock, margin and sales trend of the products the question names (bi_ide.erp.reports).

    Only for a restock question or one that names a product; with no ERP data it says so.
    """
    from bi_ide.erp import reports

    stock = reports.stock_status(store) if q.intent == "restock" or _erp_has_data(store) else None
    if stock is None or stock.is_empty():
        return [Finding("erp", "stock", "No ERP data: import it with `bi-ide erp import` (or load the demo).", 0.0)] \
            if q.intent == "restock" else []
    named = [r for r in stock.to_dicts() if q.mentions(r["product"]) or q.mentions(r["name"])]
    if not named:
        if q.intent != "restock":
            return []
        low = stock.filter(stock["status"] != "ok")
        listed = ", ".join(low["product"].head(5).to_list()) or "none"
        return [Finding("erp", "stock", f"No product named in the question; {low.height} products are at or below "
                        f"their reorder point ({listed}).", 0.0, {"reorder": low.height})]
    as_of = reports.as_of_date(store)
    recent = _revenue_by_product(reports, store, as_of - timedelta(days=89), as_of)
    before = _revenue_by_product(reports, store, as_of - timedelta(days=179), as_of - timedelta(days=90))
    margins = {r["key"]: r["margin"] for r in reports.gross_margin(store, by="product").to_dicts()}
    out = []
    for r in named[:3]:
        out.append(_stock_finding(r))
        if before.get(r["product"]):
            trend = recent.get(r["product"], 0.0) / before[r["product"]] - 1
            out.append(Finding("erp", "sales", f"Sales of {r['name']} changed {trend:+.0%} over the last 90 days "
                               "against the 90 before.", max(-2.0, min(2.0, 3 * trend)),
                               {"product": r["product"], "trend": round(trend, 4)}))
        margin = margins.get(r["product"])
        if margin is not None:
            out.append(Finding("erp", "margin", f"{r['name']} sells at a {margin:.0%} gross margin.",
                               -1.0 if margin < 0.05 else 0.3, {"product": r["product"], "margin": round(margin, 4)}))
    return out


def _erp_has_data(store) -> bool:
    return hasattr(store, "sql") and store.sql("SELECT count(*) AS n FROM erp_products").item() > 0


def _revenue_by_product(reports, store, start, end) -> dict[str, float]:
    return {r["key"]: r["revenue"] for r in reports.gross_margin(store, by="product", start=start, end=end).to_dicts()}


def _stock_finding(r: dict) -> Finding:
    """For or against ordering a product: what is on hand and on order against its reorder point."""
    facts = {k: r[k] for k in ("product", "on_hand", "on_order", "reorder_point", "daily_demand", "status")}
    coming = f" and {r['on_order']:.0f} on order" if r["on_order"] else ""
    if r["status"] == "out":
        if r["position"] > r["reorder_point"]:  # an order already on the way covers it: another would be too much
            return Finding("erp", "stock", f"{r['name']} is out of stock, but {r['on_order']:.0f} are on order, above "
                           f"its reorder point of {r['reorder_point']:.0f}: an order is already on the way.", -0.5,
                           facts)
        return Finding("erp", "stock", f"{r['name']} is out of stock{coming.replace(' and', ', with')}.", 2.0, facts)
    if r["status"] == "reorder":
        return Finding("erp", "stock", f"{r['name']} has {r['on_hand']:.0f} on hand{coming}, at or below its reorder "
                       f"point of {r['reorder_point']:.0f}.", 1.5, facts)
    cover = r["on_hand"] / r["daily_demand"] if r["daily_demand"] else float("inf")
    text = "sells nothing lately" if cover == float("inf") else f"covers {cover:.0f} days of sales"
    return Finding("erp", "stock", f"{r['name']} has {r['on_hand']:.0f} on hand{coming} (above its reorder point of "
                   f"{r['reorder_point']:.0f}); what is on hand {text}.", -1.5 if cover > 60 else -0.5, facts)


PROVIDER_TOPICS = {"fleet": "availability", "training": "training", "erp": "sales", "history": "history"}
PROVIDERS = {"fleet": fleet_findings, "training": training_findings, "erp": erp_findings, "history": history_findings}


def gather(store, q: Question, providers: dict | None = None) -> list[Finding]:
    """Every provider's findings, numbered E1, E2, …; a provider that fails says so in one finding."""
    findings = []
    for name, provider in (providers or PROVIDERS).items():
        try:
            findings += provider(store, q)
        except (WorkbenchError, KeyError, ValueError, TypeError) as e:
            findings.append(Finding(name, PROVIDER_TOPICS.get(name, "history"), f"The {name} evidence could not be read: {e}", 0.0))
    for i, f in enumerate(findings, 1):
        f.id = f"E{i}"
        f.effect = round(f.effect, 4) if math.isfinite(f.effect) else 0.0
    return findings
