"""Which language a question is asked in: the council answers in it.

Arabic when Arabic letters outnumber Latin ones, English when Latin letters do (or when there are
no letters of either script at all: digits, emojis, symbols), ``other`` for text in another script
(it is answered in English, and said so).
"""

from __future__ import annotations

import re
import unicodedata

LANGUAGES = ("ar", "en")
RTL = {"ar"}
_WORD = re.compile(r"[\w\-]+")


def language_of(text: str) -> str:
    """``ar``, ``en`` or ``other``: the script most of the question's words are written in.

    Names such as ``bi-arabic``, ``v2`` or ``COF-ARB`` (with digits, hyphens or underscores) do not
    count: "هل ننشر bi-arabic v2؟" is Arabic. A tie goes to the first counted word's script.
    """
    counts = {"ar": 0, "en": 0, "other": 0}
    first = None
    for word in _WORD.findall(text):
        if any(ch.isdigit() for ch in word) or "-" in word or "_" in word:
            continue
        script = _script(word)
        if script is None:
            continue
        counts[script] += 1
        first = first or script
    best = max(counts.values())
    if best == 0:
        return "en"  # no words at all: digits, emojis, symbols
    leaders = [k for k, v in counts.items() if v == best]
    return first if first in leaders else leaders[0]


def _script(word: str) -> str | None:
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        return None
    ch = letters[0]
    if "\u0600" <= ch <= "\u06ff" or "\u0750" <= ch <= "\u077f" or "\u08a0" <= ch <= "\u08ff" \
            or "\ufb50" <= ch <= "\ufdff" or "\ufe70" <= ch <= "\ufeff":
        return "ar"
    if ch.isascii() or unicodedata.name(ch, "").startswith("LATIN"):
        return "en"
    return "other"


def answer_language(text: str) -> str:
    """The language the council answers ``text`` in: Arabic or English (another script gets English)."""
    return "ar" if language_of(text) == "ar" else "en"


def direction(language: str) -> str:
    """``rtl`` or ``ltr``, for a page or a terminal."""
    return "rtl" if language in RTL else "ltr"


def say(language: str, english: str, arabic: str, /, **values) -> str:
    """One sentence in the asker's language: the English or the Arabic template, filled in."""
    return (arabic if language == "ar" else english).format(**values)


RLM, RLE, PDF = "\u200f", "\u202b", "\u202c"


def for_terminal(text: str, language: str) -> str:
    """Text for a terminal: in Arabic every line is embedded right to left (RLM, RLE … PDF), so a
    terminal that applies the bidi algorithm lays it out from the right; English is left as it is."""
    if language not in RTL:
        return text
    return "\n".join(f"{RLM}{RLE}{line}{PDF}" if line.strip() else line for line in text.split("\n"))
