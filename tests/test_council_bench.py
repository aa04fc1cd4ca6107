"""bench/council.py runs end to end with tiny sizes and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("grounded_p50_ms", "grounded_p95_ms", "grounded_members", "store_decision_ms", "grounded_over_store_x")


def _bench(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "council.py"), "--quick", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_grounded_figures():
    figures = _bench("--no-model", "--sessions", "3")
    assert set(KEYS) <= set(figures) and figures["grounded_members"] == 39 and figures["grounded_sessions"] == 3
    assert figures["grounded_p95_ms"] >= figures["grounded_p50_ms"] > 0 and figures["quick"] is True


@pytest.mark.slow
def test_local_model_figures():
    figures = _bench("--sessions", "2", "--members", "2", "--tokens", "4")
    assert figures["local_members"] == 2 and figures["local_tokens"] == 4
    assert figures["local_batched_s"] > 0 and figures["local_one_by_one_s"] > 0 and "local_speedup_x" in figures
