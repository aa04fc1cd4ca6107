"""Beside every decision: its baselines, its quorum, the time per stage, down-weighted answers; and
the baselines' Brier scores over resolved decisions, on a real store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bi_ide.cli import main
from bi_ide.council import aggregate, report
from bi_ide.council.backends import _ModelBackend
from bi_ide.council.deliberation import ask
from bi_ide.council.examples import example_store
from bi_ide.council.grounded import GroundedBackend
from bi_ide.council.members import BY_ID, voting_members

XLARGE_ON_LAPTOP = "Should we train the xlarge preset on the 6 GB laptop?"
SMALL_ON_LAPTOP = "Should we train the small preset on the 6 GB laptop?"


@pytest.fixture
def example(store):
    example_store(store, erp=False)
    return store


class CrashingBackend(_ModelBackend):
    """A model backend whose server fails every request, as a backend error does."""

    name = "openai"

    def complete(self, chats):
        return [ConnectionError("the openai backend at http://gpu-box:8080/v1 cannot be reached") for _ in chats]


class CitesNothingBackend(GroundedBackend):
    """Grounded answers; the high council's are down-weighted, as answers that cite nothing would be."""

    def answer(self, members, q, findings, **kwargs):
        answers = super().answer(members, q, findings, **kwargs)
        for a in answers:
            if BY_ID[a.member_id].group == "high" and a.probability is not None:
                a.weight_factor, a.weight_reason = 0.25, "cites no finding"
        return answers


def round0(decision: dict) -> dict[str, dict]:
    return {v["member_id"]: v for v in decision["votes"] if v["round"] == 0}


# -- what a decision carries ----------------------------------------------------------------------
def test_a_decision_carries_its_baselines_quorum_and_stages(example):
    d = ask(example, XLARGE_ON_LAPTOP)
    votes = round0(d)
    b = d["meta"]["baselines"]
    approve = sum(v["vote"] == "approve" for v in votes.values())
    reject = sum(v["vote"] == "reject" for v in votes.values())
    assert (b["majority"]["approve"], b["majority"]["reject"]) == (approve, reject) and reject > 30
    assert b["majority"]["probability"] == pytest.approx(approve / (approve + reject))
    assert b["majority"]["decision"] == "rejected" and b["majority"]["round"] == 0
    # nothing is resolved yet: the best member is the first voting member in council order
    first = voting_members()[0].id
    best = b["best_member"]
    assert (best["member_id"], best["brier"], best["resolved"], best["round"]) == (first, None, 0, 0)
    assert "council order" in best["chosen_by"] and best["probability"] == votes[first]["probability"]
    assert best["decision"] == aggregate.answer_decision(votes[first]["probability"]) and not best["abstained"]
    assert b["council"] == {"decision": d["decision"], "probability": d["probability"], "confidence": d["confidence"],
                            "reason": None}
    assert d["meta"]["quorum"] | {"pooled_probability": None} == {
        "answered": 39, "abstained": 0, "failed": 0, "voting": 39, "needed": 10, "met": True, "pooled_probability": None}
    stages = d["meta"]["stages_ms"]
    assert set(stages) == {"evidence", "round0", "round1", "pooling", "store"}
    assert all(isinstance(ms, float) and ms >= 0 for ms in stages.values())  # the store filled in its own
    assert d["meta"]["stages_tokens"] is None  # the grounded backend generates no tokens
    assert all(v["weight_factor"] == 1.0 and v["weight_reason"] is None and v["failed"] is False
               for v in d["votes"])
    one_round = ask(example, SMALL_ON_LAPTOP, rounds=1)
    assert one_round["meta"]["stages_ms"]["round1"] is None and one_round["meta"]["stages_ms"]["round0"] >= 0


def test_the_best_member_follows_the_records(example):
    for question in (XLARGE_ON_LAPTOP, SMALL_ON_LAPTOP, "Should we train the large preset on the rtx-box?"):
        example.resolve_council_decision(ask(example, question)["id"], "right")
    records = {r["id"]: r for r in example.list_council_members().to_dicts()}
    scored = {mid: records[mid]["brier_sum"] / (records[mid]["correct"] + records[mid]["wrong"])
              for mid in (m.id for m in voting_members()) if records[mid]["correct"] + records[mid]["wrong"]}
    lowest = min(scored.values())
    d = ask(example, XLARGE_ON_LAPTOP)
    best = d["meta"]["baselines"]["best_member"]
    assert best["brier"] == pytest.approx(lowest, abs=1e-6) and scored[best["member_id"]] == pytest.approx(lowest)
    assert best["resolved"] == records[best["member_id"]]["correct"] + records[best["member_id"]]["wrong"]
    assert best["probability"] == round0(d)[best["member_id"]]["probability"]


def test_a_best_member_that_abstained_says_so(example):
    # only members with nothing on their focus here: the first in council order abstains on purpose
    d = ask(example, "Is the fleet ready?", members=[m.id for m in voting_members()][:3], rounds=1)
    best = d["meta"]["baselines"]["best_member"]
    assert best["abstained"] and best["probability"] is None and best["decision"] == "deferred"
    assert not best["failed"]


# -- the quorum ------------------------------------------------------------------------------------
def test_few_members_answering_is_no_verdict(example):
    """30 of 39 members on a backend that fails: the 9 who answer all reject, but 10 are needed."""
    answering = [m.id for m in voting_members()][:9]
    d = ask(example, XLARGE_ON_LAPTOP, backend=CrashingBackend(), member_backends={m: "grounded" for m in answering})
    q = d["meta"]["quorum"]
    assert (q["answered"], q["abstained"], q["failed"], q["needed"], q["met"]) == (9, 0, 30, 10, False)
    assert q["pooled_probability"] < 0.4  # what the nine said, kept but not given as the verdict
    assert d["decision"] == "deferred" and d["probability"] == 0.5 and d["confidence"] == 0.5
    assert d["reasoning"].splitlines()[0].startswith("No quorum: 9 of 39 voting members answered")
    assert "30 failed" in d["reasoning"].splitlines()[0]
    failed = [v for v in round0(d).values() if v["failed"]]
    assert len(failed) == 30 and all("cannot be reached" in v["rationale"] for v in failed)
    b = d["meta"]["baselines"]
    assert b["council"]["reason"] == "no quorum" and b["majority"]["decision"] == "rejected"
    # one more member answering is a quorum: the same evidence now gives a verdict
    enough = ask(example, XLARGE_ON_LAPTOP, backend=CrashingBackend(),
                 member_backends={m.id: "grounded" for m in voting_members()[:10]})
    assert enough["meta"]["quorum"]["met"] and enough["decision"] == "rejected"
    assert not enough["reasoning"].startswith("No quorum")


def test_abstaining_on_purpose_is_not_failing(store):
    d = ask(store, "Is the fleet ready?", rounds=1)  # an empty store: nothing on anyone's focus
    q = d["meta"]["quorum"]
    assert (q["answered"], q["abstained"], q["failed"], q["met"]) == (0, 39, 0, False)
    assert d["reasoning"].startswith("No quorum: 0 of 39") and d["decision"] == "deferred"


def test_an_unusable_model_reply_is_a_failure(example):
    class Rambling(_ModelBackend):
        name = "local"

        def complete(self, chats):
            return ["I like turtles." for _ in chats]

    d = ask(example, XLARGE_ON_LAPTOP, backend=Rambling(), members=["hc-ai", "hc-data"], rounds=1)
    assert all(v["failed"] and "not a valid answer" in v["rationale"] for v in d["votes"])
    assert d["meta"]["quorum"]["failed"] == 2 and not d["meta"]["quorum"]["met"]


# -- down-weighted answers ---------------------------------------------------------------------------
def test_down_weighted_answers_count_less_in_the_pool(example):
    from bi_ide.store import Store

    with Store(memory=True) as twin:  # the same data, so the same evidence and records
        example_store(twin, erp=False)
        plain = ask(twin, SMALL_ON_LAPTOP, rounds=1)
    down = ask(example, SMALL_ON_LAPTOP, backend=CitesNothingBackend(), rounds=1)
    before, after = round0(plain), round0(down)
    sage = "hc-ai"
    assert after[sage]["weight_factor"] == 0.25 and after[sage]["weight_reason"] == "cites no finding"
    # the factor comes after the group cap: each sage's pooling weight is exactly a quarter of what it was
    assert after[sage]["weight"] == pytest.approx(before[sage]["weight"] * 0.25, abs=1e-6)
    assert after["shadow-edge_cases"]["weight"] == before["shadow-edge_cases"]["weight"]
    assert down["meta"]["group_weight"]["high"] < plain["meta"]["group_weight"]["high"]
    assert down["probability"] != plain["probability"]
    shown = report.show_text(down)
    assert "×0.25 (cites no finding)" in shown


# -- calibration per baseline -----------------------------------------------------------------------
def test_calibration_scores_each_baseline(example):
    decisions = [ask(example, q) for q in (XLARGE_ON_LAPTOP, SMALL_ON_LAPTOP, "Is run bi-code-medium ready to deploy?")]
    outcomes = ["right", "wrong", "right"]
    for d, outcome in zip(decisions, outcomes, strict=True):
        example.resolve_council_decision(d["id"], outcome)
    # a decision from before baselines existed, and one whose stored baselines are not what they should be
    old = example.record_council_decision("An old question?", votes=[], decision="approved", probability=0.8,
                                          confidence=0.8, meta={"answered": 3})
    odd = example.record_council_decision("An odd question?", votes=[], decision="rejected", probability=0.3,
                                          confidence=0.7, meta={"baselines": {"majority": {"probability": "high"},
                                                                              "best_member": "hc-ai"}})
    for d in (old, odd):
        example.resolve_council_decision(d["id"], "right")
    c = example.council_calibration()
    assert c["resolved"] == 5
    truths = [aggregate.approval_was_right(d["decision"], o, d["probability"])
              for d, o in zip(decisions, outcomes, strict=True)]

    def brier(name):
        ps = [d["meta"]["baselines"][name]["probability"] for d in decisions]
        return sum(((0.5 if p is None else p) - y) ** 2 for p, y in zip(ps, truths, strict=True)) / 3

    scores = c["baselines"]
    for name in ("majority", "best_member", "council"):
        assert scores[name]["resolved"] == 3 and scores[name]["brier"] == pytest.approx(brier(name))
    assert report.baselines(old) is None and report.baselines(odd)["majority"]["probability"] is None
    assert "predates them" in report.show_text(old)


def test_stored_baselines_are_read_defensively():
    assert report.stored_probabilities(None) == {} and report.stored_probabilities({"baselines": [1]}) == {}
    meta = {"baselines": {"majority": {"probability": 0.25}, "best_member": {"probability": None},
                          "council": {"probability": 0.9}}}
    assert report.stored_probabilities(meta) == {"majority": 0.25, "best_member": None}
    bad = {"baselines": {"majority": {"probability": 7}, "best_member": {"probability": True}}}
    assert report.stored_probabilities(bad) == {}
    assert report.quorum({"meta": {"quorum": {"answered": "x"}}}) is None
    assert report.stages({"meta": {"stages_ms": {"evidence": "slow", "round0": 2.5}}})["ms"] == {
        "evidence": None, "round0": 2.5}
    assert report.language({"meta": {"language": "ar"}}) == "ar" and report.language({"meta": "?"}) == "en"


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_show_and_calibration_set_the_baselines_side_by_side(tmp_db):
    from bi_ide.store import Store

    with Store(tmp_db) as s:
        example_store(s, erp=False)
        d = ask(s, XLARGE_ON_LAPTOP)
        s.resolve_council_decision(d["id"], "right")
    runner = CliRunner()
    out = runner.invoke(main, ["council", "show", d["id"], "--db", str(tmp_db)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"Decision {d['id']}: rejected")
    assert any(x.startswith("Quorum: 39 of 39 voting members answered") and x.endswith("met") for x in lines)
    table = lines[lines.index("Baselines:") + 1:lines.index("Baselines:") + 5]
    assert [row.split()[0] for row in table[1:]] == ["council", "majority", "best"]
    assert "rejected" in table[1] and "0 approve" in table[2] and voting_members()[0].id in table[3]
    assert any(x.startswith("Stages: evidence") and "store" in x for x in lines)
    assert "Votes, round 0 (independent):" in lines and "Evidence (* cited):" in lines
    as_json = runner.invoke(main, ["council", "show", d["id"], "--json", "--db", str(tmp_db)])
    assert json.loads(as_json.output)["meta"]["baselines"]["council"]["decision"] == "rejected"
    out = runner.invoke(main, ["council", "calibration", "--db", str(tmp_db)])
    assert out.exit_code == 0, out.output
    assert "over the 1 resolved decisions that carry them" in out.output
    for name in ("council", "majority", "best member"):
        assert f"  {name:<12} Brier 0." in out.output
