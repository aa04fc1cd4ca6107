"""A council session: evidence, an independent round, one feedback round, pooling, the decision.

1. Evidence: the providers read the store (``bi_ide.council.evidence``).
2. Round 0: every voting member answers on its own (vote, probability, rationale, risks or
   opportunities, the findings it used), through its backend.
3. Round 1 (feedback): members see the anonymised median, spread and the strongest arguments for
   and against, and may revise with a reason; only changes are recorded, as round-1 votes.
4. Pooling: a member's probability is the mean of its rounds in log-odds, its weight its record's,
   each group capped (``bi_ide.council.aggregate``); ≥ 0.6 approves, ≤ 0.4 rejects, else defers,
   and a shadow blocker defers an approval. Confidence is calibrated on resolved decisions.
5. The decision, every vote of every round and the evidence cited are stored in one transaction.

``ask(store, ...)`` runs this on a Store, or sends the question to the hub for a HubClient.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bi_ide.council import aggregate
from bi_ide.council.answers import Answer, Feedback
from bi_ide.council.backends import make_backend
from bi_ide.council.evidence import Finding, Question, gather, understand
from bi_ide.council.members import BY_ID, MEMBERS, Member, voting_members
from bi_ide.errors import ValidationError
from bi_ide.store.council import check_question

ARGUMENTS = 2  # strongest arguments shown per side in the feedback round


def ask(store, question: str, *, urgency: str = "normal", backend=None, member_backends: dict | None = None,
        rounds: int = 2, members: list[str] | None = None, on_progress: Callable[[dict], None] | None = None) -> dict:
    """Ask the council; returns the stored decision with its votes. Works on a Store or a HubClient."""
    check_question(question, urgency)
    if rounds not in (1, 2):
        raise ValidationError(f"rounds must be 1 or 2, got {rounds}", field="rounds")
    if hasattr(store, "ask_council"):  # a HubClient: the hub holds the data and deliberates
        return store.ask_council(question, urgency=urgency, backend=backend, member_backends=member_backends,
                                 rounds=rounds, members=members, on_progress=on_progress)
    return Session(store, backend, member_backends, members, on_progress).run(question, urgency, rounds)


class Session:
    """One deliberation over a Store."""

    def __init__(self, store, backend=None, member_backends: dict | None = None, members: list[str] | None = None,
                 on_progress: Callable[[dict], None] | None = None):
        self.store = store
        self.backend = make_backend(backend)
        self.member_backends = {mid: make_backend(spec) for mid, spec in (member_backends or {}).items()}
        voting_members(list(self.member_backends) or None)  # unknown ids are refused before any work
        self.members = voting_members(members)
        self.on_progress = on_progress or (lambda event: None)
        self._record_weights: dict[str, float] | None = None

    def run(self, question: str, urgency: str, rounds: int) -> dict:
        started = time.perf_counter()
        self.store.ensure_council_members([m.record() for m in MEMBERS])
        self._progress("evidence", 0)
        q = understand(self.store, question)
        findings = gather(self.store, q)
        first = self._round(q, findings, 0)
        feedback, second = None, {}
        if rounds == 2:
            feedback = self._feedback(first, findings)
            revised = self._round(q, findings, 1, feedback, first)
            second = {mid: a for mid, a in revised.items() if a is not first[mid]}
        result = self._decide(first, second, findings)
        _hold_unfounded_approval(result, q, findings)
        result["reasoning"] = _reasoning(q, result["decision"], result["probability"], {**first, **second},
                                         {f.id: f for f in findings}, (result["blocker"] or "").split(", ")
                                         if result["blocker"] else [], result.pop("held", None))
        result["shadow_analysis"] = _listing({**first, **second}, "shadow", "risks") or q.say(
            "The shadow members found no risk.", "لم يجد أعضاء الظل أي خطر.")
        result["light_suggestion"] = _listing({**first, **second}, "light", "opportunities") or q.say(
            "The light members found no opportunity.", "لم يجد أعضاء النور أي فرصة.")
        result["meta"].update(intent=q.intent, preset=q.preset, revised=len(second), language=q.language,
                              script=q.script, direction=q.direction, version=q.version,
                              entities=q.reading.keys if q.reading is not None else [],
                              unmatched=q.reading.unmatched[:10] if q.reading is not None else [],
                              injection=q.injection,
                              feedback=None if feedback is None else {"median": feedback.median,
                                                                      "spread": feedback.spread})
        result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        votes = [_vote(a, 0, result["weights"]) for a in first.values()]
        votes += [_vote(a, 1, result["weights"]) for a in second.values()]
        del result["weights"]
        self._progress("stored", len(self.members))
        return self.store.record_council_decision(question, urgency=urgency, votes=votes, rounds=rounds, **result)

    # -- rounds -----------------------------------------------------------------------------------
    def _round(self, q, findings, number: int, feedback: Feedback | None = None,
               previous: dict[str, Answer] | None = None) -> dict[str, Answer]:
        groups: dict[int, tuple[object, list[Member]]] = {}
        for m in self.members:
            backend = self.member_backends.get(m.id, self.backend)
            groups.setdefault(id(backend), (backend, []))[1].append(m)
        done = []

        def answered(a: Answer) -> None:
            done.append(a)
            self._progress(f"round {number}", len(done), a)

        answers = {}
        for backend, members in groups.values():
            for a in backend.answer(members, q, findings, feedback=feedback, previous=previous, on_answer=answered):
                answers[a.member_id] = a
        return {m.id: answers[m.id] for m in self.members}

    def _feedback(self, first: dict[str, Answer], findings: list[Finding]) -> Feedback:
        """The anonymised median and spread, and the findings most weight cited on each side."""
        median, spread = aggregate.spread([a.probability for a in first.values() if a.probability is not None])
        pull: dict[str, float] = {}
        weights = self._weights()
        for a in first.values():
            for fid in a.evidence:
                pull[fid] = pull.get(fid, 0.0) + weights.get(a.member_id, 1.0)
        by_id = {f.id: f for f in findings}
        ranked = sorted((fid for fid in pull if fid in by_id), key=lambda fid: -pull[fid] * abs(by_id[fid].effect))
        pro = [fid for fid in ranked if by_id[fid].effect > 0][:ARGUMENTS]
        con = [fid for fid in ranked if by_id[fid].effect < 0][:ARGUMENTS]
        return Feedback(round(median, 4), round(spread, 4), [by_id[f].text for f in pro], [by_id[f].text for f in con],
                        pro, con)

    # -- pooling -------------------------------------------------------------------------------
    def _weights(self) -> dict[str, float]:
        if self._record_weights is None:
            table = self.store.list_council_members()
            self._record_weights = dict(zip(table["id"].to_list(), table["weight"].to_list(), strict=True))
        return self._record_weights

    def _decide(self, first: dict[str, Answer], second: dict[str, Answer], findings: list[Finding]) -> dict:
        record = self._weights()
        answered = [mid for mid, a in first.items() if a.probability is not None]
        probs = [aggregate.sigmoid(statistics.fmean(aggregate.logit(a.probability) for a in (first[mid], second.get(mid))
                                                    if a is not None and a.probability is not None))
                 for mid in answered]
        weights = aggregate.cap_groups([record.get(mid, 1.0) for mid in answered],
                                       [BY_ID[mid].group for mid in answered])
        p = aggregate.pool(probs, weights)
        final = {**first, **second}
        blockers = [mid for mid, a in final.items() if a.blocker]
        decision = aggregate.decide(p, blocked=bool(blockers))
        calibration = self.store.council_calibration()
        calibrated = aggregate.calibrate(p, calibration["table"])
        cited = sorted({fid for a in final.values() for fid in a.evidence}, key=lambda f: int(f[1:]))
        return {
            "decision": decision,
            "probability": round(p, 6),
            "confidence": round(aggregate.confidence(decision, calibrated), 6),
            "reasoning": "",  # written by run(), in the asker's language
            "shadow_analysis": "",
            "light_suggestion": "",
            "evidence": [f.to_dict() | {"cited": f.id in cited} for f in findings],
            "backend": self.backend.name,
            "blocker": ", ".join(blockers) or None,
            "meta": {"answered": len(answered), "abstained": len(first) - len(answered),
                     "calibrated_probability": round(calibrated, 6), "resolved": calibration["resolved"],
                     "brier": calibration["brier"], "ece": calibration["ece"],
                     "group_weight": _group_shares(answered, weights)},
            "weights": dict(zip(answered, weights, strict=True)),
        }

    def _progress(self, phase: str, done: int, answer: Answer | None = None) -> None:
        event = {"phase": phase, "done": done, "total": len(self.members)}
        if answer is not None:
            event.update(member_id=answer.member_id, vote=answer.vote, probability=answer.probability)
        self.on_progress(event)


def _vote(a: Answer, number: int, weights: dict[str, float]) -> dict:
    return {"member_id": a.member_id, "round": number, "vote": a.vote, "probability": a.probability,
            "rationale": a.rationale, "evidence": a.evidence, "risks": a.risks, "opportunities": a.opportunities,
            "weight": round(weights[a.member_id], 6) if a.member_id in weights else None, "backend": a.backend,
            "revision_reason": a.revision_reason}


def _reasoning(q: Question, decision: str, p: float, final: dict[str, Answer], by_id: dict[str, Finding],
               blockers: list, held: str | None = None) -> str:
    counts = {v: sum(a.vote == v for a in final.values()) for v in ("approve", "reject", "abstain")}
    word = {"approved": ("approved", "وافق"), "rejected": ("rejected", "رفض"), "deferred": ("deferred", "أرجأ")}
    lines = [q.say("The council {d} with a pooled probability of approval of {p:.2f} ({a} approve, {r} reject, "
                   "{x} abstain).", "{d} المجلس باحتمال موافقة مجمّع قدره {p:.2f} ({a} موافقة، {r} رفض، {x} امتناع).",
                   d=word[decision][1 if q.language == "ar" else 0], p=p, a=counts["approve"], r=counts["reject"],
                   x=counts["abstain"])]
    for sign in (1, -1):
        strongest = sorted((f for f in by_id.values() if f.effect * sign > 0), key=lambda f: -abs(f.effect))[:2]
        if strongest:
            label = q.say("Strongest for:", "أقوى ما يؤيد:") if sign > 0 else q.say("Strongest against:",
                                                                                   "أقوى ما يعارض:")
            lines.append(f"{label} " + " ".join(f"[{f.id}] {f.text}" for f in strongest))
    not_found = [f for f in by_id.values() if f.facts.get("not_found") is not None]
    for f in not_found[:1]:
        lines.append(f"[{f.id}] {f.text}")
    if blockers:
        lines.append(q.say("Blocked by the shadow member(s) {b}: the decision cannot be an approval.",
                           "اعترض عضو (أعضاء) الظل {b}: لا يمكن أن يكون القرار موافقة.", b=", ".join(blockers)))
    if held:
        lines.append(held)
    return "\n".join(lines)


def _hold_unfounded_approval(result: dict, q: Question, findings: list[Finding]) -> None:
    """An approval needs the store's data behind it: a finding for it from a data source, and no
    instructions to the council in the question. Otherwise the decision is deferred, and says why."""
    if result["decision"] != "approved":
        return
    grounded = any(f.effect > 0 and f.source not in ("council", "history") for f in findings)
    if grounded and not q.injection:
        return
    result["decision"] = "deferred"
    result["confidence"] = round(aggregate.confidence("deferred", result["meta"]["calibrated_probability"]), 6)
    result["meta"]["held"] = "injection" if q.injection else "no evidence for"
    result["held"] = q.say(
        "Held back from an approval: the question carries instructions to the council, and an approval is never "
        "given on the strength of a question's own words.", "لم يُوافَق: السؤال يحمل تعليمات موجهة إلى المجلس، ولا "
        "تُمنح موافقة بناءً على كلمات السؤال نفسه.") if q.injection else q.say(
        "Held back from an approval: nothing in the store's data speaks for it.",
        "لم يُوافَق: لا شيء في بيانات المخزن يؤيده.")


def _listing(final: dict[str, Answer], group: str, field: str) -> str:
    seen: list[str] = []
    for mid, a in final.items():
        if BY_ID[mid].group == group:
            seen += [x for x in getattr(a, field) if x not in seen]
    return "\n".join(f"- {x}" for x in seen)


def _group_shares(ids: list[str], weights: list[float]) -> dict[str, float]:
    total = sum(weights) or 1.0
    shares: dict[str, float] = {}
    for mid, w in zip(ids, weights, strict=True):
        g = BY_ID[mid].group
        shares[g] = round(shares.get(g, 0.0) + w / total, 4)
    return shares
