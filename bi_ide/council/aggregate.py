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
