"""The module ``panel serve --plugins bi_ide.hub.plugin`` imports: opens the store, gives ROUTES.

Importing it takes the store file for this process (``BI_IDE_DB``); the dashboards served by the
same process reach the same Store through ``bi_ide.connect()``.
"""

from bi_ide.hub import app
from bi_ide.pipelines.schedule import start_scheduler

HUB = app.Hub.from_env()
ROUTES = HUB.routes()
SCHEDULER = start_scheduler(HUB.store, interval_s=30)  # runs due pipeline schedules from this process
BACKGROUND = HUB.start_background()  # the domains' own background work (fleet alert rules, ...)
