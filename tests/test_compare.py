"""Feature-similarity statistics and their null baselines."""
import numpy as np
import pytest
import torch

from helpers import compare, stats, verdict


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
    within = compare.similarity(a, compare.shuffle_rows(b, seed=1, labels=labels), matching=False)[0][
        "mean_best_a_to_b"
    ]
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


def sparse_features(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) - 1.0).relu()  # non-negative and often zero, like SAE features


def test_heldout_match_is_unbiased_on_independent_features_and_one_on_a_copy():
    a, b = sparse_features(4000, 200, 0), sparse_features(4000, 600, 1)
    select, evaluate = compare.split_halves(4000, seed=0)
    independent, per_feature, _ = compare.heldout_match(a, b, select, evaluate)
    in_sample = compare.similarity(a, b, matching=False)[0]["mean_best_a_to_b"]
    assert abs(independent) < 0.01 and in_sample > 0.05  # the in-sample maximum is biased upwards; held-out is not
    assert len(per_feature) == 200
    copy = b[:, torch.randperm(600)][:, :300] * 2
    assert compare.heldout_match(copy, b, select, evaluate)[0] == pytest.approx(1, abs=1e-5)


def test_paired_correlations_and_bootstrap():
    torch.manual_seed(0)
    x = torch.randn(3000, 3)
    y = torch.stack([x[:, 0] + torch.randn(3000), -x[:, 1], torch.zeros(3000)], 1)
    r = compare.paired_correlations(x, y)
    expected = np.corrcoef(x[:, 0].numpy(), y[:, 0].numpy())[0, 1]
    assert r[0] == pytest.approx(expected, abs=1e-5) and r[1] == pytest.approx(-1, abs=1e-5) and r[2] == 0
    weights = stats.bootstrap_weights(3000, replicates=300, seed=0)
    replicates = compare.paired_correlations(x, y, weights)
    assert replicates.shape == (300, 3)
    low, high = stats.interval(replicates[:, 0])
    assert low < 2 ** -0.5 < high and high - low < 0.1  # the true correlation is 1/sqrt(2)


def test_permutation_and_sign_flip_p_values():
    nulls = torch.randn(50) * 0.01
    assert stats.permutation_p(0.1, nulls) < 1e-6
    assert stats.permutation_p(0.0, nulls) > 0.1
    assert stats.permutation_p(-1.0, nulls) == pytest.approx(1.0)
    assert stats.sign_flip_p(torch.full((40,), 0.1) + 0.01 * torch.randn(40)) < 0.001
    assert stats.sign_flip_p(torch.randn(40)) > 0.01


def test_conditional_shuffle_keeps_class_and_predictions():
    g = torch.Generator().manual_seed(0)
    labels, p1, p2 = (torch.randint(0, 10, (2000,), generator=g) for _ in range(3))
    groups = compare.prediction_groups(labels, p1, p2)
    assert len(groups.unique()) == len(set(zip(labels.tolist(), p1.tolist(), p2.tolist())))
    order = compare.shuffle_rows(torch.arange(2000)[:, None], seed=3, labels=groups)[:, 0]
    assert torch.equal(labels[order], labels) and torch.equal(p1[order], p1) and torch.equal(p2[order], p2)


def _features(shared_across_families, n=2000, k=30):
    """Synthetic feature tables named like the study's SAEs: each family's two model seeds share their features;
    the two families share them too only if ``shared_across_families``."""
    def noisy(base, seed):
        g = torch.Generator().manual_seed(seed)
        return (base + 0.3 * torch.randn(base.shape, generator=g)).relu()
    base = {"cnn": sparse_features(n, k, 10) * 2}
    base["mlp"] = (
        base["cnn"][:, torch.randperm(k, generator=torch.Generator().manual_seed(12))]
        if shared_across_families
        else sparse_features(n, k, 11) * 2
    )
    out = {}
    for i, family in enumerate(("cnn", "mlp")):
        for s in range(2):
            for arm in ("l1", "topk"):
                out[f"{family}-seed{s}-{arm}"] = noisy(base[family], 100 * i + 10 * s + len(arm))
        for arm in ("l1", "topk"):
            out[f"{family}-random-{arm}"] = sparse_features(n, k, 50 + i + len(arm))
        out[f"{family}-seed0-l1-saeseed1"] = noisy(base[family], 999 + i)
    return out


@pytest.mark.parametrize("shared,expected", [(True, "supported"), (False, "not supported")])
def test_prediction2_arm_on_planted_features(shared, expected):
    features = _features(shared)
    groups = {s: torch.randint(0, 10, (2000,), generator=torch.Generator().manual_seed(s)) for s in range(2)}
    alive = {k: 1.0 for k in features}
    gates = {k: True for k in features}
    stats, directions = compare.prediction2_arm(features, alive, gates, "l1", 2, groups, shuffles=9, replicates=50)
    assert [d["verdict"] for d in directions] == [expected, expected], directions
    names = {r["statistic"] for r in stats}
    assert set(verdict.NULLS) | {"observed", "ceiling-model-seed", "reliability-sae-seed"} <= names
    observed = [r for r in stats if r["statistic"] == "observed"][0]
    assert observed["low"] <= observed["value"] <= observed["high"]
    # a gate failure, or a near-empty random-init dictionary, is reported, never silently used
    gates["cnn-seed1-l1"] = False
    alive["mlp-random-l1"] = 0.2
    stats, directions = compare.prediction2_arm(features, alive, gates, "l1", 2, groups, shuffles=9, replicates=50)
    assert [d["verdict"] for d in directions] == ["not testable", "not testable"]
    assert not [r for r in stats if r["statistic"] == "null-random-init" and r["direction"] == "cnn->mlp"][0]["valid"]
