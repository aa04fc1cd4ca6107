"""constraints.txt pins what pyproject.toml asks for, portably (see `make lock`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_pin_is_exact_and_portable():
    for name, version in _pins().items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.!]*", version), f"{name}=={version}: want a plain version, no +local label"


def test_torch_is_pinned_without_cuda_wheels():
    pins = _pins()
    assert pins["torch"] == "2.13.0"
    cuda = [n for n in pins if (n.startswith("nvidia-") and n != "nvidia-ml-py") or n == "triton"]
    assert not cuda, f"CUDA wheels in constraints.txt: {cuda}; regenerate with make lock"
    assert "bi-ide" not in pins


def test_pyproject_dependencies_are_pinned():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = _pins()
    missing = [r for r in map(Requirement, wanted) if canonicalize_name(r.name) not in pins]
    assert not missing, f"not in constraints.txt: {missing}; run make install && make lock"
    outside = [f"{r.name}=={pins[canonicalize_name(r.name)]} vs {r.specifier}" for r in map(Requirement, wanted)
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"constraints.txt pins outside pyproject.toml's ranges: {outside}"
