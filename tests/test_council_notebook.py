"""05-council-session's parameters feed ``ask`` one to one, and papermill runs it on a real store."""

from __future__ import annotations

import inspect
from pathlib import Path

import nbformat
import papermill
import pytest
from test_council import seed_fleet

from bi_ide.council.backends import KINDS
from bi_ide.council.deliberation import ask
from bi_ide.store import Store
from bi_ide.store.council import URGENCIES

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "05-council-session.ipynb"
NOT_ASK = {"db_path"}  # opens the store that ask() is given


def test_parameters_are_ask_arguments():
    signature = inspect.signature(ask).parameters
    params = papermill.inspect_notebook(str(NOTEBOOK))
    for name in params:
        if name in NOT_ASK:
            continue
        assert name in signature, f"05-council-session: {name} is not an argument of ask()"
    assert params["question"]["inferred_type_name"] == "str" and params["rounds"]["inferred_type_name"] == "int"
    assert params["urgency"]["default"].strip('"') in URGENCIES
    assert params["backend"]["default"].strip('"') in KINDS
    assert int(params["rounds"]["default"]) in (1, 2)
    assert set(params) - NOT_ASK <= {"question", "urgency", "backend", "rounds"}


@pytest.mark.slow
def test_papermill_runs_a_session_on_a_store_file(tmp_path):
    db = tmp_path / "council.duckdb"
    with Store(db) as store:
        seed_fleet(store)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters={
        "db_path": str(db), "question": "هل ندرب النموذج الضخم xlarge على اللابتوب؟", "urgency": "high"},
        kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK.parent))
    decision_cell = next(c for c in nbformat.read(out, as_version=4).cells if "decision = ask(" in c.source)
    assert "'decision': 'rejected'" in decision_cell.outputs[0]["data"]["text/plain"]
    with Store(db) as store:
        d = store.list_council_decisions().row(0, named=True)
    assert d["decision"] == "rejected" and d["urgency"] == "high"
