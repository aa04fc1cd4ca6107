"""HubClient's council calls: a mixin over ``HubClient._request``, answering like the Store's CouncilTables."""

from __future__ import annotations

import polars as pl

from bi_ide.hub.wire import frame_from_json


class CouncilCalls:
    """HubClient methods for council members, decisions, votes and outcomes."""

    def ask_council(self, question: str, **fields) -> dict:
        """Send a question to the hub's council (it deliberates there) and return the decision."""
        body = {"question": question, **{k: v for k, v in fields.items() if v is not None}}
        return self._request("POST", "/council/query", json=body)

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
