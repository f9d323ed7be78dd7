"""Feature-similarity statistics and their null baselines."""
import numpy as np
import pytest
import torch

from helpers import compare


def test_correlations_match_numpy():
    torch.manual_seed(0)
    a, b = torch.randn(200, 5), torch.randn(200, 7)
    b[:, 3] = 2 * a[:, 1] + 0.1 * b[:, 3]
    corr, keep_a, keep_b = compare.correlation_matrix(a, b)
    expected = np.corrcoef(a.numpy().T, b.numpy().T)[:5, 5:]
    assert np.allclose(corr.numpy(), expected, atol=1e-5)
    stats, a_to_b, _ = compare.similarity(a, b)
    assert a_to_b[1] > 0.99 and stats["alive_a"] == 5


def test_dead_features_are_dropped():
    a = torch.randn(100, 4)
    a[:, 2] = 0.0
    stats, a_to_b, _ = compare.similarity(a, torch.randn(100, 3))
    assert stats["alive_a"] == 3 and stats["features_a"] == 4 and len(a_to_b) == 3


def test_permuted_copy_is_a_perfect_match():
    a = torch.randn(300, 20)
    b = a[:, torch.randperm(20)] * 3 + 1
    stats, _, _ = compare.similarity(a, b)
    assert stats["mean_best_a_to_b"] == pytest.approx(1, abs=1e-5)
    assert stats["mean_hungarian"] == pytest.approx(1, abs=1e-5)
    assert compare.linear_cka(a, b @ torch.linalg.qr(torch.randn(20, 20))[0]) == pytest.approx(1, abs=1e-6)


def test_shuffles_break_alignment_as_intended():
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(100)
    class_part = torch.randn(10, 8)[labels]
    a = class_part + 0.5 * torch.randn(1000, 8)
    b = class_part + 0.5 * torch.randn(1000, 8)
    full = compare.similarity(a, compare.shuffle_rows(b, seed=1), matching=False)[0]["mean_best_a_to_b"]
    within = compare.similarity(a, compare.shuffle_rows(b, seed=1, labels=labels), matching=False)[0]["mean_best_a_to_b"]
    aligned = compare.similarity(a, b, matching=False)[0]["mean_best_a_to_b"]
    # Class identity alone keeps most of the correlation; a full shuffle removes it.
    assert full < 0.2 < within <= aligned
    order = compare.shuffle_rows(torch.arange(1000)[:, None], seed=1, labels=labels)[:, 0]
    assert torch.equal(labels[order], labels) and not torch.equal(order, torch.arange(1000))


def test_cka_of_independent_representations_is_low():
    torch.manual_seed(0)
    assert compare.linear_cka(torch.randn(2000, 10), torch.randn(2000, 10)) < 0.05


def test_top_pairs():
    a = torch.randn(100, 6)
    b = torch.cat([torch.randn(100, 2), a[:, [4]]], 1)
    (fa, fb, r), *_ = compare.top_pairs(a, b, k=3)
    assert (fa, fb) == (4, 2) and r == pytest.approx(1, abs=1e-5)


def test_variance_dimensions():
    torch.manual_seed(0)
    low_rank = torch.randn(500, 3) @ torch.randn(3, 40)
    assert compare.variance_dimensions(low_rank, (0.99,))[0.99] <= 3
    assert compare.variance_dimensions(torch.randn(500, 40), (0.5,))[0.5] > 10
