"""A member's structured answer, the feedback it sees between rounds, and model prompts and parsing.

Model backends ask for one JSON object ``{"vote", "probability", "rationale", "risks",
"opportunities", "evidence"}``. ``parse_answer`` takes the first JSON object in the reply; when there
is none, or it is cut off, it repairs what it can (a vote and a probability found by pattern) and
otherwise returns an abstention that says why, marked ``failed`` (the member did not choose to
abstain; its backend gave no answer). It never raises on model output.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from bi_ide.council.aggregate import vote_of
from bi_ide.council.members import Member

ANSWER_PREFIX = '{"vote": "'  # model prompts end with this, so even a small model starts a JSON answer
RATIONALE_MAX = 2_000
_VOTE = re.compile(r'"?vote"?\s*[:=]\s*"?(approve|reject|abstain)', re.IGNORECASE)
_PROB = re.compile(r'"?probability"?\s*[:=]\s*"?([01](?:\.\d+)?|\.\d+)')
_RATIONALE = re.compile(r'"?rationale"?\s*[:=]\s*"([^"]{1,2000})')
_BARE_VOTE = re.compile(r"\b(approve|reject|abstain)\b", re.IGNORECASE)
COUNCIL_ROLE = ("You sit on the BI-IDE council, which answers the user's questions about their workbench (models, "
                "training runs, GPU machines, business) from the workbench's own data.")
DEFAULT_PROBABILITY = {"approve": 0.7, "reject": 0.3, "abstain": 0.5}


@dataclass
class Answer:
    """One member's answer in one round. ``probability`` is None when the member could not answer."""

    member_id: str
    vote: str
    probability: float | None
    rationale: str
    risks: list[str] = field(default_factory=list)
    opportunities: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    backend: str = "grounded"
    blocker: bool = False
    revision_reason: str | None = None
    weight_factor: float = 1.0  # below 1 when the answer was down-weighted (e.g. it cites nothing)
    weight_reason: str | None = None  # why, in the asker's language
    failed: bool = False  # its backend erred or its reply held no answer (not an abstention by choice)

    @classmethod
    def abstain(cls, member_id: str, reason: str, backend: str, *, failed: bool = False) -> Answer:
        return cls(member_id, "abstain", None, reason[:RATIONALE_MAX], backend=backend, failed=failed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Feedback:
    """What every member sees before the feedback round: anonymised, no names."""

    median: float
    spread: float
    for_arguments: list[str]
    against_arguments: list[str]
    for_ids: list[str] = field(default_factory=list)  # the findings behind the arguments, for rule backends
    against_ids: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"The council's median probability of approval is {self.median:.2f} "
                 f"(interquartile spread {self.spread:.2f})."]
        lines += [f"Strongest for: {a}" for a in self.for_arguments]
        lines += [f"Strongest against: {a}" for a in self.against_arguments]
        return "\n".join(lines)


def messages(member: Member, question: str, findings: list, feedback: Feedback | None = None,
             previous: Answer | None = None) -> list[dict]:
    """The chat messages asking ``member`` for its answer (or its revision, after feedback).

    The question and evidence come first and are the same for every member (a model backend
    computes them once per batch); the member's persona follows.
    """
    evidence = "\n".join(f"[{f.id}] ({f.source}) {f.text}" for f in findings) or "No evidence was found."
    shared = (f"{COUNCIL_ROLE}\n\nQuestion: {question}\n\nEvidence from the workbench:\n{evidence}\n\n"
              "Reply with one JSON object with the keys vote (approve, reject or abstain), probability (from 0 to 1, "
              "the chance that approving is right), rationale (one sentence), risks and opportunities (lists of short "
              "texts) and evidence (the ids of the findings you used). Its form: "
              '{"vote": "abstain", "probability": 0.5, "rationale": "...", "risks": [], "opportunities": [], '
              '"evidence": ["E1"]}')
    chat = [{"role": "system", "content": shared}, {"role": "user", "content": member.persona()}]
    if feedback is not None and previous is not None:
        chat += [{"role": "assistant", "content": json.dumps({"vote": previous.vote,
                                                              "probability": previous.probability,
                                                              "rationale": previous.rationale})},
                 {"role": "user", "content": feedback.text() + "\nYou may revise your answer; say why in the "
                                                                "rationale. Reply with JSON as before."}]
    return chat


def parse_answer(text: str, member_id: str, backend: str, *, prefixed: bool = False) -> Answer:
    """The answer in a model's reply: JSON if there is one, repaired if not, else an abstention with the reason."""
    raw = (ANSWER_PREFIX + text) if prefixed else text
    obj = _first_json(raw)
    if obj is None:
        obj = _repair(raw)
    if obj is None:
        shown = " ".join(text.split())[:120]
        return Answer.abstain(member_id, f"abstained: the {backend} backend's reply was not a valid answer "
                                         f"({shown!r})", backend, failed=True)
    return _answer(obj, member_id, backend)


def _first_json(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text[m.start():])
        except ValueError:
            continue
        if isinstance(obj, dict) and "vote" in obj:
            return obj
    return None


def _repair(text: str) -> dict | None:
    vote = _VOTE.search(text) or _BARE_VOTE.search(text[:80])
    if vote is None:
        return None
    prob = _PROB.search(text)
    rationale = _RATIONALE.search(text)
    return {"vote": vote[1].lower(), "probability": float(prob[1]) if prob else None,
            "rationale": (rationale[1] if rationale else "") + " (repaired from an incomplete reply)"}


def _answer(obj: dict, member_id: str, backend: str) -> Answer:
    vote = str(obj.get("vote", "")).lower().strip()
    p = obj.get("probability")
    try:
        p = float(p) if p is not None else None
    except (TypeError, ValueError):
        p = None
    if p is not None and not 0 <= p <= 1:
        p = p / 100 if 1 < p <= 100 else None  # "70" meant 70 %
    if vote not in DEFAULT_PROBABILITY:
        if p is None:
            return Answer.abstain(member_id, f"abstained: the {backend} backend answered vote {vote!r}", backend,
                                  failed=True)
        vote = vote_of(p)
    if p is None:
        p = DEFAULT_PROBABILITY[vote]
    elif vote != "abstain" and vote != vote_of(p) and vote_of(p) != "abstain":
        vote = vote_of(p)  # the probability is the answer; a vote against it was a slip
    return Answer(member_id, vote, p, str(obj.get("rationale") or "")[:RATIONALE_MAX],
                  risks=_strings(obj.get("risks")), opportunities=_strings(obj.get("opportunities")),
                  evidence=_strings(obj.get("evidence")), backend=backend)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value[:300]] if value else []
    if isinstance(value, list):
        return [str(v)[:300] for v in value[:10] if v not in (None, "")]
    return []
