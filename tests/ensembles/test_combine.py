"""Combination rules against hand-worked examples (handbook §13.2.2, E.6 items 66-67)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.ensembles.combine import (
    ABSTAIN,
    EnsembleError,
    average,
    combine,
    majority,
    plurality,
    predict,
    score,
    vote_counts,
)


def logp(*members):
    """Members given as lists of probability rows -> (M, N, C) log-probabilities."""
    return torch.tensor(members, dtype=torch.float32).log()


# Three members, two samples, three classes. Sample 0: votes 0, 1, 0. Sample 1: votes 0, 1, 2.
M1 = [[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]]
M2 = [[0.2, 0.5, 0.3], [0.2, 0.6, 0.2]]
M3 = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
THREE = logp(M1, M2, M3)


def test_mean_is_the_average_probability():
    expected = torch.tensor([[1.5, 1.0, 0.5], [0.8, 1.2, 1.0]]) / 3
    assert torch.allclose(average(THREE).exp(), expected, atol=1e-6)
    assert torch.allclose(average(THREE).exp().sum(1), torch.ones(2), atol=1e-6)


def test_weighted_average_uses_simplex_weights_without_dividing_by_n():
    got = average(THREE, [0.5, 0.25, 0.25]).exp()
    assert torch.allclose(got[0], torch.tensor([0.525, 0.325, 0.15]), atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(2), atol=1e-6)  # a distribution (item 66)
    # unnormalised weights are normalised: [2, 1, 1] is the same as [0.5, 0.25, 0.25]
    assert torch.allclose(average(THREE, [2.0, 1.0, 1.0]), average(THREE, [0.5, 0.25, 0.25]))


def test_one_hot_weights_give_that_member():
    for i in range(3):
        w = [0.0, 0.0, 0.0]
        w[i] = 1.0
        assert torch.allclose(average(THREE, w), THREE[i], atol=1e-6)


def test_bad_weights_are_refused_with_a_clear_message():
    with pytest.raises(EnsembleError, match="expected 3 values"):
        average(THREE, [0.5, 0.5])
    with pytest.raises(EnsembleError, match=">= 0"):
        average(THREE, [1.5, -0.5, 0.0])
    with pytest.raises(EnsembleError, match="not all 0"):
        average(THREE, [0.0, 0.0, 0.0])
    with pytest.raises(EnsembleError, match="needs weights"):
        combine(THREE, "weighted")
    with pytest.raises(EnsembleError, match="unknown combination rule"):
        combine(THREE, "median")


def test_votes_plurality_and_majority_by_hand():
    assert vote_counts(THREE).tolist() == [[2, 1, 0], [1, 1, 1]]
    # sample 1: a three-way tie in votes; summed probabilities 0.8, 1.2, 1.0 -> class 1
    assert plurality(THREE).tolist() == [0, 1]
    # sample 0: 2 of 3 votes is more than half; sample 1: nobody has a majority -> abstain
    assert majority(THREE).tolist() == [0, ABSTAIN]


def test_vote_distribution_by_hand():
    # q ~ (M+1) v + M r = 4 * [2, 1, 0] + 3 * [0.5, 0.3333, 0.1667] = [9.5, 5.0, 0.5] (sum 15)
    q = combine(THREE, "plurality").exp()
    assert torch.allclose(q[0], torch.tensor([9.5, 5.0, 0.5]) / 15, atol=1e-4)
    assert torch.allclose(q.sum(1), torch.ones(2), atol=1e-6)
    assert torch.equal(combine(THREE, "majority"), combine(THREE, "plurality"))


def test_tie_in_votes_and_probability_goes_to_the_lowest_index():
    a, b = [[0.6, 0.4]], [[0.4, 0.6]]
    for members in ((a, b), (b, a)):
        lp = logp(*members)
        assert vote_counts(lp).tolist() == [[1, 1]]
        assert plurality(lp).tolist() == [0]
        assert majority(lp).tolist() == [ABSTAIN]  # exactly half is not more than half
        assert combine(lp, "plurality").argmax(1).tolist() == [0]  # what evaluate() sees


def test_tie_in_votes_goes_to_the_larger_summed_probability():
    assert plurality(logp([[0.9, 0.1]], [[0.45, 0.55]])).tolist() == [0]
    assert plurality(logp([[0.55, 0.45]], [[0.1, 0.9]])).tolist() == [1]
    # a vote outweighs any probability: two confident votes for 1 beat 0's large mean
    lp = logp([[0.49, 0.51, 0.0001]], [[0.49, 0.51, 0.0001]], [[0.99, 0.005, 0.005]])
    assert plurality(lp).tolist() == [1]


def test_majority_thresholds_with_four_members():
    c = [[0.8, 0.1, 0.1]]
    d = [[0.1, 0.8, 0.1]]
    e = [[0.1, 0.1, 0.8]]
    assert majority(logp(c, c, c, d)).tolist() == [0]  # 3 of 4
    assert majority(logp(c, c, d, d)).tolist() == [ABSTAIN]  # 2 of 4
    assert majority(logp(c, c, d, e)).tolist() == [ABSTAIN]  # 2 of 4, plurality 0
    assert plurality(logp(c, c, d, e)).tolist() == [0]


def test_score_counts_abstentions_as_errors():
    y = torch.tensor([0, 1])
    s = score(THREE, y, "majority")
    assert (s.accuracy, s.abstentions, s.coverage, s.answered_accuracy) == (0.5, 1, 0.5, 1.0)
    assert score(THREE, y, "plurality").accuracy == 1.0
    assert score(THREE, y, "plurality").abstentions == 0
    mean = score(THREE, y, "mean")
    assert mean.nll == pytest.approx(-(math.log(0.5) + math.log(0.4)) / 2, abs=1e-6)
    assert predict(THREE, "majority").tolist() == [0, ABSTAIN]


def test_log_domain_keeps_tiny_probabilities_finite():
    lp = torch.tensor([[[0.0, -200.0]], [[0.0, -300.0]]])  # probabilities that underflow
    out = average(lp)
    assert torch.isfinite(out).all() and out[0, 1] == pytest.approx(-200 - math.log(2), abs=1e-3)
    assert torch.isfinite(combine(lp, "plurality")).all()
