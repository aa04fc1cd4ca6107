"""The council's arithmetic against cases worked out by hand."""

from __future__ import annotations

import math

import pytest

from bi_ide.council import aggregate as agg


def test_pool_is_weighted_log_odds():
    assert agg.pool([0.8, 0.2], [1, 1]) == pytest.approx(0.5)
    # odds 4 with weight 3 and odds 1 with weight 1: pooled odds 4^(3/4) = 2√2
    assert agg.pool([0.8, 0.5], [3, 1]) == pytest.approx(2 * math.sqrt(2) / (1 + 2 * math.sqrt(2)))
    assert agg.pool([0.9], [0.0]) == 0.5  # no weight: no opinion
    assert agg.pool([1.0], [1.0]) == pytest.approx(0.99)  # clipped before log-odds


def test_member_weights_from_the_record():
    assert agg.accuracy_weight(0, 0) == 1.0
    assert agg.accuracy_weight(3, 1) == 2.0  # Laplace accuracy 4/6, odds 2
    assert agg.accuracy_weight(0, 3) == 0.25
    assert agg.hedge_weight(0.0, 0) == 1.0
    assert agg.hedge_weight(0.5, 4) == pytest.approx(math.exp(0.5))  # 0.5 loss where a coin loses 1.0
    assert agg.hedge_weight(1.0, 1) == pytest.approx(math.exp(-0.75))
    record = {"correct": 3, "wrong": 1, "brier_sum": 0.5}
    assert agg.member_weight(record, "accuracy") == 2.0
    assert agg.member_weight(record, "hedge") == pytest.approx(math.exp(0.5))
    with pytest.raises(ValueError, match="weighting"):
        agg.member_weight(record, "votes")


def test_group_cap():
    groups = ["high"] * 16 + ["shadow"] * 4 + ["light"] * 4
    capped = agg.cap_groups([1.0] * 24, groups, cap=0.4)
    # high holds 16/24 > 0.4: T = 8 / (1 - 0.4) = 40/3, high gets 0.4·T = 16/3, i.e. 1/3 each
    assert capped[:16] == pytest.approx([1 / 3] * 16)
    assert capped[16:] == [1.0] * 8
    total = sum(capped)
    assert sum(capped[:16]) / total == pytest.approx(0.4)
    assert agg.cap_groups([1.0, 1.0], ["a", "b"], cap=0.4) == [1.0, 1.0]  # no room to cap two groups at 0.4


def test_thresholds_and_shadow_blocker():
    assert agg.decide(0.6) == "approved"
    assert agg.decide(0.6, blocked=True) == "deferred"
    assert agg.decide(0.4) == "rejected"
    assert agg.decide(0.3, blocked=True) == "rejected"
    assert agg.decide(0.5) == "deferred"
    assert [agg.vote_of(p) for p in (0.61, 0.5, 0.39)] == ["approve", "abstain", "reject"]


def test_which_side_was_right():
    assert agg.approval_was_right("approved", "right", 0.8) is True
    assert agg.approval_was_right("approved", "wrong", 0.8) is False
    assert agg.approval_was_right("rejected", "right", 0.2) is False
    assert agg.approval_was_right("rejected", "wrong", 0.2) is True
    assert agg.approval_was_right("deferred", "right", 0.55) is True  # it leaned to approval
    assert agg.approval_was_right("deferred", "wrong", 0.45) is True


def test_brier_ece_reliability():
    probs, ys = [0.9, 0.2, 0.6], [True, False, False]
    assert agg.brier(probs, ys) == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    table = agg.reliability(probs, ys)
    assert [(r["bin"], r["count"], r["observed"]) for r in table] == [(2, 1, 0.0), (6, 1, 0.0), (9, 1, 1.0)]
    assert agg.ece(probs, ys) == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    assert agg.brier([], []) is None and agg.ece([], []) is None
    assert agg.reliability([1.0], [True])[0]["bin"] == 9  # 1.0 falls in the last bin


def test_calibration_and_confidence():
    table = [{"bin": 6, "low": 0.6, "high": 0.7, "count": 5, "predicted": 0.65, "observed": 0.2}]
    assert agg.calibrate(0.65, table) == pytest.approx((5 * 0.2 + 5 * 0.65) / 10)
    assert agg.calibrate(0.35, table) == 0.35  # an empty bin leaves it alone
    assert agg.confidence("approved", 0.7) == 0.7
    assert agg.confidence("rejected", 0.2) == pytest.approx(0.8)
    assert agg.confidence("deferred", 0.45) == pytest.approx(0.55)


def test_spread_is_median_and_iqr():
    assert agg.spread([0.5, 0.1, 0.4, 0.2, 0.3]) == pytest.approx((0.3, 0.2))
    assert agg.spread([]) == (0.5, 0.0)


def test_down_weighting_comes_after_the_group_cap():
    groups = ["high"] * 16 + ["shadow"] * 4 + ["light"] * 4
    factors = [0.5] * 16 + [1.0] * 8  # every sage's answer cites nothing
    weights = agg.pooling_weights([1.0] * 24, groups, factors)
    # capped: 1/3 per sage (see test_group_cap), then halved: 1/6; high now holds (16/6) / (16/6 + 8) = 0.25
    assert weights[:16] == pytest.approx([1 / 6] * 16) and weights[16:] == [1.0] * 8
    assert sum(weights[:16]) / sum(weights) == pytest.approx(0.25)
    # before the cap the halving would have been undone: the sages would still hold exactly 0.4
    before = agg.cap_groups([f * 1.0 for f in factors], groups)
    assert sum(before[:16]) / sum(before) == pytest.approx(0.4)
    # one down-weighted answer in an uncapped group counts less; its groupmates keep their weight
    assert agg.pooling_weights([2.0, 1.0, 1.0, 1.0], list("abcd"), [0.25, 1.0, 1.0, 1.0]) == [0.5, 1.0, 1.0, 1.0]
    assert agg.pool([0.9, 0.1], agg.pooling_weights([1.0, 1.0], ["a", "b"], [1.0, 0.0])) == pytest.approx(0.9)


def test_weight_factor_is_a_number_in_0_1():
    assert [agg.weight_factor(f) for f in (0.5, 0, 1, 2.0, -1, None, "x", float("nan"))] == [
        0.5, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_quorum_is_a_quarter_of_the_voting_members():
    assert agg.quorum(10, 20, 9) == {"answered": 10, "abstained": 20, "failed": 9, "voting": 39, "needed": 10,
                                     "met": True}  # 0.25 · 39 = 9.75, rounded up
    assert agg.quorum(9, 0, 30)["met"] is False
    assert agg.quorum(1, 0, 2)["needed"] == 1 and agg.quorum(1, 0, 2)["met"]  # three members: one is enough
    assert agg.quorum(0, 0, 0) == {"answered": 0, "abstained": 0, "failed": 0, "voting": 0, "needed": 1, "met": False}
    assert agg.quorum(12, 0, 0, share=1 / 3)["needed"] == 4  # 1/3 · 12 is 4, not 5 after rounding error


def test_majority_leaves_abstentions_out():
    m = agg.majority(["approve", "approve", "reject", "abstain", "abstain"])
    assert m == {"decision": "approved", "probability": pytest.approx(2 / 3), "approve": 2, "reject": 1, "abstain": 2}
    assert agg.majority(["approve", "reject"])["decision"] == "deferred"  # 0.5
    assert agg.majority(["reject"] * 4 + ["approve"] * 3)["decision"] == "deferred"  # 3/7: no verdict
    assert agg.majority(["reject"] * 3 + ["approve"] * 2)["decision"] == "rejected"  # 2/5 = 0.4, at the threshold
    assert agg.majority(["reject"] * 3 + ["approve"])["decision"] == "rejected"  # 0.25
    assert agg.majority(["abstain"] * 4) == {"decision": "deferred", "probability": 0.5, "approve": 0, "reject": 0,
                                             "abstain": 4}


def test_best_member_is_the_lowest_brier_then_most_resolved_then_council_order():
    # a: 0.30 / 3 = 0.10; b: 0.08 / 2 = 0.04; c: no record; d: 0.04 over 1
    records = [("a", 3, 0.30), ("b", 2, 0.08), ("c", 0, 0.0), ("d", 1, 0.04)]
    best = agg.best_member(records)
    assert best["member_id"] == "b" and best["brier"] == pytest.approx(0.04) and best["resolved"] == 2
    assert best["chosen_by"] == "the lowest Brier score, tied: more resolved answers"  # d ties at 0.04 over 1
    assert agg.best_member([("a", 3, 0.30), ("d", 1, 0.04)])["chosen_by"] == "the lowest Brier score"
    tied = agg.best_member([("x", 2, 0.2), ("y", 2, 0.2)])
    assert tied["member_id"] == "x" and tied["chosen_by"] == "the lowest Brier score, tied: first in council order"
    fresh = agg.best_member([("c", 0, 0.0), ("e", 0, 0.0)])  # nobody resolved: council order, no Brier
    assert (fresh["member_id"], fresh["brier"], fresh["resolved"]) == ("c", None, 0)
    assert "council order" in fresh["chosen_by"]
    assert agg.best_member([("c", 0, 0.0), ("z", 4, 0.96)])["member_id"] == "z"  # a score beats no score
    assert agg.best_member([]) is None
    assert agg.answer_decision(0.7) == "approved" and agg.answer_decision(None) == "deferred"


def test_baseline_scores_over_the_decisions_that_carry_them():
    # three resolved decisions; approving was right in the first two
    outcomes = [True, True, False]
    answers = [{"majority": 1.0, "best_member": 0.8, "council": 0.7},
               {"majority": 0.5, "best_member": None, "council": 0.6},  # the best member abstained
               {"council": 0.2}]  # resolved before baselines existed
    scores = agg.baseline_scores(outcomes, answers)
    assert scores["majority"] == {"brier": pytest.approx((0.0 + 0.25) / 2), "resolved": 2, "abstained": 0}
    assert scores["best_member"] == {"brier": pytest.approx((0.04 + 0.25) / 2), "resolved": 2, "abstained": 1}
    assert scores["council"] == {"brier": pytest.approx((0.09 + 0.16 + 0.04) / 3), "resolved": 3, "abstained": 0}
    assert agg.baseline_scores([], [])["majority"] == {"brier": None, "resolved": 0, "abstained": 0}
