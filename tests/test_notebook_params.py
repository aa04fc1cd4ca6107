"""The pipeline notebooks' parameters feed the package's own names, and evaluate.py's numbers hold.

01-prepare-corpus feeds ``prepare_corpus`` (a few parameters renamed, listed in RENAMED), 02-train
feeds ``TrainConfig`` one to one, 03-evaluate feeds ``evaluate_model`` and ``sample_table``.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from pathlib import Path

import papermill
import param
import pytest
import torch

from bi_ide.errors import ConfigError, NotFoundError
from bi_ide.store import Store
from bi_ide.training import evaluate
from bi_ide.training.config import RECIPES, TrainConfig, debug
from bi_ide.training.corpus import prepare_corpus
from bi_ide.training.trainer import train

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
PREPARE = NOTEBOOKS / "01-prepare-corpus.ipynb"
TRAIN = NOTEBOOKS / "02-train.ipynb"
EVALUATE = NOTEBOOKS / "03-evaluate.ipynb"
# 01-prepare-corpus's names that differ from prepare_corpus's: sources is one comma-separated
# string (a list there), max_mb_per_source is in MiB (bytes there), db_path opens the store.
RENAMED = {"out": "out_dir", "max_mb_per_source": "max_bytes_per_source", "db_path": "store"}
# 02-train's parameters that are not TrainConfig's (nproc and hostfile: where the launcher starts it).
NOT_CONFIG = {"recipe", "summary_path", "db_path", "nproc", "hostfile"}
# 02-train: these mean "the recipe's value" and are left out of the config.
KEEP_RECIPE = (0, 0.0, "")


def _params(path: Path) -> dict:
    return papermill.inspect_notebook(str(path))


def _type_name(p: param.Parameter) -> str:
    # Boolean and Integer before Number: param.Integer is a Number.
    for cls, name in ((param.Boolean, "bool"), (param.Integer, "int"), (param.Number, "float"),
                      (param.String, "str"), (param.Selector, "str")):
        if isinstance(p, cls):
            return name
    raise AssertionError(f"no notebook type for {type(p).__name__}")


def test_prepare_notebook_parameters_are_prepare_corpus_arguments():
    signature = inspect.signature(prepare_corpus).parameters
    for name, spec in _params(PREPARE).items():
        target = RENAMED.get(name, name)
        assert target in signature, f"01-prepare-corpus: {name} is not a prepare_corpus argument"
        if name not in RENAMED and name != "sources":
            assert signature[target].annotation == spec["inferred_type_name"], (
                f"01-prepare-corpus: {name} is {spec['inferred_type_name']}, prepare_corpus takes "
                f"{signature[target].annotation}")
    assert _params(PREPARE)["db_path"]["default"] == '""'


def test_train_notebook_parameters_are_train_config_parameters():
    params = _params(TRAIN)
    assert set(params) >= NOT_CONFIG
    for name, spec in params.items():
        if name in NOT_CONFIG:
            continue
        assert name in TrainConfig.param and name != "name", f"02-train: {name} is not a TrainConfig parameter"
        want = _type_name(TrainConfig.param[name])
        assert spec["inferred_type_name"] == want, (
            f"02-train: {name} is {spec['inferred_type_name']}, TrainConfig's is {want}")
        default = ast.literal_eval(spec["default"])
        if default not in KEEP_RECIPE or name == "max_steps":
            TrainConfig.param[name]._validate(default)  # a real default must be a valid value
    assert ast.literal_eval(params["recipe"]["default"]) in RECIPES


def test_evaluate_notebook_parameters():
    params = _params(EVALUATE)
    assert {name: spec["inferred_type_name"] for name, spec in params.items()} == {
        "model": "str", "corpus": "str", "prompts": "str", "max_new_tokens": "int", "temperature": "float",
        "db_path": "str",
    }
    signature = inspect.signature(evaluate.sample_table).parameters
    assert {"model", "prompts", "max_new_tokens", "temperature"} <= set(signature)
    assert {"model", "corpus"} <= set(inspect.signature(evaluate.evaluate_model).parameters)


def test_pipeline_notebooks_chain_their_defaults():
    """02 trains on the corpus 01 builds by default; 03 defaults to the model 02 registers last."""
    assert _params(PREPARE)["out"]["default"] == _params(TRAIN)["corpus"]["default"]
    assert _params(EVALUATE)["model"]["default"] == '""'


def test_train_notebook_refuses_a_bad_value_naming_it(tmp_path, tmp_db):
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(TRAIN), str(tmp_path / "out.ipynb"), parameters={"max_steps": -1},
                                   cwd=str(NOTEBOOKS), progress_bar=False)
    assert info.value.ename == "ConfigError"
    assert "max_steps" in info.value.evalue
    assert not tmp_db.exists(), "the config is checked before the store is opened or anything trained"


# -- evaluate.py ----------------------------------------------------------------------------------
CODE = textwrap.dedent('''
    def fibonacci(n):
        """The n-th Fibonacci number."""
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a
''')


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    code = root / "code"
    code.mkdir()
    for i in range(12):
        (code / f"module_{i}.py").write_text(CODE.replace("fibonacci", f"fibonacci_{i}") * 8)
    prepare_corpus(["builtin:quran", str(code)], root / "tiny", vocab_size=512, max_bytes_per_source=150_000,
                   val_fraction=0.1, seed=0)
    prepare_corpus([str(code)], root / "other", vocab_size=300, val_fraction=0.2, seed=0)
    return root


@pytest.fixture(scope="module")
def trained(corpora, tmp_path_factory):
    """A 10-step debug run in its own store: (store, summary)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    store = Store(memory=True)
    config = debug(corpus=str(corpora / "tiny"), out_dir=str(tmp_path_factory.mktemp("runs")), max_steps=10,
                   eval_interval=5, eval_batches=2, run_name="nb-eval")
    summary = train(config, store, handle_signals=False)
    yield store, summary
    store.close()
    torch.set_num_threads(threads)


def test_evaluate_model_repeats_the_runs_best_validation(trained):
    store, summary = trained
    result = evaluate.evaluate_model(store)  # the newest model: this run's best checkpoint
    assert (result["model"], result["version"]) == ("nb-eval", 1)
    assert result["windows"] == {"batches": 2, "batch_size": 8, "seq_len": 64}
    assert set(result["domains"]) == {"arabic", "code"}
    assert result["val_loss"] == pytest.approx(summary["best_val_loss"], rel=1e-5)
    bpb = {f"val_bpb_{d}": v["bpb"] for d, v in result["domains"].items()}
    if summary["best_val_loss"] == pytest.approx(summary["val"]["val_loss"], rel=1e-9):  # best is the last
        assert bpb == pytest.approx({k: summary["val"][k] for k in bpb}, rel=1e-5)
    table = evaluate.evaluation_table(result)
    assert table.columns == ["domain", "val_loss", "val_bpb"] and table["domain"].to_list() == ["arabic", "code"]


def test_evaluate_model_refuses_a_corpus_with_another_tokenizer(trained, corpora):
    store, _ = trained
    with pytest.raises(ConfigError, match="another tokenizer"):
        evaluate.evaluate_model(store, "nb-eval", corpora / "other")


def test_newest_model_in_an_empty_store_says_what_to_do(store):
    with pytest.raises(NotFoundError, match="02-train"):
        evaluate.newest_model(store)


def test_sample_table_is_greedy_and_repeatable(trained):
    store, _ = trained
    first = evaluate.sample_table(store, "nb-eval", "def fib(n):|بسم الله", max_new_tokens=8, temperature=0.0)
    assert first["prompt"].to_list() == ["def fib(n):", "بسم الله"]
    assert first.equals(evaluate.sample_table(store, "nb-eval", ["def fib(n):", "بسم الله"], max_new_tokens=8))
    with pytest.raises(ConfigError, match="max_new_tokens"):
        evaluate.sample_table(store, "nb-eval", "x", max_new_tokens=0)


def test_run_overview_and_summary_file(trained, tmp_path):
    store, summary = trained
    overview = evaluate.run_overview(summary)
    assert overview == {"status": "done", "steps": 10, "model": "nb-eval", "val_domains": ["arabic", "code"],
                        "loss_fell": True}
    written = json.loads(evaluate.write_summary(summary, tmp_path / "s" / "summary.json").read_text())
    assert written["run_id"] == summary["run_id"] and written["model_id"] == summary["model"]["id"]
    table = evaluate.metrics_table(store, summary["run_id"], points=4)
    assert table.columns[:2] == ["step", "loss"] and 1 <= table.height <= 5


def test_project_path_keeps_data_out_of_the_notebooks_folder(monkeypatch):
    root = Path(__file__).parent.parent.resolve()
    monkeypatch.chdir(root / "notebooks")
    assert evaluate.project_path("data/corpora/x") == root / "data" / "corpora" / "x"
    assert evaluate.project_path("/abs/x") == Path("/abs/x")
    assert evaluate.split_list(" builtin:quran, ,builtin:stdlib ") == ["builtin:quran", "builtin:stdlib"]
