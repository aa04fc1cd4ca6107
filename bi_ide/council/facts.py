"""The council's index of the store's facts: everything a question can name, found in Arabic or English.

Entities are the things the council reasons about, read from the store: workers (with their GPUs,
labels and aliases such as "the 5090 box" or "اللابتوب"), models (with their versions), runs,
corpora, pipelines (with their schedules), ERP products, categories, customers, suppliers and
expense categories, and past decisions (the council's memory, seed §4.1; matched by similarity of
the whole question, see ``similar_decisions``).

Each entity has names: its own (as stored, in either language), forms derived from them (a
hostname's parts, a GPU's model number, a product name without its pack size) and their
renderings through the glossary (``lexicon.translations``), all folded (``lexicon.fold``).
A question is matched against every name, span by span (one to four words):

1. exact: the span's folded words are the name's, in any order (folding takes off the Arabic
   prefixes a word may carry: "بالقهوة", "للابتوب"); score 1;
2. close: the cosine of the two texts' character 2–4-gram TF-IDF vectors (scikit-learn's
   ``TfidfVectorizer``, ``char_wb``) — partial names, misspellings, another word order; at least
   ``CLOSE`` when the span shares a whole word with the name, else ``CLOSE_UNSHARED``
   (``CLOSE_ONE_WORD`` for a one-word name), with the span and the name within ``LENGTH_RATIO``
   of each other's length; a span never starts or ends with a stop word;

3. a word only one entity's names use ("Crescent" for "Crescent Supermarkets"); score ``PARTIAL``.

Spans are taken best first, longer before shorter at the same score, and never overlap; names
of other entities within ``TIE`` of the best on the same span are kept too (two machines called
"laptop" are both meant). What is left of the question, less stop words, is ``unmatched``: the
words the council searched for and did not find.

The index is kept per store and rebuilt incrementally: each group of tables (fleet, models, runs,
corpora, pipelines, ERP, decisions) has a fingerprint (``Store.council_entity_signatures``) and
only the groups whose fingerprint changed are read again.
"""

from __future__ import annotations

import json
import re
import threading
import time
import weakref
from dataclasses import dataclass, field

from bi_ide.council.lexicon import STOPWORDS, fold, fold_word, translations
from bi_ide.council.similarity import normalize

KINDS = ("worker", "model", "run", "corpus", "pipeline", "product", "category", "customer", "supplier", "expense")
GROUP_KINDS = {"fleet": ("worker",), "models": ("model",), "runs": ("run",), "corpora": ("corpus",),
               "pipelines": ("pipeline",), "erp": ("product", "category", "customer", "supplier", "expense")}
GROUPS = (*GROUP_KINDS, "decisions")
MAX_SPAN = 4  # words
CLOSE = 0.62
CLOSE_UNSHARED = 0.8  # a close match that shares no whole word with the name (typos in every word)
CLOSE_ONE_WORD = 0.85  # a one-word name must be nearly the word: "train" is not "trainer"
PARTIAL = 0.95  # one word of a name that only that entity uses
PARTIAL_KINDS = ("product", "customer", "supplier", "worker", "pipeline", "expense")
CLOSE_CAP = 0.999  # the best a close match scores: exact ones (1.0) come first
LENGTH_RATIO = 0.6  # a close match covers most of the name, and the name most of the span
TIE = 0.02
# Names too general to point at one thing on their own.
GENERIC = frozenset(fold(w) for w in (
    "box", "machine", "server", "computer", "pc", "gpu", "card", "model", "run", "version", "corpus", "pipeline",
    "product", "customer", "supplier", "expense", "category", "جهاز", "خادم", "نموذج", "نسخة", "منتج", "عميل", "مورد",
    "بطاقة", "كرت", "علبة", "صندوق", "هدية", "حبوب", "green", "black", "gift", "tray", "cups", "oil", "code", "أخضر",
    "أسود", "كود", "new", "main", "default", "test"))
_PACK = re.compile(r"^(?:x?\d+(?:[.,]\d+)?(?:k?g|ml|l|m|cm|pcs|pc)?|x\d+|\d+x)$", re.IGNORECASE)  # 250g, 1kg, x50, 1l
_GPU_NUMBER = re.compile(r"\b(\d{3,4})\b")


@dataclass(frozen=True)
class Entity:
    """Something in the store a question can name."""

    kind: str
    id: str
    name: str
    aliases: tuple[str, ...] = ()  # folded names, the first the entity's own
    facts: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Match:
    entity: Entity
    score: float
    alias: str
    span: str  # the question's words that named it (folded)


@dataclass
class Reading:
    """What the index found in one question."""

    matches: list[Match]
    unmatched: list[str]  # content words no name accounted for
    index: FactIndex | None = None  # the index that read it

    def of(self, *kinds: str) -> list[Entity]:
        seen, out = set(), []
        for m in self.matches:
            if m.entity.kind in kinds and m.entity.key not in seen:
                seen.add(m.entity.key)
                out.append(m.entity)
        return out

    @property
    def keys(self) -> list[str]:
        return [m.entity.key for m in self.matches]


# -- building entities from the store's rows --------------------------------------------------------
def _presets() -> frozenset[str]:
    from bi_ide.training.presets import PRESETS

    return frozenset(PRESETS)


def _names(*names: str) -> tuple[str, ...]:
    """Folded names and their glossary renderings, first-seen order, without generic ones."""
    out: list[str] = []
    for name in names:
        if not name:
            continue
        for form in (fold(name), *translations(name)):
            if form and form not in out and form not in GENERIC and form not in STOPWORDS:
                out.append(form)
    return tuple(out)


def _without_pack(name: str) -> str:
    words = normalize(name).split()
    kept = [w for w in words if not _PACK.match(w)]
    return " ".join(kept) if kept and len(kept) < len(words) else ""


def _json(value) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _workers(frames) -> list[Entity]:
    out = []
    for w in frames["workers"].to_dicts():
        gpus = [g for g in (_json(w["gpus"]) or []) if isinstance(g, dict)]
        labels = _json(w["labels"]) or {}
        labels = labels if isinstance(labels, dict) else {}
        host = str(w["hostname"] or w["id"])
        names = [host, str(w["id"]), re.sub(r"[-_.]+", " ", host)]
        for g in gpus:
            gname = str(g.get("name") or "")
            names.append(gname)
            number = _GPU_NUMBER.search(gname)
            if number:
                names += [number[1], f"{number[1]} box", f"{number[1]} machine", f"{number[1]} laptop"]
        names += [str(v) for v in labels.values() if isinstance(v, str)]
        if w["os"]:
            names.append(f"{w['os']} machine")
        out.append(Entity("worker", str(w["id"]), host, _names(*names),
                          {"hostname": host, "os": w["os"], "labels": labels, "gpus": gpus}))
    return out


def _models(frames) -> list[Entity]:
    by_name: dict[str, list[dict]] = {}
    for m in frames["models"].to_dicts():
        m["metrics"] = _json(m["metrics"]) or {}
        m["run_config"] = _json(m["run_config"]) or {}
        by_name.setdefault(m["name"], []).append(m)
    return [Entity("model", name, name, _names(name, re.sub(r"[-_.]+", " ", name)),
                   {"versions": sorted(rows, key=lambda r: r["version"])}) for name, rows in by_name.items()]


def _runs(frames) -> list[Entity]:
    return [Entity("run", r["id"], r["name"], _names(r["name"], r["id"]), r) for r in frames["runs"].to_dicts()]


def _corpora(frames) -> list[Entity]:
    return [Entity("corpus", c["id"], c["name"], _names(c["name"], c["id"]), c) for c in frames["corpora"].to_dicts()]


def _pipelines(frames) -> list[Entity]:
    from pathlib import Path

    rows = {p["pipeline"]: p for p in frames["pipelines"].to_dicts()}
    schedules: dict[str, list[dict]] = {}
    for s in frames["schedules"].to_dicts():
        schedules.setdefault(s["pipeline"], []).append(s)
    names = set(rows) | set(schedules)
    with_files = Path("pipelines")
    if with_files.is_dir():  # the pipelines this workbench ships, run or not
        names |= {p.stem for p in with_files.glob("*.yaml")}
    return [Entity("pipeline", n, n, _names(n, re.sub(r"[-_.]+", " ", n), f"{n} pipeline"),
                   {"runs": rows.get(n), "schedules": schedules.get(n, [])}) for n in sorted(names)]


def _erp(frames) -> list[Entity]:
    out = []
    categories: dict[str, list[str]] = {}
    for p in frames["products"].to_dicts():
        categories.setdefault(p["category"], []).append(p["sku"])
        out.append(Entity("product", p["sku"], p["name"], _names(p["name"], p["sku"], _without_pack(p["name"])), p))
    for c, skus in categories.items():
        out.append(Entity("category", c, c, _names(c), {"category": c, "products": skus}))
    for c in frames["customers"].to_dicts():
        out.append(Entity("customer", c["code"], c["name"], _names(c["name"], c["code"]), c))
    for s in frames["suppliers"].to_dicts():
        out.append(Entity("supplier", s["supplier"], s["supplier"], _names(s["supplier"]),
                          {"categories": list(s["categories"] or [])}))
    for e in frames["expenses"].to_dicts():
        vendors = list(e["vendors"] or [])
        out.append(Entity("expense", e["category"], e["category"], _names(e["category"], *vendors),
                          {"vendors": vendors}))
    return out


BUILDERS = {"fleet": _workers, "models": _models, "runs": _runs, "corpora": _corpora, "pipelines": _pipelines,
            "erp": _erp}


# -- the index ---------------------------------------------------------------------------------------
class FactIndex:
    """Entities and their names, vectorised; ``read(question)`` finds the ones a question names."""

    def __init__(self, entities: list[Entity], decisions: list[dict] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.entities = entities
        self.by_key = {e.key: e for e in entities}
        self.decisions = decisions or []
        self._names: list[tuple[str, Entity]] = [(a, e) for e in entities for a in e.aliases]
        self._exact: dict[frozenset, list[tuple[str, Entity]]] = {}
        for alias, e in self._names:
            self._exact.setdefault(frozenset(alias.split()), []).append((alias, e))
        # A word of one entity's names that no other entity's names use is a name of its own ("Crescent"
        # for "Crescent Supermarkets", "الريان" for "مؤسسة الريان التجارية"), a little below a whole name.
        owners: dict[str, set[str]] = {}
        for alias, e in self._names:
            for w in alias.split():
                owners.setdefault(w, set()).add(e.key)
        self._owners = owners
        self._partial: dict[str, tuple[str, Entity]] = {}
        for alias, e in self._names:
            if e.kind not in PARTIAL_KINDS:  # runs and models are named whole ("large" is also a preset)
                continue
            for w in alias.split():
                if len(owners[w]) == 1 and len(w) >= 4 and w not in GENERIC and w not in STOPWORDS \
                        and w not in _presets() and not w.isdigit() and frozenset([w]) not in self._exact:
                    self._partial.setdefault(w, (alias, e))
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=False, sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform([a for a, _ in self._names]) if self._names else None
        self._history = None

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities if e.kind == kind]

    def read(self, question: str, kinds: tuple[str, ...] | None = None) -> Reading:
        """The entities ``question`` names (best first) and the content words left unaccounted for."""
        words = normalize(question).split()[:200]
        stop = [fold_word(w) in STOPWORDS for w in words]
        spans = [(i, j) for i in range(len(words)) for j in range(i + 1, min(i + MAX_SPAN, len(words)) + 1)
                 if not stop[i] and not stop[j - 1]]  # a name neither starts nor ends with "the", "هل", ...
        candidates: list[tuple[float, int, int, int, str, Entity]] = []
        for i, j in spans:
            for alias, e in self._exact_matches(words[i:j]):
                candidates.append((1.0, j - i, i, j, alias, e))
            if j - i == 1 and fold_word(words[i]) in self._partial:
                alias, e = self._partial[fold_word(words[i])]
                candidates.append((PARTIAL, 1, i, j, alias, e))
        if self.matrix is not None and spans:
            texts = [" ".join(fold(w) for w in words[i:j]) for i, j in spans]
            sims = (self.vectorizer.transform(texts) @ self.matrix.T).tocoo()
            for row, col, score in zip(sims.row, sims.col, sims.data, strict=True):
                alias, e = self._names[col]
                i, j = spans[row]
                one_word = " " not in alias
                size = len(texts[row]) / max(1, len(alias))
                # a shared word counts when it is this entity's own (many names say "مؤسسة", "coffee")
                shared = any(len(self._owners.get(w, ())) == 1 for w in set(texts[row].split()) & set(alias.split()))
                enough = CLOSE_ONE_WORD if one_word else (CLOSE if shared else CLOSE_UNSHARED)
                if score >= enough and LENGTH_RATIO <= size <= 1 / LENGTH_RATIO:
                    # below an exact match whatever float rounding says (a cosine can come out 1.0000001)
                    candidates.append((min(float(score), CLOSE_CAP), j - i, i, j, alias, e))
        if kinds:
            candidates = [c for c in candidates if c[5].kind in kinds]
        candidates.sort(key=lambda c: (-c[0], -c[1], c[2]))
        taken: list[tuple[int, int, float]] = []
        matches: list[Match] = []
        seen: set[str] = set()
        for score, _, i, j, alias, e in candidates:
            if e.key in seen:
                continue
            same = next((t for t in taken if t[0] == i and t[1] == j), None)
            if same is not None:
                if same[2] - score > TIE:
                    continue
            elif any(i < b and a < j for a, b, _ in taken):
                continue
            else:
                taken.append((i, j, score))
            seen.add(e.key)
            matches.append(Match(e, round(score, 4), alias, " ".join(words[i:j])))
        covered = {k for i, j, _ in taken for k in range(i, j)}
        unmatched = [w for k, w in enumerate(words) if k not in covered and fold(w) not in STOPWORDS
                     and not w.isdigit()]
        return Reading(matches, unmatched, self)

    def _exact_matches(self, span: list[str]) -> list[tuple[str, Entity]]:
        """Names whose (folded) words are the span's, in any order."""
        return self._exact.get(frozenset(fold_word(w) for w in span), [])

    def similar_decisions(self, question: str, at_least: float) -> list[tuple[float, dict]]:
        """Past decisions whose question is alike (char n-gram TF-IDF cosine ≥ at_least), most alike first."""
        if not self.decisions:
            return []
        from sklearn.feature_extraction.text import TfidfVectorizer

        if self._history is None:
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=False, sublinear_tf=True)
            self._history = (vec, vec.fit_transform([fold(d["question"]) for d in self.decisions]))
        vec, matrix = self._history
        scores = (vec.transform([fold(question)]) @ matrix.T).toarray()[0]
        ranked = sorted(((float(s), d) for s, d in zip(scores, self.decisions, strict=True) if s >= at_least),
                        key=lambda sd: -sd[0])
        return ranked


# -- one index per store, kept up to date ---------------------------------------------------------------
class _Cached:
    def __init__(self):
        self.signatures: dict[str, tuple] = {}
        self.entities: dict[str, list[Entity]] = {}
        self.decisions: list[dict] = []
        self.index: FactIndex | None = None
        self.lock = threading.Lock()
        self.build_ms: float = 0.0
        self.reloaded: list[str] = []


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def index_for(store) -> FactIndex:
    """The store's index, reading again only the groups of tables that changed since the last call."""
    with _CACHE_LOCK:
        cached = _CACHE.get(store)
        if cached is None:
            cached = _CACHE[store] = _Cached()
    with cached.lock:
        started = time.perf_counter()
        signatures = store.council_entity_signatures()
        stale = [g for g in GROUPS if signatures.get(g) != cached.signatures.get(g)]
        for group in stale:
            rows = store.council_entity_rows(group)
            if group == "decisions":
                cached.decisions = rows["decisions"].to_dicts()
            else:
                cached.entities[group] = BUILDERS[group](rows)
        if stale or cached.index is None:
            cached.index = FactIndex([e for g in GROUP_KINDS for e in cached.entities.get(g, [])], cached.decisions)
            cached.signatures = signatures
        cached.reloaded = stale
        cached.build_ms = (time.perf_counter() - started) * 1000
        return cached.index


def last_build(store) -> dict:
    """How the last ``index_for(store)`` went: the groups it read again and its time."""
    cached = _CACHE.get(store)
    if cached is None:
        return {"reloaded": [], "ms": None, "entities": 0}
    n = len(cached.index.entities) if cached.index else 0
    return {"reloaded": list(cached.reloaded), "ms": round(cached.build_ms, 2), "entities": n}
