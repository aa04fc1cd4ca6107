"""Byte-level BPE for Arabic text and source code, trained with HuggingFace ``tokenizers``.

References: GPT-2's byte-level BPE (Radford et al., 2019) and the ``tokenizers`` library, whose
``tokenizer.json`` this writes, so ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``
loads it as is.

Two choices matter for the data:

- The pre-tokenizer splits text into words before BPE. GPT-2's pattern treats combining marks
  (tashkeel, Quranic marks) as punctuation, so a vowelled Arabic word falls apart at every mark.
  Ours is GPT-4's pattern with ``\\p{M}`` counted as part of a word. Bytes then map to the
  256-symbol byte alphabet, all of which is always in the vocabulary: any string encodes, and
  ``decode(encode(x)) == x`` for code and text, and for Arabic after normalisation.
- Normalisation is per document: only documents marked ``"arabic"`` are normalised (see
  :mod:`bi_ide.training.arabic`); code and other text go in byte for byte. Special-token strings
  that occur in a document (``<|endoftext|>`` in a source file) are encoded as plain text; only
  :meth:`BPETokenizer.encode_document` adds the real end-of-text token.

A pretrained model brings its own tokenizer (:func:`load_model_tokenizer`: a model folder, a
``tokenizer.json`` or a ``.gguf`` file). :func:`save_model_tokenizer` writes it into a corpus the
same way (``tokenizer.json`` + ``tokenizer_config.json``), and :class:`BPETokenizer` reads it back
with the model's end-of-sequence token in place of ``<|endoftext|>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from bi_ide.errors import ConfigError, NotFoundError, ValidationError
from bi_ide.training.arabic import DOMAINS, normalize_document

EOT = "<|endoftext|>"
PAD = "<|pad|>"
DOMAIN_TAGS = {"arabic": "<|ar|>", "code": "<|code|>"}
SPECIAL_TOKENS = (EOT, PAD, *DOMAIN_TAGS.values())
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # the byte alphabet and the special tokens
MAX_VOCAB_SIZE = 262_144
CONFIG_FILE = "tokenizer_config.json"
MODEL_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")

# GPT-4 (cl100k) pre-tokenizer pattern with combining marks (\p{M}) kept inside words.
SPLIT_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{M}\p{N}]?[\p{L}\p{M}]+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def check_vocab_size(vocab_size: int) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not (
        MIN_VOCAB_SIZE <= vocab_size <= MAX_VOCAB_SIZE
    ):
        raise ConfigError(
            f"vocab_size must be an integer from {MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special "
            f"tokens) to {MAX_VOCAB_SIZE}, got {vocab_size!r}; 8192 to 32768 suits a small model"
        )
    return vocab_size


class BPETokenizer:
    """A byte-level BPE (ours, or a pretrained model's) plus the normalisation setting of its corpus.

    ``eos_token`` ends every document (``eot_id``); ``pad_token`` (``pad_id``) falls back to it. A
    model's tokenizer has no domain tags, so ``domain_tag_id`` gives None there.
    """

    def __init__(self, tokenizer: Tokenizer, *, strip_diacritics: bool = False, eos_token: str = EOT,
                 pad_token: str | None = PAD):
        self.hf = tokenizer
        # Text that spells a special token is data, not a control token.
        self.hf.encode_special_tokens = True
        self.strip_diacritics = strip_diacritics
        self.eos_token, self.pad_token = eos_token, pad_token or eos_token
        missing = [t for t in dict.fromkeys((self.eos_token, self.pad_token)) if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValidationError(f"the tokenizer lacks the special tokens {missing}; train it with train_tokenizer() "
                                  "or save a model's tokenizer with save_model_tokenizer()")
        self.eot_id = tokenizer.token_to_id(self.eos_token)
        self.pad_id = tokenizer.token_to_id(self.pad_token)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def domain_tag_id(self, domain: str) -> int | None:
        """The id of the domain tag (``<|ar|>``, ``<|code|>``) for ``domain``; None for plain text."""
        tag = DOMAIN_TAGS.get(domain)
        return None if tag is None else self.hf.token_to_id(tag)

    def normalize(self, text: str, domain: str = "text") -> str:
        return normalize_document(text, domain, strip_diacritics=self.strip_diacritics)

    def encode(self, text: str, domain: str = "text") -> list[int]:
        """Token ids of ``text``; an ``"arabic"`` document is normalised first."""
        return self.hf.encode(self.normalize(text, domain), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], domains: Sequence[str] | None = None) -> list[list[int]]:
        """Token ids of many documents at once (in parallel threads, in the Rust library)."""
        domains = domains or ["text"] * len(texts)
        normalised = [self.normalize(t, d) for t, d in zip(texts, domains, strict=True)]
        return [e.ids for e in self.hf.encode_batch_fast(normalised, add_special_tokens=False)]

    def encode_document(self, text: str, domain: str = "text", *, domain_tag: bool = False) -> list[int]:
        """A document as the model reads it: [domain tag] + tokens + end of text (``eot_id``)."""
        tag = self.domain_tag_id(domain) if domain_tag else None
        return ([tag] if tag is not None else []) + self.encode(text, domain) + [self.eot_id]

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` (at ``path``) and ``tokenizer_config.json`` beside it, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": EOT,
            "pad_token": PAD,
            "additional_special_tokens": list(DOMAIN_TAGS.values()),
            "bi_ide": {"strip_diacritics": self.strip_diacritics, "normalised_domains": ["arabic"]},
        }
        _write_text(path, self.hf.to_str(pretty=False))
        _write_text(path.with_name(CONFIG_FILE), json.dumps(config, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save` (a ``tokenizer.json`` or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise NotFoundError(f"no tokenizer at {path}; `bi-ide data prepare` writes one into the corpus folder")
        try:
            hf = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust library raises plain Exception on a bad file
            raise ValidationError(f"{path} is not a tokenizers JSON file: {e}") from e
        config_file = path.with_name(CONFIG_FILE)
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        # A model's config may name its tokens as AddedToken dicts and leave the pad token out.
        eos = _token_content(config.get("eos_token")) if config else EOT
        pad = _token_content(config.get("pad_token")) if config else PAD
        if eos is None:
            raise ValidationError(f"{config_file} names no eos_token; the corpus needs one to end documents")
        return cls(hf, strip_diacritics=bool(config.get("bi_ide", {}).get("strip_diacritics", False)),
                   eos_token=eos, pad_token=pad)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, strip_diacritics={self.strip_diacritics})"


def _token_content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


# -- a pretrained model's tokenizer --------------------------------------------------------------
def check_model_tokenizer(path: str | os.PathLike) -> Path:
    """``path`` if it can hold a model's tokenizer (a folder with tokenizer files, a .json, a .gguf), else an error."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"tokenizer {str(path)!r} does not exist; pass a local model folder, a tokenizer.json "
                            "or a .gguf file")
    if path.is_dir():
        if not any((path / name).is_file() for name in MODEL_TOKENIZER_FILES):
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f"; to use a GGUF file pass it itself (here: {ggufs})" if ggufs else ""
            raise NotFoundError(f"{str(path)!r} holds no tokenizer files ({', '.join(MODEL_TOKENIZER_FILES)}){hint}")
    elif path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise ConfigError(f"reading the tokenizer of {path.name} needs the gguf package; run: pip install gguf")
    elif path.suffix != ".json":
        raise ConfigError(f"tokenizer {str(path)!r} is neither a folder, a .json nor a .gguf file")
    return path


def load_model_tokenizer(path: str | os.PathLike):
    """A pretrained model's fast tokenizer from local files only.

    ``path`` is a model folder with tokenizer files, a ``tokenizer.json`` (a ``tokenizer_config.json``
    beside it names the special tokens) or a ``.gguf`` file (needs the gguf package). The tokenizer
    must be a fast one (it has a ``tokenizer.json``) and name an eos token.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = check_model_tokenizer(path)
    folder = path if path.is_dir() else path.parent
    try:
        if path.suffix == ".json":
            tok = PreTrainedTokenizerFast(tokenizer_file=str(path), **_special_tokens(folder / CONFIG_FILE))
        else:
            gguf = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **gguf)
    except (OSError, ValueError, KeyError, TypeError) as e:  # transformers' ways of saying "cannot read this"
        raise ConfigError(f"cannot load a tokenizer from {str(path)!r}: {e}") from e
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"the tokenizer at {str(path)!r} is not a fast tokenizer (no tokenizer.json); "
                          "convert it with transformers and save_pretrained() first")
    if tok.eos_token_id is None:
        if tok.backend_tokenizer.token_to_id(EOT) is None:
            raise ConfigError(f"the tokenizer at {str(path)!r} names no eos_token, needed to end each document; "
                              f"add \"eos_token\" to {folder / CONFIG_FILE}")
        tok.eos_token = EOT  # GPT-2-style vocabularies end documents with it
    return tok


def _special_tokens(config_file: Path) -> dict:
    if not config_file.is_file():
        return {}
    config = json.loads(config_file.read_text(encoding="utf-8"))
    keys = ("bos_token", "eos_token", "unk_token", "pad_token")
    return {k: _token_content(config[k]) for k in keys if config.get(k) is not None}


def save_model_tokenizer(tokenizer, folder: str | os.PathLike, *, strip_diacritics: bool = False,
                         source: str | None = None) -> BPETokenizer:
    """Write a model's tokenizer into ``folder`` (``tokenizer.json``, ``tokenizer_config.json``) and read it back.

    The config keeps the model's own fields (AutoTokenizer loads the folder as the model's tokenizer)
    plus our ``bi_ide`` block: the normalisation setting and where the tokenizer came from.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    if not (folder / "tokenizer.json").is_file():
        raise ValidationError(f"saving the tokenizer from {source!r} wrote no tokenizer.json; it needs a fast tokenizer")
    config_file = folder / CONFIG_FILE
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["eos_token"] = tokenizer.eos_token  # set by load_model_tokenizer when the model named none
    config["bi_ide"] = {"strip_diacritics": strip_diacritics, "normalised_domains": ["arabic"], "source": source}
    _write_text(config_file, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return BPETokenizer.load(folder / "tokenizer.json")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def new_bpe() -> Tokenizer:
    """An untrained tokenizer with our pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str | tuple[str, str]], vocab_size: int, *, min_frequency: int = 2,
                    strip_diacritics: bool = False, length: int | None = None,
                    show_progress: bool = False) -> BPETokenizer:
    """Train a byte-level BPE of (at most) ``vocab_size`` tokens on ``texts``.

    Each item is a document: a string, used as given, or a ``(text, domain)`` pair, normalised
    when the domain is ``"arabic"``. A small corpus may give fewer tokens than asked for.
    ``length`` (the number of documents, when known) only feeds the progress display.
    """
    check_vocab_size(vocab_size)

    def documents():
        for item in texts:
            if isinstance(item, str):
                yield item
            else:
                text, domain = item
                if domain not in DOMAINS:
                    raise ValidationError(f"domain {domain!r} is not one of {list(DOMAINS)}", field="domain")
                yield normalize_document(text, domain, strip_diacritics=strip_diacritics)

    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok = new_bpe()
    tok.train_from_iterator(documents(), trainer=trainer, length=length)
    return BPETokenizer(tok, strip_diacritics=strip_diacritics)


def fertility(tokenizer: BPETokenizer, arabic_docs: Iterable[str], code_docs: Iterable[str]) -> dict:
    """Tokens per Arabic word (whitespace-separated, after normalisation) and tokens per code byte.

    Lower is better for both; GPT-2's tokenizer gives roughly 0.25-0.3 tokens per byte on Python.
    A ratio is None when its documents are empty.
    """
    words = ar_tokens = code_bytes = code_tokens = 0
    for doc in arabic_docs:
        words += len(tokenizer.normalize(doc, "arabic").split())
        ar_tokens += len(tokenizer.encode(doc, "arabic"))
    for doc in code_docs:
        code_bytes += len(doc.encode("utf-8"))
        code_tokens += len(tokenizer.encode(doc, "code"))
    return {
        "tokens_per_arabic_word": ar_tokens / words if words else None,
        "tokens_per_code_byte": code_tokens / code_bytes if code_bytes else None,
        "arabic_words": words,
        "arabic_tokens": ar_tokens,
        "code_bytes": code_bytes,
        "code_tokens": code_tokens,
    }
