"""The council through a real hub process: routes, roles, validation, and the HubClient as a store."""

from __future__ import annotations

import json

import pytest
import requests
from test_council import XLARGE_ON_LAPTOP, seed_fleet

from bi_ide.council.deliberation import ask
from bi_ide.council.planning import plan_training
from bi_ide.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess
from bi_ide.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    db = tmp_path_factory.mktemp("council-hub") / "workbench.duckdb"
    with Store(db) as store:
        tokens = {role: store.create_token(f"test {role}", role)[1] for role in ("viewer", "developer", "admin")}
        seed_fleet(store)
    with HubProcess(db) as proc:
        proc.tokens = tokens
        yield proc


def call(hub, method, path, role="developer", **kwargs):
    headers = {"Authorization": f"Bearer {hub.tokens[role]}"} if role else {}
    return requests.request(method, f"{hub.url}/api/v1/council{path}", headers=headers, timeout=60, **kwargs)


def test_query_deliberates_in_the_hub(hub):
    r = call(hub, "POST", "/query", json={"question": XLARGE_ON_LAPTOP, "urgency": "high"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["decision"] == "rejected" and d["urgency"] == "high" and len(d["votes"]) >= 39
    assert any("does not fit" in f["text"] for f in d["evidence"])
    got = call(hub, "GET", f"/decisions/{d['id']}", role="viewer").json()
    assert got["id"] == d["id"] and got["votes"] == d["votes"]
    listed = call(hub, "GET", "/decisions?limit=5", role="viewer").json()
    assert d["id"] in listed["columns"]["id"]
    status = call(hub, "GET", "/status", role="viewer").json()
    assert status["members"]["high"] == 16 and status["decisions_total"] >= 1


def test_query_streams_each_answer_then_the_decision(hub):
    dev = HubClient(hub.url, hub.tokens["developer"])
    events = []
    d = ask(dev, XLARGE_ON_LAPTOP, on_progress=events.append)  # as on a Store, through the hub
    assert d["decision"] == "rejected" and dev.get_council_decision(d["id"])["votes"] == d["votes"]
    phases = [e["phase"] for e in events]
    assert phases[0] == "evidence" and phases[-1] == "stored" and "round 0" in " ".join(phases)
    answered = {e["member_id"] for e in events if e.get("member_id")}
    assert len(answered) == 39 and events[-1]["done"] == events[-1]["total"]
    # the raw answer: NDJSON lines, the decision last
    r = requests.post(f"{hub.url}/api/v1/council/query", json={"question": "Is the fleet ready?", "rounds": 1},
                      headers={"Accept": "application/x-ndjson", "Authorization": f"Bearer {hub.tokens['developer']}"},
                      timeout=60)
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("application/x-ndjson")
    assert all("progress" in line for line in lines[:-1]) and lines[-1]["decision"]["question"] == "Is the fleet ready?"
    # a bad question is still a plain 400; an error found after the answer began comes as its last line
    with pytest.raises(ValidationError, match="urgency"):
        dev.ask_council("ok?", urgency="urgent", on_progress=events.append)
    with pytest.raises(ValidationError, match="nobody"):
        dev.ask_council("ok?", members=["nobody"], on_progress=events.append)
    assert "Traceback" not in hub.log_path.read_text()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"question": ""}, "question"), ({"question": "x" * 5001}, "question"),
     ({"question": "ok?", "urgency": "urgent"}, "urgency"), ({"urgency": "low"}, "question"),
     ({"question": "ok?", "rounds": "two"}, "rounds"), ({"question": "ok?", "verdict": "yes"}, "verdict"),
     ({"question": "ok?", "backend": "oracle"}, None)],
)
def test_bad_questions_are_400(hub, body, field):
    r = call(hub, "POST", "/query", json=body)
    assert r.status_code == 400, r.text
    if field:
        assert r.json()["field"] == field


def test_roles(hub):
    assert call(hub, "POST", "/query", role="viewer", json={"question": "ok?"}).status_code == 403
    assert call(hub, "GET", "/members", role=None).status_code == 401
    d = call(hub, "POST", "/query", json={"question": "Is the fleet ready?", "rounds": 1}).json()
    assert call(hub, "POST", f"/decisions/{d['id']}/veto", json={"reason": "no"}).status_code == 403
    assert call(hub, "POST", "/vote", json={"decision_id": d["id"], "vote": "approve", "reason": "x"}).status_code == 403
    assert call(hub, "POST", f"/decisions/{d['id']}/outcome", role="viewer", json={"outcome": "right"}).status_code == 403
    r = call(hub, "POST", f"/decisions/{d['id']}/veto", role="admin", json={"reason": "not now"})
    assert r.status_code == 200 and r.json()["vetoed"] is True


def test_client_is_a_council_store(hub):
    dev = HubClient(hub.url, hub.tokens["developer"])
    admin = HubClient(hub.url, hub.tokens["admin"])
    d = ask(dev, XLARGE_ON_LAPTOP)  # the same call as on a Store: the hub deliberates
    assert d["decision"] == "rejected"
    members = dev.list_council_members()
    assert members.height == 44 and "accuracy" in members.columns
    resolved = dev.resolve_council_decision(d["id"], "right", note="OOM on the laptop")
    assert resolved["outcome"] == "right" and resolved["outcome_note"] == "OOM on the laptop"
    with pytest.raises(ConflictError):
        dev.resolve_council_decision(d["id"], "wrong")
    calibration = dev.council_calibration()
    assert calibration["resolved"] >= 1 and calibration["baselines"]["council"]["resolved"] >= 1
    assert {"majority", "best_member"} <= set(calibration["baselines"])
    assert resolved["meta"]["baselines"]["majority"]["decision"] == "rejected" and resolved["meta"]["quorum"]["met"]
    assert dev.list_council_decisions(resolved=True)["id"].to_list()[0] == d["id"]
    with pytest.raises(ForbiddenError):
        dev.override_council_decision(d["id"], "approve", "x")
    over = admin.override_council_decision(d["id"], "approve", "the deadline")
    assert over["override"] == "approved"
    with pytest.raises(NotFoundError):
        dev.get_council_decision("nope")
    with pytest.raises(ValidationError, match="urgency"):
        dev.ask_council("ok?", urgency="urgent")
    assert plan_training(dev)["recipe"] == "small-cpu"
    assert "Traceback" not in hub.log_path.read_text()
