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
