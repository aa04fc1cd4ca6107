"""The model shapes by name, without torch: the config, the CLI and the council read them cheaply."""

from __future__ import annotations

# The seed's table (§II.E BITransformerConfig.PRESETS), plus `tiny` for tests and `gpt2-124m` for
# benchmarks. The seed gives no context length (max_seq_len); we use GPT-2's 1024.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_ff=256, block_size=64),
    "small": dict(n_layer=4, n_head=4, n_embd=256, n_ff=1024, block_size=1024),
    "medium": dict(n_layer=8, n_head=8, n_embd=512, n_ff=2048, block_size=1024),
    "large": dict(n_layer=12, n_head=12, n_embd=768, n_ff=3072, block_size=1024),
    "xlarge": dict(n_layer=16, n_head=16, n_embd=1024, n_ff=4096, block_size=1024),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, n_ff=3072, block_size=1024, vocab_size=50257),
}

# Parameter counts the seed quotes ("params": "~15M" ...). It quotes none for `tiny` and `gpt2-124m`
# (not seed presets) and does not say which vocabulary or context length it assumed.
SEED_ESTIMATES: dict[str, int | None] = {
    "tiny": None,
    "small": 15_000_000,
    "medium": 85_000_000,
    "large": 180_000_000,
    "xlarge": 368_000_000,
    "gpt2-124m": None,
}
