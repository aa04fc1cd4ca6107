"""Pipeline files, the runner and `bi-ide pipeline run`, on small notebooks made in tmp_path."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from bi_ide.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from bi_ide.pipelines import load_pipeline, parse_assignments, run_pipeline
from bi_ide.pipelines.cli import pipeline as pipeline_cli
from bi_ide.pipelines.runner import StoreFile
from bi_ide.store import Store

ROOT = Path(__file__).parent.parent

STEPS = """
name: demo
params: {x: 2, boom: false}
steps:
  - {name: double, notebook: notebooks/echo.ipynb, params: {x: "{{ x }}", label: "x is {{ x }}"}}
  - {name: check, notebook: notebooks/echo.ipynb, params: {x: 5, fail: "{{ boom }}"}, needs: [double]}
  - {name: report, notebook: notebooks/echo.ipynb, needs: [check]}
  - {name: side, notebook: notebooks/echo.ipynb, needs: [double]}
"""


def notebook(path: Path) -> Path:
    """A notebook with a parameters cell, a cell that prints and a cell that raises when told to."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    params = nbformat.v4.new_code_cell('x: int = 1  # a number\nfail: bool = False  # raise\nlabel: str = ""  # text')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# echo"), params,
                nbformat.v4.new_code_cell("print(label, x * 2)"),
                nbformat.v4.new_code_cell("if fail:\n    raise ValueError(f'x={x} is wrong')")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder with notebooks/echo.ipynb and pipelines/demo.yaml."""
    notebook(tmp_path / "notebooks" / "echo.ipynb")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "demo.yaml").write_text(STEPS)
    return tmp_path


def write(project: Path, text: str, name: str = "bad") -> Path:
    path = project / "pipelines" / f"{name}.yaml"
    path.write_text(text)
    return path


def outputs(path: str) -> list[str]:
    """The printed text of an executed notebook, without papermill's timing metadata."""
    nb = nbformat.read(path, as_version=4)
    return [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


# -- pipeline files ---------------------------------------------------------------------
def test_a_pipeline_is_read_in_dependency_order_with_typed_params(project):
    (project / "pipelines" / "demo.yaml").write_text(STEPS.replace(
        "  - {name: double", "  - {name: late, notebook: notebooks/echo.ipynb, needs: [side]}\n  - {name: double"))
    spec = load_pipeline("demo", project)
    names = [s.name for s in spec.steps]
    assert names.index("late") > names.index("side") > names.index("double")
    params = spec.resolve({"x": 7})
    assert spec.step_params(spec.steps[0], params) == {"x": 7, "label": "x is 7"}
    assert spec.dependants("double") == ["check", "report", "side", "late"]


@pytest.mark.parametrize("text, message", [
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb}]\nextra: 1\n", "unknown key(s) ['extra']"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb, retries: 2}]\n", "unknown key(s) ['retries']"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb, needs: [b]}]\n", "needs unknown step(s) ['b']"),
    ("name: p\nsteps:\n  - {name: a, notebook: notebooks/echo.ipynb, needs: [b]}\n"
     "  - {name: b, notebook: notebooks/echo.ipynb, needs: [a]}\n", "form a cycle: a -> b -> a"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/nope.ipynb}]\n", "notebooks/nope.ipynb, which does not exist"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb, params: {x: '{{ y }}'}}]\n", "refers to ['y']"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb, params: {z: 1}}]\n", "passes ['z'], which"),
    ("name: p\nsteps:\n  - {name: a, notebook: notebooks/echo.ipynb}\n  - {name: a, notebook: notebooks/echo.ipynb}\n",
     "appear more than once"),
    ("name: p\nsteps: []\n", "non-empty list"),
    ("steps: [{name: a, notebook: notebooks/echo.ipynb}]\n", "'name' is required"),
    ("name: p\nsteps: [{name: a, notebook: notebooks/echo.ipynb}\n", "not valid YAML"),
])
def test_bad_pipeline_files_are_refused_with_the_reason(project, text, message):
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(project, text), project)
    assert message in str(e.value) and "bad.yaml" in str(e.value)


def test_unknown_pipeline_lists_the_known_ones(project):
    with pytest.raises(NotFoundError, match="known: demo"):
        load_pipeline("nightly", project)


def test_overrides_keep_the_default_type_and_refuse_unknown_names(project):
    spec = load_pipeline("demo", project)
    assert parse_assignments(["x=3", "boom=yes"], spec) == {"x": 3, "boom": True}
    with pytest.raises(ConfigError, match="no parameter 'y'; valid: x, boom"):
        parse_assignments(["y=1"], spec)
    with pytest.raises(ConfigError, match="x='abc' is not of type int"):
        parse_assignments(["x=abc"], spec)
    with pytest.raises(ConfigError, match="not key=value"):
        parse_assignments(["x"], spec)


@pytest.mark.parametrize("name", ["quickstart", "nightly"])
def test_shipped_pipelines_are_valid(name):
    notebooks_ready = all((ROOT / "notebooks" / n).is_file()
                          for n in ("01-prepare-corpus.ipynb", "02-train.ipynb", "03-evaluate.ipynb"))
    spec = load_pipeline(name, ROOT, check_notebooks=notebooks_ready)
    assert [s.name for s in spec.steps] == ["prepare", "train", "evaluate"]
    train = spec.step_params(spec.steps[1], spec.resolve())
    assert train["recipe"] == {"quickstart": "debug", "nightly": "small-cpu"}[name]
    assert spec.step_params(spec.steps[2], spec.resolve())["model"] == train["run_name"]


# -- the store's pipeline records ---------------------------------------------------------
def test_pipeline_records_refuse_bad_changes(store):
    run = store.create_pipeline_run("p", steps=[{"name": "a", "notebook": "a.ipynb"}], params={"x": 1})
    assert run["status"] == "queued" and run["steps"][0]["status"] == "pending" and run["params"] == {"x": 1}
    store.update_pipeline_run(run["id"], status="running")
    done = store.update_pipeline_run(run["id"], status="done")
    assert done["finished_at"] is not None
    with pytest.raises(ConflictError, match="is done and cannot become running"):
        store.update_pipeline_run(run["id"], status="running")
    with pytest.raises(ValidationError, match="allowed"):
        store.update_pipeline_step(run["id"], "a", notebook="b.ipynb")
    with pytest.raises(NotFoundError, match="has no step 'b'"):
        store.update_pipeline_step(run["id"], "b", status="done")
    with pytest.raises(ValidationError, match="trigger"):
        store.create_pipeline_run("p", steps=[{"name": "a", "notebook": "a.ipynb"}], trigger="cron")


# -- running -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_failing_step_is_recorded_and_its_dependants_skipped(project, store):
    seen = []
    run = run_pipeline(load_pipeline("demo", project), {"boom": True}, store, on_step=seen.append)
    steps = {s["name"]: s for s in run["steps"]}
    assert run["status"] == "failed" and run["trigger"] == "manual"
    assert run["error"] == "step 'check' failed at cell 4: ValueError: x=5 is wrong"
    assert steps["double"]["status"] == steps["side"]["status"] == "done"  # side needs only double
    assert steps["check"]["status"] == "failed" and steps["check"]["failed_cell"] == 4
    assert steps["check"]["error"] == "ValueError: x=5 is wrong" and steps["check"]["duration_s"] > 0
    assert steps["report"]["status"] == "skipped" and "needs check" in steps["report"]["error"]
    assert [s["name"] for s in seen] == ["double", "check", "report", "side"]
    archive = Path(run["archive_path"])
    assert archive == project / "data" / "runs" / run["id"]
    assert sorted(p.name for p in archive.iterdir()) == ["check.ipynb", "double.ipynb", "side.ipynb"]
    assert outputs(steps["double"]["output_path"]) == ["x is 2 4\n"]
    assert steps["double"]["params"] == {"x": 2, "label": "x is 2"} and run["params"] == {"x": 2, "boom": True}


@pytest.mark.slow
def test_the_same_params_give_the_same_outputs(project, store):
    spec = load_pipeline(write(project, "name: one\nparams: {x: 3}\nsteps:\n"
                                        "  - {name: a, notebook: notebooks/echo.ipynb, params: {x: '{{ x }}'}}\n"),
                         project)
    first, second = (run_pipeline(spec, {"x": 21}, store) for _ in range(2))
    assert first["status"] == second["status"] == "done" and first["id"] != second["id"]
    assert outputs(first["steps"][0]["output_path"]) == outputs(second["steps"][0]["output_path"]) == [" 42\n"]
    runs = store.list_pipeline_runs(pipeline="one")
    assert runs.height == 2 and set(runs["status"]) == {"done"}


@pytest.mark.slow
def test_the_store_file_is_free_while_the_notebooks_run(project, tmp_db):
    """Embedded, the runner opens the file only to record, so a notebook can open it too."""
    nb = nbformat.read(project / "notebooks" / "echo.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        f"from bi_ide.store import Store\nwith Store({str(tmp_db)!r}) as s:\n    print(s.schema_version() > 0)"))
    nbformat.write(nb, project / "notebooks" / "store.ipynb")
    spec = load_pipeline(write(project, "name: s\nsteps: [{name: a, notebook: notebooks/store.ipynb}]\n"), project)
    run = run_pipeline(spec, None, StoreFile(tmp_db))
    assert run["status"] == "done", run
    assert outputs(run["steps"][0]["output_path"])[-1] == "True\n"


# -- the CLI -----------------------------------------------------------------------------
def cli(*args):
    return CliRunner().invoke(pipeline_cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("args, message", [
    (["run", "demo", "-p", "nope=1"], "has no parameter 'nope'; valid: x, boom"),
    (["run", "demo", "-p", "x=abc"], "x='abc' is not of type int"),
    (["run", "demo", "-p", "x"], "not key=value"),
    (["run", "nothere"], "no pipeline 'nothere'"),
    (["run", "pipelines/missing.yaml"], "no pipeline file pipelines/missing.yaml"),
    (["run"], "Missing argument 'NAME'"),
    (["schedule", "demo", "--cron", "61 * * * *"], "is not a 5-field cron expression"),
])
def test_cli_refuses_wrong_arguments_in_one_line(project, monkeypatch, args, message):
    monkeypatch.chdir(project)
    result = cli(*args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_run_shows_each_step_and_the_failing_cell(project, monkeypatch, tmp_db):
    monkeypatch.chdir(project)
    result = cli("run", "demo", "-p", "boom=true")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["double", "done"] for line in lines)
    assert any(line.split()[:2] == ["report", "skipped"] for line in lines)
    assert "Error: step 'check' failed at cell 4: ValueError: x=5 is wrong" in result.output
    with Store(tmp_db) as store:
        run = store.list_pipeline_runs().row(0, named=True)
    assert f"notebook: {project / 'data' / 'runs' / run['id'] / 'check.ipynb'}" in result.output
    assert run["status"] == "failed" and json.loads(run["params"]) == {"x": 2, "boom": True}
    shown = cli("show", run["id"])
    assert shown.exit_code == 0 and "check.ipynb" in shown.output


@pytest.mark.skipif(os.name == "nt", reason="Windows kernels use loopback TCP")
def test_kernels_talk_to_the_runner_over_private_sockets(project, monkeypatch, capfd):
    monkeypatch.chdir(project)
    folders = str(Path(tempfile.gettempdir()) / "bi-ide-kernel-*")
    before = set(glob.glob(folders))
    assert cli("run", "demo").exit_code == 0
    assert "without encryption" not in capfd.readouterr().err  # the kernel's warning about loopback TCP
    assert set(glob.glob(folders)) == before  # the socket folders went with their kernels
