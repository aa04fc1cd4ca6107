"""Training corpora: read sources, remove duplicates, split, train the tokenizer, write token shards.

A corpus is a folder::

    manifest.json            what is here: tokenizer, dtype, shards with sha256, totals, sources
    tokenizer.json           the byte-level BPE (see bi_ide.training.tokenizer), trained here or a
    tokenizer_config.json    pretrained model's own (``tokenizer=``: fine-tuning needs its ids)
    train_000.bin ...        the training split, documents in a seeded shuffled order
    val_arabic_000.bin ...   the validation split, one shard series per domain (arabic, code, text)

Shards are flat arrays of token ids (uint16 when the vocabulary fits, else uint32), each document
followed by ``<|endoftext|>`` (a model's tokenizer: its eos token); ``np.memmap`` reads them (nanoGPT's ``.bin`` layout). Validation is
kept per domain so Arabic and code bits-per-byte are separate numbers: every shard records the
UTF-8 bytes of the (normalised) text it holds, and bpb = loss_nats * tokens / (ln 2 * bytes).

Sources are folders or files (text, markdown, code, JSON, JSONL) and two built-in real corpora:
``builtin:quran`` (the Ḥafṣ muṣḥaf from the ``quran-text`` package, one document per sūrah) and
``builtin:stdlib`` (this interpreter's Python standard library, tests left out).
``builtin:quran-imlai`` is the same Quran in plain modern (imlāʾī) spelling.

The folder appears whole or not at all: it is built beside the target and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bi_ide.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from bi_ide.training.arabic import DOMAINS, is_arabic, normalize_document
from bi_ide.training.files import file_sha256
from bi_ide.training.tokenizer import (
    BPETokenizer,
    check_model_tokenizer,
    check_vocab_size,
    load_model_tokenizer,
    save_model_tokenizer,
    train_tokenizer,
)

if TYPE_CHECKING:  # only for annotations: reading shards must not need polars (a bare GPU box lacks it)
    import polars as pl

BUILTIN_SOURCES = ("builtin:quran", "builtin:quran-imlai", "builtin:stdlib")
DEFAULT_SOURCES = ("builtin:quran", "builtin:stdlib")
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".rst"})
CODE_EXTENSIONS = frozenset({
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp",
    ".hh", ".rs", ".go", ".java", ".kt", ".kts", ".scala", ".cs", ".swift", ".rb", ".php", ".lua", ".sh",
    ".bash", ".ps1", ".sql", ".r", ".jl", ".dart", ".hs", ".ml", ".ex", ".exs", ".erl", ".clj", ".pl",
    ".vue", ".svelte", ".html", ".css", ".scss", ".toml", ".yaml", ".yml", ".ipynb",
})
JSON_EXTENSIONS = frozenset({".json"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", "dist-packages"})
STDLIB_SKIP_DIRS = SKIP_DIRS | {"test", "tests", "idle_test"}
# Keys of a JSON record whose string values form its document, in reading order. The seed's legacy
# learning files (super-intelligent-learning.json, auto-learning.json, ... §1.3) are lists or
# mappings of such records; anything else is searched recursively.
RECORD_FIELDS = ("title", "system", "instruction", "prompt", "question", "input", "query", "pattern", "context",
                 "text", "content", "body", "code", "answer", "response", "output", "completion", "reply",
                 "solution", "explanation")
DIALOGUE_FIELDS = ("messages", "conversations", "conversation", "turns", "dialogue")
MAX_SHARD_TOKENS = 2**31 - 1
MIB = 1024 * 1024

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Document:
    text: str
    domain: str  # "arabic", "code" or "text"
    source: str
    name: str


@dataclass
class SourceReport:
    """What one source gave: documents, raw bytes, per-domain bytes, skipped files, whether capped."""

    source: str
    documents: int = 0
    bytes: int = 0
    domains: dict = field(default_factory=lambda: dict.fromkeys(DOMAINS, 0))
    skipped_files: int = 0
    truncated: bool = False


# -- reading sources ---------------------------------------------------------------------------
def check_source(spec: str) -> str:
    """``spec`` if it names a readable source, else ConfigError saying what is allowed."""
    if spec.startswith("builtin:"):
        if spec not in BUILTIN_SOURCES:
            raise ConfigError(f"unknown built-in source {spec!r}; choose one of {list(BUILTIN_SOURCES)}")
        if spec.startswith("builtin:quran"):
            try:
                import quran_text  # noqa: F401
            except ImportError as e:
                raise ConfigError(f"{spec} needs the quran-text package: pip install 'quran-text>=0.1'") from e
        return spec
    if not Path(spec).expanduser().exists():
        raise ConfigError(f"source {spec!r} does not exist; give a folder, a file or one of {list(BUILTIN_SOURCES)}")
    return spec


def read_source(spec: str, max_bytes: int) -> tuple[list[Document], SourceReport]:
    """The documents of one source, in a fixed order, stopping before ``max_bytes`` (UTF-8) is passed."""
    check_source(spec)
    report = SourceReport(spec)
    docs = []
    for doc in _documents(spec, report):
        size = len(doc.text.encode("utf-8"))
        if report.bytes + size > max_bytes:
            report.truncated = True
            break
        docs.append(doc)
        report.documents += 1
        report.bytes += size
        report.domains[doc.domain] += size
    return docs, report


def _documents(spec: str, report: SourceReport) -> Iterator[Document]:
    if spec == "builtin:quran":
        yield from quran_documents(imlai=False)
    elif spec == "builtin:quran-imlai":
        yield from quran_documents(imlai=True)
    elif spec == "builtin:stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        for path in _walk(root, STDLIB_SKIP_DIRS):
            if path.suffix == ".py" and not path.name.startswith("test_"):
                yield from _file_documents(path, root, spec, report)
    else:
        root = Path(spec).expanduser()
        if root.is_file():
            yield from _file_documents(root, root.parent, spec, report)
        else:
            for path in _walk(root, SKIP_DIRS):
                yield from _file_documents(path, root, spec, report)


def quran_documents(imlai: bool = False) -> Iterator[Document]:
    """The Quran (Ḥafṣ, from quran-text), one document per sūrah, one āyah per line.

    ``imlai=False`` gives the ʿUthmānī text with all its marks; ``imlai=True`` the plain modern
    spelling the package carries word by word.
    """
    from quran_text import Mushaf

    mushaf = Mushaf.hafs()
    source = "builtin:quran-imlai" if imlai else "builtin:quran"
    for number in range(1, 115):
        ayahs = mushaf.surah(number).ayahs
        if imlai:
            lines = [" ".join(w for w in (a.rasm_imlai or []) if w) for a in ayahs]
        else:
            lines = [a.text.strip() for a in ayahs]
        yield Document("\n".join(lines) + "\n", "arabic", source, f"surah {number:03d}")


def _walk(root: Path, skip_dirs: frozenset) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.startswith("."))
        for name in sorted(files):
            yield Path(folder) / name


def _file_documents(path: Path, root: Path, source: str, report: SourceReport) -> Iterator[Document]:
    suffix = path.suffix.lower()
    known = TEXT_EXTENSIONS | CODE_EXTENSIONS | JSON_EXTENSIONS | JSONL_EXTENSIONS
    if suffix not in known:
        return
    name = path.relative_to(root).as_posix() if path != root else path.name
    try:
        # newline="" keeps \r\n as written: code must round-trip byte for byte.
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (UnicodeDecodeError, OSError):
        report.skipped_files += 1
        return
    if suffix in CODE_EXTENSIONS:
        yield Document(text, "code", source, name)
    elif suffix in TEXT_EXTENSIONS:
        yield Document(text, "arabic" if is_arabic(text) else "text", source, name)
    else:
        values = _json_lines(text, path) if suffix in JSONL_EXTENSIONS else [_json_value(text, path)]
        for i, doc in enumerate(t for v in values for t in json_texts(v)):
            yield Document(doc, "arabic" if is_arabic(doc) else "text", source, f"{name}#{i}")


def _json_value(text: str, path: Path, line: int | None = None):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{path} line {line}" if line else str(path)
        raise ValidationError(f"{where} is not valid JSON ({e.msg} at column {e.colno}); fix it or move it "
                              "out of the source folder") from e


def _json_lines(text: str, path: Path) -> list:
    return [_json_value(line, path, i) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def json_texts(value) -> Iterator[str]:
    """The documents in a parsed JSON value: one per record, found at any depth.

    A record is an object with any of RECORD_FIELDS (its string values joined, in that order) or a
    dialogue (``messages``/``conversations`` of such records, joined into one document). A list of
    strings gives one document per string. An object without record fields is searched value by
    value; its own string values count only when they read like prose (a knowledge base of
    ``{"topic": "explanation ..."}``), so ``{"version": "1.0"}`` gives nothing.
    """
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from json_texts(item)
    elif isinstance(value, dict):
        text = _record_text(value)
        if text:
            yield text
            return
        for item in value.values():
            if not isinstance(item, str) or _is_prose(item):
                yield from json_texts(item)


def _is_prose(text: str) -> bool:
    return len(text) >= 32 and len(text.split()) >= 4


def _record_text(record: dict) -> str | None:
    lowered = {str(k).lower(): v for k, v in record.items()}
    parts = [lowered[k].strip() for k in RECORD_FIELDS if isinstance(lowered.get(k), str) and lowered[k].strip()]
    for key in DIALOGUE_FIELDS:
        turns = lowered.get(key)
        if isinstance(turns, list):
            parts += [t for turn in turns if isinstance(turn, dict) for t in [_turn_text(turn)] if t]
    return "\n\n".join(parts) or None


def _turn_text(turn: dict) -> str | None:
    text = _record_text(turn) or (turn.get("value") if isinstance(turn.get("value"), str) else None)
    return text.strip() if text and text.strip() else None


# -- preparing a corpus -------------------------------------------------------------------------
def prepare_corpus(sources: Sequence[str] = DEFAULT_SOURCES, out_dir: str | os.PathLike = "data/corpora/corpus",
                   vocab_size: int = 8192, val_fraction: float = 0.05, seed: int = 0,
                   max_bytes_per_source: int = 8 * MIB, store=None, progress: Progress | None = None, *,
                   name: str | None = None, strip_diacritics: bool = False, shard_tokens: int = 100_000_000,
                   min_frequency: int = 2, overwrite: bool = False,
                   tokenizer: str | os.PathLike | None = None) -> dict:
    """Build a corpus folder from ``sources`` and return its manifest (with ``path`` added).

    Steps: 1. check every argument and source (and load ``tokenizer``); 2. read each source up to
    ``max_bytes_per_source``; 3. normalise Arabic documents and drop exact duplicates (sha256 of
    the normalised text); 4. split by document, per domain, seeded; 5. train the tokenizer on the
    train split, or save the given one; 6. encode and write shards; 7. write the manifest and rename
    the folder into place; 8. record the corpus in ``store`` when one is given.
    ``progress(stage, done, total)`` is called as work advances.

    ``tokenizer`` is a pretrained model's tokenizer to use instead of training one (a local model
    folder, a ``tokenizer.json`` or a ``.gguf`` file, see ``load_model_tokenizer``): a model can be
    fine-tuned only on its own token ids. ``vocab_size`` and ``min_frequency`` are then ignored; the
    manifest's ``vocab_size`` is the tokenizer's full size and ``tokenizer_source`` its path.
    """
    # 1. Arguments first: a bad value must not leave anything behind.
    sources = list(sources)
    if not sources:
        raise ConfigError(f"no sources given; pass folders, files or {list(BUILTIN_SOURCES)}")
    for spec in sources:
        check_source(spec)
    if tokenizer is None:
        check_vocab_size(vocab_size)
    else:
        tokenizer = check_model_tokenizer(tokenizer).resolve()
    if not isinstance(val_fraction, int | float) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}; 0.05 is usual")
    if not isinstance(max_bytes_per_source, int) or max_bytes_per_source < 1:
        raise ConfigError(f"max_bytes_per_source must be a positive number of bytes, got {max_bytes_per_source!r}")
    if not 1024 <= shard_tokens <= MAX_SHARD_TOKENS:
        raise ConfigError(f"shard_tokens must be 1024..{MAX_SHARD_TOKENS}, got {shard_tokens!r}")
    out = Path(out_dir).expanduser().resolve()
    name = check_name(name or out.name)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConflictError(f"{out} already exists; choose another output folder or overwrite it (--force)")
    report = progress or (lambda stage, done, total: None)
    started = time.monotonic()
    model_tokenizer = source = None
    if tokenizer is not None:
        source = str(tokenizer)
        report("load-tokenizer", 0, 1)
        model_tokenizer = load_model_tokenizer(source)
        report("load-tokenizer", 1, 1)

    # 2. Read.
    docs, reports = [], []
    for i, spec in enumerate(sources):
        report("read", i, len(sources))
        found, source_report = read_source(spec, max_bytes_per_source)
        docs += found
        reports.append(source_report)
    report("read", len(sources), len(sources))

    # 3. Normalise and de-duplicate.
    unique, seen, duplicates = [], set(), 0
    for doc in docs:
        text = normalize_document(doc.text, doc.domain, strip_diacritics=strip_diacritics)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen:
            duplicates += 1
        elif text.strip():
            seen.add(digest)
            unique.append((digest, Document(text, doc.domain, doc.source, doc.name)))
    if len(unique) < 2:
        found = ", ".join(f"{r.source}: {r.documents}" for r in reports)
        raise ValidationError(
            f"the sources hold {len(unique)} distinct non-empty document(s) ({found}); a corpus needs at least 2 "
            f"(read: {', '.join(sorted(TEXT_EXTENSIONS | JSON_EXTENSIONS | JSONL_EXTENSIONS))} and code files)"
        )

    # 4. Split.
    train, val = split_documents(unique, val_fraction, seed)

    # 5.-7. Build the folder beside its target, then rename it into place.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        if model_tokenizer is None:
            report("tokenizer", 0, 1)
            tokenizer = train_tokenizer((d.text for d in train), vocab_size, min_frequency=min_frequency,
                                        strip_diacritics=strip_diacritics, length=len(train))
            tokenizer.save(tmp / "tokenizer.json")
            report("tokenizer", 1, 1)
            full_vocab = tokenizer.vocab_size
        else:
            tokenizer = save_model_tokenizer(model_tokenizer, tmp, strip_diacritics=strip_diacritics, source=source)
            # len() counts added tokens that may lie past the backend's count; every id must fit.
            full_vocab = max(len(model_tokenizer), tokenizer.vocab_size)
        dtype = "uint16" if full_vocab <= 65535 else "uint32"
        shards, stats = _write_shards(tmp, tokenizer, train, val, dtype, shard_tokens, report)
        manifest = {
            "format": "bi-ide-corpus",
            "version": 1,
            "name": name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tokenizer": "tokenizer.json",
            "tokenizer_sha256": file_sha256(tmp / "tokenizer.json"),
            "tokenizer_source": source,
            "dtype": dtype,
            "vocab_size": full_vocab,
            "vocab_size_requested": vocab_size if model_tokenizer is None else None,
            "eot_id": tokenizer.eot_id,
            "pad_id": tokenizer.pad_id,
            "normalization": {"arabic": {"strip_diacritics": strip_diacritics}, "code": None, "text": None},
            "seed": seed,
            "val_fraction": val_fraction,
            "max_bytes_per_source": max_bytes_per_source,
            "shard_tokens": shard_tokens,
            "shards": shards,
            "splits": stats,
            "totals": {
                "documents": len(unique),
                "duplicates_removed": duplicates,
                "tokens": sum(s["tokens"] for s in shards),
                "bytes": sum(s["bytes"] for s in stats.values()),
            },
            "fertility": {split: _fertility(s) for split, s in stats.items()},
            "sources": [asdict(r) for r in reports],
            "seconds": round(time.monotonic() - started, 2),
        }
        _write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    # 8. Record.
    manifest["path"] = str(out)
    if store is not None:
        manifest["id"] = record_corpus(store, manifest, out)
    return manifest


def check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", name):
        raise ConfigError(f"corpus name {name!r} must be 1-80 letters, digits, '.', '_' or '-' (e.g. quran-stdlib)")
    return name


def split_documents(docs: list[tuple[str, Document]], val_fraction: float, seed: int
                    ) -> tuple[list[Document], list[Document]]:
    """Train and validation documents, split per domain, the same for the same documents and seed.

    A document's place depends only on its content hash and the seed, not on reading order. Each
    domain with at least 2 documents gives round(val_fraction * n) of them (at least 1) to validation;
    the train split is shuffled with the seed so batches mix the domains.
    """
    train, val = [], []
    for domain in DOMAINS:
        mine = [(digest, d) for digest, d in docs if d.domain == domain]
        if not mine:
            continue
        mine.sort(key=lambda item: hashlib.sha256(f"{seed}:{item[0]}".encode()).digest())
        n_val = 0 if len(mine) < 2 else min(len(mine) - 1, max(1, round(val_fraction * len(mine))))
        val += [d for _, d in mine[:n_val]]
        train += [d for _, d in mine[n_val:]]
    random.Random(seed).shuffle(train)
    return train, val


class _ShardWriter:
    """Writes one series of shards (``train_000.bin`` ...), closing a shard at a document boundary."""

    def __init__(self, folder: Path, prefix: str, split: str, domain: str | None, dtype: str, cap: int):
        self.folder, self.prefix, self.split, self.domain = folder, prefix, split, domain
        self.dtype, self.cap = np.dtype(dtype), cap
        self.done: list[dict] = []
        self._file = None

    def add(self, ids: list[int], domain: str, size: int) -> None:
        if self._file is not None and self._entry["tokens"] + len(ids) > self.cap:
            self._close()
        if self._file is None:
            self._open()
        data = np.asarray(ids, dtype=self.dtype).tobytes()
        self._file.write(data)
        self._hash.update(data)
        self._entry["tokens"] += len(ids)
        self._entry["documents"] += 1
        self._entry["bytes"][domain] += size

    def _open(self) -> None:
        file = f"{self.prefix}_{len(self.done):03d}.bin"
        self._entry = {"file": file, "split": self.split, "domain": self.domain, "tokens": 0, "documents": 0,
                       "bytes": dict.fromkeys(DOMAINS, 0)}
        self._tmp = self.folder / f".{file}.tmp"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close
        self._hash = hashlib.sha256()

    def _close(self) -> None:
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.folder / self._entry["file"])
        self._entry["sha256"] = self._hash.hexdigest()
        self.done.append(self._entry)

    def finish(self) -> list[dict]:
        if self._file is not None:
            self._close()
        return self.done


def _write_shards(folder: Path, tokenizer: BPETokenizer, train: list[Document], val: list[Document], dtype: str,
                  cap: int, report: Progress) -> tuple[list[dict], dict]:
    # One mixed series for training; one series per domain for validation.
    train_writer = _ShardWriter(folder, "train", "train", None, dtype, cap)
    val_writers = {d: _ShardWriter(folder, f"val_{d}", "val", d, dtype, cap) for d in DOMAINS}
    stats = {s: {d: {"documents": 0, "bytes": 0, "tokens": 0, "words": 0} for d in DOMAINS} for s in ("train", "val")}
    jobs = [("train", d) for d in train] + [("val", d) for d in val]
    chunk = 256
    for start in range(0, len(jobs), chunk):
        part = jobs[start:start + chunk]
        # Documents are normalised already; encode them as they are.
        ids = tokenizer.encode_batch([d.text for _, d in part], ["text"] * len(part))
        for (split, doc), tokens in zip(part, ids, strict=True):
            size = len(doc.text.encode("utf-8"))
            writer = train_writer if split == "train" else val_writers[doc.domain]
            writer.add(tokens + [tokenizer.eot_id], doc.domain, size)
            s = stats[split][doc.domain]
            s["documents"] += 1
            s["bytes"] += size
            s["tokens"] += len(tokens)
            if doc.domain == "arabic":
                s["words"] += len(doc.text.split())
        report("encode", min(start + chunk, len(jobs)), len(jobs))
    shards = train_writer.finish() + [s for d in DOMAINS for s in val_writers[d].finish()]
    splits = {}
    for split in ("train", "val"):
        mine = [s for s in shards if s["split"] == split]
        splits[split] = {
            "tokens": sum(s["tokens"] for s in mine),
            "documents": sum(s["documents"] for s in mine),
            "bytes": sum(stats[split][d]["bytes"] for d in DOMAINS),
            "domains": stats[split],
        }
    return shards, splits


def _fertility(split: dict) -> dict:
    ar, code = split["domains"]["arabic"], split["domains"]["code"]
    return {
        "tokens_per_arabic_word": round(ar["tokens"] / ar["words"], 4) if ar["words"] else None,
        "tokens_per_code_byte": round(code["tokens"] / code["bytes"], 4) if code["bytes"] else None,
    }


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- reading shards -----------------------------------------------------------------------------
def load_manifest(path: str | os.PathLike) -> tuple[dict, Path]:
    """The manifest of a corpus (its folder or its manifest.json) and the corpus folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise NotFoundError(f"no corpus manifest at {path}; build one with `bi-ide data prepare`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValidationError(f"{path} is not valid JSON: {e}") from e
    if manifest.get("format") != "bi-ide-corpus":
        raise ValidationError(f"{path} is not a bi-ide corpus manifest (format {manifest.get('format')!r})")
    return manifest, path.parent


class Batch(NamedTuple):
    inputs: np.ndarray   # (B, T) int64
    targets: np.ndarray  # (B, T) int64, inputs shifted by one token
    position: int        # where this batch started (after a wrap: 0)
    next_position: int   # pass this to the next call; save it with a checkpoint for exact resume


class TokenShards:
    """One split of a corpus (optionally one domain of it) as a single stream of token ids.

    >>> val_code = TokenShards("data/corpora/demo", "val", domain="code")  # doctest: +SKIP
    >>> b = val_code.batch(0, batch_size=8, seq_len=256)                    # doctest: +SKIP
    """

    def __init__(self, corpus: str | os.PathLike, split: str = "train", domain: str | None = None, *,
                 verify: bool = False):
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        if domain is not None and domain not in DOMAINS:
            raise ConfigError(f"domain must be one of {list(DOMAINS)} or None, got {domain!r}")
        if split == "train" and domain is not None:
            raise ConfigError("the train split mixes the domains in one stream; pick a domain only with split='val'")
        self.manifest, self.folder = load_manifest(corpus)
        self.split, self.domain = split, domain
        self.dtype = np.dtype(self.manifest["dtype"])
        self.entries = [s for s in self.manifest["shards"]
                        if s["split"] == split and (domain is None or s["domain"] == domain)]
        self.arrays: list[np.memmap] = []
        for entry in self.entries:
            path = self.folder / entry["file"]
            if not path.is_file():
                raise NotFoundError(f"shard {path} listed in the manifest is missing; prepare the corpus again")
            if verify and file_sha256(path) != entry["sha256"]:
                raise ValidationError(f"shard {path} does not match its sha256 in the manifest; it is corrupt")
            if path.stat().st_size != entry["tokens"] * self.dtype.itemsize:
                raise ValidationError(f"shard {path} has {path.stat().st_size} bytes, expected "
                                      f"{entry['tokens']} {self.dtype} tokens; prepare the corpus again")
            if entry["tokens"]:
                self.arrays.append(np.memmap(path, dtype=self.dtype, mode="r"))
        self._starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def documents(self) -> int:
        return sum(e["documents"] for e in self.entries)

    @property
    def bytes(self) -> int:
        """UTF-8 bytes of the text behind these tokens (for bits per byte)."""
        return sum(sum(e["bytes"].values()) for e in self.entries)

    @property
    def data(self) -> np.ndarray:
        """The whole stream: the memmap itself for one shard, else a concatenated copy."""
        if len(self.arrays) == 1:
            return self.arrays[0]
        return np.concatenate(self.arrays) if self.arrays else np.empty(0, self.dtype)

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream; a memmap view when they lie in one shard."""
        if not 0 <= start <= stop <= len(self):
            raise ValidationError(f"token range [{start}, {stop}) is outside 0..{len(self)}")
        i = int(np.searchsorted(self._starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            lo = start - int(self._starts[i])
            take = min(stop - start, len(self.arrays[i]) - lo)
            pieces.append(self.arrays[i][lo:lo + take])
            start += take
            i += 1
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.empty(0, self.dtype)

    def batch(self, position: int, batch_size: int, seq_len: int) -> Batch:
        """``batch_size`` consecutive windows of ``seq_len`` tokens starting at token ``position``.

        The stream is read in order, so a run that saves ``next_position`` resumes on exactly the next
        tokens. A window that would run past the end starts over at token 0.
        """
        n = len(self)
        if batch_size < 1 or seq_len < 1:
            raise ValidationError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        if seq_len + 1 > n:
            raise ValidationError(f"the {self.split} split has {n} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                                  "use a shorter seq_len or a bigger corpus")
        if not 0 <= position < n:
            raise ValidationError(f"position must be 0..{n - 1}, got {position}")
        rows, starts, p = [], [], position
        for _ in range(batch_size):
            if p + seq_len + 1 > n:
                p = 0
            starts.append(p)
            rows.append(self.tokens(p, p + seq_len + 1))
            p += seq_len
        block = np.stack(rows).astype(np.int64)
        return Batch(block[:, :-1], block[:, 1:], starts[0], p if p + seq_len + 1 <= n else 0)

    def bits_per_byte(self, mean_loss_nats: float) -> float:
        """Bits per UTF-8 byte for a mean loss (nats per token) measured over this whole stream."""
        return mean_loss_nats * len(self) / (math.log(2) * self.bytes)

    def __repr__(self) -> str:
        what = self.split + (f"/{self.domain}" if self.domain else "")
        return f"TokenShards({self.folder.name} {what}: {len(self)} tokens in {len(self.arrays)} shard(s))"


# -- the store ---------------------------------------------------------------------------------
def record_corpus(store, manifest: dict, path: str | os.PathLike) -> str:
    """Insert a prepared corpus and its sources into the store; return the corpus id."""
    corpus_id = uuid.uuid4().hex[:12]
    path = Path(path)
    splits = manifest["splits"]
    stats = {k: manifest[k] for k in ("totals", "splits", "fertility", "normalization", "shards", "seconds")}
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO corpora (id, name, path, manifest_sha256, vocab_size, dtype, seed, val_fraction, documents, "
            "duplicates_removed, bytes, train_tokens, val_tokens, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [corpus_id, manifest["name"], str(path), file_sha256(path / "manifest.json"), manifest["vocab_size"],
             manifest["dtype"], manifest["seed"], manifest["val_fraction"], manifest["totals"]["documents"],
             manifest["totals"]["duplicates_removed"], manifest["totals"]["bytes"], splits["train"]["tokens"],
             splits["val"]["tokens"], json.dumps(stats)],
        )
        for src in manifest["sources"]:
            cur.execute(
                "INSERT INTO corpus_sources (corpus_id, source, documents, bytes, arabic_bytes, code_bytes, text_bytes, "
                "skipped_files, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [corpus_id, src["source"], src["documents"], src["bytes"], src["domains"]["arabic"],
                 src["domains"]["code"], src["domains"]["text"], src["skipped_files"], src["truncated"]],
            )
    return corpus_id


def list_corpora(store, limit: int = 100) -> pl.DataFrame:
    """Prepared corpora, newest first, with their fertility numbers."""
    if not 1 <= limit <= 10_000:
        raise ValidationError(f"limit must be 1..10000, got {limit}", field="limit")
    return store.sql(
        "SELECT id, name, vocab_size, documents, duplicates_removed, train_tokens, val_tokens, bytes, "
        "CAST(json_extract(stats, '$.fertility.val.tokens_per_arabic_word') AS DOUBLE) AS val_tokens_per_arabic_word, "
        "CAST(json_extract(stats, '$.fertility.val.tokens_per_code_byte') AS DOUBLE) AS val_tokens_per_code_byte, "
        "path, created_at FROM corpora ORDER BY created_at DESC, id LIMIT ?",
        [limit],
    )


def corpus_sources(store, corpus_id: str) -> pl.DataFrame:
    """The sources of one corpus as recorded by :func:`record_corpus`."""
    return store.sql("SELECT * FROM corpus_sources WHERE corpus_id = ? ORDER BY source", [corpus_id])
