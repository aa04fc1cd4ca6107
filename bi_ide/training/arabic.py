"""Arabic text normalisation for tokenizer training, applied to Arabic documents only.

The rules, in the order they run (each is one table or one character class, so it is cheap):

1. Unicode NFC, so a letter written as base + combining hamza/maddah reads like the precomposed one.
2. Alef variants ``أ إ آ ٱ`` (and the rare wavy-hamza alefs ``ٲ ٳ``) become bare alef ``ا``.
3. Tatweel ``ـ`` (kashida, a stretching glyph with no meaning) is removed.
4. Optionally, diacritics are removed: tashkeel (fatha … sukun, tanween, shadda, maddah, hamza
   marks, superscript alef) and the Quranic annotation marks (small high letters, waqf signs, open
   tanween, small waw/yeh). Off by default: the marks carry meaning, and the choice is the user's.
5. Arabic-Indic ``٠١٢٣٤٥٦٧٨٩`` and Eastern Arabic-Indic ``۰۱۲۳۴۵۶۷۸۹`` digits become ASCII digits.

Code is never normalised, even when it holds Arabic strings: :func:`normalize_document` returns a
code document unchanged, so a tokenizer round-trips source files byte for byte.

References: the Unicode Arabic block charts (U+0600–06FF, U+08A0–08FF); the character classes of
the ``quran-text`` package's search fold.
"""

from __future__ import annotations

import re
import unicodedata

DOMAINS = ("arabic", "code", "text")

ALEF = "\u0627"
ALEF_VARIANTS = "\u0623\u0625\u0622\u0671\u0672\u0673"  # أ إ آ ٱ ٲ ٳ
TATWEEL = "\u0640"
ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
EASTERN_ARABIC_INDIC_DIGITS = "۰۱۲۳۴۵۶۷۸۹"

# Tashkeel U+064B–065F, superscript alef U+0670, honorific signs U+0610–061A, Quranic marks
# U+06D6–06DC and U+06DF–06ED (U+06DD end-of-ayah and U+06DE rub-el-hizb are signs, not marks on
# a letter, and stay), and the extended Quranic marks U+08D3–08FF (open tanween and friends).
_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06ed\u08d3-\u08e1\u08e3-\u08ff]")
_LETTERS = str.maketrans(
    {**dict.fromkeys(ALEF_VARIANTS, ALEF), TATWEEL: None,
     **{d: str(i) for i, d in enumerate(ARABIC_INDIC_DIGITS)},
     **{d: str(i) for i, d in enumerate(EASTERN_ARABIC_INDIC_DIGITS)}}
)
# Letters of the Arabic script: the Arabic, Arabic Supplement, Extended-A and presentation-form blocks.
_ARABIC_LETTER = re.compile("[\u0620-\u064a\u066e-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06ff\u0750-\u077f"
                            "\u08a0-\u08c9\ufb50-\ufdff\ufe70-\ufefc]")


def normalize_arabic(text: str, *, strip_diacritics: bool = False) -> str:
    """``text`` with the rules of this module applied; idempotent.

    >>> normalize_arabic("أَحْمَد ١٢٣", strip_diacritics=True)
    'احمد 123'
    """
    while True:
        text = unicodedata.normalize("NFC", text)
        if strip_diacritics:
            text = _DIACRITICS.sub("", text)
        # After NFC so a composed آ (alef + maddah) is caught. Mapping ٱ to ا can leave a bare alef
        # before a combining hamza that NFC composes to أ, hence the loop (one more pass at most).
        out = text.translate(_LETTERS)
        if unicodedata.is_normalized("NFC", out):
            return out
        text = out


def arabic_share(text: str) -> float:
    """The share of the letters in ``text`` that are Arabic-script letters (0 when it has none)."""
    letters = sum(1 for c in text if c.isalpha())
    if not letters:
        return 0.0
    return len(_ARABIC_LETTER.findall(text)) / letters


def is_arabic(text: str, threshold: float = 0.5) -> bool:
    """Whether most of the letters in ``text`` are Arabic (at least ``threshold`` of them)."""
    return arabic_share(text) >= threshold


def normalize_document(text: str, domain: str, *, strip_diacritics: bool = False) -> str:
    """Normalise a document of the given domain: Arabic documents only; code and text pass unchanged."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {list(DOMAINS)}")
    if domain != "arabic":
        return text
    return normalize_arabic(text, strip_diacritics=strip_diacritics)
