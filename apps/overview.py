"""The landing page (the index of `bi-ide serve`): hub health, store size, counts, links."""

from bi_ide.dashboards.overview import OverviewPage, overview_state
from bi_ide.dashboards.template import page

page(OverviewPage(overview=overview_state()), title="Overview", active="overview").servable()
