"""Notebooks follow the house rules that papermill and nbval rely on.

One cell tagged ``parameters``, one ``name: type = default  # help`` line per parameter, and
committed outputs free of machine-specific text, so ``pytest --nbval notebooks/`` can compare them.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
PARAMETER_LINE = re.compile(r"^[a-z_][a-z0-9_]*: [\w\[\], |.]+ = .+  # \S.*$")
# Text that changes from one machine or one run to the next.
UNSTABLE = re.compile(r"0x[0-9a-f]{6,}|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\|\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> Path:
    return request.param


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


def test_one_parameters_cell(notebook):
    tagged = [c for c in _cells(notebook) if "parameters" in _tags(c)]
    assert len(tagged) == 1, f"{notebook.name}: {len(tagged)} cells tagged 'parameters', want 1"


def test_parameter_lines_carry_type_default_and_help(notebook):
    (cell,) = [c for c in _cells(notebook) if "parameters" in _tags(c)]
    bad = [line for line in cell.source.splitlines() if line.strip() and not PARAMETER_LINE.match(line)]
    assert not bad, f"{notebook.name}: write parameters as `name: type = default  # help`, not {bad}"
    for name, param in papermill.inspect_notebook(str(notebook)).items():
        assert param["help"], f"{notebook.name}: parameter {name} has no help comment"
        assert param["inferred_type_name"] != "None", f"{notebook.name}: parameter {name} has no type"


def test_checked_outputs_are_machine_independent(notebook):
    for i, cell in enumerate(_cells(notebook)):
        if cell.cell_type != "code" or "nbval-ignore-output" in _tags(cell):
            continue
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            found = UNSTABLE.search(text)
            assert not found, (
                f"{notebook.name} cell {i} shows {found[0]!r}, which differs between machines; "
                "drop it from the output or tag the cell nbval-ignore-output"
            )


def test_first_cell_says_how_to_run_it_with_papermill(notebook):
    first = _cells(notebook)[0]
    assert first.cell_type == "markdown" and "papermill notebooks/" in first.source, (
        f"{notebook.name}: open with a markdown cell that shows a `papermill notebooks/... -p name value` command"
    )


def test_code_cells_only_call_the_package(notebook):
    for i, cell in enumerate(_cells(notebook)):
        if cell.cell_type != "code":
            continue
        found = re.search(r"^\s*(async\s+def|def|class)\s+\w+", cell.source, re.MULTILINE)
        assert not found, (
            f"{notebook.name} cell {i} defines {found[0].strip()!r}; move it into the package and call it"
        )
