"""bench/fleet.py with three agents for a few seconds runs end to end and ends with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("samples_per_s", "p50_ms", "p95_ms", "p99_ms", "baseline_p50_ms", "lost_samples", "duplicated_samples",
        "hub_cpu_percent", "hub_peak_rss_mib", "p95_over_300ms_at_agents")


@pytest.mark.slow
def test_tiny_fleet_bench_ends_with_figures():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet.py"), "--agents", "3", "--duration", "3",
                           "--ramp", ""], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(KEYS) <= set(figures) and figures["agents"] == 3
    assert figures["lost_samples"] == 0 and figures["duplicated_samples"] == 0
    assert figures["samples_per_s"] > 0 and figures["p99_ms"] >= figures["p50_ms"] > 0 and figures["hub_peak_rss_mib"] > 0
