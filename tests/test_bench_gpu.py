"""The GPU proof kit stays working without a GPU, and runs recorded offline replay into a store.

bench/gpu.py --device cpu --smoke runs every section of the kit (throughput against
transformers.Trainer, exact resume, DDP and DeepSpeed ZeRO-2 launches, the agent's sampler, the
council's local model) on tiny sizes, so the kit is whole when a GPU machine comes. Offline runs
(bi_ide.training.offline) are what it records on a machine without the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bi_ide.cli import main
from bi_ide.errors import ConflictError, NotFoundError, ValidationError
from bi_ide.store import Store
from bi_ide.training.config import debug
from bi_ide.training.offline import OfflineStore, read_record
from bi_ide.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def test_an_offline_run_spools_everything_and_replays_into_a_store(corpus, tmp_path):
    out = tmp_path / "runs"
    summary = train(debug(corpus=corpus, out_dir=str(out), max_steps=20, eval_interval=10), OfflineStore(out),
                    handle_signals=False)
    assert summary["status"] == "done" and summary["spooled"] and summary["model"] is None
    run_dir = Path(summary["run_dir"])
    record = read_record(run_dir)
    assert record["id"] == summary["run_id"] and record["pid"] == os.getpid() and record["host"]
    assert (run_dir / "spool.jsonl").stat().st_size > 0

    db = tmp_path / "w.duckdb"
    result = CliRunner().invoke(main, ["train", "replay", summary["run_id"], "--out-dir", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "imported the offline run" in result.output and "spool empty" in result.output
    with Store(db) as store:
        run = store.get_run(summary["run_id"])
        assert run["status"] == "done" and run["step"] == 20 and run["host"] == record["host"]
        losses = store.read_metrics(summary["run_id"], ["loss"])["value"].to_list()
        assert losses == pytest.approx(summary["losses"][4::5])  # every log_interval (5) steps
        assert set(store.list_checkpoints(summary["run_id"])["kind"]) == {"best", "last"}
    again = CliRunner().invoke(main, ["train", "replay", summary["run_id"], "--out-dir", str(out), "--db", str(db)])
    assert again.exit_code == 0 and "imported" not in again.output  # the run is there: nothing twice


def test_a_run_id_from_elsewhere_is_checked(store):
    run = store.create_run("moved", id="abc123def456")
    assert run["id"] == "abc123def456"
    with pytest.raises(ConflictError, match="exists already"):
        store.create_run("again", id="abc123def456")
    with pytest.raises(ValidationError, match="not a run id"):
        store.create_run("bad", id="../etc")


def test_an_offline_store_refuses_what_it_cannot_hold(tmp_path):
    offline = OfflineStore(tmp_path)
    with pytest.raises(NotFoundError, match="checkpoint folder"):
        offline.list_checkpoints("abc")
    with pytest.raises(NotFoundError, match="no offline run record"):
        offline.get_run("missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{cut sho")
    with pytest.raises(ValidationError, match="not valid JSON"):
        offline.get_run("broken")


@pytest.mark.slow
def test_the_kit_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / "results" / "gpu.json"
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR")
           or str(ROOT / ".cache" / "torch_extensions")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--smoke", "--out",
                           str(out), "--work", str(tmp_path / "work"), "--council-shape", str(tmp_path / "shape")],
                          capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures == json.loads(out.read_text())  # the last line and the file agree
    sections = figures["sections"]
    assert {name: s["ok"] for name, s in sections.items()} == dict.fromkeys(
        ("throughput", "resume", "distributed", "council"), True), json.dumps(sections)[:3000]

    t = sections["throughput"]
    assert t["ours"]["tokens_per_s"] > 0 and t["hf_trainer"]["eager"]["tokens_per_s"] > 0 and t["ratio_vs_hf"] > 0
    assert t["nvml"]["hub_accepts_samples"] is True and t["nvml"]["gpus_seen"] == 0  # no GPU: said, not failed
    r = sections["resume"]["default"]
    assert r["bitwise"] and r["stopped_at"] == r["steps"] // 2  # the CPU is deterministic: bitwise equal
    d = sections["distributed"]
    assert d["ddp"]["equal"] and d["zero2"]["equal"] and d["backend"] == "gloo"
    c = sections["council"]
    assert c["members"] == 3 and c["generated_tokens"] > 0 and c["batched_same_text_as_one_by_one"] == 3
    assert figures["goals"]["resume_equal"] and figures["goals"]["ddp_equal"]
    assert figures["machine"]["torch"] and figures["machine"]["date"]

    with tarfile.open(out.with_name("gpu.runs.tar.gz")) as tar:  # every offline run, replayable here
        names = tar.getnames()
    assert any(n.endswith("/run.json") for n in names) and any(n.endswith("/spool.jsonl") for n in names)
    assert "===== throughput =====" in out.with_name("gpu.log").read_text()


def test_the_kit_refuses_cuda_where_there_is_none(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--device cpu --smoke" in done.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--sections", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown section" in bad.stderr


@pytest.mark.parametrize("archive", sorted((ROOT / "bench" / "results").glob("*.runs.tar.gz")), ids=lambda p: p.name)
def test_runs_recorded_on_a_gpu_machine_replay_here(archive, tmp_path):
    """The offline runs a GPU kit run brought back (bench/results/) go into a store with their metrics."""
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    db = tmp_path / "w.duckdb"
    for run_id in runs:
        result = CliRunner().invoke(main, ["train", "replay", run_id, "--out-dir", str(tmp_path / "runs"),
                                           "--db", str(db)])
        assert result.exit_code == 0 and "spool empty" in result.output, result.output
    with Store(db) as store:
        assert store.list_runs()["id"].sort().to_list() == runs
        done = store.list_runs(status="done")
        assert not done.is_empty() and all(store.get_run(r)["device"].startswith("cuda") for r in done["id"])
        names = {n for r in done["id"] for n in store.read_metrics(r)["name"]}
        assert {"loss", "tokens_per_s", "mfu", "gpu_util"} <= names  # MFU and NVML readings: CUDA-only figures
