"""Text similarity for Arabic and English: character n-gram TF-IDF over normalised text.

Character n-grams (3 to 5, inside word boundaries) match across Arabic prefixes and suffixes
("التدريب" and "تدريب" share most of their n-grams) and across English inflections without a
stemmer for either language. Arabic is normalised first with the training corpus's rules
(``bi_ide.training.arabic``: alef variants, tatweel, diacritics, Arabic-Indic digits) plus the two
spelling folds search engines use (ta marbuta → ha, alef maksura → ya).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from bi_ide.training.arabic import normalize_arabic

NGRAMS = (3, 4, 5)
_FOLDS = str.maketrans({"\u0629": "\u0647", "\u0649": "\u064a"})  # ة → ه, ى → ي
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Lower-cased words of ``text`` with Arabic folded; punctuation dropped."""
    folded = normalize_arabic(text, strip_diacritics=True).translate(_FOLDS).lower()
    return " ".join(_WORD.findall(folded))


def ngrams(text: str) -> Counter:
    grams: Counter = Counter()
    for word in normalize(text).split():
        padded = f" {word} "
        for n in NGRAMS:
            grams.update(padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
    return grams


class Index:
    """TF-IDF vectors of a fixed set of documents; ``scores(query)`` is the cosine to each."""

    def __init__(self, documents: list[str]):
        counts = [ngrams(d) for d in documents]
        df: Counter = Counter()
        for c in counts:
            df.update(c.keys())
        n = len(documents)
        self.idf = {g: math.log((1 + n) / (1 + k)) + 1 for g, k in df.items()}
        self.vectors = [self._vector(c) for c in counts]

    def _vector(self, counts: Counter) -> dict[str, float]:
        default = max(self.idf.values(), default=1.0)  # an n-gram no document has is rare
        vec = {g: (1 + math.log(k)) * self.idf.get(g, default) for g, k in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {g: v / norm for g, v in vec.items()}

    def scores(self, query: str) -> list[float]:
        q = self._vector(ngrams(query))
        return [sum(v * d.get(g, 0.0) for g, v in q.items()) for d in self.vectors]


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts' n-gram TF-IDF vectors (IDF over the pair)."""
    index = Index([a, b])
    return sum(v * index.vectors[1].get(g, 0.0) for g, v in index.vectors[0].items())
