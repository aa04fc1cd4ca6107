"""What the workers dashboard shows and does, as a param class that knows nothing of Panel.

``Fleet`` is shared by every tab of the process (the poller refreshes it every 2 s): the workers
with their colours and readings, the fleet's totals, the unresolved alerts, the recent commands and
the SLO budgets. Acknowledging an alert and queueing or cancelling a command write through the same
store; the page checks who may.
"""

from __future__ import annotations

import time

import param
import polars as pl

from bi_ide.dashboards.state import PolledState
from bi_ide.errors import WorkbenchError
from bi_ide.fleet.commands import check_payload

ALERT_COLUMNS = ("severity", "status", "rule", "worker_id", "message", "opened_at", "id")
COMMAND_COLUMNS = ("worker_id", "kind", "status", "error", "created_at", "finished_at", "id")
SLO_COLUMNS = ("objective", "target", "current", "budget_left", "good", "total")
COMMANDS_SHOWN = 50


class Fleet(PolledState):
    """The fleet: workers, totals, alerts, commands and SLOs."""

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the data comes from: a Store (the hub's own one inside the hub) or a HubClient.""")

    workers = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        One row per worker: status (green/yellow/red), readings, heartbeat age, alerts and runs.""")

    resources = param.Dict(default={}, doc="The fleet's totals (workers by status, cores, RAM, GPUs).")

    alerts = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Alerts not resolved yet, newest first, with ALERT_COLUMNS.""")

    commands = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        The newest commands (COMMANDS_SHOWN), with COMMAND_COLUMNS.""")

    slos = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Each objective's target, current value and error budget left (SLO_COLUMNS).""")

    def read(self) -> dict:
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            return {**self._lists(), "workers": self.store.list_workers(), "resources": self.store.resources(),
                    "slos": pl.DataFrame(self.store.slos()).select(SLO_COLUMNS), "updated_at": time.time(), "error": ""}
        except WorkbenchError as e:
            return {"error": str(e)}

    def _lists(self) -> dict:
        return {"alerts": self.store.list_alerts(active=True).select(ALERT_COLUMNS),
                "commands": self.store.list_commands(limit=COMMANDS_SHOWN).select(COMMAND_COLUMNS)}

    # -- actions ------------------------------------------------------------------------------
    def acknowledge(self, alert_id: str, by: str | None = None) -> dict:
        """Acknowledge an alert and show it now."""
        return self._after(self.store.acknowledge_alert(alert_id, by))

    def queue(self, worker_id: str, kind: str, payload: dict | None = None, by: str | None = None) -> dict:
        """Queue a command for a worker's agent and show it now."""
        return self._after(self.store.queue_command(worker_id, kind, check_payload(kind, payload), created_by=by))

    def cancel(self, command_id: str) -> dict:
        """Cancel a command no agent has picked up yet."""
        return self._after(self.store.cancel_command(command_id))

    def _after(self, record: dict) -> dict:
        self.apply(self._lists())
        return record
