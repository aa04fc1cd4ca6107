"""The council on a real store: composition, evidence, deliberation, the President, outcomes, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bi_ide.cli import main
from bi_ide.council import evidence
from bi_ide.council.answers import Answer, Feedback
from bi_ide.council.deliberation import ask
from bi_ide.council.evidence import Finding, gather, parse_question
from bi_ide.council.grounded import GroundedBackend, relevance
from bi_ide.council.members import BY_ID, MEMBERS, voting_members
from bi_ide.council.planning import plan_training
from bi_ide.errors import ConflictError, NotFoundError, ValidationError, WorkbenchError
from bi_ide.fleet.examples import example_fleet

GB = 1 << 30
XLARGE_ON_LAPTOP = "Should we train the xlarge preset on the 6 GB laptop?"
SEED_EXPERTISES = ["architecture", "security", "ai", "data", "performance", "ux", "business", "innovation", "quality",
                   "scalability", "arabic_nlp", "devops", "mobile", "web", "testing", "strategy"]


seed_fleet = example_fleet  # the other council tests import it from here


def memory_finding(decision: dict) -> dict:
    return next(f for f in decision["evidence"] if f["topic"] == "memory")


# -- members -----------------------------------------------------------------------------------
def test_composition_is_the_seeds():
    groups = [m.group for m in MEMBERS]
    assert {g: groups.count(g) for g in set(groups)} == {"president": 1, "high": 16, "shadow": 4, "light": 4,
                                                         "scout": 4, "meta": 4, "domain": 11}
    assert [m.expertise for m in MEMBERS if m.group == "high"] == SEED_EXPERTISES
    assert [m.expertise for m in MEMBERS if m.group == "shadow"] == ["security_risks", "scalability_issues",
                                                                      "performance_bottlenecks", "edge_cases"]
    assert [m.expertise for m in MEMBERS if m.group == "scout"] == ["tech", "market", "competitor", "opportunity"]
    assert [m.expertise for m in MEMBERS if m.group == "meta"] == ["performance", "quality", "learning", "evolution"]
    assert len({m.id for m in MEMBERS}) == len(MEMBERS) == 44
    voting = voting_members()
    assert len(voting) == 39 and not any(m.group in ("president", "meta") for m in voting)
    personas = [m.persona() for m in voting]
    assert len(set(personas)) == len(personas)  # every member has its own prompt
    assert "risks" in BY_ID["shadow-edge_cases"].persona() and "opportunities" in BY_ID["light-growth_potential"].persona()
    with pytest.raises(ValidationError, match="meta-quality"):
        voting_members(["meta-quality"])


def test_members_are_stored_with_their_record(store):
    ask(store, "Is the fleet ready?", rounds=1)
    members = store.list_council_members()
    assert members.height == 44 and set(members["weight"]) == {1.0} and set(members["accuracy"]) == {0.5}
    assert members["group"].to_list()[0] == "president"


def test_relevance_works_in_arabic_and_english():
    members = voting_members()
    arabic = relevance(members, "كيف نحسن معالجة النصوص العربية والقرآن؟")
    english = relevance(members, "Is our web API server secure against attacks?")
    assert max(arabic, key=arabic.get) in ("hc-arabic_nlp", "expert-arabic_processing")
    assert max(english, key=english.get) in ("hc-security", "expert-security", "shadow-security_risks", "hc-web")


def test_questions_are_parsed_in_both_languages():
    q = parse_question(XLARGE_ON_LAPTOP)
    assert (q.intent, q.preset, q.memory_gb, q.laptop) == ("train", "xlarge", 6.0, True)
    q = parse_question("هل نُدرّب النموذج الضخم على اللابتوب ذي ٦ جيجا؟")
    assert (q.intent, q.preset, q.memory_gb, q.laptop) == ("train", "xlarge", 6.0, True)
    assert parse_question("Is run r1 ready to deploy?").intent == "deploy"
    assert parse_question("Should we restock product P?").intent == "restock"


# -- evidence changes the decision -------------------------------------------------------------
def test_xlarge_on_the_6gb_laptop_is_rejected_because_of_memory(store):
    seed_fleet(store)
    d = ask(store, XLARGE_ON_LAPTOP, urgency="high")
    assert d["decision"] == "rejected" and d["probability"] <= 0.4 and d["confidence"] >= 0.6
    mem = memory_finding(d)
    assert mem["cited"] and mem["effect"] < 0 and "does not fit" in mem["text"] and "6.0 GB" in mem["text"]
    assert mem["facts"]["need_bytes"] > 0.9 * 6 * GB
    assert mem["id"] in d["reasoning"] and "does not fit" in d["shadow_analysis"]
    assert "shadow-scalability_issues" in d["blocker"]
    round0 = [v for v in d["votes"] if v["round"] == 0]
    assert len(round0) == 39 and sum(v["vote"] == "reject" for v in round0) > 30
    assert all(v["weight"] is not None for v in round0 if v["probability"] is not None)


def test_the_same_question_without_that_laptop_is_not_rejected(store):
    d = ask(store, XLARGE_ON_LAPTOP)  # no fleet: nothing says it does not fit
    assert d["decision"] == "deferred"
    assert "No GPU machine" in " ".join(f["text"] for f in d["evidence"])


def test_a_preset_that_fits_is_approved(store):
    seed_fleet(store)
    d = ask(store, "Should we train the small preset on the 6 GB laptop?")
    assert d["decision"] == "approved" and d["probability"] >= 0.6 and d["blocker"] is None
    assert "it fits" in memory_finding(d)["text"]


def test_arabic_question_is_answered_from_the_same_evidence(store):
    seed_fleet(store)
    d = ask(store, "هل ندرب النموذج الضخم xlarge على اللابتوب؟")
    assert d["decision"] == "rejected" and d["question"].startswith("هل")
    assert store.get_council_decision(d["id"])["question"] == "هل ندرب النموذج الضخم xlarge على اللابتوب؟"


def test_a_hot_card_counts_against(store):
    from bi_ide.store import Store

    seed_fleet(store, temperature=88)
    question = "Should we train the small preset on the 6 GB laptop?"
    d = ask(store, question)
    hot = [f for f in d["evidence"] if f["topic"] == "thermal"]
    assert hot and "88 °C" in hot[0]["text"] and hot[0]["effect"] < 0 and hot[0]["cited"]
    with Store(memory=True) as cool:
        seed_fleet(cool, temperature=60)
        assert d["probability"] < ask(cool, question)["probability"]


def test_deploy_question_reads_the_run(store):
    run = store.create_run("arabic-small", status="running")
    store.write_metrics({"step": [100, 200, 300], "name": ["val_bpb_arabic"] * 3, "value": [2.4, 2.1, 1.9]},
                        run_id=run["id"])
    store.update_run(run["id"], status="failed", error="CUDA out of memory")
    d = ask(store, f"Is run {run['name']} ready to deploy?")
    texts = " ".join(f["text"] for f in d["evidence"])
    assert "is failed: CUDA out of memory" in texts and "fell from 2.400 to 1.900" in texts
    assert d["decision"] == "rejected"


def test_a_failing_provider_is_reported_and_the_session_goes_on(store):
    def broken(_store, _q):
        raise WorkbenchError("the fleet tables are being migrated")

    findings = gather(store, parse_question("anything"), {"fleet": broken, "history": evidence.history_findings})
    assert findings[0].text == "The fleet evidence could not be read: the fleet tables are being migrated"
    assert findings[0].id == "E1" and findings[0].effect == 0


def test_no_erp_data_is_said_plainly(store):
    d = ask(store, "Should we restock product P?", rounds=1)
    erp = [f for f in d["evidence"] if f["source"] == "erp"]
    assert erp and erp[0]["text"].startswith("No ERP data") and d["decision"] == "deferred"


def test_restock_reads_the_erp(store):
    from datetime import date

    from bi_ide.erp.demo import load_demo
    from bi_ide.erp.reports import stock_status

    load_demo(store, months=12, end=date(2026, 10, 31))  # a fixed business: the same stock on every day
    stock = stock_status(store).to_dicts()
    short = next(r for r in stock if r["status"] == "reorder" and not r["on_order"])
    d = ask(store, f"Should we restock {short['name']}?")
    erp = [f for f in d["evidence"] if f["source"] == "erp"]
    assert d["decision"] == "approved" and erp[0]["cited"]
    assert erp[0]["text"].startswith(f"{short['name']} has {short['on_hand']:.0f} on hand, at or below its reorder")
    assert {f["topic"] for f in erp} == {"stock", "sales", "margin"}
    # Out of stock, but the demo's buyer already ordered: the order on the way counts against ordering again.
    out = next(r for r in stock if r["status"] == "out" and r["position"] > r["reorder_point"])
    coming = ask(store, f"Should we restock {out['name']}?")
    on_way = next(f for f in coming["evidence"] if f["topic"] == "stock")
    assert "an order is already on the way" in on_way["text"] and on_way["effect"] < 0
    assert coming["decision"] != "approved" and coming["probability"] < d["probability"]
    plenty = max((r for r in stock if r["status"] == "ok" and r["daily_demand"]),
                 key=lambda r: r["on_hand"] / r["daily_demand"])
    other = ask(store, f"هل نعيد تخزين {plenty['name']}؟")  # an Arabic question about a product with stock to spare
    stocked = next(f for f in other["evidence"] if f["topic"] == "stock")
    assert "فوق نقطة إعادة الطلب" in stocked["text"] and stocked["effect"] < 0  # answered in Arabic
    assert other["probability"] < d["probability"]


def test_similar_earlier_decisions_are_evidence(store):
    seed_fleet(store)
    first = ask(store, XLARGE_ON_LAPTOP)
    store.resolve_council_decision(first["id"], "right")
    again = ask(store, "Should we train the xlarge preset on the 6 GB laptop today?")
    history = [f for f in again["evidence"] if f["source"] == "history"]
    assert history and "rejected and that was right" in history[0]["text"]
    assert history[0]["facts"]["decision_id"] == first["id"] and history[0]["effect"] < 0


# -- rounds ---------------------------------------------------------------------------------------
def test_feedback_round_revisions_carry_their_reason():
    backend = GroundedBackend()
    q = parse_question("Should we train the large preset?")
    hard = Finding("fleet", "memory", "It does not fit.", -3.0, id="E1")
    weak = Finding("training", "quality", "Bpb fell a little.", 0.5, id="E2")
    m_weak, m_unseen = BY_ID["hc-innovation"], BY_ID["hc-quality"]
    previous = {m_weak.id: Answer(m_weak.id, "abstain", 0.55, "weak", evidence=["E2"]),
                m_unseen.id: Answer(m_unseen.id, "approve", 0.62, "bpb fell", evidence=["E2"])}
    feedback = Feedback(0.2, 0.1, ["Bpb fell a little."], ["It does not fit."], ["E2"], ["E1"])
    revised = {a.member_id: a for a in backend.answer([m_weak, m_unseen], q, [hard, weak], feedback=feedback,
                                                      previous=previous)}
    took_in = revised[m_unseen.id]
    assert took_in.probability < 0.4 and "took in [E1]" in took_in.revision_reason and "E1" in took_in.evidence
    assert revised[m_weak.id].probability < 0.55 and revised[m_weak.id].revision_reason
    quiet = Feedback(0.55, 0.1, [], [], [], [])
    same = backend.answer([m_weak], q, [weak], feedback=quiet, previous=previous)[0]
    assert same is previous[m_weak.id]  # nothing new, not far from the median: unchanged


def test_round_one_stores_only_changes(store):
    seed_fleet(store)
    ask(store, XLARGE_ON_LAPTOP)  # a similar rejection makes some members lean weakly against the next one
    d = ask(store, "Should we train the small preset on the 6 GB laptop?")
    revised = [v for v in d["votes"] if v["round"] == 1]
    first = {v["member_id"]: v for v in d["votes"] if v["round"] == 0}
    assert 0 < d["meta"]["revised"] == len(revised) < len(first)
    median = d["meta"]["feedback"]["median"]
    for v in revised:
        before = first[v["member_id"]]["probability"]
        assert "median" in v["revision_reason"] and abs(v["probability"] - median) < abs(before - median)
    one_round = ask(store, "Should we train the large preset on the 6 GB laptop?", rounds=1)
    assert {v["round"] for v in one_round["votes"]} == {0} and one_round["rounds"] == 1


def test_question_validation(store):
    for bad, match in (("", "1 to 5,000"), ("   ", "blank"), ("x" * 5001, "got 5001")):
        with pytest.raises(ValidationError, match=match):
            ask(store, bad)
    with pytest.raises(ValidationError, match="urgency 'urgent' is not one of"):
        ask(store, "ok?", urgency="urgent")
    with pytest.raises(ValidationError, match="rounds"):
        ask(store, "ok?", rounds=3)
    assert store.list_council_decisions().is_empty()
    assert ask(store, "x" * 5000, rounds=1)["question"] == "x" * 5000


# -- the President and outcomes --------------------------------------------------------------------
def test_veto_and_override_are_recorded(store):
    d = ask(store, "Is the fleet ready?", rounds=1)
    vetoed = store.veto_council_decision(d["id"], "not this quarter")
    assert vetoed["vetoed"] and vetoed["veto_reason"] == "not this quarter" and vetoed["vetoed_at"] is not None
    assert vetoed["decision"] == d["decision"]  # the council's word stays on record beside the veto
    with pytest.raises(ConflictError, match="already vetoed"):
        store.veto_council_decision(d["id"], "again")
    over = store.override_council_decision(d["id"], "approve", "the deadline")
    president = [v for v in over["votes"] if v["member_id"] == "president"]
    assert over["override"] == "approved" and president[0]["round"] == 2 and president[0]["rationale"] == "the deadline"
    with pytest.raises(ValidationError, match="approve or reject"):
        store.override_council_decision(d["id"], "abstain", "x")
    with pytest.raises(NotFoundError):
        store.veto_council_decision("nope", "x")


def test_outcomes_change_records_and_weights(store):
    seed_fleet(store)
    d = ask(store, XLARGE_ON_LAPTOP)
    resolved = store.resolve_council_decision(d["id"], "right", note="it ran out of memory on the laptop")
    assert resolved["outcome"] == "right" and resolved["resolved_at"] is not None
    members = {r["id"]: r for r in store.list_council_members().to_dicts()}
    ml = members["expert-machine_learning"]  # voted reject with a low probability: right, and better than a coin
    assert (ml["correct"], ml["wrong"]) == (1, 0) and ml["weight"] > 1.0 and ml["accuracy"] == pytest.approx(2 / 3)
    assert members["meta-quality"]["weight"] == 1.0  # did not vote
    with pytest.raises(ConflictError, match="already resolved"):
        store.resolve_council_decision(d["id"], "wrong")
    calibration = store.council_calibration()
    assert calibration["resolved"] == 1 and calibration["brier"] == pytest.approx(d["probability"] ** 2)
    later = ask(store, XLARGE_ON_LAPTOP)
    weights = {v["member_id"]: v["weight"] for v in later["votes"] if v["round"] == 0}
    assert weights["expert-machine_learning"] > weights["expert-ui_ux"]
    assert later["meta"]["resolved"] == 1


def test_a_wrong_approval_lowers_the_approvers(store):
    seed_fleet(store)
    d = ask(store, "Should we train the small preset on the 6 GB laptop?")
    store.resolve_council_decision(d["id"], "wrong", weighting="accuracy")
    ml = store.list_council_members().filter(id="expert-machine_learning").row(0, named=True)
    assert (ml["correct"], ml["wrong"], ml["weight"]) == (0, 1, 0.5)
    with pytest.raises(ValidationError, match="outcome"):
        store.resolve_council_decision(d["id"], "maybe")


# -- plan-training -----------------------------------------------------------------------------
def test_plan_training_from_runs_and_fleet(store):
    seed_fleet(store, box_gb=32)
    run = store.create_run("mix", status="running", preset="small")
    store.write_metrics({"step": [1, 2, 3] * 2, "name": ["val_bpb_arabic"] * 3 + ["val_bpb_code"] * 3,
                         "value": [3.0, 2.6, 2.3, 1.2, 1.3, 1.4]}, run_id=run["id"])
    plan = plan_training(store)
    assert [p["domain"] for p in plan["priorities"]] == ["arabic", "code"]
    assert any("val_bpb_code" in w and "rose" in w for w in plan["weaknesses"])
    assert any("val_bpb_arabic" in i and "train longer" in i for i in plan["improvements"])
    assert plan["data_mix"]["arabic"] > plan["data_mix"]["code"]
    assert plan["overrides"]["preset"] in ("large", "xlarge") and plan["config"]["preset"] == plan["overrides"]["preset"]
    assert plan["command"][:5] == ["bi-ide", "train", "run", "--recipe", "small-cpu"]


def test_plan_training_on_an_empty_store(store):
    plan = plan_training(store)
    assert plan["priorities"] == [] and plan["overrides"] == {} and plan["data_mix"] == {}


# -- the CLI --------------------------------------------------------------------------------------
def test_cli_ask_resolve_members_calibration(tmp_db):
    from bi_ide.store import Store

    with Store(tmp_db) as s:
        seed_fleet(s)
    runner = CliRunner()
    out = runner.invoke(main, ["council", "ask", XLARGE_ON_LAPTOP, "--urgency", "high", "--db", str(tmp_db)])
    assert out.exit_code == 0, out.output
    assert "rejected" in out.output and "does not fit" in out.output
    decision_id = out.output.split("Decision ", 1)[1].split(":", 1)[0]
    out = runner.invoke(main, ["council", "resolve", decision_id, "--outcome", "right", "--db", str(tmp_db)])
    assert out.exit_code == 0 and "resolved as right" in out.output
    out = runner.invoke(main, ["council", "members", "--db", str(tmp_db)])
    assert out.exit_code == 0 and out.output.count("\n") == 44 and "hc-arabic_nlp" in out.output
    out = runner.invoke(main, ["council", "calibration", "--db", str(tmp_db)])
    assert out.exit_code == 0 and "1 resolved: Brier" in out.output
    out = runner.invoke(main, ["council", "decisions", "--db", str(tmp_db)])
    assert decision_id in out.output and "rejected" in out.output
    out = runner.invoke(main, ["council", "ask", "", "--db", str(tmp_db)])
    assert out.exit_code == 1 and "1 to 5,000 characters" in out.output
    out = runner.invoke(main, ["council", "resolve", "nope", "--outcome", "right", "--db", str(tmp_db)])
    assert out.exit_code == 1 and "no council decision" in out.output


def test_cli_plan_training_writes_the_plan(tmp_db, tmp_path):
    out_file = tmp_path / "plan.json"
    out = CliRunner().invoke(main, ["council", "plan-training", "--out", str(out_file), "--db", str(tmp_db)])
    assert out.exit_code == 0, out.output
    assert "Proposed run: bi-ide train run --recipe small-cpu" in out.output
    assert json.loads(out_file.read_text())["recipe"] == "small-cpu"
