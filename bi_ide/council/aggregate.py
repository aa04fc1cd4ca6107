"""The council's arithmetic, as pure functions: pooling, member weights, the decision rule, scores.

- Pooling is weighted log-odds pooling (the logarithmic opinion pool):
  ``p = sigmoid(Σ wᵢ·logit(pᵢ) / Σ wᵢ)``, probabilities clipped to [0.01, 0.99] first.
- A member's weight comes from its record, one of two ways (``WEIGHTINGS``):
  ``accuracy``: the odds of its Laplace-smoothed accuracy, exp(logit((right+1)/(n+2))) = (right+1)/(wrong+1);
  ``hedge``: exp(−η·(Brier loss − 0.25·n)), a Hedge update on Brier loss measured against a coin
  (a member that always says 0.5 keeps weight 1; better than a coin grows, worse shrinks).
- No group holds more than ``GROUP_CAP`` of the total weight (16 sages cannot drown 4 shadows).
- Approve at ≥ 0.6, reject at ≤ 0.4, else defer; a shadow blocker defers an approval.
- Scores over resolved decisions: Brier, expected calibration error (ECE) and a reliability table;
  confidence is the probability of the side chosen after calibrating with that table.
- A quorum: below ``QUORUM`` of the voting members answering with a probability, no verdict.
- Baselines beside the pooled council, each scored by Brier over resolved decisions: the round-0
  majority of approve/reject votes, and the single best-calibrated member's own answer.
- An answer's ``weight_factor`` (an answer that cites nothing, say) scales its member's pooling
  weight after the group cap (``pooling_weights``).

References: Genest & Zidek (1986) on opinion pools; Freund & Schapire (1997) for Hedge; Guo et al.
(2017) for ECE with equal-width bins.
"""

from __future__ import annotations

import math

EPS = 0.01
APPROVE_AT = 0.6
REJECT_AT = 0.4
GROUP_CAP = 0.4
HEDGE_ETA = 1.0
COIN_BRIER = 0.25  # the Brier loss of always saying 0.5
BINS = 10
CALIBRATION_STRENGTH = 5.0  # a bin's observed rate counts like this many prior decisions at the raw probability
WEIGHTINGS = ("hedge", "accuracy")
DECISIONS = ("approved", "rejected", "deferred")
QUORUM = 0.25  # the share of the voting members that must answer with a probability for a verdict
BASELINES = ("majority", "best_member", "council")


def clip(p: float) -> float:
    return min(1 - EPS, max(EPS, float(p)))


def logit(p: float) -> float:
    p = clip(p)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def pool(probabilities: list[float], weights: list[float]) -> float:
    """Weighted log-odds pooling; 0.5 when there is no weight at all."""
    total = sum(weights)
    if total <= 0:
        return 0.5
    return sigmoid(sum(w * logit(p) for p, w in zip(probabilities, weights, strict=True)) / total)


def accuracy_weight(right: int, wrong: int) -> float:
    """exp of the log-odds of the Laplace-smoothed accuracy: (right + 1) / (wrong + 1)."""
    return (right + 1) / (wrong + 1)


def hedge_weight(brier_sum: float, resolved: int, eta: float = HEDGE_ETA) -> float:
    """exp(−η · (Brier loss − coin's loss)) over the member's resolved answers."""
    return math.exp(-eta * (brier_sum - COIN_BRIER * resolved))


def member_weight(record: dict, weighting: str = "hedge") -> float:
    """The weight of a member from its record {correct, wrong, brier_sum}."""
    right, wrong = int(record.get("correct") or 0), int(record.get("wrong") or 0)
    if weighting == "accuracy":
        return accuracy_weight(right, wrong)
    if weighting == "hedge":
        return hedge_weight(float(record.get("brier_sum") or 0.0), right + wrong)
    raise ValueError(f"weighting {weighting!r} is not one of {WEIGHTINGS}")


def cap_groups(weights: list[float], groups: list[str], cap: float = GROUP_CAP) -> list[float]:
    """Scale down each group over ``cap`` of the total so it holds exactly ``cap`` of the new total.

    Water-filling: capped groups get cap·T each, where T = (uncapped weight) / (1 − cap·#capped);
    repeated until no uncapped group is over. Without room (cap·#groups < 1) the weights are kept.
    """
    totals: dict[str, float] = {}
    for w, g in zip(weights, groups, strict=True):
        totals[g] = totals.get(g, 0.0) + w
    if cap * len([t for t in totals.values() if t > 0]) < 1:
        return list(weights)
    capped: set[str] = set()
    while True:
        free = sum(t for g, t in totals.items() if g not in capped)
        grand = free / (1 - cap * len(capped))
        over = {g for g, t in totals.items() if g not in capped and t > cap * grand + 1e-12}
        if not over:
            break
        capped |= over
    scale = {g: (cap * grand / totals[g] if g in capped else 1.0) for g in totals}
    return [w * scale[g] for w, g in zip(weights, groups, strict=True)]


def pooling_weights(record_weights: list[float], groups: list[str], factors: list[float],
                    cap: float = GROUP_CAP) -> list[float]:
    """Each member's weight in the pool: its record's weight, groups capped, then times its answer's factor.

    The factor comes after the cap. The cap bounds what a group gets from its size; the factor
    judges one answer. Applied before the cap, a capped group would hand the weight a down-weighted
    member lost to its groupmates, and a group whose answers all cite nothing would keep its whole
    share. After it, a down-weighted answer always counts less, and a group's share can only rise
    past the cap because other groups' answers were down-weighted.
    """
    capped = cap_groups(record_weights, groups, cap)
    return [w * weight_factor(f) for w, f in zip(capped, factors, strict=True)]


def weight_factor(factor) -> float:
    """An answer's weight factor as pooling uses it: a number in [0, 1]; anything else counts as 1."""
    try:
        f = float(factor)
    except (TypeError, ValueError):
        return 1.0
    return min(1.0, max(0.0, f)) if math.isfinite(f) else 1.0


def quorum(answered: int, abstained: int, failed: int, share: float = QUORUM) -> dict:
    """Whether enough voting members answered with a probability for the council to give a verdict.

    ``needed`` is ``share`` of the voting members (answered + abstained + failed), rounded up, and
    at least one.
    """
    voting = answered + abstained + failed
    needed = max(1, math.ceil(share * voting - 1e-9))
    return {"answered": answered, "abstained": abstained, "failed": failed, "voting": voting, "needed": needed,
            "met": answered >= needed}


def majority(votes: list[str]) -> dict:
    """The simple-majority baseline over votes: the share of approve among approve and reject votes
    (abstentions left out; 0.5 when there are none), decided with the council's thresholds."""
    approve, reject = votes.count("approve"), votes.count("reject")
    p = approve / (approve + reject) if approve + reject else 0.5
    return {"decision": decide(p), "probability": p, "approve": approve, "reject": reject,
            "abstain": len(votes) - approve - reject}


def best_member(records: list[tuple[str, int, float]]) -> dict | None:
    """The best-calibrated member from (member id, resolved answers, Brier loss summed), in council order.

    The lowest mean Brier score wins; a tie goes to the member with more resolved answers, then to
    the earlier in council order. Members with no resolved answer have no score and come after
    every member that has one. None for no members.
    """
    if not records:
        return None
    ranked = []
    for order, (member_id, resolved, brier_sum) in enumerate(records):
        score = brier_sum / resolved if resolved else None
        ranked.append(((score is None, round(score or 0.0, 12), -resolved, order), member_id, resolved, score))
    ranked.sort(key=lambda r: r[0])
    (key, member_id, resolved, score), rest = ranked[0], ranked[1:]
    if score is None:
        why = "no member has a resolved answer yet: the first in council order"
    elif not rest or rest[0][0][:2] != key[:2]:
        why = "the lowest Brier score"
    elif rest[0][0][2] != key[2]:
        why = "the lowest Brier score, tied: more resolved answers"
    else:
        why = "the lowest Brier score, tied: first in council order"
    return {"member_id": member_id, "brier": score, "resolved": resolved, "chosen_by": why}


def answer_decision(probability: float | None) -> str:
    """The decision one answer stands for, with the council's thresholds; deferred without a probability."""
    return "deferred" if probability is None else decide(probability)


def baseline_scores(outcomes: list[bool], answers: list[dict], names: tuple = BASELINES) -> dict:
    """Per baseline, its Brier score over the resolved decisions that carry it.

    ``answers[i]`` maps a baseline's name to its probability of approval for decision ``i`` (None:
    it gave none, as a best member that abstained; scored as a coin, 0.5, and counted in
    ``abstained``); a baseline the decision does not carry is absent. ``outcomes[i]`` is whether
    approving was right (``approval_was_right``).
    """
    scores = {}
    for name in names:
        scored = [(a[name], y) for a, y in zip(answers, outcomes, strict=True) if name in a]
        scores[name] = {"brier": brier([0.5 if p is None else p for p, _ in scored], [y for _, y in scored]),
                        "resolved": len(scored), "abstained": sum(p is None for p, _ in scored)}
    return scores


def decide(probability: float, *, blocked: bool = False) -> str:
    """approved (≥ APPROVE_AT, unless a shadow member blocks), rejected (≤ REJECT_AT), else deferred."""
    if probability <= REJECT_AT:
        return "rejected"
    if probability >= APPROVE_AT and not blocked:
        return "approved"
    return "deferred"


def vote_of(probability: float) -> str:
    """A member's vote from its probability of approval, with the council's thresholds."""
    if probability >= APPROVE_AT:
        return "approve"
    if probability <= REJECT_AT:
        return "reject"
    return "abstain"


def approval_was_right(decision: str, outcome: str, probability: float) -> bool:
    """Whether approving was the right call, from a resolved decision.

    approved/right and rejected/wrong mean approving was right; a deferred decision is judged by
    the side it leaned to (probability ≥ 0.5 leans to approval).
    """
    if outcome not in ("right", "wrong"):
        raise ValueError(f"outcome {outcome!r} is not right or wrong")
    leaned = {"approved": True, "rejected": False}.get(decision, probability >= 0.5)
    return leaned if outcome == "right" else not leaned


def brier(probabilities: list[float], outcomes: list[bool]) -> float | None:
    if not probabilities:
        return None
    return sum((p - float(y)) ** 2 for p, y in zip(probabilities, outcomes, strict=True)) / len(probabilities)


def reliability(probabilities: list[float], outcomes: list[bool], bins: int = BINS) -> list[dict]:
    """Equal-width bins of predicted probability: count, mean prediction and observed rate (non-empty bins)."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in zip(probabilities, outcomes, strict=True)
                  if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if inside:
            rows.append({"bin": b, "low": lo, "high": hi, "count": len(inside),
                         "predicted": sum(p for p, _ in inside) / len(inside),
                         "observed": sum(float(y) for _, y in inside) / len(inside)})
    return rows


def ece(probabilities: list[float], outcomes: list[bool], bins: int = BINS) -> float | None:
    """Expected calibration error: Σ (count/N)·|predicted − observed| over the bins."""
    if not probabilities:
        return None
    n = len(probabilities)
    return sum(r["count"] / n * abs(r["predicted"] - r["observed"]) for r in reliability(probabilities, outcomes, bins))


def calibrate(probability: float, table: list[dict], strength: float = CALIBRATION_STRENGTH) -> float:
    """The probability moved toward its bin's observed rate, by how much that bin has seen.

    (count·observed + strength·p) / (count + strength); unchanged where the bin is empty.
    """
    for row in table:
        if row["low"] <= probability < row["high"] or (row["high"] == 1.0 and probability == 1.0):
            return (row["count"] * row["observed"] + strength * probability) / (row["count"] + strength)
    return probability


def confidence(decision: str, probability: float) -> float:
    """The (calibrated) probability of the side chosen; for a deferral, of the likelier side."""
    if decision == "approved":
        return probability
    if decision == "rejected":
        return 1 - probability
    return max(probability, 1 - probability)


def spread(probabilities: list[float]) -> tuple[float, float]:
    """(median, interquartile range) of the answers, for the feedback round."""
    ps = sorted(probabilities)
    if not ps:
        return 0.5, 0.0
    return _quantile(ps, 0.5), _quantile(ps, 0.75) - _quantile(ps, 0.25)


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
