"""HubClient's council calls: a mixin over ``HubClient._request``, answering like the Store's CouncilTables."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from bi_ide.errors import HubUnavailableError
from bi_ide.hub.wire import error_from_response, frame_from_json


class CouncilCalls:
    """HubClient methods for council members, decisions, votes and outcomes."""

    def ask_council(self, question: str, *, on_progress: Callable[[dict], None] | None = None, **fields) -> dict:
        """Send a question to the hub's council (it deliberates there) and return the decision.

        With ``on_progress``, the hub streams each member's answer as it comes (the same events as a
        session on a Store), then the decision.
        """
        body = {"question": question, **{k: v for k, v in fields.items() if v is not None}}
        if on_progress is None:
            return self._request("POST", "/council/query", json=body)
        for line in self._lines("POST", "/council/query", json=body):
            if "progress" in line:
                on_progress(line["progress"])
            elif "decision" in line:
                return line["decision"]
            else:
                error = line.get("error") or {}
                raise error_from_response(error.pop("status", 500), error, f"{self.url}/api/v1/council/query")
        raise HubUnavailableError(f"the hub at {self.url} ended the council session's answer without a decision: "
                                  "see its log, and `bi-ide council decisions` for what was stored")

    def list_council_members(self) -> pl.DataFrame:
        return frame_from_json(self._request("GET", "/council/members", retry=True))

    def list_council_decisions(self, *, limit: int = 100, offset: int = 0, resolved: bool | None = None) -> pl.DataFrame:
        params = {"limit": limit, "offset": offset} | ({} if resolved is None else {"resolved": str(resolved).lower()})
        return frame_from_json(self._request("GET", "/council/decisions", params=params, retry=True))

    def get_council_decision(self, decision_id: str) -> dict:
        return self._request("GET", f"/council/decisions/{decision_id}", retry=True)

    def veto_council_decision(self, decision_id: str, reason: str) -> dict:
        return self._request("POST", f"/council/decisions/{decision_id}/veto", json={"reason": reason})

    def override_council_decision(self, decision_id: str, vote: str, reason: str) -> dict:
        return self._request("POST", "/council/vote", json={"decision_id": decision_id, "vote": vote, "reason": reason})

    def resolve_council_decision(self, decision_id: str, outcome: str, *, note: str | None = None,
                                 weighting: str = "hedge") -> dict:
        body = {"outcome": outcome, "weighting": weighting} | ({"note": note} if note is not None else {})
        return self._request("POST", f"/council/decisions/{decision_id}/outcome", json=body)

    def council_calibration(self) -> dict:
        return self._request("GET", "/council/calibration", retry=True)

    def council_status(self) -> dict:
        return self._request("GET", "/council/status", retry=True)

    def plan_council_training(self, *, base_recipe: str = "small-cpu") -> dict:
        return self._request("GET", "/council/plan-training", params={"recipe": base_recipe}, retry=True)
