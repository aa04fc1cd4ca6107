"""Words in two languages: the folds names are compared in, and a small bilingual glossary.

``fold`` turns a phrase into the form the council compares names in, in Arabic and English alike:
``similarity.normalize`` (alef variants, ta marbuta → ha, alef maksura → ya, diacritics, tatweel,
Arabic-Indic digits, case), then per word the Arabic prefixes a noun takes (the article and the
conjunctions and prepositions written onto it: "والقهوة", "بالتمر", "للابتوب") and the English
plural ("laptops", "dates", "categories"). "بالقهوة" and "القهوة" fold to "قهوه", "اللابتوب" and
"للابتوب" to the same stem; "Dates" and "date" to "date".

``GLOSSARY`` pairs English and Arabic words for the things a small trading company and a training
fleet talk about, so a name stored in one language is found by a question in the other ("قهوة" finds
the category "Coffee", "laptop" finds "اللابتوب"). ``translations`` gives a phrase's renderings
word by word; names it has no entry for stay as they are.
"""

from __future__ import annotations

import re
from functools import lru_cache

from bi_ide.council.similarity import normalize

# Letters written onto an Arabic noun, longest first: and/with/for/as/so + the article, the article alone.
_PREFIXES = ("وبال", "وال", "بال", "كال", "فال", "لل", "ال", "و", "ب", "ل", "ف", "ك")
_MIN_STEM = 2  # what must be left of a word after its prefix goes
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_ENGLISH_KEEP = {"gas", "bus", "news", "series", "analysis", "always", "this", "its", "is", "was", "has", "does",
                 "us", "yes", "less", "process", "class", "glass", "across", "status", "bonus", "campus", "gpus",
                 "aws", "ios", "macos", "windows", "kudos"}

# (English words, Arabic words): the first of each side is how a name is rendered in that language.
GLOSSARY: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # the demo business's goods
    (("coffee",), ("قهوة", "بن")),
    (("espresso",), ("اسبريسو", "إسبرسو")),
    (("turkish",), ("تركية", "تركي")),
    (("arabic", "arabian"), ("عربية", "عربي")),
    (("capsules", "capsule"), ("كبسولات", "كبسولة")),
    (("beans", "bean"), ("حبوب",)),
    (("dates", "date"), ("تمر", "تمور")),
    (("gift",), ("هدية", "هدايا")),
    (("box",), ("علبة", "صندوق")),
    (("spices", "spice"), ("بهارات", "توابل")),
    (("cardamom",), ("هيل", "حبهان")),
    (("saffron",), ("زعفران",)),
    (("cumin",), ("كمون",)),
    (("turmeric",), ("كركم",)),
    (("tea",), ("شاي",)),
    (("green",), ("أخضر", "خضراء")),
    (("black",), ("أسود", "سوداء")),
    (("mint",), ("نعناع",)),
    (("household",), ("منزلية", "أدوات منزلية")),
    (("cups", "cup"), ("فناجين", "فنجان", "أكواب")),
    (("thermos", "flask"), ("ترمس", "حافظة")),
    (("grinder",), ("مطحنة",)),
    (("incense", "burner"), ("مبخرة", "بخور")),
    (("pot", "dallah"), ("دلة",)),
    (("copper",), ("نحاس",)),
    (("sweets", "sweet", "desserts"), ("حلويات", "حلوى")),
    (("baklava",), ("بقلاوة",)),
    (("halva", "halawa"), ("حلاوة",)),
    (("maamoul",), ("معمول",)),
    (("tray",), ("صينية",)),
    (("ink",), ("حبر",)),
    (("paper",), ("ورق",)),
    (("sugar",), ("سكر",)),
    (("rice",), ("أرز", "رز")),
    (("oil",), ("زيت",)),
    (("honey",), ("عسل",)),
    (("milk",), ("حليب",)),
    # expenses
    (("rent",), ("إيجار", "ايجار")),
    (("salaries", "salary", "payroll", "wages"), ("رواتب", "الرواتب", "أجور")),
    (("utilities", "electricity"), ("كهرباء", "مرافق", "خدمات")),
    (("marketing", "advertising", "ads"), ("تسويق", "إعلانات", "دعاية")),
    (("logistics", "shipping", "freight", "delivery"), ("شحن", "لوجستيات", "توصيل")),
    (("software", "subscriptions"), ("برمجيات", "اشتراكات", "برامج")),
    (("maintenance", "repairs"), ("صيانة", "إصلاحات")),
    # the fleet
    (("laptop", "notebook"), ("لابتوب", "لاب توب", "محمول")),
    (("box", "machine", "server", "computer", "pc"), ("جهاز", "خادم", "سيرفر", "كمبيوتر")),
    (("gpu", "card", "graphics"), ("بطاقة", "كرت", "معالج رسومي", "كرت شاشة")),
    (("windows",), ("ويندوز",)),
    (("linux",), ("لينكس",)),
    (("mac",), ("ماك",)),
    # training
    (("model",), ("نموذج", "موديل")),
    (("version", "release"), ("نسخة", "إصدار")),
    (("run",), ("تشغيلة", "تجربة")),
    (("corpus", "dataset"), ("مدونة", "بيانات")),
    (("pipeline",), ("خط", "مسار")),
    (("nightly",), ("ليلي", "الليلي")),
    (("weekly",), ("أسبوعي", "الأسبوعي")),
    (("code",), ("كود", "برمجة")),
)


def strip_prefix(word: str) -> str:
    """An Arabic word without the article and the one-letter words written onto it.

    Prefixes come off one after another ("اللابتوب" → "لابتوب" → "ابتوب") as long as a stem of
    ``_MIN_STEM`` letters (three after a one-letter prefix) is left. A stem's own first letter may
    go too ("لابتوب" is stripped like "للابتوب"): what matters is that a name and a question fold
    the same way, and they do.
    """
    if not _ARABIC.search(word):
        return word
    while True:
        for p in _PREFIXES:
            if word.startswith(p) and len(word) - len(p) >= (_MIN_STEM if len(p) > 1 else 3):
                word = word[len(p):]
                break
        else:
            return word


def singular(word: str) -> str:
    """An English plural made singular by the common rules ("categories" → "category", "dates" → "date")."""
    if not word.isascii() or len(word) <= 3 or word in _ENGLISH_KEEP or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def fold_word(word: str) -> str:
    return singular(strip_prefix(word))


def fold(text: str) -> str:
    """The form names are compared in: normalised, Arabic prefixes off, English plurals singular."""
    return " ".join(fold_word(w) for w in normalize(text).split())


def words(text: str) -> list[str]:
    return fold(text).split()


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """folded word -> its renderings in the other language (folded), each way."""
    to_ar: dict[str, list[str]] = {}
    to_en: dict[str, list[str]] = {}
    for english, arabic in GLOSSARY:
        en = [fold(w) for w in english]
        ar = [fold(w) for w in arabic]
        for e in en:
            to_ar.setdefault(e, [])
            to_ar[e] += [a for a in ar if a not in to_ar[e]]
        for a in ar:
            to_en.setdefault(a, [])
            to_en[a] += [e for e in en if e not in to_en[a]]
    return to_ar, to_en


def translations(phrase: str, limit: int = 4) -> list[str]:
    """The phrase rendered word by word in the other language (folded), for the words the glossary
    knows; [] when it knows none of them. Up to ``limit`` renderings (the first rendering of each
    word first)."""
    to_ar, to_en = _table()
    tokens = words(phrase)
    if not tokens:
        return []
    options = []
    known = False
    for t in tokens:
        found = to_ar.get(t) or to_en.get(t)
        if found:
            known = True
            options.append(found[:2])
        else:
            options.append([t])
    if not known:
        return []
    out = [" ".join(o[0] for o in options)]
    for i, o in enumerate(options):  # then each word's second rendering, one at a time
        if len(o) > 1:
            out.append(" ".join(o[1] if j == i else options[j][0] for j in range(len(options))))
    seen: list[str] = []
    for x in out:
        if x not in seen and x != " ".join(tokens):
            seen.append(x)
    return seen[:limit]


def render(word: str, language: str) -> str:
    """The glossary's first rendering of a (folded) word in ``language`` ("ar" or "en"), or the word."""
    to_ar, to_en = _table()
    f = fold(word)
    if language == "ar" and f in to_ar:
        return next(a for e, a in GLOSSARY for x in e if fold(x) == f)[0]
    if language == "en" and f in to_en:
        return next(e for e, a in GLOSSARY for x in a if fold(x) == f)[0]
    return word


# Words that carry no name: question words, pronouns, auxiliaries, prepositions, time words (folded).
_STOP_TEXT = """
a an the of to for in on at by with from into onto about over under than then this that these those it its we our us
you your i me my they them their he she his her is are was were be been being do does did doing have has had should
would could can may might must shall will not no yes if or and but so as what which who whom whose when where why how
all any some more most less least much many very too also just only still yet again now today tonight tomorrow next
last this week month year day days weeks months years time please ok okay let lets let's go get make want need think
هل ما ماذا من متى اين أين لماذا كيف كم هذا هذه ذلك تلك هو هي هم نحن انا أنا انت أنت في على الى إلى عن مع من ثم او أو
و لا نعم لم لن قد كان كانت يكون تكون ان إن أن كل بعض اي أي غير بين عند حتى اذا إذا لو بعد قبل الآن اليوم الليلة
غدا غداً القادم القادمة الماضي الماضية الشهر الأسبوع السنة اليوم يوم شهر أسبوع سنة الان الليله هناك هنا يجب ينبغي
نريد نحتاج ممكن يمكن لنا لدينا عندنا
"""
STOPWORDS = frozenset(fold(w) for w in _STOP_TEXT.split())
