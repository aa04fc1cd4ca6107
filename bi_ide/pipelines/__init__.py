"""Notebook pipelines: YAML files of papermill steps, the runner that records them, cron schedules.

>>> from bi_ide.pipelines import load_pipeline, run_pipeline
>>> run = run_pipeline(load_pipeline("quickstart"), {"seed": 1}, bi_ide.connect())
"""

from bi_ide.pipelines.runner import StoreFile, run_pipeline
from bi_ide.pipelines.spec import Pipeline, Step, load_pipeline, parse_assignments

__all__ = ["Pipeline", "Step", "StoreFile", "load_pipeline", "parse_assignments", "run_pipeline"]
