"""Pipelines: recent runs, each run's steps with a failed step's cell and error, schedules to pause and resume."""

from bi_ide.dashboards.pipelines import PipelinesPage, pipelines_state
from bi_ide.dashboards.template import page

page(PipelinesPage(pipelines=pipelines_state()), title="Pipelines", active="pipelines").servable()
