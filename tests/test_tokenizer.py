"""Arabic normalisation, the byte-level BPE tokenizer and its fertility, on real Quran and stdlib text."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from bi_ide.errors import ConfigError, NotFoundError
from bi_ide.training.arabic import arabic_share, is_arabic, normalize_arabic, normalize_document
from bi_ide.training.corpus import quran_documents
from bi_ide.training.tokenizer import (
    EOT,
    MAX_VOCAB_SIZE,
    MIN_VOCAB_SIZE,
    BPETokenizer,
    fertility,
    train_tokenizer,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_FILES = ["os.py", "json/decoder.py", "textwrap.py", "difflib.py", "email/_header_value_parser.py",
                "tokenize.py", "argparse.py", "locale.py"]


@pytest.fixture(scope="module")
def quran() -> list[str]:
    return [d.text for d in quran_documents()]


@pytest.fixture(scope="module")
def stdlib_sources() -> list[str]:
    files = [STDLIB / f for f in STDLIB_FILES if (STDLIB / f).is_file()]
    assert len(files) >= 5, "the interpreter's stdlib should hold these modules"
    return [f.read_text(encoding="utf-8") for f in files]


@pytest.fixture(scope="module")
def tokenizer(quran, stdlib_sources) -> BPETokenizer:
    """A 512-token BPE on half the Quran and two stdlib modules (trains in about a second)."""
    docs = [(t, "arabic") for t in quran[::2]] + [(t, "code") for t in stdlib_sources[:2]]
    return train_tokenizer(docs, 512)


# -- Arabic normalisation: one test per rule ---------------------------------------------------
@pytest.mark.parametrize("variant", ["أ", "إ", "آ", "ٱ"])
def test_alef_variants_become_bare_alef(variant):
    assert normalize_arabic(f"{variant}حمد") == "احمد"


def test_alef_with_combining_hamza_is_composed_then_mapped():
    assert normalize_arabic("ا\u0654حمد") == "احمد"  # alef + combining hamza above == أ


def test_tatweel_is_removed():
    assert normalize_arabic("محـــمد") == "محمد"


def test_diacritics_are_kept_unless_asked():
    vowelled = "مُحَمَّدٌ"
    assert normalize_arabic(vowelled) == vowelled
    assert normalize_arabic(vowelled, strip_diacritics=True) == "محمد"


def test_quranic_marks_are_diacritics():
    # sukun as the Quran writes it (U+06E1), superscript alef, open tanween (U+08F1), small waw (U+06E5)
    assert normalize_arabic("ٱلۡعَٰلَمِينَ", strip_diacritics=True) == "العلمين"
    assert normalize_arabic("سِنَةࣱ لَهُۥ", strip_diacritics=True) == "سنة له"


@pytest.mark.parametrize("digits", ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹"])
def test_arabic_indic_digits_become_ascii(digits):
    assert normalize_arabic(f"سنة {digits}") == "سنة 0123456789"


def test_normalisation_is_idempotent_on_the_quran(quran):
    for strip in (False, True):
        once = [normalize_arabic(t, strip_diacritics=strip) for t in quran[:20]]
        assert [normalize_arabic(t, strip_diacritics=strip) for t in once] == once


def test_is_arabic_by_script_share():
    assert is_arabic("بسم الله الرحمن الرحيم")
    assert not is_arabic("def main(): return 0")
    assert not is_arabic("12345 ...")  # no letters at all
    assert arabic_share("abc مرحبا") == pytest.approx(5 / 8)
    assert is_arabic("hello مرحبا بالعالم") and not is_arabic("hello world مرحبا")


def test_code_is_never_normalised():
    code = 'greeting = "أهلاً ـ ٱلعالم ١٢٣"  # تعليق\n'
    assert normalize_document(code, "code", strip_diacritics=True) == code
    assert normalize_document(code, "text", strip_diacritics=True) == code
    assert normalize_document(code, "arabic") != code
    with pytest.raises(ValueError, match="domain"):
        normalize_document(code, "poetry")


# -- the tokenizer -----------------------------------------------------------------------------
def test_round_trip_on_real_stdlib_files(tokenizer, stdlib_sources):
    for source in stdlib_sources:
        assert tokenizer.decode(tokenizer.encode(source, "code")) == source


def test_round_trip_on_awkward_code(tokenizer):
    code = ('def f(x):\r\n\treturn x  \t \n\n\n    # café ☕ 𝔘 \u200b\x00\n'
            f's = "{EOT}<|pad|><|ar|>"  \nname = "مُحَمَّد ٱلأول ١٢"\n   ')
    ids = tokenizer.encode(code, "code")
    assert tokenizer.decode(ids) == code
    assert tokenizer.eot_id not in ids  # a special token's spelling in a file is plain text


def test_round_trip_on_arabic_after_normalisation(tokenizer, quran):
    for text in quran:
        norm = tokenizer.normalize(text, "arabic")
        assert tokenizer.decode(tokenizer.encode(norm, "arabic")) == norm
        assert tokenizer.encode(text, "arabic") == tokenizer.encode(norm, "arabic")


def test_encode_document_adds_domain_tag_and_end_of_text(tokenizer):
    ids = tokenizer.encode_document("print(1)", "code", domain_tag=True)
    assert ids[0] == tokenizer.domain_tag_id("code") and ids[-1] == tokenizer.eot_id
    assert tokenizer.encode_document("hello", "text", domain_tag=True)[:-1] == tokenizer.encode("hello")
    assert tokenizer.encode_batch(["a b", "ج د"], ["text", "arabic"]) == [tokenizer.encode("a b"),
                                                                          tokenizer.encode("ج د", "arabic")]


def test_vocab_has_bytes_and_special_tokens(tokenizer):
    assert tokenizer.vocab_size == 512
    assert {tokenizer.eot_id, tokenizer.pad_id} == {0, 1}
    # Every byte is representable even if the training text never had it.
    assert tokenizer.decode(tokenizer.encode("\x7f\x01 ߷")) == "\x7f\x01 ߷"


def test_save_and_load(tokenizer, tmp_path, stdlib_sources):
    path = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    assert (tmp_path / "tok" / "tokenizer_config.json").is_file()
    loaded = BPETokenizer.load(tmp_path / "tok")
    assert loaded.encode(stdlib_sources[0], "code") == tokenizer.encode(stdlib_sources[0], "code")
    assert loaded.encode(EOT) == tokenizer.encode(EOT)  # still plain text after loading
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(NotFoundError, match="no tokenizer"):
        BPETokenizer.load(tmp_path / "missing")


def test_strip_diacritics_setting_travels_with_the_tokenizer(tmp_path, quran):
    tok = train_tokenizer([(t, "arabic") for t in quran[:10]], 300, strip_diacritics=True)
    tok.save(tmp_path / "tokenizer.json")
    loaded = BPETokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.strip_diacritics
    assert loaded.decode(loaded.encode("مُحَمَّدٌ", "arabic")) == "محمد"


def test_fertility_is_sane(tokenizer, quran, stdlib_sources):
    f = fertility(tokenizer, quran[1::2], stdlib_sources[2:])
    assert 1.0 < f["tokens_per_arabic_word"] < 8.0
    assert 0.1 < f["tokens_per_code_byte"] < 0.8  # well below one token per byte, even at 512 tokens
    assert f["arabic_words"] > 30_000 and f["code_bytes"] > 100_000
    bigger = train_tokenizer([(t, "arabic") for t in quran[::2]], 2048)
    assert fertility(bigger, quran[1::2], [])["tokens_per_arabic_word"] < f["tokens_per_arabic_word"]
    assert fertility(tokenizer, [], [])["tokens_per_code_byte"] is None


@pytest.mark.parametrize("size", [MIN_VOCAB_SIZE - 1, 0, MAX_VOCAB_SIZE + 1, True, 512.0])
def test_vocab_size_out_of_bounds(size):
    with pytest.raises(ConfigError, match="vocab_size must be"):
        train_tokenizer(["abc"], size)
