"""Several processes train like one: DDP and DeepSpeed ZeRO 0–3 with 2 CPU processes (gloo).

Reference: one process with batch_size 8; the distributed runs: 2 processes with batch_size 4 each
(the same global batch, the same windows). Losses agree to TOLERANCE (float sums in a different
order: measured differences are ~1e-7 relative). A 2-process DDP checkpoint resumes in 1 process;
a 2-process ZeRO-1 one only after conversion to DeepSpeed's universal format.

The launches are real (`bi-ide train launch` → torchrun → python -m bi_ide.training.launch), each
8–20 s; DeepSpeed's first start compiles an op into TORCH_EXTENSIONS_DIR (~25 s, once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import papermill
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from bi_ide.clikit import Group
from bi_ide.errors import ConfigError
from bi_ide.store import Store
from bi_ide.training.config import debug
from bi_ide.training.distributed import (
    SLOWDOWN_WARN,
    deepspeed_config,
    free_port,
    imbalance,
    imbalance_warning,
)
from bi_ide.training.launch_cli import launch
from bi_ide.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"rtol": 1e-5, "atol": 0.0}  # relative, on every step's loss


@click.group(cls=Group)
def cli():
    """`bi-ide train` as far as these tests need it: the launch command with one-line errors."""


cli.add_command(launch)


@pytest.fixture
def launch_env(monkeypatch):
    """One thread per rank (2 ranks on 2 cores) and DeepSpeed's compiled ops kept between runs."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", os.environ.get("TORCH_EXTENSIONS_DIR")
                       or str(ROOT / ".cache" / "torch_extensions"))


def settings(corpus, out_dir, **overrides) -> dict:
    # cpu_percent=50: one torch thread in the reference too, as in each of the 2 ranks on 2 cores
    return {"corpus": corpus, "out_dir": str(out_dir), "cpu_percent": 50, **overrides}


def launched(tmp_path, nproc: int, values: dict, *extra: str) -> list[float]:
    """Run `train launch --nproc N --recipe debug --set ...`; rank 0's losses."""
    losses = tmp_path / f"losses-{len(list(tmp_path.glob('losses-*')))}.json"
    args = ["launch", "--nproc", str(nproc), "--recipe", "debug", "--db", str(tmp_path / "w.duckdb"),
            "--losses-path", str(losses), *extra]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(losses.read_text())


def reference(corpus, out_dir, **overrides) -> dict:
    with Store(memory=True) as store:
        return train(debug(**settings(corpus, out_dir, **overrides)), store, handle_signals=False)


# -- two processes against one ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy, zero_stage", [("ddp", 0), ("deepspeed", 0), ("deepspeed", 1), ("deepspeed", 2),
                                                  ("deepspeed", 3)])
def test_two_processes_train_like_one_with_the_same_global_batch(corpus, tmp_path, launch_env, strategy,
                                                                   zero_stage):
    # grad_accum=2: the data position advances by the global batch on every micro-batch; the
    # evaluations and checkpoints at steps 4 and 8 go through the strategy too
    common = {"max_steps": 8, "grad_accum": 2, "eval_interval": 4, "checkpoint_interval": 4}
    one = reference(corpus, tmp_path / "one", batch_size=8, **common)["losses"]
    ds = {"zero_stage": zero_stage} if strategy == "deepspeed" else {}
    two = launched(tmp_path, 2, settings(corpus, tmp_path / "two", batch_size=4, strategy=strategy, **ds, **common))
    assert len(two) == len(one) == 8
    np.testing.assert_allclose(two, one, **TOLERANCE)
    assert two[-1] < two[0] - 0.1  # it learns

    with Store(tmp_path / "w.duckdb") as store:  # rank 0 alone wrote the run, its metrics and checkpoints
        run = store.list_runs().row(0, named=True)
        assert run["status"] == "done" and run["step"] == 8
        assert store.read_metrics(run["id"], ["loss"])["step"].to_list() == [5, 8]
        kinds = set(store.list_checkpoints(run["id"])["kind"])
        model = store.list_models().row(0, named=True)
    assert kinds == {"best", "step", "last"} and model["status"] == "ready"
    meta = json.loads((tmp_path / "two" / run["id"] / "step-00000008" / "meta.json").read_text())
    assert (meta["strategy"], meta["world_size"], meta["position"]) == (strategy, 2, 8 * 2 * 8 * 64)
    weights = load_file(tmp_path / "two" / run["id"] / "step-00000008" / "model.safetensors")
    assert weights and all(t.numel() > 0 for t in weights.values())  # whole weights, even from ZeRO-3 shards


@pytest.mark.slow
def test_a_two_process_ddp_checkpoint_resumes_in_one_process(corpus, tmp_path, launch_env):
    whole = reference(corpus, tmp_path / "one", batch_size=8, max_steps=16)

    values = settings(corpus, tmp_path / "two", batch_size=4, strategy="ddp", max_steps=16)
    part1 = launched(tmp_path, 2, values, "--stop-after-steps", "8")  # stops at the next log step: 10
    assert len(part1) == 10
    with Store(tmp_path / "w.duckdb") as store:
        run_id = store.list_runs().row(0, named=True)["id"]
        assert store.get_run(run_id)["status"] == "stopped"
        part2 = train(debug(**settings(corpus, tmp_path / "two", batch_size=8, max_steps=16, resume_from=run_id)),
                      store, handle_signals=False)
        assert part2["run_id"] == run_id and part2["status"] == "done" and store.get_run(run_id)["step"] == 16

    assert len(part2["losses"]) == 6
    np.testing.assert_allclose(part1 + part2["losses"], whole["losses"], **TOLERANCE)
    final_one = load_file(f"{whole['run_dir']}/step-00000016/model.safetensors")
    final_two = load_file(f"{part2['run_dir']}/step-00000016/model.safetensors")
    assert final_one.keys() == final_two.keys()
    for name in final_one:
        # Adam turns ~1e-7 gradient differences into ~1e-6 steps on weights whose gradient is near zero
        torch.testing.assert_close(final_two[name], final_one[name], rtol=1e-4, atol=2e-5)


@pytest.mark.slow
def test_a_zero_checkpoint_resumes_on_another_process_count_only_once_converted(corpus, tmp_path, launch_env,
                                                                                monkeypatch):
    whole = reference(corpus, tmp_path / "one", batch_size=8, max_steps=16)
    values = settings(corpus, tmp_path / "two", batch_size=4, strategy="deepspeed", zero_stage=1, max_steps=16)
    part1 = launched(tmp_path, 2, values, "--stop-after-steps", "5")  # stops at step 10
    with Store(tmp_path / "w.duckdb") as store:
        run_id = store.list_runs().row(0, named=True)["id"]
        # 1. refused on 1 process, with the way out; in this process: rank 0 of 1, restored after the test
        for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                            ("MASTER_PORT", str(free_port()))):
            monkeypatch.setenv(name, value)
        one_process = {**values, "batch_size": 8, "resume_from": run_id}
        with pytest.raises(ConfigError, match="ZeRO-1 shards of 2 processes, this run has 1.*ds_to_universal"):
            train(debug(**one_process), store, handle_signals=False)
    assert not torch.distributed.is_initialized()

    # 2. converted to DeepSpeed's universal format, it resumes on 1 process
    folder = tmp_path / "two" / run_id / "step-00000010" / "deepspeed"
    subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
                    str(folder / "state"), "--output_folder", str(folder / "universal")], check=True,
                   capture_output=True)
    universal = tmp_path / "universal.json"
    universal.write_text(json.dumps({"checkpoint": {"load_universal": True}}))
    part2 = launched(tmp_path, 1, {**one_process, "deepspeed_config": str(universal)})
    assert len(part1) == 10 and len(part2) == 6
    np.testing.assert_allclose(part1 + part2, whole["losses"], **TOLERANCE)


# -- mixed cards: a micro-batch per host ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy, zero_stage", [("ddp", 0), ("deepspeed", 1)])
def test_ranks_with_different_micro_batches_train_like_one_process(corpus, tmp_path, launch_env, monkeypatch,
                                                                   strategy, zero_stage):
    # a big card's rank with 7 sequences beside a small card's with 1: the global batch is 8, as in
    # the reference; both ranks run here, so the entries name the GPUs of one host ("box:LOCAL_RANK")
    monkeypatch.setenv("BI_IDE_HOST", "box")
    common = {"max_steps": 8, "eval_interval": 4}
    one = reference(corpus, tmp_path / "one", batch_size=8, **common)["losses"]
    ds = {"zero_stage": zero_stage} if strategy == "deepspeed" else {}
    two = launched(tmp_path, 2, settings(corpus, tmp_path / "two", batch_size=4, strategy=strategy, **ds, **common,
                                         micro_batch_per_host="box:0=7,box:1=1"))
    np.testing.assert_allclose(two, one, **TOLERANCE)

    with Store(tmp_path / "w.duckdb") as store:  # the ranks compared their forward times after 6 steps
        run_id = store.list_runs().row(0, named=True)["id"]
        slowdown = store.read_metrics(run_id, ["batch_slowdown"])
    assert slowdown["step"].to_list() == [6] and slowdown["value"][0] >= 1.0


@pytest.mark.slow
def test_the_training_notebook_starts_a_two_process_run(corpus, tmp_path, launch_env):
    db = tmp_path / "nb.duckdb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "02-train.ipynb"), str(tmp_path / "out.ipynb"), parameters={
        "corpus": corpus, "out_dir": str(tmp_path / "runs"), "db_path": str(db), "max_steps": 6,
        "strategy": "ddp", "nproc": 2, "summary_path": str(tmp_path / "summary.json"),
    }, cwd=str(ROOT / "notebooks"), progress_bar=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    with Store(db) as store:
        run = store.get_run(summary["run_id"])
        assert (run["status"], run["step"], run["config"]["strategy"]) == ("done", 6, "ddp")
        assert store.get_model(summary["model_id"])["run_id"] == run["id"]
    meta = json.loads((tmp_path / "runs" / run["id"] / "step-00000006" / "meta.json").read_text())
    assert (meta["strategy"], meta["world_size"]) == ("ddp", 2)


def test_micro_batch_per_host_picks_each_process_its_own():
    config = debug(micro_batch_per_host="rtx5090=16, laptop=4,box:1=2")
    assert config.micro_batch("rtx5090", 0) == 16 and config.micro_batch("rtx5090", 3) == 16
    assert config.micro_batch("laptop", 0) == 4
    assert config.micro_batch("box", 1) == 2 and config.micro_batch("box", 0) == 8  # not named: batch_size
    for bad, match in (("laptop", "'laptop' is not HOST=N"), ("laptop=0", "N from 1 to 4096"),
                       ("=4", "is not HOST=N"), ("a=1,a=2", "names 'a' twice"), ("a=x", "is not HOST=N")):
        with pytest.raises(ConfigError, match=match):
            debug(micro_batch_per_host=bad)


def test_imbalance_is_the_slowest_rank_against_a_speed_matched_split():
    # equal speeds (1 sequence per 0.1 s) with 6 and 2 sequences: steps wait 0.6 s; 4 and 4 would take 0.4 s
    found = imbalance([6, 2], [0.6, 0.2], ["a", "b"])
    assert found["slowest_rank"] == 0 and found["slowdown"] == pytest.approx(1.5)
    assert found["suggested"] == {"a": 4, "b": 4}
    # a card 3x as fast with 3x the batch is balanced already
    assert imbalance([12, 4], [0.4, 0.4])["slowdown"] == pytest.approx(1.0)
    # speeds 10, 20, 20 sequences/s: 16 sequences split 3.2, 6.4, 6.4; host a takes the smaller of its two
    assert imbalance([4, 4, 8], [0.4, 0.2, 0.4], ["a", "a", "b"])["suggested"] == {"a": 3, "b": 6}


def test_a_rank_that_holds_the_others_back_is_named_with_a_better_split():
    found = imbalance([6, 2], [0.6, 0.2], ["rtx5090", "laptop"])
    warning = imbalance_warning(found, ["rtx5090", "laptop"], [6, 2])
    assert warning.startswith("rank 0 on rtx5090 (micro-batch 6) holds the run back: each step takes about 1.5x")
    assert "--set micro_batch_per_host=rtx5090=4,laptop=4" in warning
    assert imbalance_warning(imbalance([4, 4], [0.4, 0.41]), ["a", "b"], [4, 4]) is None  # within SLOWDOWN_WARN
    assert SLOWDOWN_WARN > 1.0


def test_deepspeed_gets_each_ranks_own_micro_batch():
    config = debug(strategy="deepspeed", grad_accum=2)
    generated = deepspeed_config(config, 2, torch.float32, micro=3)
    assert generated["train_micro_batch_size_per_gpu"] == 3 and generated["train_batch_size"] == 3 * 2 * 2


# -- settings and commands (fast) -----------------------------------------------------------------
def test_deepspeed_settings_need_strategy_deepspeed():
    with pytest.raises(ConfigError, match="zero_stage=2 is a DeepSpeed setting; set strategy=deepspeed"):
        debug(zero_stage=2)
    with pytest.raises(ConfigError, match="offload=True needs ZeRO"):
        debug(strategy="deepspeed", offload=True)
    with pytest.raises(ConfigError, match="TrainConfig.strategy='fsdp' is not allowed"):
        debug(strategy="fsdp")
    with pytest.raises(ConfigError, match="TrainConfig.zero_stage=4 is not allowed"):
        debug(strategy="deepspeed", zero_stage=4)


def test_the_generated_deepspeed_config_follows_train_config(tmp_path):
    config = debug(strategy="deepspeed", zero_stage=2, grad_accum=3, grad_clip=0.0, offload=True)
    generated = deepspeed_config(config, 4, torch.bfloat16)
    assert generated["train_batch_size"] == 8 * 3 * 4 and generated["train_micro_batch_size_per_gpu"] == 8
    assert generated["gradient_accumulation_steps"] == 3
    assert generated["gradient_clipping"] == 0.0  # explicit: DeepSpeed's default would clip at 1.0
    assert generated["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": False}}
    assert generated["bf16"] == {"enabled": True} and generated["fp16"] == {"enabled": False}

    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"overlap_comm": True}, "gradient_clipping": 2.0}))
    merged = deepspeed_config(debug(strategy="deepspeed", zero_stage=1, deepspeed_config=str(user)), 2, torch.float32)
    assert merged["zero_optimization"] == {"stage": 1, "overlap_comm": True} and merged["gradient_clipping"] == 2.0
    with pytest.raises(ConfigError, match="is not a readable JSON file"):
        deepspeed_config(debug(strategy="deepspeed", deepspeed_config=str(tmp_path / "missing.json")), 2,
                         torch.float32)


def test_launch_builds_the_launcher_command(tmp_path):
    runner = CliRunner()
    base = ["--recipe", "debug", "--set", f"out_dir={tmp_path}", "--dry-run"]

    local = runner.invoke(cli, ["launch", "--nproc", "2", "--set", "strategy=ddp", *base])
    assert local.exit_code == 0, local.output
    assert "-m torch.distributed.run --standalone --nproc-per-node 2 -m bi_ide.training.launch --config-json" \
        in local.output
    config_file = Path(local.output.split("--config-json ")[1].split()[0])
    assert json.loads(config_file.read_text())["strategy"] == "ddp"

    hosts = tmp_path / "hosts"
    hosts.write_text("alpha slots=1\nbeta slots=1\n")
    ssh = runner.invoke(cli, ["launch", "--hostfile", str(hosts), "--set", "strategy=deepspeed", *base])
    assert ssh.exit_code == 0, ssh.output
    assert f"-m deepspeed.launcher.runner --hostfile {hosts} --no_local_rank --module bi_ide.training.launch" \
        in ssh.output

    nodes = runner.invoke(cli, ["launch", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.5",
                                "--master-port", "29500", "--set", "strategy=ddp", *base])
    assert nodes.exit_code == 0, nodes.output
    assert "--nnodes 2 --node-rank 1 --master-addr 10.0.0.5 --master-port 29500 --nproc-per-node 1" in nodes.output

    ds_local = runner.invoke(cli, ["launch", "--nproc", "2", "--launcher", "deepspeed", "--set", "strategy=deepspeed",
                                   *base])
    assert "-m deepspeed.launcher.runner --num_gpus 2 --master_port" in ds_local.output


@pytest.mark.parametrize(
    "args, match",
    [
        (["--nproc", "2"], "strategy=single runs one process"),
        (["--set", "strategy=ddp"], "say where to run: --nproc N"),
        (["--nnodes", "2", "--node-rank", "0", "--set", "strategy=ddp"], "missing --master-addr, --master-port"),
        (["--nnodes", "2", "--node-rank", "2", "--master-addr", "a", "--master-port", "1", "--set", "strategy=ddp"],
         "--node-rank 2 must be below --nnodes 2"),
    ],
)
def test_launch_refuses_incomplete_commands(tmp_path, args, match):
    result = CliRunner().invoke(cli, ["launch", "--recipe", "debug", "--set", f"out_dir={tmp_path}", *args])
    assert result.exit_code == 1 and match in result.output
