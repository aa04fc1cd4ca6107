"""The hub's council routes, served by ``bi_ide.hub.app.Hub.routes``.

Reading (members, decisions, status, calibration, the training plan) needs a viewer token; asking
and resolving need a developer; the President's veto and override need an admin. A question is
1–5,000 characters; urgency one of low, normal, high, critical. The deliberation runs on the hub's
thread pool against the hub's own store; asked with ``Accept: application/x-ndjson``, the answer
streams each member's answer as it comes, then the decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from tornado.iostream import StreamClosedError

from bi_ide.council import deliberation, planning
from bi_ide.errors import WorkbenchError
from bi_ide.hub.app import ID, ApiHandler, _int_arg, _jsonable
from bi_ide.hub.wire import NDJSON, error_body, frame_to_json
from bi_ide.store.council import check_question

log = logging.getLogger(__name__)

QUERY_BODY = {"question": (str,), "urgency": (str,), "backend": (str, dict), "member_backends": (dict,),
              "rounds": (int,), "members": (list,), "context": (dict,)}
VOTE_BODY = {"decision_id": (str,), "vote": (str,), "reason": (str,)}
VETO_BODY = {"reason": (str,)}
OUTCOME_BODY = {"outcome": (str,), "note": (str,), "weighting": (str,)}



def start(hub) -> threading.Thread:
    """Warm the council in the hub process: the facts index (and the libraries it imports) is built
    in the background at start, so the first question does not pay for it."""
    def warm() -> None:
        from bi_ide.council.facts import index_for

        try:
            index_for(hub.store)
        except WorkbenchError as e:  # the first question builds it then, and says what failed
            log.warning("the council's index could not be built at start: %s", e)

    thread = threading.Thread(target=warm, name="council-warm", daemon=True)
    thread.start()
    return thread

class QueryHandler(ApiHandler):
    roles = {"POST": "developer"}

    async def post(self):
        fields = self.body(QUERY_BODY, required=("question",))
        fields.pop("context", None)  # accepted as the seed's CouncilQuery has it; the evidence comes from the store
        question = fields.pop("question")
        kwargs = {k: v for k, v in fields.items() if v is not None}
        if NDJSON in self.request.headers.get("Accept", ""):
            return await self._stream(question, kwargs)
        self.send(await self.hub.call(deliberation.ask, self.hub.store, question, **kwargs), 201)

    async def _stream(self, question: str, kwargs: dict) -> None:
        """Answer in NDJSON: ``{"progress": event}`` per member's answer, then ``{"decision": ...}``, or
        ``{"error": ...}`` (with its HTTP status) when the session failed after the answer began."""
        check_question(question, kwargs.get("urgency", "normal"))  # a bad question is still a plain 400
        loop, lines = asyncio.get_running_loop(), asyncio.Queue()

        def session() -> None:
            try:
                last = {"decision": deliberation.ask(self.hub.store, question, **kwargs, on_progress=lambda e: (
                    loop.call_soon_threadsafe(lines.put_nowait, {"progress": e})))}
            except WorkbenchError as e:
                last = {"error": {**error_body(e), "status": e.status}}
            except Exception:  # the trace goes to the hub's log, not to the client
                log.exception("council session failed")
                last = {"error": {"error": "WorkbenchError", "message": "the council session failed: see the hub's log",
                                  "status": 500}}
            loop.call_soon_threadsafe(lines.put_nowait, last)

        self.set_status(201)
        self.set_header("Content-Type", NDJSON)
        running = asyncio.ensure_future(self.hub.call(session))
        while True:
            line = await lines.get()
            self.write(json.dumps(line, default=_jsonable) + "\n")
            try:
                await self.flush()
            except StreamClosedError:  # the client left: the session still finishes and is stored
                return
            if "progress" not in line:
                break
        await running
        self.finish()


class StatusHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.council_status))


class DecisionsHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        resolved = self.get_query_argument("resolved", None)
        df = await self.hub.call(self.hub.store.list_council_decisions, limit=_int_arg(self, "limit", 100),
                                 offset=_int_arg(self, "offset", 0),
                                 resolved=None if resolved is None else resolved.lower() in ("1", "true", "yes"))
        self.send(frame_to_json(df))


class DecisionHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self, decision_id):
        self.send(await self.hub.call(self.hub.store.get_council_decision, decision_id))


class MembersHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_council_members)))


class VoteHandler(ApiHandler):
    """The President's vote on a decision: an override, recorded with its reason."""

    roles = {"POST": "admin"}

    async def post(self):
        fields = self.body(VOTE_BODY, required=("decision_id", "vote", "reason"))
        self.send(await self.hub.call(self.hub.store.override_council_decision, fields["decision_id"], fields["vote"],
                                      fields["reason"]))


class VetoHandler(ApiHandler):
    roles = {"POST": "admin"}

    async def post(self, decision_id):
        fields = self.body(VETO_BODY, required=("reason",))
        self.send(await self.hub.call(self.hub.store.veto_council_decision, decision_id, fields["reason"]))


class OutcomeHandler(ApiHandler):
    roles = {"POST": "developer"}

    async def post(self, decision_id):
        fields = self.body(OUTCOME_BODY, required=("outcome",))
        self.send(await self.hub.call(self.hub.store.resolve_council_decision, decision_id, fields.pop("outcome"),
                                      **{k: v for k, v in fields.items() if v is not None}))


class CalibrationHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.council_calibration))


class PlanTrainingHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        base = self.get_query_argument("recipe", planning.BASE_RECIPE)
        self.send(await self.hub.call(planning.plan_training, self.hub.store, base_recipe=base))


def routes(hub) -> list[tuple]:
    kw = {"hub": hub}
    return [
        (r"/api/v1/council/query", QueryHandler, kw),
        (r"/api/v1/council/status", StatusHandler, kw),
        (r"/api/v1/council/decisions", DecisionsHandler, kw),
        (rf"/api/v1/council/decisions/{ID}", DecisionHandler, kw),
        (rf"/api/v1/council/decisions/{ID}/veto", VetoHandler, kw),
        (rf"/api/v1/council/decisions/{ID}/outcome", OutcomeHandler, kw),
        (r"/api/v1/council/members", MembersHandler, kw),
        (r"/api/v1/council/vote", VoteHandler, kw),
        (r"/api/v1/council/calibration", CalibrationHandler, kw),
        (r"/api/v1/council/plan-training", PlanTrainingHandler, kw),
    ]
