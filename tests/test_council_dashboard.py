"""The council dashboard: its state, the page without a browser, and the page in Chromium with an Arabic question."""

from __future__ import annotations

import pytest
from test_council import XLARGE_ON_LAPTOP, seed_fleet

from bi_ide.council.deliberation import ask
from bi_ide.dashboards.council import CouncilPage, baseline_scores, calibration_figure, member_grid
from bi_ide.dashboards.council_state import Council
from bi_ide.dashboards.training_state import ADMINS_ENV, DEVELOPERS_ENV

ARABIC_QUESTION = "هل ندرب النموذج الضخم xlarge على اللابتوب؟"


@pytest.fixture
def council(store) -> Council:
    seed_fleet(store)
    return Council(store=store).refresh()


def test_state_lists_decisions_leaderboard_calibration(council, store):
    first = ask(store, XLARGE_ON_LAPTOP)
    store.resolve_council_decision(first["id"], "right")
    council.refresh()
    assert council.decisions["id"].to_list() == [first["id"]] and council.error == ""
    board = council.leaderboard
    assert board.height == 39 and "president" not in board["group"].to_list()
    assert board["weight"].to_list() == sorted(board["weight"].to_list(), reverse=True)
    assert council.calibration["resolved"] == 1 and council.details == {}
    council.watch_decision("tab", first["id"])
    assert council.details[first["id"]]["votes"]


def test_no_store_says_so():
    assert "bi-ide init" in Council().refresh().error


def test_page_asks_and_shows_the_decision(council):
    page = CouncilPage(council=council)
    assert "No decision yet" in page.header.object
    events = []
    page._progress = events.append  # what the progress bar would show
    page.question.value = ARABIC_QUESTION
    page.urgency.value = "high"
    decision = page.ask_now()
    assert decision["decision"] == "rejected" and page.selected == decision["id"]
    assert events[0]["phase"] == "evidence" and events[-1]["phase"] == "stored"
    assert any(e.get("member_id") == "hc-ai" for e in events)
    assert 'dir="auto"' in page.header.object and "هل ندرب" in page.header.object
    assert page.grid.object.count('data-vote="reject"') > 30 and "حكيم الذكاء" in page.grid.object
    assert "لا يتسع" in page.shadow.object and "لا يتسع" in page.evidence.object  # answered in Arabic
    assert list(page.history.value["id"]) == [decision["id"]] and list(page.history.selection) == [0]
    assert page.message.alert_type == "success"
    page.close()
    assert council.watched == frozenset()


def test_page_refuses_bad_questions_and_non_developers(council, monkeypatch):
    page = CouncilPage(council=council)
    page.question.value = "   "
    assert page.ask_now() is None and page.message.alert_type == "danger" and "1 to 5,000" in page.message.object
    monkeypatch.setenv(DEVELOPERS_ENV, "alice")
    bob = CouncilPage(council=council, user="bob")
    bob.question.value = "Is the fleet ready?"
    assert bob.ask_button.disabled and bob.ask_now() is None and "not a developer" in bob.message.object
    assert council.store.list_council_decisions().is_empty()


def test_page_records_outcome_override_and_veto(council, store):
    decision = ask(store, XLARGE_ON_LAPTOP)
    before = {r["id"]: r["weight"] for r in store.list_council_members().to_dicts()}
    page = CouncilPage(council=council.refresh(), selected=decision["id"])
    assert page.actions.visible and not page.resolve_button.disabled and not page.veto_button.disabled
    page.outcome.value, page.note.value = "right", "the laptop ran out of memory in a trial"
    assert page.resolve_now()["outcome"] == "right" and page.message.alert_type == "success"
    assert "resolved: right" in page.header.object and page.note.value == ""
    assert page.resolve_button.disabled and "resolved as right" in page.resolve_button.description
    after = {r["id"]: r["weight"] for r in store.list_council_members().to_dicts()}
    assert after != before and council.calibration["resolved"] == 1
    assert page.history.value["outcome"].to_list() == ["right"]

    page.reason.value = "  "  # the President's word needs a reason; nothing is recorded without one
    assert page.veto_now() is None and page.message.alert_type == "danger" and "Reason" in page.message.object
    page.president_vote.value, page.reason.value = "approve", "we accept the risk for one trial run"
    assert page.override_now()["override"] == "approved" and "the President says approved" in page.header.object
    page.reason.value = "not this quarter"
    assert page.veto_now()["vetoed"] and "vetoed by the President: not this quarter" in page.header.object
    assert page.veto_button.disabled and page.veto_button.description == "already vetoed"
    stored = store.get_council_decision(decision["id"])
    assert (stored["outcome_note"], stored["override_reason"], stored["veto_reason"]) == (
        "the laptop ran out of memory in a trial", "we accept the risk for one trial run", "not this quarter")
    page.close()


def test_president_buttons_need_an_admin(council, store, monkeypatch):
    decision = ask(store, XLARGE_ON_LAPTOP)
    monkeypatch.setenv(DEVELOPERS_ENV, "ada")
    monkeypatch.setenv(ADMINS_ENV, "root")
    ada = CouncilPage(council=council.refresh(), user="ada", selected=decision["id"])
    assert not ada.resolve_button.disabled and ada.veto_button.disabled and ada.override_button.disabled
    assert ADMINS_ENV in ada.veto_button.description
    ada.reason.value = "no"
    assert ada.veto_now() is None and "not an admin" in ada.message.object
    assert not store.get_council_decision(decision["id"])["vetoed"]
    root = CouncilPage(council=council, user="root", selected=decision["id"])
    assert not root.veto_button.disabled and not root.resolve_button.disabled
    ada.close()
    root.close()


def test_grid_marks_revisions_and_the_plot_has_the_table(store):
    seed_fleet(store)
    ask(store, XLARGE_ON_LAPTOP)
    d = ask(store, "Should we train the small preset on the 6 GB laptop?")
    revised = {v["member_id"] for v in d["votes"] if v["round"] == 1}
    grid = member_grid(d)
    assert revised and grid.count("council-cell revised") == len(revised)
    fig = calibration_figure({"resolved": 2, "brier": 0.1, "ece": 0.05,
                              "table": [{"predicted": 0.2, "observed": 0.0, "count": 1},
                                        {"predicted": 0.8, "observed": 1.0, "count": 1}]})
    assert fig.title.text == "2 resolved · Brier 0.100 · ECE 0.050"
    assert fig.renderers[1].data_source.data["x"] == [0.2, 0.8]


ARABIC_OTHER_QUESTION = "هل نشتري بطاقة رسومية أكبر؟"  # unlike ARABIC_QUESTION: no history evidence for it


def arabic_decision(store, like: dict) -> dict:
    """``like`` stored again as an Arabic decision (meta["language"] = "ar"), with Arabic texts."""
    fields = {k: like[k] for k in ("decision", "confidence", "probability", "evidence", "backend", "rounds", "blocker")}
    votes = [{k: v[k] for k in ("member_id", "round", "vote", "probability", "rationale")} for v in like["votes"]]
    return store.record_council_decision(
        ARABIC_OTHER_QUESTION, votes=votes, **fields, meta={**like["meta"], "language": "ar"},
        reasoning="رفض المجلس: النموذج لا يتسع في ذاكرة اللابتوب.", shadow_analysis="- لا يتسع في الذاكرة",
        light_suggestion="لم يجد أعضاء النور فرصة.")


def test_page_shows_baselines_quorum_and_stages(council, store):
    decision = ask(store, XLARGE_ON_LAPTOP)
    page = CouncilPage(council=council.refresh(), selected=decision["id"])
    shown = page.baselines.object
    assert all(f'data-baseline="{name}"' in shown for name in ("council", "majority", "best_member"))
    assert "council: rejected" in shown and "majority: rejected" in shown and "best member: " in shown
    best = decision["meta"]["baselines"]["best_member"]
    assert best["member_id"] in shown and "Quorum: 39 of 39 voting members answered" in shown
    assert 'class="council-stages"' in shown and "round 0" in shown and "store" in shown
    # an English (or unmarked) decision reads left to right; the question keeps its own direction
    for pane in (page.header, page.shadow, page.light, page.evidence):
        assert 'dir="ltr"' in pane.object and 'dir="rtl"' not in pane.object
    store.resolve_council_decision(decision["id"], "right")
    council.refresh()
    assert 'data-baseline="best_member"' in page.scores.object and "Brier" in page.scores.object
    page.close()


def test_an_arabic_decision_reads_right_to_left(council, store):
    arabic = arabic_decision(store, ask(store, XLARGE_ON_LAPTOP))
    page = CouncilPage(council=council.refresh(), selected=arabic["id"])
    for pane in (page.header, page.shadow, page.light, page.evidence):
        assert 'dir="rtl"' in pane.object and "council-rtl" in pane.object
    assert "رفض المجلس" in page.header.object and 'dir="auto"' in page.header.object  # the question: its own
    page.close()


def test_old_and_odd_decisions_still_show(council, store):
    old = store.record_council_decision("An old question?", votes=[], decision="approved", probability=0.8,
                                        confidence=0.8, reasoning="r", shadow_analysis="s", light_suggestion="l",
                                        meta={"answered": 3})
    odd = store.record_council_decision("An odd question?", votes=[], decision="rejected", probability=0.3,
                                        confidence=0.7, reasoning="r", shadow_analysis="s", light_suggestion="l",
                                        meta={"baselines": {"majority": {"decision": "maybe", "probability": 3},
                                                            "council": "x"}, "quorum": {"answered": None},
                                              "stages_ms": [1, 2], "language": 7})
    store.resolve_council_decision(odd["id"], "wrong")
    page = CouncilPage(council=council.refresh(), selected=old["id"])
    assert "predates them" in page.baselines.object and page.message.alert_type != "danger"
    page.selected = odd["id"]
    assert 'data-baseline="majority"' in page.baselines.object and "majority: —" in page.baselines.object
    assert "Quorum" not in page.baselines.object and 'dir="ltr"' in page.shadow.object
    assert "no resolved decision carries them" in page.scores.object  # a bad stored value is left out
    assert baseline_scores({}) == baseline_scores({"baselines": "?"})
    page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_council_page_in_browser_with_an_arabic_question(browser, tmp_db, start_hub):
    import subprocess
    import sys
    from pathlib import Path

    from playwright.sync_api import expect

    from bi_ide.store import Store

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "bi_ide.cli", "init", "--db", str(tmp_db)], cwd=root, check=True,
                   capture_output=True, timeout=60)
    with Store(tmp_db) as s:
        seed_fleet(s)
        first = ask(s, "Should we train the small preset on the 6 GB laptop?")
        s.resolve_council_decision(first["id"], "right")
        arabic = arabic_decision(s, first)
    hub = start_hub(tmp_db)
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    tab = context.new_page()
    try:
        tab.goto(hub.url + "/council")
        tab.locator(".council-history").get_by_text("Should we train the small preset").wait_for(timeout=30_000)
        assert tab.title() == "Council"
        box = tab.locator(".council-ask textarea")
        box.fill(ARABIC_QUESTION)
        tab.locator(".council-ask-button button").click()
        header = tab.locator(".council-header")
        # the hub's first question: on a loaded machine the council's libraries may still be loading
        header.locator(".council-decision", has_text="rejected").wait_for(timeout=90_000)
        question = header.locator(".council-question")
        assert question.inner_text() == ARABIC_QUESTION
        assert question.evaluate("e => getComputedStyle(e).direction") == "rtl"  # dir=auto found Arabic
        assert box.evaluate("e => getComputedStyle(e).unicodeBidi") == "plaintext"
        cells = tab.locator(".council-members .council-cell[data-vote='reject']")
        assert cells.count() > 30
        assert tab.locator(".council-shadow").get_by_text("لا يتسع").is_visible()  # answered in Arabic
        # the decision beside its baselines, side by side, and the quorum
        shown = tab.locator(".council-baselines-pane")
        for name, title in (("council", "council: rejected"), ("majority", "majority: rejected"),
                            ("best_member", "best member:")):
            card = shown.locator(f".council-baseline[data-baseline='{name}']")
            assert card.is_visible() and title in card.inner_text()
        boxes = [shown.locator(f".council-baseline[data-baseline='{n}']").bounding_box()
                 for n in ("council", "majority", "best_member")]
        assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"] and abs(boxes[0]["y"] - boxes[2]["y"]) < 2
        assert "Quorum: 39 of 39" in shown.locator(".council-quorum").inner_text()
        reasoning = header.locator(".council-reasoning")
        assert reasoning.evaluate("e => getComputedStyle(e).direction") == "rtl"  # an Arabic decision reads rtl
        assert reasoning.evaluate("e => getComputedStyle(e).textAlign") in ("right", "start")
        assert tab.locator(".council-history .tabulator-row").count() == 3
        assert tab.locator(".council-scores").get_by_text("best member").is_visible()
        assert tab.locator(".council-leaderboard").get_by_text("حكيم الذكاء").count() == 1
        # the outcome and the President's veto, recorded from the page
        actions = tab.locator(".council-actions")
        actions.locator(".council-resolve button").click()
        header.locator(".council-decision", has_text="resolved: right").wait_for(timeout=30_000)
        actions.locator("input[placeholder='why (recorded)']").fill("ليس هذا الربع")
        actions.locator(".council-veto button").click()
        header.locator(".council-decision", has_text="vetoed by the President: ليس هذا الربع").wait_for(timeout=30_000)
        assert actions.locator(".council-veto button").is_disabled()
        # an Arabic decision's card reads right to left: reasoning, shadow, light and evidence
        tab.locator(".council-history .tabulator-row", has_text=arabic["id"]).click()
        header.get_by_text("رفض المجلس").wait_for(timeout=30_000)
        for card in (header.locator(".council-reasoning"), tab.locator(".council-shadow-card"),
                     tab.locator(".council-light-card"), tab.locator(".council-evidence-list")):
            # each pane re-renders on its own: wait for it rather than read it mid-swap
            expect(card).to_have_css("direction", "rtl")
            expect(card).to_have_css("text-align", "right")
        assert "Traceback" not in hub.log_path.read_text()
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_an_arabic_question_on_the_demo_store_in_the_browser(browser, tmp_db, start_hub, tmp_path):
    """The seed's user asks in Arabic about the demo business: Arabic reasoning, right to left, the
    product the evidence cites, the three baselines."""
    import subprocess
    import sys
    from pathlib import Path

    from playwright.sync_api import expect

    from bi_ide.council.examples import example_store
    from bi_ide.store import Store

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "bi_ide.cli", "init", "--db", str(tmp_db)], cwd=root, check=True,
                   capture_output=True, timeout=60)
    with Store(tmp_db) as s:
        example_store(s)
    hub = start_hub(tmp_db)
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    tab = context.new_page()
    try:
        tab.goto(hub.url + "/council")
        tab.locator(".council-ask textarea").wait_for(timeout=30_000)
        tab.locator(".council-ask textarea").fill("هل نعيد طلب حبوب الإسبريسو؟")
        tab.locator(".council-ask-button button").click()
        header = tab.locator(".council-header")
        header.locator(".council-decision", has_text="approved").wait_for(timeout=90_000)
        reasoning = header.locator(".council-reasoning")
        expect(reasoning).to_contain_text("وافق المجلس")
        expect(reasoning).to_have_css("direction", "rtl")
        expect(tab.locator(".council-evidence-list")).to_have_css("direction", "rtl")
        # the product the evidence cites
        expect(tab.locator(".council-evidence").get_by_text("Espresso beans 1kg").first).to_be_visible()
        for name in ("council", "majority", "best_member"):
            assert tab.locator(f".council-baseline[data-baseline='{name}']").is_visible()
        tab.screenshot(path=str(tmp_path / "council-arabic.png"), full_page=True)
    finally:
        context.close()
