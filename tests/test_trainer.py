"""The trainer: the debug recipe's loss curve, exact resume, stops, bad configs, the spool with the hub down."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from bi_ide.cli import main
from bi_ide.errors import ConfigError
from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess
from bi_ide.store import Store
from bi_ide.training.config import debug
from bi_ide.training.trainer import Trainer, lr_at, train


@pytest.fixture(autouse=True)
def one_thread():
    # Same arithmetic on every machine: the pinned losses do not depend on the core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(corpus, tmp_path, **overrides):
    return debug(corpus=corpus, out_dir=str(tmp_path / "runs"), **overrides)


def test_debug_recipe_learns_and_its_loss_curve_is_pinned(corpus, tmp_path, store):
    summary = train(config(corpus, tmp_path, max_steps=30, eval_interval=15), store, handle_signals=False)
    losses = summary["losses"]
    assert summary["status"] == "done" and len(losses) == 30
    assert losses[0] == pytest.approx(math.log(512), abs=0.15)  # an untrained model guesses uniformly
    assert min(losses) < losses[0] - 0.8
    assert [round(x, 3) for x in losses[::5]] == pytest.approx(PINNED, abs=2e-3)
    names = set(store.read_metrics(summary["run_id"])["name"])
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_bpb_arabic", "val_bpb_code"} <= names


PINNED = [6.246, 6.027, 5.668, 5.5, 5.394, 5.311]  # steps 1, 6, 11, ... of the debug recipe, fixture corpus


def test_validation_bpb_drops(corpus, tmp_path, store):
    summary = train(config(corpus, tmp_path, max_steps=60, eval_interval=10), store, handle_signals=False)
    bpb = store.read_metrics(summary["run_id"], ["val_bpb_arabic"])["value"].to_list()
    assert len(bpb) == 7  # before the first step, then every 10 steps
    assert bpb[-1] < bpb[0] * 0.9


def test_resume_continues_exactly(corpus, tmp_path, store):
    whole = train(config(corpus, tmp_path / "a", max_steps=40), store, handle_signals=False)

    first = Trainer(config(corpus, tmp_path / "b", max_steps=40), store, handle_signals=False)
    first.on_step = lambda p: p.step == 18 and first.request_stop("test")
    part1 = first.run()
    assert part1["status"] == "stopped" and part1["steps"] == 20  # stops at the next log step
    assert store.get_run(part1["run_id"])["status"] == "stopped"

    part2 = train(config(corpus, tmp_path / "b", max_steps=40, resume_from=part1["run_id"]), store,
                  handle_signals=False)
    assert part2["run_id"] == part1["run_id"] and part2["status"] == "done"
    assert part1["losses"] + part2["losses"] == whole["losses"]  # bit for bit
    final_a = load_file(f"{whole['run_dir']}/step-00000040/model.safetensors")
    final_b = load_file(f"{part2['run_dir']}/step-00000040/model.safetensors")
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_stop_requested_through_the_store(corpus, tmp_path, store):
    trainer = Trainer(config(corpus, tmp_path, max_steps=60), store, handle_signals=False)
    trainer.on_step = lambda p: p.step == 7 and store.update_run(trainer.run_id, stop_requested=True)
    summary = trainer.run()
    assert summary["status"] == "stopped" and summary["steps"] == 10
    kinds = store.list_checkpoints(summary["run_id"])["kind"].to_list()
    assert "last" in kinds
    assert summary["model"] is None  # only finished runs register a model


def test_finished_run_registers_its_best_checkpoint(corpus, tmp_path, store):
    summary = train(config(corpus, tmp_path, max_steps=20, eval_interval=10, run_name="tiny-test"), store,
                    handle_signals=False)
    model = summary["model"]
    assert model["name"] == "tiny-test" and model["version"] == 1 and model["status"] == "ready"
    assert model["checkpoint_path"].endswith("/best") and model["metrics"]["val_loss"] > 0


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"seq_len": 128}, "longer than preset tiny's context of 64"),
        ({"batch_size": 4000, "seq_len": 64}, "less than one step"),
        ({"device": "cuda"}, "no CUDA GPU" if not torch.cuda.is_available() else None),
        ({"model": "pretrained"}, "needs init_from"),
        ({"resume_from": "no-such-run"}, "neither a checkpoint folder nor a run"),
    ],
)
def test_bad_configs_are_refused_before_a_run_starts(corpus, tmp_path, store, overrides, match):
    if match is None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=match):
        train(config(corpus, tmp_path, **overrides), store, handle_signals=False)
    assert store.list_runs().is_empty()


def test_a_corrupt_checkpoint_is_refused_on_resume(corpus, tmp_path, store):
    summary = train(config(corpus, tmp_path, max_steps=20), store, handle_signals=False)
    weights = tmp_path / "runs" / summary["run_id"] / "step-00000020" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(Exception, match="changed|corrupt"):
        train(config(corpus, tmp_path, max_steps=30, resume_from=summary["run_id"]), store, handle_signals=False)


def test_learning_rate_warms_up_then_decays_to_min():
    c = debug(warmup_steps=10, learning_rate=1e-3, min_lr=1e-4)
    assert lr_at(0, c, 100) == pytest.approx(1e-4)
    assert lr_at(9, c, 100) == pytest.approx(1e-3)
    assert lr_at(55, c, 100) == pytest.approx(5.5e-4)
    assert lr_at(100, c, 100) == pytest.approx(1e-4)


@pytest.mark.slow
def test_metrics_spool_while_the_hub_is_down_and_are_replayed(corpus, tmp_path):
    db = tmp_path / "hub.duckdb"
    with Store(db) as s:
        _, secret = s.create_token("trainer", "developer")
    hub = HubProcess(db).start()
    try:
        client = HubClient(hub.url, secret, retries=0)
        trainer = Trainer(config(corpus, tmp_path, max_steps=40, eval_interval=10), client, handle_signals=False)

        def outage(p):
            if p.step == 8:
                hub.stop()
            elif p.step == 27:
                assert trainer.log.spooled > 0 and trainer.log.spool.exists()
                hub.start()

        trainer.on_step = outage
        summary = trainer.run()
        assert summary["status"] == "done" and not summary["spooled"]
        assert not trainer.log.spool.exists()
        metrics = client.read_metrics(summary["run_id"])
        loss = metrics.filter(pl.col("name") == "loss")
        assert loss["step"].to_list() == list(range(5, 41, 5))  # every log step, once
        assert metrics.group_by("name", "step").len()["len"].max() == 1  # nothing duplicated
        run = client.get_run(summary["run_id"])
        assert run["status"] == "done" and run["step"] == 40
        assert set(client.list_checkpoints(summary["run_id"])["step"]) >= {20, 40}
    finally:
        hub.stop()


def test_train_commands(corpus, tmp_path):
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    bad = runner.invoke(main, ["train", "run", "--recipe", "debug", "--set", "max_steps=lots", "--db", str(db)])
    assert bad.exit_code == 1 and "max_steps='lots' is not an integer" in bad.output
    unknown = runner.invoke(main, ["train", "run", "--set", "colour=red", "--db", str(db)])
    assert unknown.exit_code == 1 and "unknown TrainConfig parameter(s) ['colour']" in unknown.output
    ok = runner.invoke(main, ["train", "run", "--recipe", "debug", "--quiet", "--set", f"corpus={corpus}",
                              "--set", f"out_dir={tmp_path / 'runs'}", "--set", "max_steps=20",
                              "--set", "run_name=cli-tiny", "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    assert "done after 20 steps" in ok.output and "model cli-tiny v1" in ok.output
    run_id = ok.output.split()[1]
    again = runner.invoke(main, ["train", "stop", run_id, "--db", str(db)])
    assert again.exit_code == 1 and "only queued or running runs can be stopped" in again.output
    listed = runner.invoke(main, ["models", "list", "--db", str(db)])
    assert "cli-tiny" in listed.output
    promoted = runner.invoke(main, ["models", "promote", "cli-tiny", "--db", str(db)])
    assert promoted.exit_code == 1  # promote takes an id, not a name
    text = runner.invoke(main, ["sample", "cli-tiny", "--prompt", "def ", "--tokens", "10", "--db", str(db)])
    assert text.exit_code == 0 and text.output.startswith("def ")
    assert "max_steps" in runner.invoke(main, ["train", "params", "--recipe", "debug"]).output


def test_the_same_trainer_trains_a_transformers_gpt2(corpus, tmp_path, store):
    summary = train(config(corpus, tmp_path, model="gpt2", max_steps=10, eval_interval=10), store,
                    handle_signals=False)
    assert summary["status"] == "done" and summary["losses"][-1] < summary["losses"][0]
    assert summary["losses"][0] == pytest.approx(math.log(512), abs=0.3)


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_stops_cleanly(corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "w.duckdb"
    cmd = [sys.executable, "-m", "bi_ide.cli", "train", "run", "--recipe", "debug", "--quiet", "--db", str(db),
           "--set", f"corpus={corpus}", "--set", f"out_dir={tmp_path / 'runs'}", "--set", "max_steps=100000",
           "--set", "eval_interval=100000", "--set", "log_interval=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/spool.jsonl")) and \
            not list((tmp_path / "runs").glob("*")):
        time.sleep(0.5)
    time.sleep(5)  # let it take some steps
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped after" in out
    with Store(db) as s:
        run = s.list_runs().row(0, named=True)
        assert run["status"] == "stopped"
        assert "last" in s.list_checkpoints(run["id"])["kind"].to_list()


def test_early_stopping_after_patience_evaluations(corpus, tmp_path, store):
    # A learning rate this large wrecks the model: the validation loss stops improving at once.
    summary = train(config(corpus, tmp_path, max_steps=60, eval_interval=2, patience=2, learning_rate=0.5,
                           min_lr=0.5, warmup_steps=0, grad_clip=0.0), store, handle_signals=False)
    assert summary["status"] == "done" and summary["steps"] < 20
    val = store.read_metrics(summary["run_id"], ["val_loss"])["value"].to_list()
    assert min(val[-2:]) >= min(val[:-2])  # the last `patience` evaluations did not improve


def test_a_failing_run_records_its_error(corpus, tmp_path, store):
    def explode(p):
        if p.step == 3:
            raise RuntimeError("out of memory (simulated)")

    with pytest.raises(RuntimeError):
        train(config(corpus, tmp_path, max_steps=20), store, handle_signals=False, on_step=explode)
    run = store.list_runs().row(0, named=True)
    assert run["status"] == "failed" and "out of memory (simulated)" in run["error"]


def test_train_status_lists_progress(corpus, tmp_path):
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    assert "no training runs yet" in runner.invoke(main, ["train", "status", "--db", str(db)]).output
    with Store(db) as s:
        train(config(corpus, tmp_path, max_steps=10), s, handle_signals=False)
    out = runner.invoke(main, ["train", "status", "--db", str(db)]).output
    assert "10/10" in out and "done" in out


def test_a_checkpoint_records_how_it_was_written(corpus, tmp_path, store):
    import json
    from pathlib import Path

    summary = train(config(corpus, tmp_path, max_steps=5, eval_interval=100), store, handle_signals=False)
    meta = json.loads((Path(summary["run_dir"]) / "step-00000005" / "meta.json").read_text())
    assert (meta["strategy"], meta["world_size"], meta["zero_stage"]) == ("single", 1, None)
    assert set(meta["files"]) == {"model.safetensors", "state.pt"}


def test_ddp_in_one_process_trains_like_single(corpus, tmp_path, store, monkeypatch):
    import torch.distributed as dist

    from bi_ide.training.distributed import free_port

    # what a launcher would set for rank 0 of 1; monkeypatch restores the environment afterwards
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", str(free_port()))):
        monkeypatch.setenv(name, value)
    single = train(config(corpus, tmp_path / "a", max_steps=10), store, handle_signals=False)
    ddp = train(config(corpus, tmp_path / "b", max_steps=10, strategy="ddp"), store, handle_signals=False)
    assert ddp["status"] == "done" and not dist.is_initialized()  # the trainer left its process group
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-6)


@pytest.mark.gpu
def test_resume_on_cuda_continues_exactly(corpus, tmp_path, store):
    """The checkpoint's RNG states come back to the CPU generators even when loaded onto the GPU."""
    cuda = {"device": "cuda", "precision": "bf16"}
    whole = train(config(corpus, tmp_path / "a", max_steps=20, **cuda), store, handle_signals=False)
    first = Trainer(config(corpus, tmp_path / "b", max_steps=20, **cuda), store, handle_signals=False)
    first.on_step = lambda p: p.step == 8 and first.request_stop("test")
    part1 = first.run()
    part2 = train(config(corpus, tmp_path / "b", max_steps=20, resume_from=part1["run_id"], **cuda), store,
                  handle_signals=False)
    assert part1["losses"] + part2["losses"] == pytest.approx(whole["losses"], rel=1e-5)
