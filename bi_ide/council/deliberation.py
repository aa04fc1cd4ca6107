"""A council session: evidence, an independent round, one feedback round, pooling, the decision.

1. Evidence: the providers read the store (``bi_ide.council.evidence``).
2. Round 0: every voting member answers on its own (vote, probability, rationale, risks or
   opportunities, the findings it used), through its backend.
3. Round 1 (feedback): members see the anonymised median, spread and the strongest arguments for
   and against, and may revise with a reason; only changes are recorded, as round-1 votes.
4. Pooling: a member's probability is the mean of its rounds in log-odds, its weight its record's,
   each group capped, times its final answer's weight factor (``bi_ide.council.aggregate``);
   ≥ 0.6 approves, ≤ 0.4 rejects, else defers, and a shadow blocker defers an approval. Below a
   quorum (a quarter of the voting members answering with a probability) there is no verdict:
   deferred, "no quorum". Confidence is calibrated on resolved decisions. Beside the pooled answer
   the decision keeps two baselines: the round-0 majority and the best-calibrated member's answer.
5. The decision, every vote of every round and the evidence cited are stored in one transaction,
   with the time each stage took (and the tokens a model backend generated in each round).

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
        self._member_records: dict[str, dict] | None = None

    def run(self, question: str, urgency: str, rounds: int) -> dict:
        started = time.perf_counter()
        self.store.ensure_council_members([m.record() for m in MEMBERS])
        laps = _Laps([self.backend, *self.member_backends.values()])
        self._progress("evidence", 0)
        q = understand(self.store, question)
        findings = gather(self.store, q)
        laps.mark("evidence")
        first = self._round(q, findings, 0)
        laps.mark("round0")
        feedback, second = None, {}
        if rounds == 2:
            feedback = self._feedback(first, findings)
            revised = self._round(q, findings, 1, feedback, first)
            second = {mid: a for mid, a in revised.items() if a is not first[mid]}
            laps.mark("round1")
        result = self._decide(first, second, findings)
        laps.mark("pooling")
        _hold_unfounded_approval(result, q, findings)
        quorum = result["meta"]["quorum"]
        reasoning = _reasoning(q, result["decision"], quorum["pooled_probability"], {**first, **second},
                               {f.id: f for f in findings}, (result["blocker"] or "").split(", ")
                               if result["blocker"] else [], result.pop("held", None))
        result["reasoning"] = reasoning if quorum["met"] else f"{_no_quorum(q, quorum)}\n{reasoning}"
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
                                                                      "spread": feedback.spread},
                              stages_ms=laps.stages_ms(), stages_tokens=laps.stages_tokens())
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
    def _records(self) -> dict[str, dict]:
        """Each member's record (weight, right, wrong, Brier loss), read once per session."""
        if self._member_records is None:
            self._member_records = {r["id"]: r for r in self.store.list_council_members().to_dicts()}
        return self._member_records

    def _weights(self) -> dict[str, float]:
        return {mid: r["weight"] for mid, r in self._records().items()}

    def _decide(self, first: dict[str, Answer], second: dict[str, Answer], findings: list[Finding]) -> dict:
        record = self._weights()
        final = {**first, **second}
        answered = [mid for mid, a in first.items() if a.probability is not None]
        probs = [aggregate.sigmoid(statistics.fmean(aggregate.logit(a.probability) for a in (first[mid], second.get(mid))
                                                    if a is not None and a.probability is not None))
                 for mid in answered]
        weights = aggregate.pooling_weights([record.get(mid, 1.0) for mid in answered],
                                            [BY_ID[mid].group for mid in answered],
                                            [final[mid].weight_factor for mid in answered])
        failed = sum(a.failed for a in first.values())
        quorum = aggregate.quorum(len(answered), len(first) - len(answered) - failed, failed)
        pooled = aggregate.pool(probs, weights)
        blockers = [mid for mid, a in final.items() if a.blocker]
        calibration = self.store.council_calibration()
        if quorum["met"]:
            p = pooled
            decision = aggregate.decide(p, blocked=bool(blockers))
            calibrated = aggregate.calibrate(p, calibration["table"])
        else:  # a few members' pooled answer is no verdict: none is given, and none is leaned to
            p = calibrated = 0.5
            decision = "deferred"
        confidence = aggregate.confidence(decision, calibrated)
        cited = sorted({fid for a in final.values() for fid in a.evidence}, key=lambda f: int(f[1:]))
        council = {"decision": decision, "probability": round(p, 6), "confidence": round(confidence, 6),
                   "reason": None if quorum["met"] else "no quorum"}
        return {
            "decision": decision,
            "probability": round(p, 6),
            "confidence": round(confidence, 6),
            "reasoning": "",  # written by run(), in the asker's language
            "shadow_analysis": "",
            "light_suggestion": "",
            "evidence": [f.to_dict() | {"cited": f.id in cited} for f in findings],
            "backend": self.backend.name,
            "blocker": ", ".join(blockers) or None,
            "meta": {"answered": len(answered), "abstained": len(first) - len(answered),
                     "calibrated_probability": round(calibrated, 6), "resolved": calibration["resolved"],
                     "brier": calibration["brier"], "ece": calibration["ece"],
                     "group_weight": _group_shares(answered, weights),
                     "quorum": quorum | {"pooled_probability": round(pooled, 6)},
                     "baselines": {"majority": _majority(first), "best_member": self._best_member(first),
                                   "council": council}},
            "weights": dict(zip(answered, weights, strict=True)),
        }

    def _best_member(self, first: dict[str, Answer]) -> dict:
        """The baseline of the best-calibrated voting member: its round-0 answer (see docs/council.md)."""
        records = {mid: self._records().get(mid) or {} for mid in first}  # council order
        best = aggregate.best_member([(mid, (r.get("correct") or 0) + (r.get("wrong") or 0), r.get("brier_sum") or 0.0)
                                      for mid, r in records.items()])
        a = first[best["member_id"]]
        return {**best, "brier": None if best["brier"] is None else round(best["brier"], 6),
                "name": BY_ID[a.member_id].name, "round": 0, "vote": a.vote,
                "probability": None if a.probability is None else round(a.probability, 6),
                "decision": aggregate.answer_decision(a.probability), "abstained": a.probability is None,
                "failed": a.failed}

    def _progress(self, phase: str, done: int, answer: Answer | None = None) -> None:
        event = {"phase": phase, "done": done, "total": len(self.members)}
        if answer is not None:
            event.update(member_id=answer.member_id, vote=answer.vote, probability=answer.probability)
        self.on_progress(event)


def _vote(a: Answer, number: int, weights: dict[str, float]) -> dict:
    return {"member_id": a.member_id, "round": number, "vote": a.vote, "probability": a.probability,
            "rationale": a.rationale, "evidence": a.evidence, "risks": a.risks, "opportunities": a.opportunities,
            "weight": round(weights[a.member_id], 6) if a.member_id in weights else None, "backend": a.backend,
            "revision_reason": a.revision_reason, "weight_factor": aggregate.weight_factor(a.weight_factor),
            "weight_reason": a.weight_reason, "failed": a.failed}


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
    council = result["meta"].get("baselines", {}).get("council")
    if council is not None:  # the council's own answer, beside the baselines, is the held one
        council.update(decision="deferred", confidence=result["confidence"], reason="held")
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


def _majority(first: dict[str, Answer]) -> dict:
    m = aggregate.majority([a.vote for a in first.values()])
    return {**m, "probability": round(m["probability"], 6), "round": 0}


def _no_quorum(q: Question, quorum: dict) -> str:
    return q.say("No quorum: {a} of {v} voting members answered with a probability ({n} needed; {x} abstained, "
                 "{f} failed), so the council defers without a verdict.",
                 "لا نصاب: أجاب {a} من {v} عضوًا مصوّتًا باحتمال (المطلوب {n}؛ امتنع {x}، وأخفق {f})، فيرجئ المجلس "
                 "القرار بلا حكم.", a=quorum["answered"], v=quorum["voting"], n=quorum["needed"],
                 x=quorum["abstained"], f=quorum["failed"])


class _Laps:
    """The time from one mark to the next, and the tokens the model backends generated in it."""

    def __init__(self, backends: list):
        self.counting = [b for b in {id(b): b for b in backends}.values() if hasattr(b, "generated_tokens")]
        self.ms: dict[str, float] = {}
        self.tokens: dict[str, int | None] = {}
        self._at, self._counts = time.perf_counter(), self._count()

    def _count(self) -> tuple[int, int]:
        return (sum(b.generated_tokens for b in self.counting), sum(b.uncounted_replies for b in self.counting))

    def mark(self, stage: str) -> None:
        now, counts = time.perf_counter(), self._count()
        self.ms[stage] = round((now - self._at) * 1000, 1)
        # a reply whose length the backend could not know leaves the stage's count unknown, not short
        self.tokens[stage] = None if counts[1] > self._counts[1] else counts[0] - self._counts[0]
        self._at, self._counts = now, counts

    def stages_ms(self) -> dict:
        """Every stage, in order; a stage that did not run is None; the store fills in its own."""
        return {"evidence": self.ms.get("evidence"), "round0": self.ms.get("round0"), "round1": self.ms.get("round1"),
                "pooling": self.ms.get("pooling"), "store": None}

    def stages_tokens(self) -> dict | None:
        """Tokens generated per round, or None when no backend of the session generates tokens."""
        if not self.counting:
            return None
        return {"round0": self.tokens.get("round0"), "round1": self.tokens.get("round1")}

