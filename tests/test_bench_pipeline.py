"""bench/pipeline.py --quick runs end to end and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("papermill_overhead_s_per_step", "steps", "pipeline_s", "direct_s")


@pytest.mark.slow
def test_quick_bench_ends_with_figures(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pipeline.py"), "--quick"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(KEYS) <= set(figures)
    assert figures["quick"] is True
    assert figures["steps"] == 2
    assert figures["pipeline_s"] > figures["direct_s"] > 0
