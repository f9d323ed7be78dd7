"""Prediction 2: how similar are two sets of features measured on the same images?

Every statistic takes two activation matrices over the same N images (rows) and compares their columns:
best Pearson correlation per feature in both directions, a one-to-one (Hungarian) matching, and linear CKA.
Null baselines permute the rows of one side (across all images, or only within each class).
"""
import math

import numpy as np
import torch

from helpers import stats


def standardize(acts):
    """Columns with zero mean and unit variance; constant columns are dropped (a dead feature, ``sae.dead``, is one:
    it is 0 on every image).

    Returns (standardized float32 tensor, indices of the kept columns). Float32 throughout: the columns are centred
    before the squares are summed, so the precision is ample for correlations, and it is twice as fast as float64."""
    a = torch.as_tensor(acts).float()
    mean = a.mean(0)
    a = a - mean
    std = a.pow(2).mean(0).sqrt()
    # A column is constant when its spread is rounding error around its mean (exactly 0 for a dead feature).
    keep = torch.nonzero(std > 1e-5 * mean.abs().clamp_min(1e-20)).flatten()
    return a[:, keep] / std[keep], keep


def correlation_matrix(a, b):
    """Pearson correlations between every column of ``a`` and every column of ``b`` (rows are images).

    Returns (matrix (kept a, kept b), kept a indices, kept b indices)."""
    za, keep_a = standardize(a)
    zb, keep_b = standardize(b)
    return za.T @ zb / len(za), keep_a, keep_b


def best_matches(corr):
    """For each feature of a, its best correlation with any feature of b (and the reverse)."""
    return corr.max(1).values, corr.max(0).values


def hungarian(corr):
    """One-to-one matching maximizing total correlation; returns the matched correlations and index pairs."""
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    return torch.as_tensor(corr.numpy()[rows, cols]), np.stack([rows, cols], 1)


def linear_cka(x, y):
    """Linear centered kernel alignment (Kornblith et al. 2019) between two representations of the same images."""
    x = torch.as_tensor(x).double()
    y = torch.as_tensor(y).double()
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = (y.T @ x).pow(2).sum()
    return (cross / ((x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt())).item()


def shuffle_order(n, seed=0, labels=None):
    """A permutation of ``n`` images: across all images, or (with ``labels``) only within each class, which keeps
    class identity aligned while breaking everything finer."""
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        return torch.randperm(n, generator=g)
    labels = torch.as_tensor(labels)
    order = torch.arange(n)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        order[idx] = idx[torch.randperm(len(idx), generator=g)]
    return order


def shuffle_rows(acts, seed=0, labels=None):
    """The images of one side permuted by ``shuffle_order``."""
    return acts[shuffle_order(len(acts), seed, labels)]


def similarity(a, b, matching=True):
    """All statistics for one pair of feature sets over the same images, as a dict of plain numbers plus the
    per-feature best correlations (for histograms)."""
    corr, keep_a, keep_b = correlation_matrix(a, b)
    a_to_b, b_to_a = best_matches(corr)
    out = dict(features_a=int(torch.as_tensor(a).shape[1]), features_b=int(torch.as_tensor(b).shape[1]),
               alive_a=len(keep_a), alive_b=len(keep_b),
               mean_best_a_to_b=a_to_b.mean().item(), median_best_a_to_b=a_to_b.median().item(),
               mean_best_b_to_a=b_to_a.mean().item(), median_best_b_to_a=b_to_a.median().item(),
               share_a_above_0_5=(a_to_b > 0.5).float().mean().item())
    if matching:
        matched, _ = hungarian(corr)
        out["mean_hungarian"] = matched.mean().item()
    return out, a_to_b, b_to_a


def top_pairs(a, b, k=6):
    """The k best-matched (feature of a, feature of b, correlation) triples, each feature of a used once."""
    corr, keep_a, keep_b = correlation_matrix(a, b)
    best, where = corr.max(1)
    order = best.argsort(descending=True)[:k]
    return [(int(keep_a[i]), int(keep_b[where[i]]), float(best[i])) for i in order]


def variance_dimensions(acts, shares=(0.5, 0.9, 0.99)):
    """How many principal components carry each share of a representation's variance (a low number means the
    layer has collapsed onto a few directions, e.g. the class means)."""
    x = torch.as_tensor(acts).double()
    power = torch.linalg.svdvals(x - x.mean(0)).pow(2)
    cumulative = power.cumsum(0) / power.sum()
    return {share: int((cumulative < share).sum()) + 1 for share in shares}


# ----------------------------------------------------------------------------- held-out matching, with uncertainty
#
# The in-sample best match (above) takes a maximum over many candidates on the same images it reports, so it grows
# with the number of candidates and their firing rates even when nothing is shared. The held-out statistic picks
# each feature's partner on one half of the images and reports their correlation on the other half: under any null
# its expectation is the null's true correlation, whatever the number of candidates.

def split_halves(n, seed=0):
    """A random split of ``n`` images into (select, evaluate) index halves."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n // 2], order[n // 2:]


def choose_partners(a_select, b_rows):
    """Each feature of ``a`` that varies on the select images, and the feature of ``b`` that correlates best with it
    there, from ``a``'s select-half z-scores (``standardize(a[select])``) and ``b``'s select rows.
    Returns (a indices, b indices)."""
    za, keep_a = a_select
    zb, keep_b = standardize(b_rows)
    if len(keep_a) == 0 or len(keep_b) == 0:
        return keep_a, keep_b[:0]
    return keep_a, keep_b[(za.T @ zb).argmax(1)]


def paired_correlations(x, y, weights=None):
    """Pearson correlation of column i of ``x`` with column i of ``y`` (rows are images); a column that does not vary
    gives 0. With ``weights`` (B, n), one row of correlations per weighting (a bootstrap replicate): (B, k)."""
    x, y = torch.as_tensor(x).float(), torch.as_tensor(y).float()
    # Centred and scaled first, so that the weighted moments below lose nothing in float32.
    x = x - x.mean(0)
    y = y - y.mean(0)
    x = x / x.abs().amax(0).clamp_min(1e-30)
    y = y / y.abs().amax(0).clamp_min(1e-30)
    w = torch.ones(1, len(x)) if weights is None else torch.as_tensor(weights).float()
    total = w.sum(1, keepdim=True)
    mx, my = w @ x / total, w @ y / total
    sxy = w @ (x * y) / total - mx * my
    sxx = (w @ (x * x) / total - mx * mx).clamp_min(0)
    syy = (w @ (y * y) / total - my * my).clamp_min(0)
    denom = (sxx * syy).sqrt()
    r = torch.where(denom > 1e-10, sxy / denom.clamp_min(1e-30), torch.zeros_like(sxy)).clamp(-1, 1)
    return r if weights is not None else r[0]


def heldout_match(a, b, select, evaluate, weights=None, b_order=None, a_select=None):
    """Held-out best-match correlation of ``a``'s features in ``b`` (see above): (mean, per feature, replicates).

    With bootstrap ``weights`` (B, len(evaluate)) ``replicates`` holds the mean per replicate, shape (B,); without,
    it is None. Partners are chosen once for both. ``b_order``: a permutation of ``b``'s images (a shuffle null,
    ``shuffle_order``), applied by indexing rather than by a shuffled copy; ``a_select``: ``standardize(a[select])``
    when it is already at hand (many b's matched against one a)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    b_select, b_evaluate = (select, evaluate) if b_order is None else (b_order[select], b_order[evaluate])
    ia, ib = choose_partners(standardize(a[select]) if a_select is None else a_select, b[b_select])
    if len(ia) == 0 or len(ib) == 0:
        return torch.tensor(0.0), torch.zeros(0), None if weights is None else torch.zeros(len(weights))
    x, y = a[evaluate][:, ia], b[b_evaluate][:, ib]  # rows first: a column gather is the slow one
    per_feature = paired_correlations(x, y)
    replicates = None if weights is None else paired_correlations(x, y, weights).mean(1)
    return per_feature.mean(), per_feature, replicates


def prediction_groups(labels, *predictions):
    """One group id per image for the conditional shuffle: (true class, each model's predicted class). Shuffling
    within these groups keeps what the models agree on through their outputs, including shared mistakes."""
    group = torch.as_tensor(labels).long().clone()
    for p in predictions:
        group = group * 10 + torch.as_tensor(p).long()
    return group


# ----------------------------------------------------------------------------- Prediction 2, one SAE arm

LABELS = {"observed": "CNN–MLP, same sparsity (mean over model seeds)",
          "null-conditional-shuffle": "null: images shuffled within (class, CNN prediction, MLP prediction)",
          "null-full-shuffle": "null: image order shuffled",
          "null-random-init": "null: SAE of a randomly initialized network of the other family",
          "ceiling-model-seed": "ceiling: the same family, another training seed",
          "reliability-sae-seed": "reliability: the same model, another SAE seed (L1 arm)"}


def prediction2_arm(features, alive_share, gates_ok, arm, model_seeds, groups, seed=0, shuffles=49, replicates=200):
    """All held-out statistics of one SAE arm, both directions, and each direction's verdict (``helpers.verdict``
    decides null validity, the strongest null, the position, Holm's family and the verdict).

    features: {SAE id: (N, F) feature activations on the test images} (ids of ``units.SAESpec``);
    alive_share: {SAE id: share of its features that fire on the test images}; gates_ok: {SAE id: bool};
    groups: {model seed: group id per test image} for the conditional shuffle (``prediction_groups``).
    Returns (statistics rows, direction rows).
    """
    from helpers import verdict as V
    from helpers.units import SAESpec
    n = len(next(iter(features.values())))
    select, evaluate = split_halves(n, seed)
    weights = stats.bootstrap_weights(len(evaluate), replicates, seed)
    seeds = range(model_seeds)
    trained = {(f, s): SAESpec(f, "trained", s, arm).id for f in ("cnn", "mlp") for s in seeds}
    rows, directions = [], []
    for fa, fb in (("cnn", "mlp"), ("mlp", "cnn")):
        direction = f"{fa}->{fb}"
        A = {s: features[trained[(fa, s)]] for s in seeds}
        B = {s: features[trained[(fb, s)]] for s in seeds}

        a_select = {s: standardize(A[s][select]) for s in seeds}  # shared by every match against A[s]

        def held(s, b, with_weights=True, b_order=None):
            value, per_feature, reps = heldout_match(A[s], b, select, evaluate, weights if with_weights else None,
                                                     b_order=b_order, a_select=a_select[s])
            return value.item(), reps, per_feature

        obs = [held(s, B[s]) for s in seeds]
        obs_value = sum(o[0] for o in obs) / len(obs)
        obs_reps = stats.seed_average([o[1] for o in obs], replicates, seed)
        obs_per_feature = torch.cat([o[2] for o in obs])
        in_sample = sum(similarity(A[s], B[s], matching=False)[0]["mean_best_a_to_b"] for s in seeds) / len(obs)
        low, high = stats.interval(obs_reps)
        rows.append(dict(arm=arm, direction=direction, statistic="observed", value=obs_value, low=low, high=high,
                         in_sample_best=in_sample, valid=True))

        nulls = {}
        for name, by_group in (("null-conditional-shuffle", True), ("null-full-shuffle", False)):
            values, reps = [], []
            for r in range(shuffles):
                per_seed = [held(s, B[s], with_weights=r < 5,
                                 b_order=shuffle_order(n, seed=1000 + r, labels=groups[s] if by_group else None))
                            for s in seeds]
                values.append(sum(p[0] for p in per_seed) / len(per_seed))
                if r < 5:  # the interval of a shuffle null averages a few shuffles' bootstrap replicates
                    reps.append(stats.seed_average([p[1] for p in per_seed], replicates, seed))
            nulls[name] = dict(value=sum(values) / len(values), reps=torch.stack(reps).mean(0),
                               p=stats.permutation_p(obs_value, values), valid=True)
        random_id = SAESpec(fb, "random-init", 0, arm).id
        rand = [held(s, features[random_id]) for s in seeds]
        nulls["null-random-init"] = dict(
            value=sum(p[0] for p in rand) / len(rand), reps=stats.seed_average([p[1] for p in rand], replicates, seed),
            p=stats.sign_flip_p(obs_per_feature - torch.cat([p[2] for p in rand]), seed=seed),
            valid=V.null_valid(alive_share[random_id]))
        for name, nl in nulls.items():
            diff = obs_reps - nl["reps"]
            (low, high), (diff_low, diff_high) = stats.interval(nl["reps"]), stats.interval(diff)
            rows.append(dict(arm=arm, direction=direction, statistic=name, value=nl["value"], low=low, high=high,
                             p=nl["p"], diff=obs_value - nl["value"], diff_low=diff_low, diff_high=diff_high,
                             valid=bool(nl["valid"])))

        if model_seeds > 1:
            ceil = [held(i, features[trained[(fa, j)]]) for i, j in ((0, 1), (1, 0))]  # A[i] is fa's seed i
            ceiling_value = sum(c[0] for c in ceil) / 2
            ceiling_reps = torch.stack([c[1] for c in ceil]).mean(0)
            low, high = stats.interval(ceiling_reps)
            rows.append(dict(arm=arm, direction=direction, statistic="ceiling-model-seed", value=ceiling_value,
                             low=low, high=high, valid=True))
        reliability_id = SAESpec(fa, "trained", 0, arm, sae_seed=1).id
        if reliability_id in features:
            rel = held(0, features[reliability_id])
            low, high = stats.interval(rel[1])
            rows.append(dict(arm=arm, direction=direction, statistic="reliability-sae-seed", value=rel[0],
                             low=low, high=high, valid=True))

        strongest = V.strongest_null({k: v["value"] for k, v in nulls.items()},
                                     {k: v["valid"] for k, v in nulls.items()})
        entry = dict(arm=arm, direction=direction, observed=obs_value, strongest_null=strongest,
                     gates_ok=V.all_passed(gates_ok, [trained[(f, s)] for f in (fa, fb) for s in seeds]))
        if strongest and model_seeds > 1:
            null_value, null_reps = nulls[strongest]["value"], nulls[strongest]["reps"]
            position_reps = V.position(obs_reps, null_reps, ceiling_reps)
            low, high = stats.interval(position_reps)
            entry.update(ceiling=ceiling_value, ceiling_margin=ceiling_value - null_value,
                         position=V.position(obs_value, null_value, ceiling_value), position_low=low,
                         position_high=high)
        else:
            entry.update(ceiling=math.nan, ceiling_margin=math.nan, position=math.nan, position_low=math.nan,
                         position_high=math.nan)
        directions.append(entry)

    V.adjust_prediction2(rows)
    for entry in directions:
        nulls = [dict(valid=r["valid"], p_holm=r.get("p_holm", 1.0), diff_low=r["diff_low"]) for r in rows
                 if r["direction"] == entry["direction"] and r["statistic"] in V.NULLS]
        entry["verdict"], entry["reason"] = V.prediction2_direction(
            entry["gates_ok"], nulls, dict(value=entry["position"], low=entry["position_low"],
                                           high=entry["position_high"]), entry["ceiling_margin"])
    return rows, directions


# ----------------------------------------------------------------------------- every layer against every layer

def centered_gram(x):
    """The doubly centered Gram matrix of a representation (rows are images), for linear CKA."""
    x = torch.as_tensor(x).double()
    x = x - x.mean(0)
    return x @ x.T


def cka_map(grams_a, grams_b):
    """Linear CKA of every representation in ``grams_a`` against every one in ``grams_b`` (centered Gram matrices
    over the same images): a (len(a), len(b)) matrix."""
    unit = lambda g: g / g.norm()  # noqa: E731
    a = torch.stack([unit(g).flatten() for g in grams_a])
    b = torch.stack([unit(g).flatten() for g in grams_b])
    return (a @ b.T).float()

