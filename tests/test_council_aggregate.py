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
