"""The grounded backend: offline, deterministic answers from rules per member over the evidence.

A member weighs the findings on its own topics fully and any hard fact (|effect| ≥ 2) on other
topics at a quarter; its relevance to the question (n-gram TF-IDF between the question and its
focus, Arabic or English) scales that by 0.75 to 1.25. Shadow members count only findings against,
light members only findings for. The sum of weighed effects is the member's log-odds of approval.
A member with nothing on its topics abstains. A shadow member that sees a hard fact against at
p ≤ 0.15 blocks (the decision defers rather than approves).

In the feedback round a member takes in a strong argument it had not weighed (|effect| ≥ 2) at
half weight, or, when its own evidence is weak (|log-odds| < 1) and it sits far from the median,
moves halfway to the median ("far": more than half the interquartile spread, and at least
0.15). Either change is returned with its reason.
"""

from __future__ import annotations

from functools import lru_cache

from bi_ide.council.aggregate import clip, logit, sigmoid, vote_of
from bi_ide.council.answers import Answer, Feedback
from bi_ide.council.evidence import Finding, Question
from bi_ide.council.members import MEMBERS, Member
from bi_ide.council.similarity import Index

HARD_FACT = 2.0
OFF_TOPIC = 0.25
BLOCK_AT = 0.15
RELEVANCE_SCALE = 0.3  # a cosine of 0.3 between question and focus is full relevance
# A shadow member that finds no risk leans to approval; a light one that finds no opportunity barely leans.
NO_RISK_P = {"risk": 0.6, "opportunity": 0.45}


@lru_cache(maxsize=1)
def _focus_index() -> tuple[Index, dict[str, int]]:
    return Index([f"{m.expertise.replace('_', ' ')} {m.focus}" for m in MEMBERS]), {m.id: i for i, m in
                                                                                    enumerate(MEMBERS)}


def relevance(members: list[Member], text: str) -> dict[str, float]:
    """Each member's relevance to the question in [0, 1]."""
    index, position = _focus_index()
    scores = index.scores(text)
    return {m.id: min(1.0, scores[position[m.id]] / RELEVANCE_SCALE) for m in members}


class GroundedBackend:
    """Rules over the evidence; the same question and evidence always give the same answers."""

    name = "grounded"

    def answer(self, members: list[Member], q: Question, findings: list[Finding], *, feedback: Feedback | None = None,
               previous: dict[str, Answer] | None = None, on_answer=None) -> list[Answer]:
        rel = relevance(members, q.text) if feedback is None else {}
        by_id = {f.id: f for f in findings}
        out = []
        for m in members:
            if feedback is None:
                a = self._first(q, m, rel[m.id], findings)
            else:
                a = self._revise(q, m, previous[m.id], feedback, by_id)
            out.append(a)
            if on_answer:
                on_answer(a)
        return out

    def _first(self, q: Question, m: Member, rel: float, findings: list[Finding]) -> Answer:
        seen = [(f, 1.0 if f.topic in m.topics else OFF_TOPIC) for f in findings
                if f.effect and (f.topic in m.topics or abs(f.effect) >= HARD_FACT)]
        if not seen:
            return Answer(m.id, "abstain", None, q.say("abstained: no evidence on my focus ({t}).",
                                                       "امتنع: لا دليل في مجال اختصاصي ({t}).", t=", ".join(m.topics)),
                          backend=self.name)
        weighed = [(f, a) for f, a in seen if m.stance == "balanced"
                   or (m.stance == "risk") == (f.effect < 0)]
        if not weighed:
            p = NO_RISK_P[m.stance]
            text = q.say("No risk found in the evidence on my focus.", "لم أجد خطرًا في الأدلة ضمن اختصاصي.") \
                if m.stance == "risk" else q.say("No opportunity found in the evidence on my focus.",
                                                 "لم أجد فرصة في الأدلة ضمن اختصاصي.")
            return Answer(m.id, vote_of(p), p, text, evidence=[f.id for f, _ in seen], backend=self.name)
        scale = 0.75 + 0.5 * rel
        score = sum(a * scale * f.effect for f, a in weighed)
        p = clip(sigmoid(score))
        top = sorted(weighed, key=lambda fa: -fa[1] * abs(fa[0].effect))[:2]
        rationale = " ".join(f"[{f.id}] {f.text}" for f, _ in top)
        worst = min(f.effect for f, _ in weighed)
        return Answer(
            m.id, vote_of(p), round(p, 4), rationale,
            risks=[f.text for f, _ in weighed if f.effect < 0] if m.stance == "risk" else [],
            opportunities=[f.text for f, _ in weighed if f.effect > 0] if m.stance == "opportunity" else [],
            evidence=[f.id for f, _ in weighed], backend=self.name,
            blocker=m.stance == "risk" and worst <= -HARD_FACT and p <= BLOCK_AT,
        )

    def _revise(self, q: Question, m: Member, prev: Answer, feedback: Feedback, by_id: dict[str, Finding]) -> Answer:
        if prev.probability is None:
            return prev
        strong = [by_id[i] for i in feedback.for_ids + feedback.against_ids if i in by_id]
        unseen = [f for f in strong if abs(f.effect) >= HARD_FACT and f.id not in prev.evidence
                  and (m.stance == "balanced" or (m.stance == "risk") == (f.effect < 0))]
        if unseen:
            f = max(unseen, key=lambda f: abs(f.effect))
            p = round(clip(sigmoid(logit(prev.probability) + 0.5 * f.effect)), 4)
            reason = q.say("took in [{i}] from the feedback round: {t}", "أخذت بـ[{i}] من جولة المراجعة: {t}",
                           i=f.id, t=f.text)
            return self._changed(q, prev, p, reason, [*prev.evidence, f.id])
        far = abs(prev.probability - feedback.median) > max(feedback.spread / 2, 0.15)
        if far and abs(logit(prev.probability)) < 1.0:
            p = round((prev.probability + feedback.median) / 2, 4)
            reason = q.say("moved halfway to the council's median {m:.2f}: my own evidence is weak",
                           "اقتربت إلى منتصف المسافة من وسيط المجلس {m:.2f}: أدلتي ضعيفة", m=feedback.median)
            return self._changed(q, prev, p, reason, prev.evidence)
        return prev

    @staticmethod
    def _changed(q: Question, prev: Answer, p: float, reason: str, evidence: list[str]) -> Answer:
        revised = q.say("Revised:", "مراجَع:")
        return Answer(prev.member_id, vote_of(p), p, f"{prev.rationale} {revised} {reason}.", prev.risks,
                      prev.opportunities, evidence, prev.backend, prev.blocker and p <= BLOCK_AT, reason)
