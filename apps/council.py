"""Council: ask in Arabic or English, watch the members answer, the decision with its votes, evidence and calibration."""

from bi_ide.dashboards.council import CouncilPage, council_state
from bi_ide.dashboards.template import page

page(CouncilPage(council=council_state()), title="Council", active="council").servable()
