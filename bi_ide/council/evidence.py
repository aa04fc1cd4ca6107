"""Evidence: what the question asks, about what, and what the workbench's own data says about it.

``parse_question`` reads a question in Arabic or English: its language, its intent, a direction
(raise or cut), a model preset, a GPU memory size, a model version ("v2", "the latest",
"النسخة الثانية"), signs of instructions aimed at the council, and, with the store's index of facts
(``bi_ide.council.facts``), the entities it names: machines, models, runs, pipelines, products,
categories, customers, suppliers, expense categories.

Intents: train (or start a run), deploy, rollback, restock, stop_selling, price, expense,
receivables, buy_gpu, schedule, or general. Each provider reads the store and returns ``Finding``s:
a sentence in the asker's language, the topic it is about, its effect on the log-odds of approval
(negative: against) and the entities it is about (``facts["entities"]``, keys such as
``product:COF-ARB``). A provider that fails gives one finding saying so; the session goes on.

- fleet: GPU memory against what training the preset needs; temperature; last seen; for buying a
  GPU, how busy the GPUs were and what the largest card already trains.
- training: the run named (status, validation bpb trend, registered models), recent runs of a preset.
- models: a deploy or rollback compares the candidate with the deployed version on the same
  evaluation (validation bits per byte per domain, same corpus), with a stated margin.
- erp: stock against the reorder point, sales trend, margin, revenue class, price elasticity from
  the sales history, expense trends, overdue receivables (``bi_ide.erp.reports``).
- pipelines: a pipeline's runs and schedules.
- understanding: what the question named that the store does not hold ("no product matches
  'حبر'; the store sells coffee, dates, …"), and instructions inside the question, which are not
  evidence.
- history: earlier council decisions on similar questions, and whether they were right.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from bi_ide.council import aggregate
from bi_ide.council.language import answer_language, language_of, say
from bi_ide.council.lexicon import fold, render
from bi_ide.council.similarity import normalize
from bi_ide.errors import WorkbenchError

GB = 1 << 30
FIT_MARGIN = 0.9  # a run should leave a tenth of the card free (CUDA context, fragmentation)
HOT_C, WARM_C = 85.0, 75.0  # seed §XIII: 85 °C throttles training
STALE_S = 300  # a worker not seen for 5 minutes is taken as away
SIMILAR_AT = 0.35
DEPLOY_MARGIN = 0.02  # a candidate must be this much better (relative val bpb) to count as better
BUSY_UTIL, IDLE_UTIL = 70.0, 30.0  # seed §X: GPU utilisation ≥ 70 % while training
HARD = 3.0  # the effect of a hard fact (grounded.HARD_FACT is 2)

# (intent, English phrases, Arabic phrases), in the order ties are broken. English phrases match whole
# words (with -s, -es, -ed, -ing, -d, -er endings); Arabic ones anywhere (Arabic words carry affixes).
INTENTS = (
    ("rollback", ("roll back", "rollback", "revert", "downgrade", "undeploy", "go back to"),
     ("نرجع", "ارجاع", "التراجع", "تراجع", "استرجاع", "نعود الي", "نعود ل")),
    ("buy_gpu", ("buy a gpu", "buy another gpu", "buy a new gpu", "add a gpu", "another gpu", "new gpu", "more gpu",
                 "buy a card", "new card", "buy a machine", "new machine", "another machine", "add a machine",
                 "purchase a gpu", "upgrade the gpu", "buy gpu"),
     ("نشتري بطاقه", "شراء بطاقه", "نضيف بطاقه", "بطاقه جديده", "كرت شاشه جديد", "جهاز جديد", "نشتري جهاز",
      "نضيف جهاز", "شراء جهاز", "كرت جديد")),
    ("deploy", ("deploy", "ship", "release", "roll out", "rollout", "promote", "go live", "push", "put live",
                "production", "ready"),
     ("ننشر", "نشر", "نطلق", "اطلاق", "جاهز", "الانتاج", "نعتمد")),
    ("stop_selling", ("stop selling", "discontinue", "delist", "phase out", "stop stocking", "stop carrying",
                      "drop the product", "stop the product"),
     ("نوقف بيع", "ايقاف بيع", "نتوقف عن بيع", "التوقف عن بيع", "نلغي", "نسحب", "نوقف")),
    ("restock", ("restock", "reorder", "re-order", "order more", "stock up", "replenish", "increase stock",
                 "more stock", "buy more", "top up", "stock"),
     ("مخزون", "نعيد طلب", "نطلب", "تخزين", "نزود", "تموين", "طلبيه", "كميه", "المزيد من", "شراء المزيد",
      "نشتري المزيد")),
    ("price", ("price", "pricing", "discount", "markup", "promotion", "promo", "cheaper", "more expensive"),
     ("سعر", "اسعار", "خصم", "تخفيض السعر", "تسعير", "عرض")),
    ("expense", ("expense", "spending", "spend", "budget", "cost"),
     ("مصاريف", "مصروفات", "نفقات", "ميزانيه", "تكاليف", "مصروف")),
    ("receivables", ("chase", "collect", "overdue", "receivable", "unpaid", "owe", "debt", "payment", "credit"),
     ("تحصيل", "متاخرات", "مستحقات", "ذمم", "ديون", "يدين", "مديونيه", "نطالب", "سداد", "الدفع", "نطارد")),
    ("schedule", ("schedule", "cron", "every night", "every week", "every day", "automate"),
     ("جدوله", "نجدول", "كل ليله", "يوميا", "اسبوعيا", "تلقائيا")),
    ("train", ("train", "fine-tune", "finetune", "fine tune", "pretrain", "start a run", "start the", "start",
               "launch", "kick off", "run the preset"),
     ("درب", "تدريب", "نبدا", "تشغيل", "نشغل", "اطلق")),
)
UP_WORDS = ("raise", "increase", "up", "more", "higher", "boost", "grow", "نرفع", "نزيد", "زياده", "رفع", "اكثر")
DOWN_WORDS = ("cut", "lower", "reduce", "decrease", "less", "drop", "trim", "discount", "cheaper", "نخفض", "نقلل",
              "تخفيض", "خفض", "تقليل", "خصم", "اقل")
ARABIC_PRESETS = {"ضخم": "xlarge", "كبير جدا": "xlarge", "كبير": "large", "متوسط": "medium", "صغير": "small"}
LAPTOP_WORDS = ("laptop", "notebook", "لابتوب", "محمول")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(?:gb|gib|g\b|جيجا|غيغا|جيجابايت)")
_VERSION = re.compile(r"(?:\bv|\bversion\s*|نسخه\s*|اصدار\s*)(\d{1,4})\b")
ORDINALS = {"اولي": 1, "ثانيه": 2, "ثالثه": 3, "رابعه": 4, "خامسه": 5, "first": 1, "second": 2, "third": 3,
            "fourth": 4, "fifth": 5, "اول": 1, "ثاني": 2, "ثالث": 3, "رابع": 4, "خامس": 5}
LATEST_WORDS = ("latest", "newest", "new", "candidate", "next", "recent", "جديد", "احدث", "اخير", "مرشح")
DEPLOYED_WORDS = ("deployed", "current", "production", "live", "منشور", "حالي", "حاليه")
PREVIOUS_WORDS = ("previous", "prior", "older", "old", "last good", "سابق", "قديم")
INJECTION = re.compile(
    r"ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier|your) (?:instructions|rules|prompts?)"
    r"|disregard (?:all |the )?(?:previous|above|prior|your)|you (?:must|have to) approve|approve (?:it|this) "
    r"(?:anyway|regardless|no matter)|system prompt|jailbreak|override your|forget (?:your|all|the) (?:rules|"
    r"instructions)|تجاهل (?:كل |جميع )?(?:التعليمات|ما سبق|القواعد)|يجب (?:ان|أن) (?:توافق|يوافق)|وافق (?:فورا|مباشره|"
    r"بدون)|انس (?:التعليمات|القواعد)", re.IGNORECASE)
# The kinds an intent is about, for "named nothing the store holds".
INTENT_KINDS = {
    "restock": ("product", "category", "supplier"), "stop_selling": ("product", "category"),
    "price": ("product", "category"), "expense": ("expense",), "receivables": ("customer",),
    "deploy": ("model", "run"), "rollback": ("model",), "schedule": ("pipeline",),
}
KIND_WORDS = {  # how a kind is said, in each language (singular, plural)
    "product": (("product", "products"), ("منتج", "منتجات")),
    "category": (("category", "categories"), ("فئة", "فئات")),
    "supplier": (("supplier", "suppliers"), ("مورد", "موردين")),
    "expense": (("expense category", "expense categories"), ("بند مصاريف", "بنود مصاريف")),
    "customer": (("customer", "customers"), ("عميل", "عملاء")),
    "model": (("model", "models"), ("نموذج", "نماذج")),
    "run": (("run", "runs"), ("تشغيلة", "تشغيلات")),
    "pipeline": (("pipeline", "pipelines"), ("خط معالجة", "خطوط معالجة")),
}


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
    """What a question asks about, as far as the rules and the store's index can tell."""

    text: str
    words: str
    intent: str = "general"
    preset: str | None = None
    memory_gb: float | None = None
    laptop: bool = False
    language: str = "en"  # the language the council answers in: ar or en
    script: str = "en"  # the script the question is written in: ar, en or other
    direction: str | None = None  # up or down (a price, a budget)
    version: dict | None = None  # {"number": 2} or {"ref": "latest" | "deployed" | "previous"}
    injection: str | None = None  # the words that look like instructions to the council
    reading: object = None  # facts.Reading: the entities named and the words left over

    def mentions(self, name: str | None) -> bool:
        """Whether ``name`` (a hostname, run name, id, product) appears as a word in the question."""
        if not name:
            return False
        return re.search(rf"(?<!\w){re.escape(normalize(str(name)))}(?!\w)", self.words) is not None

    def named(self, *kinds: str) -> list:
        """The entities of ``kinds`` the question names (facts.Entity), best match first."""
        return self.reading.of(*kinds) if self.reading is not None else []

    def say(self, english: str, arabic: str, /, **values) -> str:
        return say(self.language, english, arabic, **values)


def parse_question(text: str, index=None) -> Question:
    """Read a question; with ``index`` (facts.FactIndex) also the entities it names."""
    from bi_ide.training.model import PRESETS

    words = normalize(text)
    q = Question(text=text, words=words, language=answer_language(text), script=language_of(text))
    q.intent = _intent(words)
    q.preset = next((p for p in PRESETS if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", words)), None)
    if q.preset is None:
        q.preset = next((p for ar, p in ARABIC_PRESETS.items() if normalize(ar) in words), None)
    m = _MEMORY.search(words)
    q.memory_gb = float(m[1]) if m else None
    q.laptop = any(w in words for w in LAPTOP_WORDS)
    q.direction = _direction(words)
    q.version = _version(words)
    found = INJECTION.search(normalize(text))
    q.injection = found[0] if found else None
    if index is not None:
        q.reading = index.read(text)
    return q


def _matches(words: str, phrase: str) -> bool:
    phrase = normalize(phrase)
    if not phrase.isascii():
        return phrase in words
    return re.search(rf"(?<!\w){re.escape(phrase)}(?:s|es|ed|d|ing|er)?(?!\w)", words) is not None


BUY_WORDS = ("buy", "purchase", "get", "order", "add", "upgrade", "نشتري", "شراء", "نضيف", "اضافه", "نطلب", "نقتني")
HARDWARE_WORDS = ("gpu", "card", "rtx", "graphics", "machine", "server", "box", "workstation", "بطاقه", "كرت", "جهاز",
                  "معالج رسومي", "خادم", "سيرفر")


def _intent(words: str) -> str:
    if any(_matches(words, b) for b in BUY_WORDS) and any(_matches(words, h) for h in HARDWARE_WORDS):
        return "buy_gpu"  # buying hardware, whatever words the rest of the question uses
    scores = [(sum(_matches(words, p) for p in (*en, *ar)), -i, intent) for i, (intent, en, ar) in enumerate(INTENTS)]
    best = max(scores)
    return best[2] if best[0] else "general"


def _direction(words: str) -> str | None:
    up = sum(_matches(words, w) for w in UP_WORDS)
    down = sum(_matches(words, w) for w in DOWN_WORDS)
    return None if up == down else ("up" if up > down else "down")


def _version(words: str) -> dict | None:
    folded = fold(words)
    m = _VERSION.search(folded) or _VERSION.search(words)
    if m:
        return {"number": int(m[1])}
    for token in folded.split():
        if token in ORDINALS and re.search(r"(?:نسخه|اصدار|version)", folded):
            return {"number": ORDINALS[token]}
    for ref, keys in (("previous", PREVIOUS_WORDS), ("deployed", DEPLOYED_WORDS), ("latest", LATEST_WORDS)):
        if any(_matches(folded, k) or _matches(words, k) for k in keys):
            return {"ref": ref}
    return None


def understand(store, text: str) -> Question:
    """``parse_question`` with the store's index of facts (built or refreshed as needed)."""
    from bi_ide.council.facts import index_for

    return parse_question(text, index_for(store))


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


def _about(*keys: str, **facts) -> dict:
    return {"entities": [k for k in keys if k], **facts}


def _label(q: Question, name: str) -> str:
    """A stored name as the asker reads it: a one-word English name rendered in Arabic when known."""
    if q.language == "ar" and name.isascii() and " " not in name.strip():
        return render(name, "ar")
    return name


# -- fleet ---------------------------------------------------------------------------------------
def fleet_findings(store, q: Question) -> list[Finding]:
    facts = store.council_fleet_facts()
    gpus = fleet_gpus(facts)
    if not gpus:
        if q.intent in ("train", "buy_gpu") or q.named("worker"):
            return [Finding("fleet", "availability", q.say("No GPU machine is registered in the fleet.",
                                                           "لا يوجد جهاز بمعالج رسومي مسجل في الأسطول."), 0.0)]
        return []
    targets = _targets(gpus, q)
    out = []
    if q.intent == "buy_gpu":
        out += _buying(store, q, gpus)
    if q.intent == "train":
        preset = q.preset or _default_preset()
        need = training_memory_bytes(preset)
        busy = _busy_workers(store)
        for g in targets:
            out.append(_memory_finding(q, need, g, named_preset=q.preset is not None))
            if g["worker_id"] in busy:
                run = busy[g["worker_id"]]
                # two trainings on one card share its memory and its time: each runs at about half speed
                out.append(Finding("fleet", "availability", q.say(
                    "{m} is busy with run {run} ({status}): a second run would share the card.",
                    "{m} مشغول بالتشغيلة {run} ({status}): تشغيلة ثانية ستتقاسم البطاقة معها.",
                    m=_gpu(q, g), run=run["name"], status=_status_word(q, run["status"])), -1.5,
                    _about(f"worker:{g['worker_id']}", f"run:{run['id']}")))
    if q.intent in ("train", "buy_gpu", "general", "schedule") or q.named("worker"):
        for g in targets:
            out += _health(q, g)
    return out


def _default_preset() -> str:
    from bi_ide.training.config import TrainConfig

    return TrainConfig.param["preset"].default


def _busy_workers(store) -> dict[str, dict]:
    runs = store.council_training_facts()["runs"].to_dicts()
    return {r["worker_id"]: r for r in runs if r["status"] in ("running", "queued") and r["worker_id"]}


def _health(q: Question, g: dict) -> list[Finding]:
    out = []
    key = f"worker:{g['worker_id']}"
    temp = g.get("temperature_c")
    if temp is not None and temp >= WARM_C:
        hot = temp >= HOT_C
        text = q.say("{m} runs at {t:.0f} °C" + (" (training throttles to half at 85 °C)." if hot else "."),
                     "{m} يعمل عند {t:.0f} درجة" + (" (يُبطَّأ التدريب إلى النصف عند 85 درجة)." if hot else "."),
                     m=_gpu(q, g), t=temp)
        out.append(Finding("fleet", "thermal", text, -1.0 if hot else -0.3, _about(key, temperature_c=temp)))
    age = g.get("seen_s")
    if age is None or age > STALE_S:
        text = q.say("{m} never reported.", "{m} لم يرسل أي قراءة.", m=_gpu(q, g)) if age is None else q.say(
            "{m} was last seen {n:.0f} min ago.", "{m} شوهد آخر مرة قبل {n:.0f} دقيقة.", m=_gpu(q, g), n=age / 60)
        out.append(Finding("fleet", "availability", text, -0.8, _about(key, seen_s=age)))
    return out


def fleet_gpus(facts: dict) -> list[dict]:
    """One entry per GPU: memory from its latest sample (or as registered), temperature, age."""
    now = datetime.now(UTC)
    sampled = {(r["worker_id"], r["gpu_index"]): r for r in facts["gpus"].to_dicts()}
    out = []
    for w in facts["workers"].to_dicts():
        registered = _json_list(w["gpus"])
        labels = _json_dict(w["labels"])
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


def _json_list(value) -> list:
    try:
        found = json.loads(value) if isinstance(value, str) else value
    except ValueError:  # a bad value stored must not take the council down
        return []
    return found if isinstance(found, list) else []


def _json_dict(value) -> dict:
    try:
        found = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _registered_memory(info: dict) -> int | None:
    for key, scale in (("memory_total_bytes", 1), ("memory_bytes", 1), ("memory_total", 1), ("memory_mb", 1 << 20),
                       ("memory_gb", GB)):
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(float(value) * scale)
    return None


def _targets(gpus: list[dict], q: Question) -> list[dict]:
    """The GPUs the question is about: machines it names, the laptop, the memory size; else every GPU."""
    named_ids = {e.id for e in q.named("worker")}
    named = [g for g in gpus if g["worker_id"] in named_ids] or \
        [g for g in gpus if q.mentions(g["hostname"]) or q.mentions(g["worker_id"]) or q.mentions(g["name"])]
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
    text = normalize(" ".join([g["hostname"], g["name"], json.dumps(g["labels"], ensure_ascii=False)]))
    return any(w in text for w in LAPTOP_WORDS)


def _memory_finding(q: Question, need: dict, g: dict, *, named_preset: bool = True) -> Finding:
    total = g["memory_bytes"]
    facts = _about(f"worker:{g['worker_id']}", f"preset:{need['preset']}", gpu_index=g["gpu_index"],
                   need_bytes=need["bytes"], memory_bytes=total, params=need["params"])
    default = "" if named_preset else q.say(" (no preset named: the default)", " (لم يُذكر حجم: الافتراضي)")
    how = q.say("training {p}{d} needs about {gb:.1f} GB ({mp:.0f}M parameters, AdamW in fp32, batch {b} × {t} tokens)",
                "تدريب {p}{d} يحتاج نحو {gb:.1f} جيجابايت ({mp:.0f} مليون معامل، AdamW بدقة fp32، دفعة {b} × {t} رمزًا)",
                p=need["preset"], d=default, gb=need["bytes"] / GB, mp=need["params"] / 1e6, b=need["batch_size"],
                t=need["seq_len"])
    if not total:
        return Finding("fleet", "memory", q.say("{h}; {m} reports no memory size.", "{h}؛ و{m} لا يذكر حجم ذاكرته.",
                                                h=_sentence(how), m=_gpu(q, g)), 0.0, facts)
    if need["bytes"] > FIT_MARGIN * total:
        return Finding("fleet", "memory", q.say("{h}, but {m} has {gb:.1f} GB: it does not fit.",
                                                "{h}، لكن {m} فيه {gb:.1f} جيجابايت: لا يتسع له.",
                                                h=_sentence(how), m=_gpu(q, g), gb=total / GB), -HARD, facts)
    return Finding("fleet", "memory", q.say("{h}; {m} has {gb:.1f} GB: it fits.", "{h}؛ و{m} فيه {gb:.1f} جيجابايت: يتسع له.",
                                            h=_sentence(how), m=_gpu(q, g), gb=total / GB), 1.5, facts)


def _buying(store, q: Question, gpus: list[dict]) -> list[Finding]:
    """For buying a GPU: how busy the cards were, runs waiting, and what the largest card already trains."""
    from bi_ide.training.model import PRESETS

    usage = store.council_fleet_usage(days=7)
    rows = [r for r in usage["usage"].to_dicts() if r["utilization"] is not None]
    out = []
    keys = [f"worker:{g['worker_id']}" for g in gpus]
    if rows:
        mean = sum(r["utilization"] for r in rows) / len(rows)
        effect = 1.5 if mean >= BUSY_UTIL else (-2.0 if mean < IDLE_UTIL else -0.3)
        out.append(Finding("fleet", "availability", q.say(
            "Over the last 7 days the fleet's GPUs were {u:.0f}% busy on average ({n} GPUs; busy means ≥ {b:.0f}%).",
            "خلال الأيام السبعة الماضية كانت معالجات الأسطول مشغولة بمتوسط {u:.0f}% ({n} معالجات؛ المشغول ≥ {b:.0f}%).",
            u=mean, n=len(rows), b=BUSY_UTIL), effect, _about(*keys, utilization=round(mean, 1))))
    else:
        out.append(Finding("fleet", "availability", q.say(
            "No GPU utilisation was sampled in the last 7 days: there is no sign the cards are short.",
            "لم تُسجَّل أي قراءة لانشغال المعالجات في الأيام السبعة الماضية: لا دليل على نقص في البطاقات."), -0.5,
            _about(*keys)))
    if usage["queued_runs"]:
        out.append(Finding("training", "availability", q.say("{n} runs are waiting in the queue.",
                                                             "{n} تشغيلات تنتظر في الطابور.", n=usage["queued_runs"]),
                           min(2.0, 0.5 * usage["queued_runs"]), _about(queued=usage["queued_runs"])))
    largest = max(gpus, key=lambda g: g["memory_bytes"] or 0)
    if largest["memory_bytes"]:
        fits = [p for p in PRESETS if training_memory_bytes(p)["bytes"] <= FIT_MARGIN * largest["memory_bytes"]]
        every = len(fits) == len(PRESETS)
        out.append(Finding("fleet", "memory", q.say(
            "The largest card, {m} ({gb:.0f} GB), trains {which}.", "أكبر بطاقة، {m} ({gb:.0f} جيجابايت)، تدرب {which}.",
            m=_gpu(q, largest), gb=largest["memory_bytes"] / GB,
            which=q.say("every preset", "كل الأحجام") if every else ", ".join(fits) or q.say("no preset", "لا شيء")),
            -1.0 if every else 1.0, _about(f"worker:{largest['worker_id']}", presets_that_fit=fits)))
    return out


def _gpu(q: Question, g: dict) -> str:
    """A GPU as the asker reads it: "rtx-box's RTX 5090", "RTX 5090 في rtx-box"."""
    return q.say("{h}'s {n}", "{n} في {h}", h=g["hostname"], n=g["name"])


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- training and models ---------------------------------------------------------------------------
def training_findings(store, q: Question) -> list[Finding]:
    facts = store.council_training_facts()
    runs = facts["runs"].to_dicts()
    out = []
    named_ids = {e.id for e in q.named("run")}
    named = [r for r in runs if r["id"] in named_ids] or [r for r in runs if q.mentions(r["id"]) or q.mentions(r["name"])]
    for run in named[:3]:
        out += _run_findings(q, run, facts)
    if q.intent == "train" and q.preset and not named:
        same = [r for r in runs if r["preset"] == q.preset and r["status"] in ("done", "failed")][:5]
        failed = [r for r in same if r["status"] == "failed"]
        if same:
            out.append(Finding("training", "training", q.say(
                "{f} of the last {n} finished {p} runs failed.", "فشلت {f} من آخر {n} تشغيلات منتهية بحجم {p}.",
                f=len(failed), n=len(same), p=q.preset), 0.6 - 0.6 * len(failed),
                _about(f"preset:{q.preset}", *(f"run:{r['id']}" for r in failed), preset=q.preset,
                       failed=len(failed), finished=len(same))))
    if not out and not runs and q.intent in ("train", "deploy"):
        out.append(Finding("training", "training", q.say("No training run is recorded yet.",
                                                         "لا توجد أي تشغيلة تدريب مسجلة بعد."), 0.0))
    return out


def _run_findings(q: Question, run: dict, facts: dict) -> list[Finding]:
    name = q.say("run {n} ({i})", "التشغيلة {n} ({i})", n=run["name"], i=run["id"])
    key = f"run:{run['id']}"
    effect = {"done": 1.0, "failed": -2.5, "running": -1.5, "queued": -1.5, "stopped": -1.0}.get(run["status"], 0.0)
    why = f": {run['error'].splitlines()[0][:160]}" if run["status"] == "failed" and run["error"] else ""
    out = [Finding("training", "deploy", q.say("{n} is {s}{w}.", "{n} حالتها {s}{w}.", n=_sentence(name),
                                               s=_status_word(q, run["status"]), w=why), effect,
                   _about(key, status=run["status"]))]
    for row in facts["bpb"].filter(facts["bpb"]["run_id"] == run["id"]).to_dicts():
        if row["points"] < 2:
            continue
        change = (row["last"] - row["first"]) / max(row["first"], 1e-9)
        effect = 0.8 if change < -0.02 else (-1.2 if change > 0.02 else -0.2)
        trend = q.say("fell", "انخفض") if change < -0.02 else (q.say("rose", "ارتفع") if change > 0.02
                                                                 else q.say("stayed flat", "بقي ثابتًا"))
        out.append(Finding("training", "quality", q.say(
            "{n}: {m} {t} from {a:.3f} to {b:.3f} over {p} evaluations.",
            "{n}: {m} {t} من {a:.3f} إلى {b:.3f} عبر {p} تقييمات.", n=_sentence(name), m=row["name"], t=trend,
            a=row["first"], b=row["last"], p=row["points"]), effect,
            _about(key, metric=row["name"], first=row["first"], last=row["last"])))
    models = facts["models"].filter(facts["models"]["run_id"] == run["id"]).to_dicts()
    if models:
        m = models[0]
        out.append(Finding("training", "deploy", q.say(
            "{n} is registered as model {m} v{v} ({s}).", "{n} مسجلة كنموذج {m} النسخة {v} ({s}).", n=_sentence(name),
            m=m["name"], v=m["version"], s=_status_word(q, m["status"])), 0.5, _about(key, f"model:{m['name']}", model_id=m["id"])))
    return out


def model_findings(store, q: Question) -> list[Finding]:
    """Deploy or roll back: the candidate against the deployed version, on the same evaluation."""
    if q.intent not in ("deploy", "rollback") and not q.named("model"):
        return []
    from bi_ide.council.facts import index_for

    models = q.named("model")
    if not models and q.intent in ("deploy", "rollback") and not q.named("run"):
        every = index_for(store).of_kind("model") if q.reading is not None else []
        if q.version and q.version.get("ref") == "latest" or len(every) == 1:
            models = every  # "the latest model": the newest ready version of any model
    out = []
    for model in models[:2]:
        out += _versions_findings(q, model)
    if models and q.version and q.version.get("ref") == "latest" and len(models) > 1:
        newest = max((v for m in models for v in m.facts["versions"] if v["status"] == "ready"),
                     key=lambda v: v["created_at"], default=None)
        if newest is not None:  # keep only the findings about the model with the newest candidate
            out = [f for f in out if f"model:{newest['name']}" in f.facts.get("entities", [])]
    return out


def _versions_findings(q: Question, model) -> list[Finding]:
    versions = model.facts["versions"]
    key = f"model:{model.id}"
    deployed = next((v for v in reversed(versions) if v["status"] == "deployed"), None)
    listing = q.say(", ", "، ").join(f"v{v['version']} {_status_word(q, v['status'])}" for v in versions)
    if q.intent == "rollback":
        if deployed is None:
            return [Finding("models", "deploy", q.say("{m} has no deployed version to roll back ({l}).",
                                                      "لا توجد نسخة منشورة من {m} للتراجع عنها ({l}).", m=model.id,
                                                      l=listing), -HARD, _about(key))]
        older = [v for v in versions if v["version"] < deployed["version"]]
        target = _pick(q, older, default=older[-1] if older else None)
        if target is None:
            return [Finding("models", "deploy", q.say("{m} has no earlier version than the deployed v{d} ({l}).",
                                                      "لا توجد نسخة من {m} أقدم من المنشورة v{d} ({l}).", m=model.id,
                                                      d=deployed["version"], l=listing), -HARD, _about(key))]
        return _compare(q, model.id, candidate=target, deployed=deployed, rollback=True)
    candidate = _pick(q, versions, default=None)
    if q.version and "number" in q.version and candidate is None:
        return [Finding("models", "deploy", q.say("{m} has no version {n} ({l}).", "لا توجد نسخة {n} من {m} ({l}).",
                                                  m=model.id, n=q.version["number"], l=listing), -HARD,
                        _about(key, missing_version=q.version["number"]))]
    if candidate is None:
        ready = [v for v in versions if v["status"] == "ready" and (deployed is None or v["version"] > deployed["version"])]
        candidate = ready[-1] if ready else None
    if candidate is None:
        return [Finding("models", "deploy", q.say("{m} has no version newer than the deployed one waiting ({l}).",
                                                  "لا توجد نسخة من {m} أحدث من المنشورة بانتظار النشر ({l}).",
                                                  m=model.id, l=listing), -2.0, _about(key))]
    vkey = f"version:{model.id}:{candidate['version']}"
    if candidate["status"] == "deployed":
        return [Finding("models", "deploy", q.say("{m} v{v} is already deployed.", "{m} النسخة {v} منشورة بالفعل.",
                                                  m=model.id, v=candidate["version"]), -2.0, _about(key, vkey))]
    out = []
    if candidate.get("run_status") in ("failed", "running", "queued"):
        out.append(Finding("models", "deploy", q.say(
            "The run behind {m} v{v} is {s}.", "التشغيلة التي أنتجت {m} النسخة {v} حالتها {s}.", m=model.id,
            v=candidate["version"], s=_status_word(q, candidate["run_status"])), -2.5 if candidate["run_status"] == "failed" else -1.5,
            _about(key, vkey)))
    if deployed is None:
        out.append(Finding("models", "deploy", q.say(
            "No version of {m} is deployed yet: v{v} would be the first ({l}).",
            "لا توجد نسخة منشورة من {m} بعد: ستكون v{v} الأولى ({l}).", m=model.id, v=candidate["version"], l=listing),
            1.0, _about(key, vkey)))
        return out
    return out + _compare(q, model.id, candidate=candidate, deployed=deployed, rollback=False)


STATUS_WORDS = {"deployed": "منشورة", "ready": "جاهزة", "archived": "مؤرشفة", "done": "منتهية", "failed": "فاشلة",
                "running": "جارية", "queued": "في الانتظار", "stopped": "متوقفة"}


def _status_word(q: Question, status: str) -> str:
    return STATUS_WORDS.get(status, status) if q.language == "ar" else status


def _pick(q: Question, versions: list[dict], default):
    if not q.version:
        return default
    if "number" in q.version:
        return next((v for v in versions if v["version"] == q.version["number"]), None)
    if q.version["ref"] == "latest":
        ready = [v for v in versions if v["status"] == "ready"]
        return ready[-1] if ready else default
    if q.version["ref"] == "deployed":
        return next((v for v in versions if v["status"] == "deployed"), default)
    return versions[-2] if q.version["ref"] == "previous" and len(versions) > 1 else default


def _bpb(version: dict) -> dict[str, float]:
    metrics = version.get("metrics") or {}
    return {k.removeprefix("val_bpb_"): float(v) for k, v in metrics.items()
            if k.startswith("val_bpb_") and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _corpus(version: dict) -> str | None:
    return (version.get("metrics") or {}).get("corpus") or (version.get("run_config") or {}).get("corpus")


def _compare(q: Question, name: str, *, candidate: dict, deployed: dict, rollback: bool) -> list[Finding]:
    """Per domain: the candidate's val bpb against the deployed version's, with DEPLOY_MARGIN."""
    keys = _about(f"model:{name}", f"version:{name}:{candidate['version']}", f"version:{name}:{deployed['version']}")
    a, b = _bpb(candidate), _bpb(deployed)
    domains = sorted(set(a) & set(b))
    cv, dv = candidate["version"], deployed["version"]
    if not domains:
        return [Finding("models", "quality", q.say(
            "{m} v{c} and the deployed v{d} have no validation bits per byte measured on the same domains: they "
            "cannot be compared.", "لا توجد قياسات بتات لكل بايت للتحقق على المجالات نفسها لـ{m} النسخة {c} والمنشورة {d}: "
            "لا يمكن المقارنة.", m=name, c=cv, d=dv), -1.5, keys)]
    if _corpus(candidate) and _corpus(deployed) and _corpus(candidate) != _corpus(deployed):
        return [Finding("models", "quality", q.say(
            "{m} v{c} was evaluated on {x}, the deployed v{d} on {y}: not the same evaluation, so no comparison.",
            "قُيِّمت {m} النسخة {c} على {x} والمنشورة {d} على {y}: ليس التقييم نفسه، فلا مقارنة.", m=name, c=cv, d=dv,
            x=_corpus(candidate), y=_corpus(deployed)), -1.5, keys)]
    out = []
    for domain in domains:
        change = (a[domain] - b[domain]) / b[domain]
        better, worse = change < -DEPLOY_MARGIN, change > DEPLOY_MARGIN
        verdict = (q.say("better", "أفضل") if better else q.say("worse", "أسوأ") if worse
                   else q.say("within the margin", "ضمن الهامش"))
        text = q.say("{m} v{c}'s {dom} validation bits per byte is {x:.3f} against {y:.3f} for v{d} "
                     "({ch:+.1%}): {v} (margin {mg:.0%}; lower is better).",
                     "بتات لكل بايت في تحقق {dom} لـ{m} النسخة {c}: {x:.3f} مقابل {y:.3f} للنسخة {d} ({ch:+.1%}): {v} "
                     "(الهامش {mg:.0%}؛ الأقل أفضل).", m=name, c=cv, d=dv, dom=_domain(q, domain), x=a[domain],
                     y=b[domain], ch=change, v=verdict, mg=DEPLOY_MARGIN)
        effect = HARD if better else (-HARD if worse else -0.5)
        out.append(Finding("models", "quality", text, effect, {**keys, "domain": domain, "candidate": a[domain],
                                                              "deployed": b[domain], "change": round(change, 4),
                                                              "rollback": rollback}))
    return out


def _domain(q: Question, domain: str) -> str:
    names = {"arabic": ("Arabic", "العربية"), "code": ("code", "الكود"), "text": ("text", "النصوص")}
    en, ar = names.get(domain, (domain, domain))
    return ar if q.language == "ar" else en


# -- ERP ---------------------------------------------------------------------------------------------
ERP_INTENTS = ("restock", "stop_selling", "price", "expense", "receivables")


def erp_findings(store, q: Question) -> list[Finding]:
    """Stock, sales, margin, prices, expenses and receivables of what the question names (bi_ide.erp.reports)."""
    named = q.named("product", "category", "customer", "supplier", "expense")
    if q.intent not in ERP_INTENTS and not named:
        return []
    if not _erp_has_data(store):
        return [Finding("erp", "stock", q.say("No ERP data: import it with `bi-ide erp import` (or load the demo).",
                                              "لا توجد بيانات ERP: استوردها بالأمر `bi-ide erp import` (أو حمّل البيانات "
                                              "التجريبية)."), 0.0)] if q.intent in ERP_INTENTS else []
    from bi_ide.erp import reports

    products = _products_of(q)
    if q.intent == "expense" or (q.named("expense") and q.intent not in ("restock", "price", "stop_selling")):
        return _expense_findings(store, q, reports)
    if q.intent == "receivables" or (q.named("customer") and not products):
        return _receivable_findings(store, q, reports)
    if not products:
        return []
    if q.intent == "price":
        return _price_findings(store, q, reports, products)
    if q.intent == "stop_selling":
        return _stop_findings(store, q, reports, products)
    return _stock_findings(store, q, reports, products)


def _products_of(q: Question) -> list[str]:
    """SKUs the question is about: products it names, else the products of the categories or suppliers it names."""
    skus = [e.id for e in q.named("product")]
    if skus:
        return skus
    for e in q.named("category"):
        skus += [s for s in e.facts["products"] if s not in skus]
    for e in q.named("supplier"):
        cats = set(e.facts.get("categories") or [])
        skus += [x.id for x in _index(q).of_kind("product") if x.facts.get("category") in cats and x.id not in skus]
    return skus


def _index(q: Question):
    return q.reading.index if q.reading is not None and hasattr(q.reading, "index") else _NoIndex()


class _NoIndex:
    def of_kind(self, kind):
        return []


def _erp_has_data(store) -> bool:
    return hasattr(store, "sql") and store.erp_counts().get("products", 0) > 0


def _stock_findings(store, q: Question, reports, skus: list[str]) -> list[Finding]:
    stock = {r["product"]: r for r in reports.stock_status(store).to_dicts()}
    rows = [stock[s] for s in skus if s in stock]
    group = q.named("category", "supplier")
    if group and not q.named("product"):  # a whole category: one finding for it, the products that need stock
        low = [r for r in rows if r["status"] != "ok" and r["position"] <= r["reorder_point"]]
        names = ", ".join(f"{r['name']} ({_status(q, r)})" for r in low[:5])
        text = q.say("{k} of the {n} {c} products are at or below their reorder point{x}.",
                     "{k} من منتجات {c} الـ{n} عند نقطة إعادة الطلب أو دونها{x}.", k=len(low), n=len(rows),
                     c=_label(q, group[0].name), x=f": {names}" if names else "")
        out = [Finding("erp", "stock", text, 1.5 if low else -1.0,
                       _about(*(e.key for e in group), *(f"product:{r['product']}" for r in low), low=len(low),
                              products=len(rows)))]
        out += [_stock_finding(q, r) for r in low[:3]]
        return out + _category_sales(store, q, reports, group[0]) if group[0].kind == "category" else out
    out = []
    as_of = reports.as_of_date(store)
    recent = _revenue_by_product(reports, store, as_of - timedelta(days=89), as_of)
    before = _revenue_by_product(reports, store, as_of - timedelta(days=179), as_of - timedelta(days=90))
    margins = {r["key"]: r["margin"] for r in reports.gross_margin(store, by="product").to_dicts()}
    for r in rows[:3]:
        out.append(_stock_finding(q, r))
        # for a reorder the stock position decides; the trend informs it (the reorder point lags a fast change)
        out += _sales_and_margin(q, r, recent, before, margins, trend_cap=1.0)
    return out


def _category_sales(store, q: Question, reports, category) -> list[Finding]:
    """A category's 90-day sales trend and gross margin: what ordering for the whole category weighs."""
    as_of = reports.as_of_date(store)
    by = {"by": "category"}
    recent = {r["key"]: r["revenue"] for r in reports.gross_margin(store, start=as_of - timedelta(days=89), end=as_of,
                                                                   **by).to_dicts()}
    before = {r["key"]: r["revenue"] for r in reports.gross_margin(store, start=as_of - timedelta(days=179),
                                                                   end=as_of - timedelta(days=90), **by).to_dicts()}
    margins = {r["key"]: r["margin"] for r in reports.gross_margin(store, **by).to_dicts()}
    name = _label(q, category.name)
    return _sales_and_margin(q, {"product": category.id, "name": name}, recent, before, margins, trend_cap=1.0,
                             key=category.key)


def _sales_and_margin(q: Question, r: dict, recent: dict, before: dict, margins: dict,
                      trend_cap: float = 2.0, key: str | None = None) -> list[Finding]:
    out = []
    key = key or f"product:{r['product']}"
    if before.get(r["product"]):
        trend = recent.get(r["product"], 0.0) / before[r["product"]] - 1
        out.append(Finding("erp", "sales", q.say("Sales of {n} changed {t:+.0%} over the last 90 days against the 90 "
                                                 "before.", "تغيرت مبيعات {n} بنسبة {t:+.0%} في آخر 90 يومًا مقارنة "
                                                 "بالـ90 التي قبلها.", n=r["name"], t=trend),
                           max(-trend_cap, min(trend_cap, 3 * trend)), _about(key, trend=round(trend, 4))))
    margin = margins.get(r["product"])
    if margin is not None:
        out.append(Finding("erp", "margin", q.say("{n} sells at a {m:.0%} gross margin.", "هامش الربح الإجمالي لـ{n} "
                                                  "{m:.0%}.", n=r["name"], m=margin), -1.0 if margin < 0.05 else 0.3,
                           _about(key, margin=round(margin, 4))))
    return out


def _status(q: Question, r: dict) -> str:
    return q.say("out of stock", "نفد") if r["status"] == "out" else q.say("{n:.0f} left", "بقي {n:.0f}", n=r["on_hand"])


def _revenue_by_product(reports, store, start, end) -> dict[str, float]:
    return {r["key"]: r["revenue"] for r in reports.gross_margin(store, by="product", start=start, end=end).to_dicts()}


def _stock_finding(q: Question, r: dict) -> Finding:
    """For or against ordering a product: what is on hand and on order against its reorder point."""
    facts = _about(f"product:{r['product']}",
                   **{k: r[k] for k in ("on_hand", "on_order", "reorder_point", "daily_demand", "status")})
    coming = q.say(" and {o:.0f} on order", " و{o:.0f} قيد الطلب", o=r["on_order"]) if r["on_order"] else ""
    n, rp = r["name"], r["reorder_point"]
    if r["status"] == "out":
        if r["position"] > rp:  # an order already on the way covers it: another would be too much
            return Finding("erp", "stock", q.say(
                "{n} is out of stock, but {o:.0f} are on order, above its reorder point of {rp:.0f}: an order is "
                "already on the way.", "{n} نفد من المخزون، لكن {o:.0f} قيد الطلب، فوق نقطة إعادة الطلب {rp:.0f}: "
                "هناك طلبية في الطريق.", n=n, o=r["on_order"], rp=rp), -0.5, facts)
        return Finding("erp", "stock", q.say("{n} is out of stock{c}.", "{n} نفد من المخزون{c}.", n=n, c=coming), 2.0,
                       facts)
    if r["status"] == "reorder":
        return Finding("erp", "stock", q.say("{n} has {h:.0f} on hand{c}, at or below its reorder point of {rp:.0f}.",
                                             "لدى {n} {h:.0f} في المخزون{c}، عند نقطة إعادة الطلب {rp:.0f} أو دونها.",
                                             n=n, h=r["on_hand"], c=coming, rp=rp), 1.5, facts)
    # the inventory position (on hand and on order) is what a reorder decision looks at
    cover = (r["on_hand"] + r["on_order"]) / r["daily_demand"] if r["daily_demand"] else float("inf")
    text = q.say("sells nothing lately", "لا يُباع مؤخرًا") if cover == float("inf") else q.say(
        "covers {d:.0f} days of sales", "يكفي مبيعات {d:.0f} يومًا", d=cover)
    what = q.say("what is on hand and on order", "ما في المخزون وقيد الطلب") if r["on_order"] else q.say(
        "what is on hand", "ما في المخزون")
    return Finding("erp", "stock", q.say("{n} has {h:.0f} on hand{c} (above its reorder point of {rp:.0f}); {w} {t}.",
                                         "لدى {n} {h:.0f} في المخزون{c} (فوق نقطة إعادة الطلب {rp:.0f})؛ و{w} {t}.",
                                         n=n, h=r["on_hand"], c=coming, rp=rp, w=what, t=text),
                   -1.5 if cover > 60 else -0.5, {**facts, "cover_days": None if cover == float("inf") else round(cover)})


def _stop_findings(store, q: Question, reports, skus: list[str]) -> list[Finding]:
    classes = {r["key"]: r for r in reports.abc_classification(store).to_dicts()}
    as_of = reports.as_of_date(store)
    recent = _revenue_by_product(reports, store, as_of - timedelta(days=89), as_of)
    before = _revenue_by_product(reports, store, as_of - timedelta(days=179), as_of - timedelta(days=90))
    margins = {r["key"]: r["margin"] for r in reports.gross_margin(store, by="product").to_dicts()}
    names = {e.id: e.name for e in _index(q).of_kind("product")} or {s: s for s in skus}
    out = []
    for sku in skus[:3]:
        c = classes.get(sku)
        key = f"product:{sku}"
        name = names.get(sku, sku)
        if c is None:
            out.append(Finding("erp", "sales", q.say("{n} has no sales on record.", "لا توجد مبيعات مسجلة لـ{n}.",
                                                     n=name), 1.0, _about(key)))
            continue
        effect = {"A": -2.0, "B": -0.8, "C": 0.8}.get(c["class"], 0.0)
        out.append(Finding("erp", "sales", q.say(
            "{n} brings {s:.1%} of revenue (class {k}: A is the first 80%, C the last 5%).",
            "يجلب {n} {s:.1%} من الإيرادات (الفئة {k}: A أول 80%، وC آخر 5%).", n=name, s=c["share"], k=c["class"]),
            effect, _about(key, share=round(c["share"], 4), abc=c["class"])))
        out += [f for f in _sales_and_margin(q, {"product": sku, "name": name}, recent, before, margins)
                if f.topic == "sales"]
        margin = margins.get(sku)
        if margin is not None:  # for stopping: a thin margin is a reason, a fat one a reason to keep it
            out.append(Finding("erp", "margin", q.say("{n} sells at a {m:.0%} gross margin.", "هامش الربح الإجمالي "
                                                      "لـ{n} {m:.0%}.", n=name, m=margin),
                               1.0 if margin < 0.1 else -0.5, _about(key, margin=round(margin, 4))))
    for f in out:  # a falling trend is a reason to stop selling, a rising one a reason to keep on
        if f.topic == "sales" and "trend" in f.facts:
            f.effect = -f.effect
    return out


def _price_findings(store, q: Question, reports, skus: list[str]) -> list[Finding]:
    margins = {r["key"]: r["margin"] for r in reports.gross_margin(store, by="product").to_dicts()}
    names = {e.id: e.name for e in _index(q).of_kind("product")}
    up = q.direction != "down"
    out = []
    for sku in skus[:3]:
        key = f"product:{sku}"
        name = names.get(sku, sku)
        margin = margins.get(sku)
        if margin is not None:
            thin, fat = margin < 0.2, margin > 0.45
            effect = (0.8 if thin else (-0.3 if fat else 0.2)) * (1 if up else -1)
            out.append(Finding("erp", "margin", q.say("{n} sells at a {m:.0%} gross margin.", "هامش الربح الإجمالي "
                                                      "لـ{n} {m:.0%}.", n=name, m=margin), effect,
                               _about(key, margin=round(margin, 4))))
        e = reports.price_elasticity(store, product=sku)
        if e["elasticity"] is None:
            out.append(Finding("erp", "sales", q.say(
                "The sales history of {n} cannot tell how demand follows price ({m} months of sales, price moved {cv}).",
                "تاريخ مبيعات {n} لا يبين كيف يتبع الطلب السعر ({m} شهرًا من المبيعات، وتغير السعر {cv}).", n=name,
                m=e["months"], cv=f"{e['price_cv']:.1%}" if e["price_cv"] is not None else "—"), 0.0, _about(key)))
            continue
        el, r2 = e["elasticity"], e["r2"] or 0.0
        if r2 < 0.15:
            kind = q.say("the price explains little of how the quantity moved, so the history cannot tell how demand "
                         "follows price", "السعر يفسر القليل من تحرك الكمية، فلا يبين التاريخ كيف يتبع الطلب السعر")
            effect = 0.0
        elif el >= 0:
            kind = q.say("demand did not fall when the price rose (promotions and seasons move both)",
                         "لم ينخفض الطلب حين ارتفع السعر (العروض والمواسم تحرك الاثنين)")
            effect = 0.3 if up else -0.3
        elif el <= -1:
            kind = q.say("elastic: a higher price loses more sales than it gains per unit",
                         "مرن: السعر الأعلى يخسر مبيعات أكثر مما يكسب في الوحدة")
            effect = -1.5 if up else 1.0
        else:
            kind = q.say("inelastic: a higher price loses fewer sales than it gains per unit",
                         "غير مرن: السعر الأعلى يخسر مبيعات أقل مما يكسب في الوحدة")
            effect = 1.2 if up else -1.0
        out.append(Finding("erp", "sales", q.say(
            "Over {m} months, {n}'s quantity moved with its net price at an elasticity of {e:.2f} (R² {r:.2f}): {k}.",
            "خلال {m} شهرًا تحركت كمية {n} مع سعره الصافي بمرونة {e:.2f} (R² {r:.2f}): {k}.", m=e["months"], n=name,
            e=el, r=r2, k=kind), effect, _about(key, elasticity=round(el, 3), r2=round(r2, 3))))
    return out


def _expense_findings(store, q: Question, reports) -> list[Finding]:
    named = q.named("expense")
    if not named:
        return []
    trend = {r["category"]: r for r in reports.expense_trend(store).to_dicts()}
    anomalies = reports.expense_anomalies(store).to_dicts()
    cut = q.direction != "up"
    out = []
    for e in named[:2]:
        r = trend.get(e.id)
        key = e.key
        name = _label(q, e.name)
        if r is None:
            continue
        if r["change"] is not None:
            rising = r["change"] > 0.05
            falling = r["change"] < -0.05
            effect = (1.2 if rising else (-0.6 if falling else 0.0)) * (1 if cut else -1)
            out.append(Finding("erp", "margin", q.say(
                "{n} spending was {x:,.0f} over the last 3 months, {c:+.0%} against the 3 before.",
                "بلغت مصاريف {n} {x:,.0f} في آخر 3 أشهر، بتغير {c:+.0%} عن الأشهر الثلاثة قبلها.", n=name,
                x=r["recent"], c=r["change"]), effect, _about(key, recent=r["recent"], change=round(r["change"], 4))))
        if r["share_of_revenue"] is not None:
            small = r["share_of_revenue"] < 0.01
            out.append(Finding("erp", "margin", q.say(
                "That is {s:.1%} of revenue over the same months{x}.", "وهذا {s:.1%} من الإيرادات في الأشهر نفسها{x}.",
                s=r["share_of_revenue"], x=q.say(": little to gain by cutting it", ": لا يُكسب الكثير بخفضه")
                if small and cut else ""), (-0.8 if small else 0.5) if cut else 0.0,
                _about(key, share_of_revenue=round(r["share_of_revenue"], 4))))
        spikes = [a for a in anomalies if a["category"] == e.id]
        if spikes:
            a = spikes[-1]
            out.append(Finding("erp", "margin", q.say(
                "{n} spending jumped in {m:%B %Y}: {x:,.0f} against a usual {u:,.0f}.",
                "قفزت مصاريف {n} في {m:%Y-%m}: {x:,.0f} مقابل المعتاد {u:,.0f}.", n=name, m=a["month"], x=a["amount"],
                u=a["mean"]), 1.0 if cut else -1.0, _about(key, anomaly_month=str(a["month"]))))
    return out


def _receivable_findings(store, q: Question, reports) -> list[Finding]:
    customers = q.named("customer")
    if not customers:
        return []
    aging = {r["customer"]: r for r in reports.ar_aging(store).to_dicts()}
    chase = reports.receivables_to_chase(store, n=1000).to_dicts()
    out = []
    for c in customers[:2]:
        row = aging.get(c.id)
        late = [r for r in chase if r["customer"] == c.id]
        if not row or not row.get("overdue"):
            out.append(Finding("erp", "sales", q.say("{n} owes nothing overdue.", "لا يوجد على {n} أي مبلغ متأخر.",
                                                     n=c.name), -1.5, _about(c.key, overdue=0.0)))
            continue
        days = max((r["days_overdue"] for r in late), default=0)
        out.append(Finding("erp", "sales", q.say(
            "{n} owes {o:,.2f} overdue of {t:,.2f} open, on {k} invoices, the oldest {d} days past due.",
            "على {n} {o:,.2f} متأخرة من أصل {t:,.2f} مفتوحة، في {k} فواتير، أقدمها متأخرة {d} يومًا.", n=c.name,
            o=row["overdue"], t=row["total"], k=len(late), d=days), 2.5 if days > 30 else 1.5,
            _about(c.key, overdue=row["overdue"], days_overdue=days)))
    return out


# -- pipelines -----------------------------------------------------------------------------------------
def pipeline_findings(store, q: Question) -> list[Finding]:
    pipelines = q.named("pipeline")
    if not pipelines:
        return []
    out = []
    for p in pipelines[:2]:
        runs, schedules = p.facts.get("runs"), p.facts.get("schedules") or []
        key = p.key
        if schedules and q.intent == "schedule":
            s = schedules[0]
            out.append(Finding("pipelines", "availability", q.say(
                "{p} is already scheduled ({c}{x}).", "{p} مجدول بالفعل ({c}{x}).", p=p.name, c=s["cron"],
                x=q.say(", paused", "، موقوف مؤقتًا") if s["paused"] else ""), -1.5 if not s["paused"] else 0.3,
                _about(key, cron=s["cron"])))
        if not runs:
            out.append(Finding("pipelines", "quality", q.say(
                "{p} has never run here: run it once by hand (`bi-ide pipeline run {p}`) before it runs on its own.",
                "لم يُشغَّل {p} هنا قط: شغّله مرة يدويًا (`bi-ide pipeline run {p}`) قبل جدولته.", p=p.name), -0.8,
                _about(key)))
            continue
        effect = -2.0 if runs["last_status"] == "failed" else (1.2 if runs["last_status"] == "done" else 0.0)
        out.append(Finding("pipelines", "quality", q.say(
            "{p} ran {n} times ({f} failed); its last run is {s}.", "شُغِّل {p} {n} مرات (فشل منها {f})؛ وآخر تشغيل "
            "حالته {s}.", p=p.name, n=runs["runs"], f=runs["failed"], s=_status_word(q, runs["last_status"])), effect,
            _about(key, runs=runs["runs"], failed=runs["failed"])))
    return out


# -- what was not understood ---------------------------------------------------------------------------
def understanding_findings(store, q: Question) -> list[Finding]:
    """What the question names that the store does not hold, and instructions aimed at the council."""
    out = []
    if q.injection:
        out.append(Finding("council", "history", q.say(
            "The question carries instructions to the council (\u201c{w}\u201d); instructions are not evidence and "
            "are ignored: only the store's data counts.", "يحمل السؤال تعليمات موجهة إلى المجلس («{w}»)؛ التعليمات ليست "
            "دليلًا وتُتجاهل: لا يُحتسب إلا ما في بيانات المخزن.", w=q.injection), -1.0, {"injection": q.injection}))
    if q.script == "other":
        out.append(Finding("council", "history", q.say(
            "The question is in a script the council does not read (it reads Arabic and English): answered in English "
            "on what it could match.", "السؤال مكتوب بخط لا يقرؤه المجلس (يقرأ العربية والإنجليزية).", ), 0.0,
            {"script": "other"}))
    if q.reading is None:
        return out
    wanted = INTENT_KINDS.get(q.intent)
    version_only = q.intent in ("deploy", "rollback") and q.version and q.version.get("ref") == "latest"
    if wanted and not q.named(*wanted) and not version_only:
        out.append(_not_found(store, q, wanted))
    elif q.intent == "general" and not q.reading.matches and not q.preset:
        terms = ", ".join(q.reading.unmatched[:6]) or q.text.strip()[:60]
        out.append(Finding("council", "history", q.say(
            "The question names nothing the store holds and asks for no decision the council knows (searched for: "
            "{t}). It decides on training, deploying or rolling back models, GPUs, stock, prices, expenses, "
            "receivables and pipelines.", "لا يذكر السؤال شيئًا مما في المخزن ولا يطلب قرارًا يعرفه المجلس (بُحث عن: {t}). "
            "يقرر المجلس في التدريب ونشر النماذج والتراجع عنها والبطاقات والمخزون والأسعار والمصاريف والذمم وخطوط "
            "المعالجة.", t=terms), 0.0, {"not_found": q.reading.unmatched[:6]}))
    return out


@lru_cache(maxsize=1)
def _QUESTION_WORDS() -> frozenset[str]:  # noqa: N802 (a constant, computed once)
    """Folded words that say what is asked, not about what: intents, directions, version words."""
    phrases = [p for _, en, ar in INTENTS for p in (*en, *ar)] + list(UP_WORDS + DOWN_WORDS + LATEST_WORDS
                                                                      + DEPLOYED_WORDS + PREVIOUS_WORDS)
    return frozenset(w for p in phrases for w in fold(p).split())


def _not_found(store, q: Question, kinds: tuple[str, ...]) -> Finding:
    from bi_ide.council.facts import index_for

    index = index_for(store)
    held = {k: index.of_kind(k) for k in kinds}
    terms = [w for w in q.reading.unmatched if fold(w) not in _QUESTION_WORDS()]
    comma = q.say(", ", "، ")
    searched = comma.join(f"{len(v)} {KIND_WORDS[k][1 if q.language == 'ar' else 0][1]}" for k, v in held.items())
    kind_names = q.say(" or ", " أو ").join(KIND_WORDS[k][1 if q.language == "ar" else 0][0] for k in kinds)
    sample_kind = "category" if "category" in kinds and held.get("category") else kinds[0]
    names = [_label(q, e.name) for e in held.get(sample_kind, [])][:8]
    what = comma.join(f"\u2018{t}\u2019" for t in terms[:4]) or q.say("the question's words", "كلمات السؤال")
    if names:
        text = q.say("No {k} matches {w} (searched {s}); the store has: {n}.",
                     "لا يوجد {k} يطابق {w} (بُحث في {s})؛ وفي المخزن: {n}.", k=kind_names, w=what, s=searched,
                     n=comma.join(names))
    else:
        text = q.say("No {k} matches {w}: the store holds none yet.", "لا يوجد {k} يطابق {w}: لا يوجد في المخزن أي منها بعد.",
                     k=kind_names, w=what)
    return Finding("council", KIND_TOPIC.get(kinds[0], "history"), text, 0.0,
                   {"not_found": terms[:4], "searched": {k: len(v) for k, v in held.items()}})


DECISION_WORDS = {"approved": ("approved", "الموافقة"), "rejected": ("rejected", "الرفض"),
                  "deferred": ("deferred", "الإرجاء")}
KIND_TOPIC = {"product": "stock", "customer": "sales", "expense": "margin", "model": "deploy", "pipeline": "quality"}


# -- history -------------------------------------------------------------------------------------------
def history_findings(store, q: Question) -> list[Finding]:
    from bi_ide.council.facts import index_for

    ranked = index_for(store).similar_decisions(q.text, SIMILAR_AT)[:3]
    out = []
    for score, p in ranked:
        decision = DECISION_WORDS.get(p["decision"], (p["decision"], p["decision"]))[1 if q.language == "ar" else 0]
        if p["outcome"] is not None:
            approve = aggregate.approval_was_right(p["decision"], p["outcome"], p["probability"] or 0.5)
            effect = (1.0 if approve else -1.0) * score * 2
            outcome = {"right": ("right", "صائبًا"), "wrong": ("wrong", "خاطئًا")}.get(p["outcome"], (p["outcome"],) * 2)
            text = q.say("A similar question ({s:.0%} alike) was {d} and that was {o}.",
                         "سؤال مشابه (تشابه {s:.0%}) كان قراره {d} وتبين أن ذلك كان {o}.", s=score, d=decision,
                         o=outcome[1 if q.language == "ar" else 0])
        else:
            effect = {"approved": 0.4, "rejected": -0.4}.get(p["decision"], 0.0) * score
            text = q.say("A similar question ({s:.0%} alike) was {d}; its outcome is not known yet.",
                         "سؤال مشابه (تشابه {s:.0%}) كان قراره {d}؛ ونتيجته لم تُعرف بعد.", s=score, d=decision)
        out.append(Finding("history", "history", text, effect, _about(f"decision:{p['id']}", decision_id=p["id"],
                                                                     similarity=round(score, 3))))
    return out


PROVIDER_TOPICS = {"fleet": "availability", "training": "training", "models": "deploy", "erp": "sales",
                   "pipelines": "quality", "understanding": "history", "history": "history"}
PROVIDERS = {"fleet": fleet_findings, "training": training_findings, "models": model_findings, "erp": erp_findings,
             "pipelines": pipeline_findings, "understanding": understanding_findings, "history": history_findings}


def gather(store, q: Question, providers: dict | None = None) -> list[Finding]:
    """Every provider's findings, numbered E1, E2, …; a provider that fails says so in one finding."""
    if q.reading is None and hasattr(store, "council_entity_signatures"):
        from bi_ide.council.facts import index_for

        try:
            q.reading = index_for(store).read(q.text)
        except (WorkbenchError, ValueError, TypeError):
            q.reading = None
    findings = []
    for name, provider in (providers or PROVIDERS).items():
        try:
            findings += provider(store, q)
        except (WorkbenchError, KeyError, ValueError, TypeError, AttributeError) as e:
            findings.append(Finding(name, PROVIDER_TOPICS.get(name, "history"), q.say(
                "The {n} evidence could not be read: {e}", "تعذرت قراءة أدلة {n}: {e}", n=name, e=e), 0.0))
    for i, f in enumerate(findings, 1):
        f.id = f"E{i}"
        f.effect = round(f.effect, 4) if math.isfinite(f.effect) else 0.0
    return findings
