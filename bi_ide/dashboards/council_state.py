"""What the council dashboard shows and does, as a param class that knows nothing of Panel.

``Council`` is shared by every tab of the process (the poller refreshes it every 2 s): the recent
decisions, the members' leaderboard and the calibration over resolved decisions, plus the full
decision (votes, evidence) of whichever decisions some tab is looking at. ``ask`` runs a session
through the same store (a HubClient sends it to the hub), reporting each member's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import param
import polars as pl

from bi_ide.council.deliberation import ask
from bi_ide.council.members import MEMBERS
from bi_ide.dashboards.state import PolledState
from bi_ide.errors import WorkbenchError

DECISION_COLUMNS = ("created_at", "decision", "confidence", "urgency", "outcome", "vetoed", "override", "question", "id")
LEADERBOARD_COLUMNS = ("name", "group", "expertise", "correct", "wrong", "accuracy", "weight", "id")


class Council(PolledState):
    """Recent decisions, the leaderboard, calibration, and the decisions the tabs show in full."""

    per_run = ("details",)  # merged per watched decision on apply

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the data comes from: a Store (the hub's own one inside the hub), or a HubClient.""")

    limit = param.Integer(default=50, bounds=(1, 1_000), doc="The newest decisions to list.")

    decisions = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Decisions, newest first, with DECISION_COLUMNS.""")

    leaderboard = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Voting members by weight, then accuracy, with LEADERBOARD_COLUMNS.""")

    calibration = param.Dict(default={}, doc="""
        Brier score, ECE and the reliability table over resolved decisions, and each baseline's
        Brier score beside the council's (``baselines``).""")

    details = param.Dict(default={}, doc="Decision id -> the decision with votes and evidence, watched ones only.")

    # -- which decisions the tabs show ----------------------------------------------------------
    def watch_decision(self, owner, decision_id: str | None) -> None:
        """Keep ``decision_id`` in ``details`` for ``owner`` (a tab); read it now if new."""
        self._watch(owner, None if decision_id is None else [decision_id], self.details,
                    lambda ids: {"details": {d: self.store.get_council_decision(d) for d in ids}})

    # -- the poller's side -------------------------------------------------------------------
    def read(self) -> dict:
        """Query the store and return the new values (no parameter is set here; any thread)."""
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            if hasattr(self.store, "ensure_council_members"):
                self.store.ensure_council_members([m.record() for m in MEMBERS])
            decisions = self.store.list_council_decisions(limit=self.limit)
            members = self.store.list_council_members()
            calibration = self.store.council_calibration()
            ids = set(decisions["id"].to_list())
            details = {d: self.store.get_council_decision(d) for d in self.watched if d in ids}
        except WorkbenchError as e:
            return {"error": str(e)}
        board = (members.filter(pl.col("group").is_in(["president", "meta"]).not_())
                 .sort(["weight", "accuracy", "id"], descending=[True, True, False]).select(LEADERBOARD_COLUMNS))
        return {"decisions": decisions.select(DECISION_COLUMNS), "leaderboard": board, "calibration": calibration,
                "details": details, "updated_at": time.time(), "error": ""}

    # -- asking ---------------------------------------------------------------------------------
    def ask(self, question: str, *, urgency: str = "normal", backend=None,
            on_progress: Callable[[dict], None] | None = None) -> tuple[dict, dict]:
        """Run a council session (on any thread): the decision, and the values that show it for apply()."""
        return self._showing(ask(self.store, question, urgency=urgency, backend=backend, on_progress=on_progress))

    # -- outcomes and the President ---------------------------------------------------------------
    def resolve(self, decision_id: str, outcome: str, note: str | None = None) -> tuple[dict, dict]:
        """Record whether a decision was right ("right" or "wrong"); members' records and weights update."""
        return self._showing(self.store.resolve_council_decision(decision_id, outcome, note=note or None))

    def veto(self, decision_id: str, reason: str) -> tuple[dict, dict]:
        """The President's veto, with its reason."""
        return self._showing(self.store.veto_council_decision(decision_id, reason))

    def override(self, decision_id: str, vote: str, reason: str) -> tuple[dict, dict]:
        """The President's final word ("approve" or "reject"), with its reason."""
        return self._showing(self.store.override_council_decision(decision_id, vote, reason))

    def _showing(self, decision: dict) -> tuple[dict, dict]:
        """``decision`` (just changed) and the values for apply() that show it with everything else fresh."""
        values = self.read()
        values["details"] = {**values.get("details", {}), decision["id"]: decision}
        return decision, values
