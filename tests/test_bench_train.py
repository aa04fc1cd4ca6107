"""bench/train.py --quick runs end to end and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("ours_gpt2_tokens_per_s", "ours_bi_tokens_per_s", "hf_trainer_tokens_per_s", "ratio_ours_gpt2_vs_hf",
        "ratio_ours_bi_vs_hf", "shape", "steps")


@pytest.mark.slow
def test_quick_bench_ends_with_figures(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "train.py"), "--quick", "--threads", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(KEYS) <= set(figures)
    assert figures["quick"] is True
    for key in KEYS:
        if key.endswith("tokens_per_s") or key.startswith("ratio"):
            assert figures[key] > 0, key
    assert "n_layer 2" in figures["shape"]
