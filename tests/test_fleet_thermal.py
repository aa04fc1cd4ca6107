"""The thermal guard end to end in one process: the hub's verdict on a run slows a real training run."""

from __future__ import annotations

import os
import socket

import pytest

from bi_ide.fleet import thermal
from bi_ide.training.config import debug
from bi_ide.training.trainer import Trainer


@pytest.fixture
def paused(monkeypatch):
    """The process's Pacer records its pauses instead of sleeping them."""
    slept = []
    monkeypatch.setattr(thermal.PACER, "sleep", slept.append)
    return slept


@pytest.mark.slow
def test_a_throttled_run_pauses_and_is_mapped_to_its_process(corpus, tmp_path, store, paused):
    trainer = Trainer(debug(corpus=corpus, out_dir=str(tmp_path / "runs"), max_steps=20), store, handle_signals=False)

    def on_step(p):
        if p.step == 10:  # the hub found the run's GPU at 90 °C
            store.set_run_throttle(trainer.run_id, thermal.THROTTLED, "GPU 0 of rtx at 90 °C", temperature_c=90.0)

    trainer.on_step = on_step
    summary = trainer.run()
    run = store.get_run(summary["run_id"])
    assert summary["status"] == "done" and summary["steps"] == 20
    assert (run["host"], run["pid"]) == (socket.gethostname(), os.getpid())  # GPU processes map to this run
    assert run["throttle_factor"] == 0.5 and len(paused) >= 1 and all(p > 0 for p in paused)
    assert store.run_throttles(summary["run_id"])["reason"].to_list() == ["GPU 0 of rtx at 90 °C"]
