"""Service level objectives (seed §X): each one's current value and error budget, from stored data.

An objective is a share of good events: ``current = good / total``; the error budget is the number
of bad events the target allows (``(1 - target) × total``) and ``budget_left`` the part of it not
spent yet (1 = untouched, 0 = spent, below 0 = overspent). No events: no value, nothing spent.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_S = 30 * 86_400


@dataclass(frozen=True)
class Objective:
    name: str
    target: float
    good: str  # what counts as a good event, in the user's words


OBJECTIVES = (
    Objective("api_availability", 0.999, "agent requests to the hub that were answered"),
    Objective("training_completion", 0.95, "training runs that ended done, not failed"),
    Objective("worker_reconnect", 0.99, "agent reconnections within 30 s of the hub's return"),
    Objective("gpu_utilization", 0.90, "GPU samples at ≥ 70 % utilisation while a run trains on the GPU"),
)


def report(store, window_s: float = WINDOW_S) -> list[dict]:
    """Every objective over the last ``window_s`` seconds, with its current value and budget left."""
    counts = store.slo_counts(window_s)
    return [budget(o, *counts[o.name], window_s) for o in OBJECTIVES]


def budget(o: Objective, good: int, total: int, window_s: float) -> dict:
    row = {"objective": o.name, "target": o.target, "good": int(good), "total": int(total), "window_s": window_s,
           "about": o.good, "current": None, "budget_left": None, "met": None}
    if total:
        bad, allowed = total - good, (1 - o.target) * total
        row["current"] = good / total
        row["budget_left"] = 1 - bad / allowed
        row["met"] = row["current"] >= o.target
    return row
