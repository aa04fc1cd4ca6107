"""Corpus preparation: sources, duplicates, the split, shards, the manifest, the store and `bi-ide data`."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from click.testing import CliRunner

from bi_ide.errors import ConfigError, ConflictError, ValidationError
from bi_ide.training import corpus as corpus_mod
from bi_ide.training.corpus import (
    TokenShards,
    corpus_sources,
    file_sha256,
    json_texts,
    list_corpora,
    prepare_corpus,
    read_source,
    split_documents,
)
from bi_ide.training.data_cli import data
from bi_ide.training.tokenizer import BPETokenizer

ARABIC = [
    "العلم نور والجهل ظلام، ومن طلب العلا سهر الليالي.",
    "إنَّ مع العسر يسراً، فإذا فرغت فانصب وإلى ربك فارغب.",
    "اللغة العربية من أقدم اللغات السامية وأكثرها انتشاراً في العالم اليوم.",
    "تُكتب العربية من اليمين إلى اليسار، ولها ثمانية وعشرون حرفاً أساسياً.",
    "القاهرة عاصمة مصر، وبغداد عاصمة العراق، ودمشق عاصمة سوريا منذ ٢٠٠٠ عام.",
    "الصبر مفتاح الفرج، والعقل زينة، والأدب خير ميراث.",
]
CODE = {
    "util.py": "def add(a, b):\n\treturn a + b  \n\nNAME = 'بيانات'\n",
    "app.js": "export function greet(name) {\n  return `hello ${name}`;\n}\n",
    "main.rs": "fn main() {\n    println!(\"hi\");\n}\n",
    "lib.go": "package lib\n\nfunc Two() int { return 2 }\n",
}


@pytest.fixture
def tiny_corpus(tmp_path):
    """A folder with Arabic and English text, code, JSON and JSONL, one duplicate and one binary file."""
    root = tmp_path / "src"
    (root / "ar").mkdir(parents=True)
    for i, text in enumerate(ARABIC):
        (root / "ar" / f"{i}.txt").write_text(text * 20, encoding="utf-8")
    (root / "ar" / "copy_of_0.txt").write_text(ARABIC[0] * 20, encoding="utf-8")  # exact duplicate
    (root / "ar" / "tatweel_0.txt").write_text(ARABIC[0].replace("العلم", "العـلم") * 20,
                                               encoding="utf-8")  # duplicate after normalisation
    (root / "code").mkdir()
    for name, text in CODE.items():
        (root / "code" / name).write_text(text * 10, encoding="utf-8")
    (root / "README.md").write_text("# Notes\n\nThe workbench trains small models on Arabic and code.\n" * 5)
    (root / "guide.txt").write_text("Plain English guide text for the text domain.\n" * 5)
    (root / "qa.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"question": "ما هي عاصمة مصر؟", "answer": "القاهرة هي عاصمة مصر."},
        {"question": "What is BPE?", "answer": "Byte pair encoding merges frequent pairs."},
    ]) + "\n", encoding="utf-8")
    (root / "auto-learning.json").write_text(json.dumps({
        "version": "1.0",
        "learned": [{"input": "كيف أبدأ التدريب؟", "response": "شغّل الأمر bi-ide data prepare ثم درّب النموذج."},
                    {"pattern": "greeting", "response": "Hello! How can I help with training today?"}],
    }, ensure_ascii=False), encoding="utf-8")
    (root / "blob.txt").write_bytes(b"\xff\xfe\x00binary\x80")  # not UTF-8: skipped
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.py").write_text("ignored = True\n")
    (root / "image.png").write_bytes(b"\x89PNG")  # unknown extension: ignored
    return root


def prepare(src, out, **kw):
    kw.setdefault("vocab_size", 512)
    kw.setdefault("val_fraction", 0.25)
    return prepare_corpus([str(src)], out, **kw)


@pytest.fixture
def prepared(tiny_corpus, tmp_path, store):
    return prepare(tiny_corpus, tmp_path / "corpus", store=store)


# -- sources -----------------------------------------------------------------------------------
def test_reads_text_code_json_and_skips_binary(tiny_corpus):
    docs, report = read_source(str(tiny_corpus), 10**9)
    names = {d.name: d.domain for d in docs}
    assert names["code/util.py"] == "code" and names["ar/0.txt"] == "arabic" and names["README.md"] == "text"
    assert names["qa.jsonl#0"] == "arabic" and names["qa.jsonl#1"] == "text"
    assert {n for n in names if n.startswith("auto-learning.json")} == {"auto-learning.json#0", "auto-learning.json#1"}
    assert not any("__pycache__" in n or n.endswith(".png") for n in names)
    assert report.skipped_files == 1 and report.documents == len(docs) == 18
    assert report.bytes == sum(report.domains.values())


def test_json_records_generically():
    value = {"meta": {"v": 2}, "items": [
        {"question": "q1", "answer": "a1", "id": 7},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"conversations": [{"from": "human", "value": "sup"}]},
        ["plain string", ""],
        {"nested": {"text": "deep"}},
    ], "python": "Python is a programming language with batteries included.", "version": "1.0"}
    assert list(json_texts(value)) == ["q1\n\na1", "hi\n\nhello", "sup", "plain string", "deep",
                                       "Python is a programming language with batteries included."]


def test_bad_json_names_the_file_and_line(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValidationError, match=r"data.jsonl line 2 is not valid JSON"):
        read_source(str(tmp_path), 10**6)


def test_builtin_quran_is_114_arabic_surahs():
    docs, report = read_source("builtin:quran", 10**9)
    assert len(docs) == 114 and {d.domain for d in docs} == {"arabic"}
    assert docs[0].text.startswith("بِسۡمِ") and not report.truncated
    imlai, _ = read_source("builtin:quran-imlai", 10**9)
    assert imlai[0].text.startswith("بسم الله الرحمن الرحيم")


def test_builtin_stdlib_skips_tests_and_respects_the_cap():
    docs, report = read_source("builtin:stdlib", 300_000)
    assert docs and {d.domain for d in docs} == {"code"} and report.truncated
    assert report.bytes <= 300_000
    assert not any(part in ("test", "tests", "idle_test", "site-packages") for d in docs for part in d.name.split("/"))
    assert all(d.name.endswith(".py") for d in docs)


# -- preparing ---------------------------------------------------------------------------------
def test_duplicates_removed_after_normalisation(prepared):
    assert prepared["totals"]["duplicates_removed"] == 2  # copy_of_0.txt, and tatweel_0.txt once normalised
    assert prepared["totals"]["documents"] == 16


def test_manifest_sha256_and_shards(prepared):
    folder = corpus_mod.load_manifest(prepared["path"])[1]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] <= 512
    assert manifest["tokenizer_sha256"] == file_sha256(folder / "tokenizer.json")
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        assert file_sha256(path) == shard["sha256"]
        assert path.stat().st_size == 2 * shard["tokens"]
        tokens = np.fromfile(path, dtype=np.uint16)
        # one <|endoftext|> per document, and the text never spells one
        assert int((tokens == manifest["eot_id"]).sum()) == shard["documents"]
    files = {s["file"] for s in manifest["shards"]}
    assert {"train_000.bin", "val_arabic_000.bin", "val_code_000.bin", "val_text_000.bin"} <= files
    assert sorted(p.name for p in folder.iterdir()) == sorted(files | {"manifest.json", "tokenizer.json",
                                                                       "tokenizer_config.json"})
    assert manifest["totals"]["tokens"] == manifest["splits"]["train"]["tokens"] + manifest["splits"]["val"]["tokens"]


def test_val_shards_decode_to_normalised_documents_of_their_domain(prepared):
    tok = BPETokenizer.load(prepared["path"])
    arabic = TokenShards(prepared["path"], "val", domain="arabic", verify=True)
    docs = tok.decode(arabic.data).split("<|endoftext|>")[:-1]
    assert docs and all(tok.normalize(d, "arabic") == d for d in docs)
    assert arabic.bytes == sum(len(d.encode()) for d in docs)
    code = TokenShards(prepared["path"], "val", domain="code")
    code_docs = tok.decode(code.data).split("<|endoftext|>")[:-1]
    assert code_docs and set(code_docs) <= {c * 10 for c in CODE.values()}  # byte for byte, Arabic string kept


def test_fertility_and_domain_bytes_recorded(prepared):
    val = prepared["splits"]["val"]["domains"]
    assert val["arabic"]["documents"] >= 1 and val["code"]["documents"] >= 1 and val["text"]["documents"] >= 1
    fert = prepared["fertility"]["train"]
    assert fert["tokens_per_arabic_word"] > 0 and 0 < fert["tokens_per_code_byte"] < 1


def test_split_is_deterministic_and_seeded(tiny_corpus, tmp_path):
    a = prepare(tiny_corpus, tmp_path / "a", seed=3)
    b = prepare(tiny_corpus, tmp_path / "b", seed=3)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    c = prepare(tiny_corpus, tmp_path / "c", seed=4)
    assert [s["sha256"] for s in a["shards"]] != [s["sha256"] for s in c["shards"]]


def test_split_depends_on_documents_not_their_order():
    docs, _ = read_source("builtin:quran", 10**9)
    keyed = [(str(i), d) for i, d in enumerate(docs)]
    _, val = split_documents(keyed, 0.1, seed=1)
    shuffled = keyed[:]
    random.Random(0).shuffle(shuffled)
    _, val2 = split_documents(shuffled, 0.1, seed=1)
    assert {d.name for d in val} == {d.name for d in val2} and len(val) == 11


def test_small_shards_read_as_one_stream(tiny_corpus, tmp_path):
    m = prepare(tiny_corpus, tmp_path / "c", shard_tokens=1024)
    train_files = [s for s in m["shards"] if s["split"] == "train"]
    assert len(train_files) > 2
    shards = TokenShards(m["path"], "train", verify=True)
    whole = np.concatenate([np.fromfile(tmp_path / "c" / s["file"], dtype=np.uint16) for s in train_files])
    assert len(shards) == len(whole) == m["splits"]["train"]["tokens"]
    assert np.array_equal(shards.data, whole)
    assert np.array_equal(shards.tokens(1000, 2100), whole[1000:2100])  # crosses a shard boundary
    assert shards.documents == m["splits"]["train"]["documents"]


def test_batches_resume_exactly_and_wrap(prepared):
    shards = TokenShards(prepared["path"], "train")
    whole = shards.data.astype(np.int64)
    b1 = shards.batch(5, batch_size=2, seq_len=16)
    assert b1.inputs.shape == b1.targets.shape == (2, 16) and b1.inputs.dtype == np.int64
    assert np.array_equal(b1.inputs[0], whole[5:21]) and np.array_equal(b1.targets[0], whole[6:22])
    assert b1.next_position == 37
    b2 = shards.batch(b1.next_position, 2, 16)
    both = shards.batch(5, 4, 16)
    assert np.array_equal(np.concatenate([b1.inputs, b2.inputs]), both.inputs)
    last = shards.batch(len(shards) - 10, 1, 16)  # does not fit: starts over at 0
    assert last.position == 0 and np.array_equal(last.inputs[0], whole[:16])
    with pytest.raises(ValidationError, match="seq_len"):
        shards.batch(0, 1, len(shards))
    with pytest.raises(ValidationError, match="position"):
        shards.batch(len(shards), 1, 4)


def test_bits_per_byte(prepared):
    val = TokenShards(prepared["path"], "val", domain="code")
    assert val.bits_per_byte(2.0) == pytest.approx(2.0 * len(val) / (math.log(2) * val.bytes))
    assert len(TokenShards(prepared["path"], "val")) == prepared["splits"]["val"]["tokens"]
    with pytest.raises(ConfigError, match="mixes the domains"):
        TokenShards(prepared["path"], "train", domain="code")


def test_corpus_recorded_in_store(prepared, store):
    df = list_corpora(store)
    assert df["id"].to_list() == [prepared["id"]]
    row = df.row(0, named=True)
    assert row["documents"] == 16 and row["duplicates_removed"] == 2
    assert row["train_tokens"] == prepared["splits"]["train"]["tokens"]
    assert row["val_tokens_per_code_byte"] == pytest.approx(prepared["fertility"]["val"]["tokens_per_code_byte"])
    sources = corpus_sources(store, prepared["id"])
    assert sources["documents"].to_list() == [18] and sources["skipped_files"].to_list() == [1]


# -- bad input leaves nothing behind ----------------------------------------------------------
def assert_nothing_written(parent, out):
    assert not out.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"vocab_size": 100}, ConfigError, "vocab_size must be an integer from 260"),
    ({"vocab_size": 10**7}, ConfigError, "vocab_size must be"),
    ({"val_fraction": 0}, ConfigError, "val_fraction must be between 0 and 1"),
    ({"val_fraction": 1.0}, ConfigError, "val_fraction"),
    ({"val_fraction": -0.1}, ConfigError, "val_fraction"),
    ({"max_bytes_per_source": 0}, ConfigError, "max_bytes_per_source"),
    ({"name": "no spaces please"}, ConfigError, "corpus name"),
])
def test_bad_settings(tiny_corpus, tmp_path, kwargs, error, match):
    out = tmp_path / "out" / "c"
    with pytest.raises(error, match=match):
        prepare(tiny_corpus, out, **kwargs)
    assert not (tmp_path / "out").exists()


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        prepare(tmp_path / "nope", tmp_path / "c")
    with pytest.raises(ConfigError, match="builtin:stdlib"):
        prepare_corpus(["builtin:wikipedia"], tmp_path / "c")
    assert_nothing_written(tmp_path, tmp_path / "c")


def test_empty_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "only.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValidationError, match="0 distinct non-empty document"):
        prepare(tmp_path / "empty", tmp_path / "c")
    assert_nothing_written(tmp_path, tmp_path / "c")


def test_failure_midway_removes_the_half_built_folder(tiny_corpus, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(corpus_mod, "_write_shards", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(tiny_corpus, tmp_path / "c")
    assert_nothing_written(tmp_path, tmp_path / "c")


def test_existing_folder_needs_overwrite(tiny_corpus, tmp_path):
    first = prepare(tiny_corpus, tmp_path / "c", seed=1)
    with pytest.raises(ConflictError, match="already exists"):
        prepare(tiny_corpus, tmp_path / "c")
    second = prepare(tiny_corpus, tmp_path / "c", seed=2, overwrite=True)
    assert second["seed"] == 2 and first["path"] == second["path"]
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "src"]


# -- the CLI ----------------------------------------------------------------------------------
def test_cli_prepare_and_list(tiny_corpus, tmp_path):
    db = tmp_path / "cli.duckdb"
    runner = CliRunner()
    out = tmp_path / "corpora" / "tiny"
    result = runner.invoke(data, ["prepare", "--source", str(tiny_corpus), "--out", str(out), "--vocab-size", "512",
                                  "--val-fraction", "0.2", "--seed", "1", "--max-mb-per-source", "1", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "tokens per Arabic word" in result.output and "2 duplicates removed" in result.output
    assert (out / "manifest.json").is_file()
    listed = runner.invoke(data, ["list", "--db", str(db), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["name"] for r in rows] == ["tiny"] and rows[0]["documents"] == 16
    table = runner.invoke(data, ["list", "--db", str(db)])
    assert table.exit_code == 0 and "tiny" in table.output and "tok/code byte" in table.output


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(data, ["prepare", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "c"),
                                  "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: source") and len(result.output.strip().splitlines()) == 1
    bounded = runner.invoke(data, ["prepare", "--vocab-size", "10", "--db", str(tmp_path / "x.duckdb")])
    assert bounded.exit_code == 2 and "--vocab-size" in bounded.output
    assert not (tmp_path / "c").exists()


def test_cli_help_ends_with_an_example():
    for args in (["--help"], ["prepare", "--help"], ["list", "--help"]):
        result = CliRunner().invoke(data, args)
        assert result.exit_code == 0
        assert "Example:" in result.output
    assert "bi-ide data prepare" in CliRunner().invoke(data, ["prepare", "--help"]).output


@pytest.mark.slow
def test_prepare_real_builtins(tmp_path, store):
    m = prepare_corpus(["builtin:quran", "builtin:stdlib"], tmp_path / "real", vocab_size=2048,
                       max_bytes_per_source=2 * 1024 * 1024, store=store)
    fert = m["fertility"]["val"]
    assert 1.0 < fert["tokens_per_arabic_word"] < 5.0
    assert 0.1 < fert["tokens_per_code_byte"] < 0.5
    assert len(TokenShards(m["path"], "val", domain="arabic", verify=True)) > 0
