-- Prepared training corpora (tokenizer + token shards on disk) and the sources each was read from.
-- The files live in the corpus folder (manifest.json describes them); the store keeps what a
-- dashboard lists and compares: sizes, token counts, duplicates removed, tokenizer fertility.
CREATE TABLE corpora (
    id                  VARCHAR PRIMARY KEY,
    name                VARCHAR NOT NULL,
    path                VARCHAR NOT NULL,
    manifest_sha256     VARCHAR NOT NULL,
    vocab_size          INTEGER NOT NULL,
    dtype               VARCHAR NOT NULL CHECK (dtype IN ('uint16', 'uint32')),
    seed                BIGINT NOT NULL,
    val_fraction        DOUBLE NOT NULL CHECK (val_fraction > 0 AND val_fraction < 1),
    documents           BIGINT NOT NULL,
    duplicates_removed  BIGINT NOT NULL DEFAULT 0,
    bytes               BIGINT NOT NULL,
    train_tokens        BIGINT NOT NULL,
    val_tokens          BIGINT NOT NULL,
    stats               JSON,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per source of a corpus: a folder, a file, builtin:quran or builtin:stdlib.
CREATE TABLE corpus_sources (
    corpus_id      VARCHAR NOT NULL,
    source         VARCHAR NOT NULL,
    documents      BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,
    arabic_bytes   BIGINT NOT NULL DEFAULT 0,
    code_bytes     BIGINT NOT NULL DEFAULT 0,
    text_bytes     BIGINT NOT NULL DEFAULT 0,
    skipped_files  BIGINT NOT NULL DEFAULT 0,
    truncated      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (corpus_id, source)
);
