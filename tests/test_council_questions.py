"""The public question set (tests/council_questions.yaml) over the example store: each question's
decision, the entity its evidence names, and the language it is answered in."""

from __future__ import annotations

from pathlib import Path

import pytest

from bi_ide.council.deliberation import ask
from bi_ide.council.examples import example_store, judge, load_questions
from bi_ide.council.language import language_of
from bi_ide.store import Store

QUESTIONS = load_questions(Path(__file__).with_name("council_questions.yaml"))


@pytest.fixture(scope="module")
def store():
    with Store(memory=True) as s:
        example_store(s)
        yield s


def test_the_set_is_big_enough_and_half_arabic():
    assert len(QUESTIONS) >= 40
    arabic = sum(q["lang"] == "ar" for q in QUESTIONS)
    assert arabic >= len(QUESTIONS) // 2 - 2 and len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)


@pytest.mark.parametrize("row", QUESTIONS, ids=[q["id"] for q in QUESTIONS])
def test_question(store, row):
    decision = ask(store, row["question"])
    verdict = judge(decision, row)
    evidence = "\n".join(f"  [{e['id']}] {e['effect']:+.1f} {e['text']}" for e in decision["evidence"])
    assert verdict["right"], f"expected {row['expect']}, got {decision['decision']} ({row['why']})\n{evidence}"
    assert verdict["cited"], f"no finding about {row['cites']}\n{evidence}"
    if language_of(row["question"]) == "ar":  # Arabic in, Arabic out: reasoning, shadow, light, evidence
        assert decision["meta"]["language"] == "ar"
        for text in (decision["reasoning"], decision["shadow_analysis"], decision["light_suggestion"],
                     *(e["text"] for e in decision["evidence"])):
            assert language_of(text) == "ar", text
    else:
        assert decision["meta"]["language"] == "en" and language_of(decision["reasoning"]) == "en"


def test_the_cli_answers_arabic_right_to_left(tmp_path):
    from click.testing import CliRunner

    from bi_ide.cli import main
    from bi_ide.council.language import RLE, RLM

    db = tmp_path / "w.duckdb"
    with Store(db) as s:
        example_store(s, erp=True)
    ar = CliRunner().invoke(main, ["council", "ask", "هل نزيد مخزون القهوة للشهر القادم؟", "--db", str(db)])
    assert ar.exit_code == 0, ar.output
    lines = [line for line in ar.output.splitlines() if line.strip() and RLE in line]
    assert lines and all(line.startswith(RLM + RLE) for line in lines)  # every Arabic line embedded right to left
    assert "القرار" in ar.output and "قهوة" in ar.output
    en = CliRunner().invoke(main, ["council", "ask", "Should we deploy bi-arabic v2?", "--db", str(db)])
    assert en.exit_code == 0 and RLE not in en.output and "rejected" in en.output and "1.350" in en.output
