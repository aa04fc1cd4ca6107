"""A stored decision read for people: its baselines, quorum, stages and down-weighted answers, and
the text ``bi-ide council show`` prints.

What a session adds to ``meta`` (baselines, quorum, stages, language) is read defensively here:
a decision stored before these existed has none of them, and a value that is missing or not of
the expected shape is left out, never raised, so one odd row cannot take a page or a command down.
"""

from __future__ import annotations

import math

from bi_ide.council.aggregate import BASELINES, DECISIONS
from bi_ide.council.language import LANGUAGES

STAGES = ("evidence", "round0", "round1", "pooling", "store")
STAGE_TITLES = {"evidence": "evidence", "round0": "round 0", "round1": "round 1", "pooling": "pooling",
                "store": "store"}
BASELINE_TITLES = {"council": "council", "majority": "majority", "best_member": "best member"}
SHOWN = ("council", "majority", "best_member")  # the order they are shown in, side by side


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def probability(value) -> float | None:
    """A probability in [0, 1], or None for anything else."""
    p = _number(value)
    return p if p is not None and 0 <= p <= 1 else None


def meta(decision: dict) -> dict:
    m = decision.get("meta") if isinstance(decision, dict) else None
    return m if isinstance(m, dict) else {}


def baselines(decision: dict) -> dict | None:
    """{majority, best_member, council} as stored, each with a known decision and a probability in
    [0, 1] or None; None when the decision carries no baselines (it predates them)."""
    stored = meta(decision).get("baselines")
    if not isinstance(stored, dict):
        return None
    out = {}
    for name in BASELINES:
        entry = stored.get(name)
        if not isinstance(entry, dict):
            continue
        shown = dict(entry)
        shown["decision"] = entry.get("decision") if entry.get("decision") in DECISIONS else None
        shown["probability"] = probability(entry.get("probability"))
        out[name] = shown
    return out or None


def stored_probabilities(meta_value) -> dict[str, float | None]:
    """For scoring: the probability each non-council baseline gave (None: it abstained), from a
    decision's meta. A baseline missing, or stored with a probability that is not one, is left out."""
    stored = meta_value.get("baselines") if isinstance(meta_value, dict) else None
    if not isinstance(stored, dict):
        return {}
    out: dict[str, float | None] = {}
    for name in BASELINES:
        entry = stored.get(name)
        if name == "council" or not isinstance(entry, dict) or "probability" not in entry:
            continue
        if entry["probability"] is None:
            out[name] = None
        elif probability(entry["probability"]) is not None:
            out[name] = float(entry["probability"])
    return out


def quorum(decision: dict) -> dict | None:
    """{answered, abstained, failed, needed, met, ...} as stored, or None (before quorums, or unreadable)."""
    q = meta(decision).get("quorum")
    if not isinstance(q, dict):
        return None
    counts = {k: q.get(k) for k in ("answered", "abstained", "failed", "needed")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return None
    return {**q, **counts, "met": bool(q.get("met"))}


def stages(decision: dict) -> dict:
    """{"ms": {stage: ms or None}, "tokens": {stage: count or None}}; empty dicts where nothing was recorded."""
    m = meta(decision)
    ms = m.get("stages_ms") if isinstance(m.get("stages_ms"), dict) else {}
    tokens = m.get("stages_tokens") if isinstance(m.get("stages_tokens"), dict) else {}
    return {"ms": {s: _number(ms.get(s)) for s in STAGES if s in ms},
            "tokens": {s: _number(tokens.get(s)) for s in STAGES if s in tokens}}


def language(decision: dict) -> str:
    """The language the decision's texts are in: one of ``LANGUAGES``; "en" when none (or another) is stored."""
    stored = meta(decision).get("language")
    return stored if stored in LANGUAGES else "en"


def down_weighted(vote: dict) -> tuple[float, str | None] | None:
    """(factor, reason) for a vote whose answer was down-weighted; None for a full-weight one."""
    factor = _number(vote.get("weight_factor"))
    if factor is None or factor >= 1:
        return None
    reason = vote.get("weight_reason")
    return factor, reason if isinstance(reason, str) and reason else None


# -- text ---------------------------------------------------------------------------------------
def _p(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def baseline_note(name: str, entry: dict) -> str:
    """What stands behind one baseline's answer, in a few words."""
    if name == "council":
        reason = entry.get("reason")
        return "pooled" + (f"; {reason}" if isinstance(reason, str) and reason else "")
    if name == "majority":
        counts = [entry.get(k) for k in ("approve", "reject", "abstain")]
        if all(isinstance(c, int) for c in counts):
            return f"{counts[0]} approve, {counts[1]} reject, {counts[2]} left out (round 0)"
        return "round 0"
    who = entry.get("member_id") or "?"
    brier = _number(entry.get("brier"))
    record = (f"Brier {brier:.3f} over {entry.get('resolved')} resolved" if brier is not None
              else "no resolved answers yet")
    said = "abstained" if entry.get("abstained") else f"round {entry.get('round', 0)}"
    return f"{who} ({record}; {said})"


def baselines_text(decision: dict) -> list[str]:
    found = baselines(decision)
    if found is None:
        return ["Baselines: none recorded (the decision predates them)."]
    lines = [f"  {'':<12} {'decision':<9} {'p(approve)':>10}"]
    for name in SHOWN:
        entry = found.get(name)
        if entry is None:
            lines.append(f"  {BASELINE_TITLES[name]:<12} {'—':<9} {'—':>10}  not recorded")
            continue
        lines.append(f"  {BASELINE_TITLES[name]:<12} {entry['decision'] or '—':<9} {_p(entry['probability']):>10}  "
                     f"{baseline_note(name, entry)}")
    return ["Baselines:", *lines]


def quorum_text(decision: dict) -> str | None:
    q = quorum(decision)
    if q is None:
        return None
    voting = q.get("voting") if isinstance(q.get("voting"), int) else q["answered"] + q["abstained"] + q["failed"]
    return (f"Quorum: {q['answered']} of {voting} voting members answered, {q['abstained']} abstained, "
            f"{q['failed']} failed; {q['needed']} needed: {'met' if q['met'] else 'not met, no verdict'}")


def stages_text(decision: dict) -> str | None:
    s = stages(decision)
    if not s["ms"]:
        return None
    parts = [f"{STAGE_TITLES[k]} {'—' if v is None else f'{v:.1f} ms'}" for k, v in s["ms"].items()]
    line = "Stages: " + " · ".join(parts)
    if s["tokens"]:
        line += "; tokens generated: " + " · ".join(f"{STAGE_TITLES[k]} {'—' if v is None else int(v)}"
                                                    for k, v in s["tokens"].items())
    return line


def vote_line(v: dict) -> str:
    p = "—" if v.get("probability") is None else f"{v['probability']:.2f}"
    weight = "" if v.get("weight") is None else f"  weight {v['weight']:.3f}"
    line = f"  {v['member_id']:<34} {v['vote']:<8} {p:>5}{weight}"
    if v.get("failed"):
        line += "  failed"
    down = down_weighted(v)
    if down:
        line += f"  ×{down[0]:.2f}" + (f" ({down[1]})" if down[1] else "")
    if v.get("revision_reason"):
        line += f"  revised: {v['revision_reason']}"
    return line


def show_text(decision: dict) -> str:
    """The decision as ``bi-ide council show`` prints it."""
    d = decision
    flags = [f"urgency {d.get('urgency')}", f"backend {d.get('backend') or '—'}", f"{d.get('rounds') or '—'} round(s)"]
    if d.get("outcome"):
        flags.append(f"resolved: {d['outcome']}")
    if d.get("vetoed"):
        flags.append(f"vetoed by the President: {d.get('veto_reason')}")
    if d.get("override"):
        flags.append(f"the President says {d['override']}: {d.get('override_reason')}")
    confidence = "—" if d.get("confidence") is None else f"{d['confidence']:.0%}"
    lines = [f"Decision {d['id']}: {d['decision']} (confidence {confidence}, probability of approval "
             f"{_p(d.get('probability'))})",
             f"Question: {d['question']}",
             f"Asked {d.get('created_at')} · " + " · ".join(flags)]
    lines += [x for x in (quorum_text(d),) if x]
    lines += baselines_text(d)
    lines += ["", d.get("reasoning") or "", "", f"Shadow: {d.get('shadow_analysis') or '—'}",
              f"Light: {d.get('light_suggestion') or '—'}"]
    for number, title in ((0, "Votes, round 0 (independent)"), (1, "Votes, round 1 (revisions only)"),
                          (2, "The President")):
        votes = [v for v in d.get("votes") or [] if v.get("round") == number]
        if votes:
            lines += ["", f"{title}:"] + [vote_line(v) for v in votes]
    evidence = d.get("evidence") or []
    lines += ["", "Evidence (* cited):"] + [
        f"  {'*' if f.get('cited') else ' '} [{f.get('id')}] {f.get('source')}/{f.get('topic')} "
        f"{_number(f.get('effect')) or 0.0:+.1f}  {f.get('text')}" for f in evidence if isinstance(f, dict)]
    if not evidence:
        lines.append("  none found")
    timing = stages_text(d)
    if timing:
        lines += ["", timing]
    return "\n".join(lines)


def calibration_baselines_text(calibration: dict) -> list[str]:
    """The council's Brier score beside each baseline's, over the resolved decisions that carry them."""
    scores = calibration.get("baselines") if isinstance(calibration, dict) else None
    council = scores.get("council") if isinstance(scores, dict) else None
    if not isinstance(council, dict) or not council.get("resolved"):
        return ["Baselines: no resolved decision carries them yet."]
    lines = [f"Beside its baselines, over the {council['resolved']} resolved decisions that carry them (lower is better):"]
    for name in SHOWN:
        entry = scores.get(name) if isinstance(scores.get(name), dict) else {}
        brier = _number(entry.get("brier"))
        notes = [f"over {entry.get('resolved', 0)}"] if entry.get("resolved") != council["resolved"] else []
        notes += [f"{entry['abstained']} abstained, scored as 0.5"] if entry.get("abstained") else []
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(f"  {BASELINE_TITLES[name]:<12} Brier {'—' if brier is None else f'{brier:.3f}'}{note}")
    return lines
