"""Pipeline files: YAML naming notebooks to run with papermill, in dependency order.

.. code-block:: yaml

    name: quickstart
    description: Prepare a tiny corpus, train on it, evaluate.
    params:                      # the pipeline's parameters and their defaults
      seed: 0
    steps:
      - name: prepare
        notebook: notebooks/01-prepare-corpus.ipynb   # relative to the project root
        params: {seed: "{{ seed }}", out: "data/corpora/qs-{{ seed }}"}
      - name: train
        notebook: notebooks/02-train.ipynb
        needs: [prepare]

A step parameter that is exactly ``"{{ name }}"`` gets the pipeline parameter's value with its
type; inside longer text it is formatted in. Overrides (``-p key=value``) keep the default's type
and refuse names the pipeline does not declare. Every mistake is a ConfigError naming the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bi_ide import settings
from bi_ide.errors import ConfigError, NotFoundError

PIPELINE_KEYS = ("name", "description", "params", "steps")
STEP_KEYS = ("name", "notebook", "params", "needs")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Step:
    """One notebook of a pipeline, the parameters it gets and the steps it waits for."""

    name: str
    notebook: str
    params: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline file; ``steps`` are in an order that runs every step after its needs."""

    name: str
    steps: tuple[Step, ...]
    params: dict = field(default_factory=dict)
    description: str = ""
    root: Path = field(default_factory=Path.cwd)
    source: str = "<pipeline>"

    def notebook_path(self, step: Step) -> Path:
        return (self.root / step.notebook).resolve()

    def resolve(self, overrides: dict | None = None) -> dict:
        """The pipeline's params with ``overrides`` applied; unknown names are refused."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ConfigError(f"pipeline {self.name} has no parameter(s) {unknown}; "
                              f"valid: {', '.join(self.params) or 'none (it declares no params)'}")
        return {**self.params, **overrides}

    def step_params(self, step: Step, params: dict) -> dict:
        """``step``'s papermill parameters with the pipeline's ``params`` filled in."""
        return {key: _fill(value, params) for key, value in step.params.items()}

    def dependants(self, name: str) -> list[str]:
        """Every step that needs ``name``, directly or through another step."""
        found: list[str] = []
        for step in self.steps:  # in dependency order, so one pass sees needs before needers
            if name in step.needs or any(n in found for n in step.needs):
                found.append(step.name)
        return found


def find_pipeline(name_or_path: str | Path, root: Path | None = None) -> Path:
    """``pipelines/NAME.yaml`` (or .yml) under the project root, or a path to a YAML file."""
    root = root or settings.project_root()
    given = Path(name_or_path).expanduser()
    if given.suffix in (".yaml", ".yml") or given.parent != Path("."):
        if given.is_file():
            return given.resolve()
        raise NotFoundError(f"no pipeline file {given}")
    for suffix in (".yaml", ".yml"):
        candidate = root / "pipelines" / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in (root / "pipelines").glob("*.y*ml"))
    raise NotFoundError(f"no pipeline {str(name_or_path)!r} in {root / 'pipelines'}; "
                        f"known: {', '.join(known) or 'none'} (or give a path to a .yaml file)")


def load_pipeline(name_or_path: str | Path, root: Path | None = None, *, check_notebooks: bool = True) -> Pipeline:
    """Read and check a pipeline by name (``pipelines/NAME.yaml``) or path.

    Notebook paths are relative to ``root`` (default: the project root). With ``check_notebooks``,
    each notebook must exist and every step parameter must be one its parameters cell declares.
    """
    root = (root or settings.project_root()).resolve()
    path = find_pipeline(name_or_path, root)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    pipeline = parse_pipeline(data, root=root, source=str(path))
    if check_notebooks:
        check_notebook_params(pipeline)
    return pipeline


def parse_pipeline(data, *, root: Path, source: str = "<pipeline>") -> Pipeline:
    """A Pipeline from the YAML's mapping; every error names ``source`` and the bad key or step."""
    where = source
    _mapping(data, where, PIPELINE_KEYS)
    for key in ("name", "steps"):
        if key not in data:
            raise ConfigError(f"{where}: '{key}' is required (keys: {', '.join(PIPELINE_KEYS)})")
    name = data["name"]
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-', '_' or '.' (at most 100)")
    params = data.get("params") or {}
    _mapping(params, f"{where}: params")
    steps_data = data["steps"]
    if not isinstance(steps_data, list) or not steps_data:
        raise ConfigError(f"{where}: 'steps' must be a non-empty list of steps")
    steps = [_parse_step(s, i, where, params) for i, s in enumerate(steps_data)]
    names = [s.name for s in steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: step name(s) {dupes} appear more than once; step names must be unique")
    for step in steps:
        unknown = [n for n in step.needs if n not in names]
        if unknown:
            raise ConfigError(f"{where}: step {step.name!r} needs unknown step(s) {unknown}; steps: {', '.join(names)}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be text")
    return Pipeline(name=name, steps=tuple(_dependency_order(steps, where)), params=dict(params),
                    description=description.strip(), root=root, source=source)


def check_notebook_params(pipeline: Pipeline) -> None:
    """Each notebook exists, and each step passes only parameters its notebook's parameters cell has."""
    import papermill

    for step in pipeline.steps:
        path = pipeline.notebook_path(step)
        if not path.is_file():
            raise ConfigError(f"{pipeline.source}: step {step.name!r} runs {step.notebook}, which does not exist "
                              f"(looked at {path})")
        declared = papermill.inspect_notebook(str(path))
        unknown = sorted(set(step.params) - set(declared))
        if declared and unknown:
            raise ConfigError(f"{pipeline.source}: step {step.name!r} passes {unknown}, which {step.notebook} does "
                              f"not declare; its parameters: {', '.join(declared)}")


def parse_assignments(pairs: list[str] | tuple[str, ...], pipeline: Pipeline) -> dict:
    """``key=value`` strings as values of each parameter's default type (YAML syntax for lists, maps)."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"parameter {pair!r} is not key=value, e.g. -p seed=1")
        if key not in pipeline.params:
            raise ConfigError(f"pipeline {pipeline.name} has no parameter {key!r}; "
                              f"valid: {', '.join(pipeline.params) or 'none (it declares no params)'}")
        values[key] = _convert(key, raw, pipeline.params[key])
    return values


def _convert(key: str, raw: str, default):
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("want true or false")
            return raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, str):
            return raw
        value = yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as e:
        kind = type(default).__name__
        raise ConfigError(f"parameter {key}={raw!r} is not of type {kind}, like its default {default!r}: {e}") from e
    if default is not None and type(value) is not type(default):
        raise ConfigError(f"parameter {key}={raw!r} is a {type(value).__name__}; its default "
                          f"{default!r} is a {type(default).__name__}")
    return value


def _mapping(value, where: str, allowed: tuple[str, ...] | None = None) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of key: value, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: keys must be text, got {bad}")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")


def _parse_step(data, index: int, where: str, pipeline_params: dict) -> Step:
    _mapping(data, f"{where}: step {index + 1}", STEP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: step {index + 1} needs a name of letters, digits, '-', '_' or '.', got {name!r}")
    here = f"{where}: step {name!r}"
    notebook = data.get("notebook")
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        raise ConfigError(f"{here}: 'notebook' must be the path of an .ipynb file, got {notebook!r}")
    params = data.get("params") or {}
    _mapping(params, f"{here}: params")
    for key, value in params.items():
        missing = sorted(set(_references(value)) - set(pipeline_params))
        if missing:
            raise ConfigError(f"{here}: params.{key} refers to {missing}, not pipeline params; "
                              f"declare them under the top-level params: (have: {', '.join(pipeline_params) or 'none'})")
    needs = data.get("needs") or []
    if isinstance(needs, str):
        needs = [needs]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise ConfigError(f"{here}: 'needs' must be a list of step names")
    if name in needs:
        raise ConfigError(f"{here}: a step cannot need itself")
    return Step(name=name, notebook=notebook, params=dict(params), needs=tuple(dict.fromkeys(needs)))


def _references(value) -> list[str]:
    if isinstance(value, str):
        return REFERENCE.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _fill(value, params: dict):
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return params[whole[1]]
        return REFERENCE.sub(lambda m: _text(params[m[1]]), value)
    if isinstance(value, dict):
        return {k: _fill(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    return value


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _dependency_order(steps: list[Step], where: str) -> list[Step]:
    """Steps so that each comes after its needs, otherwise in file order; a cycle is refused."""
    done: list[Step] = []
    placed: set[str] = set()
    pending = list(steps)
    while pending:
        ready = next((s for s in pending if set(s.needs) <= placed), None)
        if ready is None:
            raise ConfigError(f"{where}: the steps' needs form a cycle: {' -> '.join(_cycle(pending))}")
        pending.remove(ready)
        placed.add(ready.name)
        done.append(ready)
    return done


def _cycle(pending: list[Step]) -> list[str]:
    needs = {s.name: [n for n in s.needs if any(p.name == n for p in pending)] for s in pending}
    path = [pending[0].name]
    while path.count(path[-1]) < 2:  # every pending step needs another pending one; walk until a repeat
        path.append(needs[path[-1]][0])
    return path[path.index(path[-1]):]
