"""Workers: a card per machine (green / yellow / red), alerts to acknowledge, the command queue and the SLO budgets."""

from bi_ide.dashboards.template import page
from bi_ide.dashboards.workers import WorkersPage, workers_state

page(WorkersPage(fleet=workers_state()), title="Workers", active="workers").servable()
