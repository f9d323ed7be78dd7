"""Prediction 2: how similar are two sets of features measured on the same images?

Every statistic takes two activation matrices over the same N images (rows) and compares their columns:
best Pearson correlation per feature in both directions, a one-to-one (Hungarian) matching, and linear CKA.
Null baselines permute the rows of one side (across all images, or only within each class).
"""
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import NamedTuple

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


def linear_cka(x, y, dtype=torch.float64):
    """Linear centered kernel alignment (Kornblith et al. 2019) between two representations of the same images.
    ``dtype``: float32 for wide SAE codes (their 1,536-column products at half the cost; ample for a similarity)."""
    x = torch.as_tensor(x).to(dtype)
    y = torch.as_tensor(y).to(dtype)
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = (y.T @ x).pow(2).sum()
    return (cross / ((x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt())).item()


def shuffle_order(n, seed=0, labels=None):
    """A permutation of ``n`` images: across all images, or (with ``labels``) only within each class, which keeps
    class identity aligned while breaking everything finer."""
    if labels is None:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return stats.within_group_permutations(labels, 1, seed)[0]


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


def standardize_wide(acts):
    """``standardize`` keeping every column: a constant one is all zeros, and a mask says which are kept. Dropping
    columns is a gather across the whole matrix; a partner search masks its scores instead (``choose_partners``)."""
    a = torch.as_tensor(acts).float()
    mean = a.mean(0)
    a = a - mean
    std = a.pow(2).mean(0).sqrt()
    kept = std > 1e-5 * mean.abs().clamp_min(1e-20)
    return a.div_(torch.where(kept, std, torch.ones_like(std))).mul_(kept), kept


SPARSE_SHARE = 0.1  # a feature set's select rows are searched as a sparse matrix while at most this share is nonzero


def select_side(rows):
    """What ``choose_partners`` needs of a feature set's select rows: its features that vary (indices) and their rows
    transposed, (kept, n), as they are (not z-scored). Held as a CSR matrix while at most ``SPARSE_SHARE`` of them is
    nonzero (an SAE's code: about 2%), so that the search costs what their nonzeros do, not a dense product."""
    rows = torch.as_tensor(rows).float()
    mean = rows.mean(0)
    std = (rows - mean).pow(2).mean(0).sqrt()
    keep = torch.nonzero(std > 1e-5 * mean.abs().clamp_min(1e-20)).flatten()  # as ``standardize`` keeps them
    kept = rows[:, keep].T.contiguous()
    return (kept.to_sparse_csr() if (kept != 0).float().mean() <= SPARSE_SHARE else kept), keep


def choose_partners(a_select, b_rows=None, b_wide=None):
    """Each feature of ``a`` that varies on the select images, and the feature of ``b`` that correlates best with it
    there, from ``a``'s ``select_side`` and ``b``'s select rows (or their ``standardize_wide``, ``b_wide``, when it is
    at hand). Returns (a indices, b indices).

    The product of a's rows as they are with b's z-scores ranks each a feature's partners as the correlations do: b's
    z-scores sum to 0 over the images, so a's centring drops out, and a's scale is one positive factor per row."""
    a_rows, keep_a = a_select
    zb, kept_b = standardize_wide(b_rows) if b_wide is None else b_wide
    if len(keep_a) == 0 or not kept_b.any():
        return keep_a, keep_a[:0]
    scores = a_rows @ zb
    scores[:, ~kept_b] = -math.inf  # a constant feature is nobody's partner
    return keep_a, scores.argmax(1)


class PairedColumns:
    """The first side of ``paired_correlations``, prepared once for many second sides (one feature set matched
    against many partners): its columns centred and scaled, their moments, and with bootstrap ``weights`` (B, n) their
    weighted moments."""

    def __init__(self, x, weights=None):
        self.x = _centred_scaled(x)
        self.weights = None if weights is None else torch.as_tensor(weights).float()
        self.mean, self.var = _moments(self.x)
        if self.weights is not None:
            self.total = self.weights.sum(1, keepdim=True)
            self.w_mean, self.w_var = _moments(self.x, self.weights, self.total)

    def correlations(self, y, replicates=False, columns=None):
        """Pearson correlation of each column of the prepared side with the same column of ``y``: (k,); with
        ``replicates``, one row per bootstrap weighting, (B, k). ``columns`` (bool or index, of the prepared side):
        only those columns, ``y`` holding only their partners (the bootstrap reads the entering features alone)."""
        y = _centred_scaled(y)
        x, mean, var = (self.x, self.mean, self.var) if columns is None else (
            self.x[:, columns], self.mean[columns], self.var[columns])
        if not replicates:
            my, vy = _moments(y)
            return _pearson((x * y).mean(0) - mean * my, var, vy)
        w, total = self.weights, self.total
        w_mean, w_var = (self.w_mean, self.w_var) if columns is None else (self.w_mean[:, columns],
                                                                        self.w_var[:, columns])
        my, vy = _moments(y, w, total)
        return _pearson(w @ (x * y) / total - w_mean * my, w_var, vy)


def _centred_scaled(x):
    # Centred and scaled first, so that the (weighted) moments lose nothing in float32.
    x = torch.as_tensor(x).float()
    x = x - x.mean(0)
    return x.div_(x.abs().amax(0).clamp_min(1e-30))


def _moments(x, weights=None, total=None):
    if weights is None:
        mean = x.mean(0)
        return mean, (x.pow(2).mean(0) - mean * mean).clamp_min(0)
    mean = weights @ x / total
    return mean, (weights @ x.pow(2) / total - mean * mean).clamp_min(0)


def _pearson(covariance, var_x, var_y):
    denom = (var_x * var_y).sqrt()  # a column that does not vary gives 0
    return torch.where(denom > 1e-10, covariance / denom.clamp_min(1e-30), torch.zeros_like(covariance)).clamp(-1, 1)


def paired_correlations(x, y, weights=None):
    """Pearson correlation of column i of ``x`` with column i of ``y`` (rows are images); a column that does not vary
    gives 0. With ``weights`` (B, n), one row of correlations per weighting (a bootstrap replicate): (B, k)."""
    return PairedColumns(x, weights).correlations(y, replicates=weights is not None)


class Match(NamedTuple):
    """A held-out match (``Halves.match``): the mean held-out r over a's entering features (the primary statistic),
    its mean per bootstrap replicate (B,) or None, the held-out r per matched feature (every feature of a that varies
    on the selection half), the partners (a indices, b indices), and which matched features enter (bool, aligned with
    ``per_feature``)."""
    value: float
    replicates: torch.Tensor | None
    per_feature: torch.Tensor
    partners: tuple
    entering: torch.Tensor

    @property
    def mean_all(self):
        """The mean held-out r over every matched feature, entering or not (the study's statistic before issue 36)."""
        return self.per_feature.mean().item() if len(self.per_feature) else 0.0

    def of_all(self, n_features):
        """The held-out r of each of a's ``n_features`` features, 0 for one without a partner (it does not vary on
        the selection half)."""
        r = torch.zeros(n_features)
        r[self.partners[0]] = self.per_feature
        return r


class Halves:
    """One SAE's features on the two halves of the images (``split_halves``), with what a held-out match needs of
    them made once, on first use: each half's rows, the select half's ``select_side`` (for matching these features)
    and its ``standardize_wide`` (for matching others in them), the features that enter the primary
    statistic (``entering``), and the evaluate half's ``PairedColumns`` of the features that vary on the select half,
    with the bootstrap ``weights`` (B, len(evaluate)) or None. ``min_images``: the entering threshold
    (``MIN_FIRING_IMAGES``; 0 lets every feature in)."""

    def __init__(self, acts, select, evaluate, weights=None, min_images=None):
        self.acts, self.select, self.evaluate, self.weights = torch.as_tensor(acts), select, evaluate, weights
        self.min_images = MIN_FIRING_IMAGES if min_images is None else min_images

    @cached_property
    def select_rows(self):
        return self.acts[self.select]

    @cached_property
    def evaluate_rows(self):
        return self.acts[self.evaluate]

    @cached_property
    def searched(self):
        return select_side(self.select_rows)

    @cached_property
    def wide_select(self):
        return standardize_wide(self.select_rows)

    @cached_property
    def prepared(self):
        return PairedColumns(self.evaluate_rows[:, self.searched[1]], self.weights)

    @cached_property
    def entering_mask(self):
        return self.entering()

    def entering(self, min_images=None):
        """Which features enter the primary statistic: those firing (above 0) on at least ``min_images`` images of the
        selection half (default: this ``Halves``' ``min_images``), counted there so that the evaluation half stays
        unseen. (F,) bool."""
        return (self.select_rows > 0).sum(0) >= (self.min_images if min_images is None else min_images)

    def match(self, b, b_order=None, replicates=True):
        """Held-out best match of these features in ``b`` (another SAE's ``Halves`` on the same split): each
        varying feature's partner chosen on the select half, their correlation read on the evaluate half; the value
        and its replicates average the entering features' (``entering``).
        ``b_order``: a permutation of b's images (a shuffle null, ``shuffle_order``), applied by indexing rather than
        by a shuffled copy; ``replicates``: also the mean per bootstrap replicate (with ``weights``). A ``Match``."""
        if b_order is None:
            ia, ib = choose_partners(self.searched, b_wide=b.wide_select)
            b_evaluate = b.evaluate_rows
        else:
            ia, ib = choose_partners(self.searched, b.acts[b_order[self.select]])
            b_evaluate = b.acts[b_order[self.evaluate]]
        with_replicates = replicates and self.weights is not None
        if len(ib) == 0:
            ia = ia[:0]
        kept = self.entering_mask[ia]
        if not kept.any():  # nothing matched enters: the statistic is 0 (no feature to find a partner for)
            per_feature = self.prepared.correlations(b_evaluate[:, ib]) if len(ib) else torch.zeros(0)
            return Match(0.0, torch.zeros(len(self.weights)) if with_replicates else None, per_feature, (ia, ib),
                         kept)
        y = b_evaluate[:, ib]  # rows first: a column gather is the slow one
        per_feature = self.prepared.correlations(y)
        means = self.prepared.correlations(y[:, kept], True, kept).mean(1) if with_replicates else None
        return Match(per_feature[kept].mean().item(), means, per_feature, (ia, ib), kept)


def entering_statistics(match, entering, threshold=None):
    """A held-out ``Match`` read over the features that enter (``entering``: (F,) bool of its a side, from
    ``Halves.entering``): their number, their share of a's features, their mean held-out r, and the share of them
    whose partner reaches ``threshold`` (default ``REPRODUCIBLE``; a feature that does not vary on the selection half
    has no partner and counts as r 0). The same filter applies alike to an observation, its nulls and its ceiling."""
    threshold = REPRODUCIBLE if threshold is None else threshold
    kept = match.of_all(len(entering))[entering]
    n = len(kept)
    return dict(entering=n, entering_share=n / len(entering) if len(entering) else math.nan,
                mean=kept.mean().item() if n else math.nan,
                matched_share=(kept >= threshold).float().mean().item() if n else math.nan)


def prediction_groups(labels, *predictions):
    """One group id per image for the conditional shuffle: (true class, each model's predicted class). Shuffling
    within these groups keeps what the models agree on through their outputs, including shared mistakes."""
    group = torch.as_tensor(labels).long().clone()
    for p in predictions:
        group = group * 10 + torch.as_tensor(p).long()
    return group


# ----------------------------------------------------------------------------- Prediction 2, one SAE arm
#
# Four comparisons, each run through the same statistics: the study's question (VGG against the MLP), the reference
# pair (VGG against a ResNet: two CNN architectures, which the instrument should read as similar), the ResNet
# against the MLP (a second CNN against the same MLP), and the sanity control (VGG against its own layer under a
# random invertible linear map, which carries the same features and must read as similar). A "side" is a family, or
# ``cnn-mapped`` for the mapped layer; its SAEs are indexed by (model seed, SAE seed).

COMPARISONS = (("question", "cnn", "mlp"), ("reference", "cnn", "resnet"), ("beside", "resnet", "mlp"),
               ("sanity", "cnn", "cnn-mapped"))
COMPARISON_LABELS = {"question": "VGG ↔ MLP", "reference": "VGG ↔ ResNet (the reference pair)",
                     "beside": "ResNet ↔ MLP", "sanity": "VGG ↔ VGG under a random linear map (the sanity control)"}

LABELS = {"observed": "observed: mean held-out r of the entering features (over model and SAE seeds)",
          "null-conditional-shuffle": "null: images shuffled within (class, both models' predictions)",
          "null-full-shuffle": "null: image order shuffled",
          "null-random-init": "null: SAE of a randomly initialized network of the matched side's family",
          "ceiling": "ceiling: the same family, another training seed (one model: another SAE seed)",
          "ceiling-null": "the ceiling's null: images shuffled within (class, both models' predictions)",
          "ceiling-null-full-shuffle": "the ceiling's null: image order shuffled",
          "ceiling-null-random-init": "the ceiling's null: SAE of a randomly initialized network of its family"}
REPRODUCIBLE = 0.5  # a feature is reproducible when its r with its partner in the other SAE seed reaches it
# A feature enters the primary statistic (issue 36) when it fires on at least this many images of the selection half:
# a feature that fires on ten images scores about 0 under any statistic, even for identical information (in the TopK
# sanity control, features firing on under 0.2% of test images scored 0.035, those on 5% or more 0.890).
MIN_FIRING_IMAGES = 50


def family_of(side):
    return side.removesuffix("-mapped")


def random_init_id(specs, family, arm):
    """The id of the SAE of ``family``'s randomly initialized network in ``arm`` among ``specs``, or None."""
    return next((s.id for s in specs if s.family == family and s.net == "random-init" and s.arm == arm), None)


def side_units(specs, side, arm):
    """{(model seed, SAE seed): SAE id} of the trained (or mapped) SAEs of ``side`` in ``arm``."""
    return {(s.model_seed, s.sae_seed): s.id for s in specs
            if s.arm == arm and s.side == side and s.net != "random-init"}


def exact_permutation_p(x, y, permutations):
    """Exact one-sided p-values that paired columns ``x`` and ``y`` (the same images' rows) correlate more than
    under the given permutations of ``y``'s images (each a (R, n) tensor from ``stats.within_group_permutations``:
    within groups, or with one group a full shuffle). The statistic is the mean paired Pearson correlation; p =
    (1 + permutations reaching it) / (1 + R), never below 1 / (R + 1). Returns one p per permutation set.

    With z-scored columns a permutation's statistic is a sum of entries of one n x n matrix, so R permutations cost
    one matrix product and R gathers."""
    zx, _ = _zscore(x)
    zy, _ = _zscore(y)
    gram = zx @ zy.T
    observed = gram.diagonal().sum()
    # each image's row read once for every permutation (a gather along rows keeps the reads in cache)
    return [(1 + int((gram.gather(1, perms.T.contiguous()).sum(0) >= observed - 1e-6 * observed.abs()).sum()))
            / (len(perms) + 1) for perms in permutations]


def _zscore(x):
    x = torch.as_tensor(x).float()
    x = x - x.mean(0)
    std = x.pow(2).mean(0).sqrt()
    return torch.where(std > 1e-12, x / std.clamp_min(1e-30), torch.zeros_like(x)), std


# One function per measurement, each on the SAEs' ``Halves``; ``prediction2_arm`` gathers them into a
# ``DirectionMeasurement`` per direction, and ``verdict.prediction2_arm`` makes every decision from those records.

def seed_average(matches, seed=0):
    """The mean of ``matches`` ({(model seed, SAE seed): ``Match``}, or a ceiling's {((seed, seed), inner):
    ``Match``}) over its units, and its bootstrap replicates resampling model seeds, SAE seeds and images
    (``stats.nested_average``; for a ceiling's pairs of seeds ``stats.pair_average``; None if a match has no
    replicates)."""
    value = sum(m.value for m in matches.values()) / len(matches)
    return value, unit_replicates({u: m.replicates for u, m in matches.items()}, seed)


def unit_replicates(replicates, seed=0):
    """The bootstrap replicates of a mean over units ({unit: (B,) replicates}): ``stats.pair_average`` where a unit's
    first key is a pair of seeds (a ceiling), else ``stats.nested_average``; None if a unit has none."""
    if any(r is None for r in replicates.values()):
        return None
    average = stats.pair_average if isinstance(next(iter(replicates))[0], tuple) else stats.nested_average
    return average(replicates, len(next(iter(replicates.values()))), seed)


@dataclass
class Resampling:
    """How one arm's statistics resample the test images: the conditional shuffle's groups come from the test
    ``labels`` and each model's ``predictions`` ({(family, model seed): predicted class per image}); a shuffle
    null averages ``shuffles`` shuffles; an exact test reads ``permutations`` permutations; ``seed`` seeds the
    bootstrap over seeds (``seed_average``), the sign-flip test and the exact tests."""
    labels: torch.Tensor
    predictions: dict
    shuffles: int = 3
    permutations: int = 999
    seed: int = 0
    made: dict = field(default_factory=dict, repr=False)  # the exact tests' permutations, by grouping

    def groups(self, *models):
        """The conditional shuffle's group of every image: (true class, each of ``models``' predicted class)."""
        return prediction_groups(self.labels, *(self.predictions[m] for m in models))

    def permutations_within(self, groups):
        """The exact tests' permutations within ``groups``, made once per grouping (every test with the same groups
        shares them)."""
        key = groups.numpy().tobytes()
        if key not in self.made:
            self.made[key] = stats.within_group_permutations(groups, self.permutations, self.seed)
        return self.made[key]


@dataclass
class Estimate:
    """A statistic averaged over (model seed, SAE seed) pairs: its value and bootstrap replicates (B,); for a null
    also its one-sided p-value (observed above it) and the held-out r per feature of its first pair."""
    value: float
    replicates: torch.Tensor | None
    p: float = math.nan
    per_feature: torch.Tensor | None = None


def shuffle_null(halves, pairs, groups, shuffles=3, first_seed=1000, seed=0):
    """A shuffle null: each pair's b images permuted (``shuffle_order`` within ``groups[pair]``, or across all images
    where that is None) before a's features are matched in b, each feature's partner chosen again. ``halves``:
    {SAE id: ``Halves``}; ``pairs``: {(model seed, SAE seed): (a's SAE id, b's SAE id)}. The value averages
    ``shuffles`` shuffles (seeds ``first_seed``, ``first_seed`` + 1, ...); the replicates are the first shuffle's
    (the spread between shuffles is small beside the images' bootstrap), and so is the per-feature r (first pair)."""
    shuffled = [{u: halves[a].match(halves[b], shuffle_order(len(halves[b].acts), first_seed + r, groups[u]),
                                    replicates=r == 0) for u, (a, b) in pairs.items()} for r in range(shuffles)]
    levels = [seed_average(matches, seed) for matches in shuffled]
    return Estimate(sum(v for v, _ in levels) / len(levels), levels[0][1],
                    per_feature=next(iter(shuffled[0].values())).per_feature)


def shuffle_p_values(halves, pairs, matches, groups, resampling):
    """The shuffle nulls' exact permutation p-values (``exact_permutation_p``) of the observed ``matches``, within
    ``groups[pair]`` and across all images: each pair's matched features on the evaluate images, each p the largest
    over the pairs (each pair must beat its null). Returns (p within groups, p across all images)."""
    p = []
    for u, (a, b) in pairs.items():
        (ia, ib), evaluate = matches[u].partners, halves[a].evaluate
        ia, ib = ia[matches[u].entering], ib[matches[u].entering]  # the features the statistic averages
        anywhere = torch.zeros(len(evaluate), dtype=torch.long)
        p.append(exact_permutation_p(halves[a].evaluate_rows[:, ia], halves[b].evaluate_rows[:, ib],
                                     [resampling.permutations_within(groups[u][evaluate]),
                                      resampling.permutations_within(anywhere)]))
    return max(q[0] for q in p), max(q[1] for q in p)


def shuffle_nulls(halves, pairs, matches, groups, resampling):
    """A direction's two shuffle nulls as ``Estimate``s (``shuffle_null``), {"null-conditional-shuffle": images
    shuffled within ``groups[pair]``, "null-full-shuffle": across all images}, with their p-values
    (``shuffle_p_values`` of the observed ``matches``)."""
    p = shuffle_p_values(halves, pairs, matches, groups, resampling)
    nulls = {}
    for i, (name, within) in enumerate((("null-conditional-shuffle", groups),
                                        ("null-full-shuffle", dict.fromkeys(pairs)))):
        null = shuffle_null(halves, pairs, within, resampling.shuffles, 1000, resampling.seed)
        nulls[name] = replace(null, p=p[i])
    return nulls


def random_init_null(halves, pairs, random_id, matches, seed=0):
    """The random-init null as an ``Estimate``: each pair's a features matched in the SAE ``random_id`` (of a
    randomly initialized network) instead of b. Its p is the sign-flip p of the observed ``matches``' held-out r
    minus the null's, feature by feature over every pair."""
    null = {u: halves[a].match(halves[random_id]) for u, (a, _) in pairs.items()}
    value, replicates = seed_average(null, seed)
    p = stats.sign_flip_p(torch.cat([(matches[u].per_feature - null[u].per_feature)[matches[u].entering]
                                     for u in pairs]), seed=seed)
    return Estimate(value, replicates, p, per_feature=next(iter(null.values())).per_feature)


def ceiling_pairs(units, family):
    """Which SAEs a family's ceiling matches (``units``: {(model seed, SAE seed): SAE id}). With several model seeds,
    every pair of them, the lower seed's features matched in the higher's, at each SAE seed ("model seed": two seeds
    of one family are exchangeable, so the reverse order measures the same agreement again, at twice the cost); with
    one model, every ordered pair of its SAE seeds ("SAE seed"), keyed ((seed, seed), 0) so the outer bootstrap level
    is the pair. Returns (kind, {key: (SAE id, SAE id)}, {key: the models whose predictions group its conditional
    shuffle}), or None with neither."""
    seeds, sae_seeds = sorted({s for s, _ in units}), sorted({t for _, t in units})
    if len(seeds) > 1:
        pairs = {((i, j), t): (units[(i, t)], units[(j, t)]) for i in seeds for j in seeds if i < j
                 for t in sae_seeds}
        return "model seed", pairs, {k: ((family, k[0][0]), (family, k[0][1])) for k in pairs}
    if len(sae_seeds) > 1:
        pairs = {((t, u), 0): (units[(seeds[0], t)], units[(seeds[0], u)]) for t in sae_seeds for u in sae_seeds
                 if u != t}
        return "SAE seed", pairs, {k: ((family, seeds[0]),) for k in pairs}
    return None


def reproducibility(halves, units):
    """Each feature's reproducibility: its correlation with its best partner in the SAE of the first other SAE seed on
    the same model, both read on the selection half (0 where it does not vary), so that a filter on it leaves the
    evaluation half unseen (the best of 1,536 candidates on 5,000 images gains about 0.05 by chance, little beside
    ``REPRODUCIBLE``). {(model seed, SAE seed): (F,) r}, for every unit of ``units`` ({(model seed, SAE seed): SAE
    id}) with another SAE seed."""
    sae_seeds = sorted({t for _, t in units})
    out = {}
    for (s, t), a in units.items():
        other = [u for u in sae_seeds if u != t]
        if other:
            b = halves[units[(s, other[0])]]
            ia, ib = choose_partners(halves[a].searched, b_wide=b.wide_select)
            r = torch.zeros(halves[a].acts.shape[1])
            r[ia] = paired_correlations(halves[a].select_rows[:, ia], b.select_rows[:, ib]) if len(ib) else 0.0
            out[(s, t)] = r
    return out


@dataclass
class Ceiling:
    """A family's ceiling (``ceiling``): its kind, the agreement (an ``Estimate`` whose per-feature r spans every
    pair), the agreement's nulls ({statistic: ``Estimate``}: under its own conditional shuffle, a full shuffle, and
    with the family's random-init SAE as the partner), the random-init SAE's alive share, and each feature's
    reproducibility."""
    kind: str
    estimate: Estimate
    nulls: dict
    random_alive_share: float | None
    reproducibility: dict


def ceiling(halves, units, family, resampling, random_sae=None):
    """The ceiling of a family (``units``: its SAEs, {(model seed, SAE seed): SAE id}): the held-out agreement of its
    model seeds (another training seed), or with one model of its SAE seeds (``ceiling_pairs``); with the nulls each
    question reads it against (its own conditional shuffle, seeds from 2000; a full shuffle, seeds
    from 3000; the family's random-init SAE, ``random_sae`` = (id, alive share), where it has one) and each feature's
    reproducibility. A ``Ceiling``, or None."""
    found = ceiling_pairs(units, family)
    if found is None:
        return None
    kind, pairs, models = found
    matches = {k: halves[a].match(halves[b]) for k, (a, b) in pairs.items()}
    agreement = Estimate(*seed_average(matches, resampling.seed),
                         per_feature=torch.cat([m.per_feature for m in matches.values()]))
    groups = {k: resampling.groups(*m) for k, m in models.items()}
    nulls = {"ceiling-null": shuffle_null(halves, pairs, groups, resampling.shuffles, 2000, resampling.seed),
             "ceiling-null-full-shuffle": shuffle_null(halves, pairs, dict.fromkeys(pairs), resampling.shuffles, 3000,
                                                       resampling.seed)}
    if random_sae is not None:
        nulls["ceiling-null-random-init"] = random_init_null(halves, pairs, random_sae[0], matches, resampling.seed)
    return Ceiling(kind, agreement, nulls, random_sae[1] if random_sae else None, reproducibility(halves, units))


def feature_diagnostics(halves, pairs, forward, backward, reproducible=None):
    """Each observed match of a direction, feature by feature: its partner, held-out r, whether it enters the primary
    statistic, firing frequency (share of all images where it is above 0), reproducibility (from ``reproducible``,
    {pair: (F,) r} of ``reproducibility``; NaN without) and whether it is mutual (its partner's partner in the
    ``backward`` matches is itself). ``forward``, ``backward``: {pair: ``Match``} of a in b and of b in a. Returns
    (one row per pair, the summary): the entering features' share of a's features, median r and share matched at r
    >= ``REPRODUCIBLE``; the secondaries, the mean r over entering features that also reproduce (their r with the
    same model's other SAE seed above ``REPRODUCIBLE``) and their share, and the mean r over every matched feature
    (the statistic before issue 36); the share of mutual matches."""
    rows, parts = [], dict(entering=[], reproducing=[], all=[], mutual=[], n_features=0)
    for u, (a, b) in pairs.items():
        m = forward[u]
        r, (ia, ib), entering = m.per_feature, m.partners, m.entering
        partner_back = torch.full((halves[b].acts.shape[1],), -1, dtype=torch.long)
        ja, jb = backward[u].partners
        partner_back[ja] = jb
        is_mutual = partner_back[ib] == ia
        repro = (reproducible or {}).get(u)
        repro = repro[ia] if repro is not None else torch.full((len(ia),), math.nan)
        parts["entering"].append(r[entering])
        parts["reproducing"].append(r[entering & (repro >= REPRODUCIBLE)])
        parts["all"].append(r)
        parts["mutual"].append(is_mutual[entering])
        parts["n_features"] += halves[a].acts.shape[1]
        rows.append(dict(model_seed=u[0], sae_seed=u[1], feature=ia, partner=ib, heldout_r=r, entering=entering,
                         frequency=(halves[a].acts[:, ia] > 0).float().mean(0), reproducibility=repro,
                         mutual=is_mutual))
    got = {k: torch.cat(v) for k, v in parts.items() if k != "n_features"}
    measured = bool(reproducible) and all(u in reproducible for u in pairs)  # one SAE seed: reproducibility unknown

    def mean(t):
        return t.float().mean().item() if len(t) else math.nan
    return rows, dict(entering_share=len(got["entering"]) / parts["n_features"] if parts["n_features"] else math.nan,
                      median=got["entering"].median().item() if len(got["entering"]) else math.nan,
                      matched_share=mean(got["entering"] >= REPRODUCIBLE),
                      reproducing_share=len(got["reproducing"]) / len(got["entering"])
                      if len(got["entering"]) and measured else math.nan,
                      reproducing_mean=mean(got["reproducing"]) if measured else math.nan, mean_all=mean(got["all"]),
                      mutual_share=mean(got["mutual"]))


@dataclass
class DirectionMeasurement:
    """What ``prediction2_arm`` measures of one comparison, arm and direction; ``verdict.prediction2_arm`` decides.

    sae_ids: every SAE behind the observation (both sides); statistics: {statistic: row as measured} in the order of
    ``LABELS`` (``direction_statistics``); replicates: {statistic: (B,) bootstrap replicates}; null_alive_share:
    {null: share of its SAE's features alive, None for a shuffle null}; ceiling_kind: "model seed", "SAE seed" or
    "none"; diagnostics: the per-feature summary (``feature_diagnostics``) and the two codes' linear CKA; per_seed:
    {statistic: {model seed, or a ceiling's (seed, seed): value}} where the unit is a model seed (the linear
    measure's; an SAE arm keeps per-feature values instead)."""
    comparison: str
    arm: str
    direction: str
    sae_ids: list
    statistics: dict
    replicates: dict
    null_alive_share: dict
    ceiling_kind: str
    diagnostics: dict = field(default_factory=dict)
    per_seed: dict = field(default_factory=dict)


def direction_statistics(estimates, in_sample_best, ceiling_kind):
    """A direction's statistics as measured, from its ``estimates`` ({statistic: ``Estimate``} in the order of
    ``LABELS``): {statistic: row}, each row the value and its 95% interval; the observation's with its in-sample best
    match beside it (biased upwards: for contrast), each null's with its p-value and the observation's difference
    from it with the difference's interval, the ceiling's and its null's with the ceiling's kind."""
    observed = estimates["observed"]
    rows = {}
    for name, estimate in estimates.items():
        low, high = stats.interval(estimate.replicates)
        rows[name] = row = dict(value=estimate.value, low=low, high=high)
        if name == "observed":
            row["in_sample_best"] = in_sample_best
        elif name.startswith("ceiling"):
            row["ceiling_kind"] = ceiling_kind
        else:
            diff_low, diff_high = stats.interval(observed.replicates - estimate.replicates)
            row.update(p=estimate.p, diff=observed.value - estimate.value, diff_low=diff_low, diff_high=diff_high)
    return rows


def measure_direction(head, halves, pairs, groups, random_sae, ceiling, resampling, in_sample):
    """One direction (``head``: its comparison, arm and direction; ``pairs``: {(model seed, SAE seed): (a's SAE id,
    b's SAE id)}): the observation, the shuffle nulls (``groups``: {pair: its conditional shuffle's groups}), the
    random-init null where b's family has one (``random_sae``: (its SAE id, its alive share), or None), and a's
    ``ceiling``; ``in_sample``: the first pair's in-sample mean best match of a in b, for contrast. Returns (a
    ``DirectionMeasurement``, the observed matches, the per-feature rows of the nulls and the ceiling)."""
    matches = {u: halves[a].match(halves[b]) for u, (a, b) in pairs.items()}
    estimates = dict(observed=Estimate(*seed_average(matches, resampling.seed)),
                     **shuffle_nulls(halves, pairs, matches, groups, resampling))
    alive_share = {name: None for name in estimates if name != "observed"}
    if random_sae is not None:
        estimates["null-random-init"] = random_init_null(halves, pairs, random_sae[0], matches, resampling.seed)
        alive_share["null-random-init"] = random_sae[1]
    per_feature = [dict(head, statistic=k, heldout_r=e.per_feature) for k, e in estimates.items() if k != "observed"]
    if ceiling is not None:
        estimates.update({"ceiling": ceiling.estimate, **ceiling.nulls})
        alive_share.update({k: ceiling.random_alive_share if k.endswith("random-init") else None
                            for k in ceiling.nulls})
        per_feature.append(dict(head, statistic="ceiling", heldout_r=ceiling.estimate.per_feature))
    kind = ceiling.kind if ceiling is not None else "none"
    measured = DirectionMeasurement(**head, sae_ids=[a for a, _ in pairs.values()] + [b for _, b in pairs.values()],
                                    statistics=direction_statistics(estimates, in_sample, kind),
                                    replicates={k: e.replicates for k, e in estimates.items()},
                                    null_alive_share=alive_share, ceiling_kind=kind)
    return measured, matches, per_feature


def measure_comparison(name, sides, arm, specs, halves, alive_share, resampling, ceilings):
    """Both directions of one comparison (``sides``: its two sides) in one arm, at every (model seed, SAE seed) the
    two sides share (see ``prediction2_arm``). ``ceilings``: {family: ``Ceiling`` or None}, filled as families are
    first needed. Returns (a ``DirectionMeasurement`` per direction, per-feature rows: each direction's nulls and
    ceiling, then each direction's observed features), or ([], []) when the sides share no SAE pair."""
    units = {side: side_units(specs, side, arm) for side in sides}
    shared = sorted(set(units[sides[0]]) & set(units[sides[1]]))
    if not shared:
        return [], []
    directions = [(a, b, {u: (units[a][u], units[b][u]) for u in shared}) for a, b in (sides, sides[::-1])]
    first = [halves[units[side][shared[0]]].acts for side in sides]
    in_sample = similarity(*first, matching=False)[0]  # both directions' from one correlation matrix
    measured, found, per_feature = [], {}, []
    for (a, b, pairs), best in zip(directions, ("mean_best_a_to_b", "mean_best_b_to_a")):
        if family_of(a) not in ceilings:
            own_random = random_init_id(specs, family_of(a), arm)
            ceilings[family_of(a)] = ceiling(halves, side_units(specs, family_of(a), arm), family_of(a), resampling,
                                             (own_random, alive_share[own_random]) if own_random in halves else None)
        groups = {u: resampling.groups((family_of(a), u[0]), (family_of(b), u[0])) for u in shared}
        random_id = random_init_id(specs, family_of(b), arm)
        m, found[a], rows = measure_direction(
            dict(comparison=name, arm=arm, direction=f"{a}->{b}"), halves, pairs, groups,
            (random_id, alive_share[random_id]) if random_id in halves else None, ceilings[family_of(a)],
            resampling, in_sample[best])
        measured.append(m)
        per_feature += rows
    # linear CKA of the two codes: high when the dictionaries span one subspace, whatever their bases
    cka_codes = linear_cka(*first, dtype=torch.float32)
    for m, (a, b, pairs) in zip(measured, directions):
        # reproducibility is a trained side's own (the mapped side's SAEs have no second seed)
        own = ceilings[family_of(a)].reproducibility if ceilings[family_of(a)] and family_of(a) == a else None
        rows, summary = feature_diagnostics(halves, pairs, found[a], found[b], own)
        per_feature += [dict(comparison=name, arm=arm, direction=m.direction, statistic="observed", **r) for r in rows]
        m.diagnostics = dict(summary, code_cka=cka_codes)
    return measured, per_feature


def prediction2_arm(features, specs, alive_share, arm, predictions, labels, seed=0, shuffles=3, permutations=999,
                    replicates=200, comparisons=COMPARISONS):
    """Every held-out measurement of one SAE arm, for every comparison whose two sides have SAEs, in both directions:
    the observation, its nulls and the ceiling with their intervals, and the per-feature values. The decisions on
    them (null validity, Holm, the strongest null, the position, the verdict) are ``verdict.prediction2_arm``'s.

    features: {SAE id: (N, F) feature activations on the test images}; specs: the ``units.SAESpec`` of every id;
    alive_share: {SAE id: share of alive features} (recorded for the random-init nulls); predictions: {(family, model
    seed): predicted class per test image}; labels: the test labels. Shuffle nulls: their level averages ``shuffles``
    shuffles (each feature's partner chosen again); their p-value is ``exact_permutation_p`` over ``permutations``,
    the largest over the comparison's (model seed, SAE seed) pairs. Intervals resample images (``replicates``
    bootstrap weightings), model seeds and SAE seeds.
    Returns (a ``DirectionMeasurement`` per comparison and direction, per-feature rows for ``per_feature_table``).
    """
    resampling = Resampling(labels, predictions, shuffles, permutations, seed)
    select, evaluate = split_halves(len(labels), seed)
    weights = stats.bootstrap_weights(len(evaluate), replicates, seed)
    halves = {i: Halves(acts, select, evaluate, weights) for i, acts in features.items()}
    ceilings, measured, per_feature = {}, [], []
    for name, *sides in comparisons:
        m, f = measure_comparison(name, sides, arm, specs, halves, alive_share, resampling, ceilings)
        measured, per_feature = measured + m, per_feature + f
    return measured, per_feature


def per_feature_table(per_feature):
    """The per-feature rows of ``prediction2_arm`` (tensors per pair of SAEs) as one long table: one row per feature
    of the observed matches (with partner, firing frequency, reproducibility and mutuality), and the held-out r of
    every feature under the first shuffle of each null and of the ceiling (for the distributions)."""
    import pandas as pd
    frames = []
    for row in per_feature:
        columns = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
        size = len(columns["heldout_r"])
        frames.append(pd.DataFrame({k: v if isinstance(v, list) else [v] * size for k, v in columns.items()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------- dictionary-free measures
#
# Beside the SAEs' feature matching, two measures of how much two layers share that need no dictionary: how well a
# linear map from one predicts the other on images it was not fitted on, and linear CKA against its own permutation
# null. "The same subspace in another basis" scores high on both and low on per-feature matching; a disagreement
# between them is a finding, reported as such.

RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


class RidgeMap:
    """Ridge maps from ``x`` (rows are images) fitted on the ``fit`` rows, for any number of targets: x's SVD there is
    made once. Each target's penalty is chosen among ``alphas`` (relative to the mean eigenvalue of x's covariance)
    by generalized cross-validation on the fit rows (``score``): leave-one-out's error with the hat matrix's mean
    diagonal, computed in the SVD's basis without an image-by-target residual per penalty."""

    def __init__(self, x, fit, alphas=RIDGE_ALPHAS):
        # float32: on the exploratory VGG -> MLP layers at half depth R² agreed with float64's to 1e-7, at about 0.6
        # of the time
        self.x, self.fit, self.alphas = torch.as_tensor(x).float(), fit, alphas
        self.x_mean = self.x[fit].mean(0)
        self.u, self.s, self.vh = torch.linalg.svd(self.x[fit] - self.x_mean, full_matrices=False)
        self.scale = (self.s ** 2).mean()

    def _shrink(self, yf):
        uty = self.u.T @ yf
        outside = (yf.pow(2).sum() - uty.pow(2).sum()).clamp_min(0)  # y's part outside x's span: no fit moves it
        per_component = uty.pow(2).sum(1)
        best = None
        for alpha in self.alphas:
            shrink = self.s ** 2 / (self.s ** 2 + alpha * self.scale)
            residual = outside + ((1 - shrink) ** 2 * per_component).sum()  # ||(I - hat) y||²
            error = (residual / (1 - shrink.sum() / len(yf)).clamp_min(1e-12) ** 2).item()
            if best is None or error < best[0]:
                best = (error, alpha, shrink)
        return best[1], self.vh.T @ ((best[2] / self.s.clamp_min(1e-30))[:, None] * uty)

    def score(self, y, evaluate, weights=None):
        """Held-out R² of ``y`` (same rows as x) on the ``evaluate`` rows: the share of y's total variance there that
        the map fitted on the fit rows explains (pooled over y's columns; 0 is no better than y's fit-row mean).
        ``weights`` (B, len(evaluate)): also one R² per bootstrap weighting. Returns (R², replicates or None,
        alpha)."""
        y = torch.as_tensor(y).float()
        y_mean = y[self.fit].mean(0)
        alpha, coefficients = self._shrink(y[self.fit] - y_mean)
        target = y[evaluate]
        error = (target - ((self.x[evaluate] - self.x_mean) @ coefficients + y_mean)).pow(2).sum(1)
        spread = (target - target.mean(0)).pow(2).sum(1)
        r2 = (1 - error.sum() / spread.sum().clamp_min(1e-30)).item()
        if weights is None:
            return r2, None, alpha
        w = torch.as_tensor(weights).float()
        centre = w @ target / w.sum(1, keepdim=True)  # each replicate's own mean of the evaluate rows
        spread_w = w @ target.pow(2).sum(1) - w.sum(1) * centre.pow(2).sum(1)
        return r2, (1 - (w @ error) / spread_w.clamp_min(1e-30)).float(), alpha


def ridge_predictivity(x, y, fit, evaluate, alphas=RIDGE_ALPHAS):
    """Held-out linear predictivity of ``y`` from ``x`` (``RidgeMap``): (R² on the ``evaluate`` rows, the alpha
    chosen on the ``fit`` rows; 1 is perfect, 0 is no better than y's mean on the fit rows, negative is worse)."""
    r2, _, alpha = RidgeMap(x, fit, alphas).score(y, evaluate)
    return r2, alpha


def calibrated_cka(x, y, permutations=200, seed=0):
    """Linear CKA of ``x`` and ``y`` (rows are images) beside its null with y's images shuffled: the observed value,
    the null's mean (exact: for centred columns a random permutation's expected cross term is
    ||x||² ||y||² / (n - 1)), the calibrated score (observed minus that mean, over one minus it: 0 at the null, 1 at
    identity) and the permutation p-value over ``permutations`` shuffles, (1 + shuffles reaching it) / (1 + R). Width
    and depth raise raw CKA even between unrelated layers; the null's mean says by how much at these sizes."""
    x, y = (torch.as_tensor(v).double() for v in (x, y))
    x, y = x - x.mean(0), y - y.mean(0)
    norm = ((x.T @ x).norm() * (y.T @ y).norm()).item()
    observed = (y.T @ x).pow(2).sum().item() / norm
    level = x.pow(2).sum().item() * y.pow(2).sum().item() / (len(x) - 1) / norm
    g = torch.Generator().manual_seed(seed)
    xf, yf = x.float(), y.float()
    null = [(yf[torch.randperm(len(x), generator=g)].T @ xf).pow(2).sum().item() / norm for _ in range(permutations)]
    return dict(cka=observed, null=level, calibrated=(observed - level) / max(1 - level, 1e-12),
                p=(1 + sum(v >= observed for v in null)) / (1 + permutations))


# The dictionary-free measures at one layer, through the same nulls, ceiling and decisions as the SAEs': each
# direction a->b is how much of a's layer a linear map from b's predicts on held-out images (ridge R²), recorded as a
# ``DirectionMeasurement`` of the "linear" arm so that ``verdict.prediction2_arm`` judges it by the same rule.

LINEAR_ARM = "linear"


class LinearLayers:
    """Every network's layer on the test images, for the dictionary-free measures: ``reps`` {(side, model seed): (N,
    D)} (a side as in ``COMPARISONS``, the mapped one included), ``random`` {family: (N, D)} of the randomly
    initialized networks, one split (``split_halves``) and bootstrap ``weights``, and the ridge maps made once per
    predictor (``ridge``)."""

    def __init__(self, reps, random, resampling, replicates=200):
        self.reps, self.random, self.resampling = reps, random, resampling
        n = len(resampling.labels)
        self.select, self.evaluate = split_halves(n, resampling.seed)
        self.weights = stats.bootstrap_weights(len(self.evaluate), replicates, resampling.seed)
        self.maps = {}

    def predictor(self, key, x):
        """The ridge map from ``x``, made once per ``key``."""
        if key not in self.maps:
            self.maps[key] = RidgeMap(x, self.select)
        return self.maps[key]

    def r2(self, target, key, x):
        """An ``Estimate`` of the held-out R² of ``target`` from ``x`` (the map cached under ``key``)."""
        value, replicates, _ = self.predictor(key, x).score(target, self.evaluate, self.weights)
        return value, replicates

    def shuffled(self, side, seed, groups, first_seed):
        """(key, rows) of ``side``'s layer at ``seed`` with its images shuffled within ``groups`` (models whose
        predicted classes group the images with their true class: ``Resampling.groups``), or across all (None)."""
        order = shuffle_order(len(self.resampling.labels), first_seed,
                              None if groups is None else self.resampling.groups(*groups))
        return (side, seed, groups, first_seed), self.reps[(side, seed)][order]


def _seed_estimate(per_unit, seed, p=math.nan):
    """An ``Estimate`` averaged over units from {model seed, or a ceiling's (seed, seed): (value, replicates)}: the
    bootstrap resamples model seeds, then images (``unit_replicates``, with one inner level)."""
    value = sum(v for v, _ in per_unit.values()) / len(per_unit)
    return Estimate(value, unit_replicates({(u, 0): r for u, (_, r) in per_unit.items()}, seed), p)


def bootstrap_p(observed, null):
    """One-sided p of an observation above a null from paired bootstrap replicates: (1 + replicates where it is not
    above) / (1 + B)."""
    return (1 + int((observed - null <= 0).sum())) / (1 + len(observed))


def linear_nulls(layers, a, b, seeds, random_b, seed):
    """a predicted from b's stand-ins at each model seed: {statistic: {seed: (R², replicates)}} for the random-init
    network of b's family (``random_b``, or none), b's images shuffled across all, and within the conditional groups
    of (class, a's and b's predicted classes)."""
    out = {"null-conditional-shuffle": {}, "null-full-shuffle": {}}
    if random_b is not None:
        out["null-random-init"] = {}
    for s in seeds:
        target = layers.reps[(a, s)]
        groups = ((family_of(a), s), (family_of(b), s))
        for name, within in (("null-conditional-shuffle", groups), ("null-full-shuffle", None)):
            out[name][s] = layers.r2(target, *layers.shuffled(b, s, within, 1000 + s))
        if random_b is not None:
            out["null-random-init"][s] = layers.r2(target, ("random", family_of(b)), random_b)
    return out


def linear_ceiling(layers, family, seeds):
    """The family's ceiling for the linear measure: each model seed's layer predicted from every higher seed's (as
    ``ceiling_pairs``), with its nulls (its own conditional shuffle, a full shuffle, the family's random-init network).
    {statistic: {(seed, other seed): (R², replicates)}} (pairs of seeds: ``stats.pair_average``), or None with one
    model seed."""
    if len(seeds) < 2:
        return None
    out = {"ceiling": {}, "ceiling-null": {}, "ceiling-null-full-shuffle": {}}
    if family in layers.random:
        out["ceiling-null-random-init"] = {}
    for s in seeds:
        target = layers.reps[(family, s)]
        for t in (t for t in seeds if t > s):
            out["ceiling"][(s, t)] = layers.r2(target, (family, t, "plain"), layers.reps[(family, t)])
            out["ceiling-null"][(s, t)] = layers.r2(target, *layers.shuffled(family, t, ((family, s), (family, t)),
                                                                             2000 + s))
            out["ceiling-null-full-shuffle"][(s, t)] = layers.r2(target, *layers.shuffled(family, t, None, 3000 + s))
            if family in layers.random:
                out["ceiling-null-random-init"][(s, t)] = layers.r2(target, ("random", family),
                                                                    layers.random[family])
    return out


def linear_direction(layers, comparison, a, b, seeds, ceilings):
    """One direction a->b of the linear measure: a predicted from b at every shared model seed, beside its nulls and
    a's family's ceiling (``ceilings``: {family: ``linear_ceiling``}), as a ``DirectionMeasurement``."""
    seed = layers.resampling.seed
    observed = {s: layers.r2(layers.reps[(a, s)], (b, s, "plain"), layers.reps[(b, s)]) for s in seeds}
    estimates = {"observed": _seed_estimate(observed, seed)}
    values = {"observed": observed}
    random_b = layers.random.get(family_of(b))
    for name, per_seed in linear_nulls(layers, a, b, seeds, random_b, seed).items():
        null = _seed_estimate(per_seed, seed)
        estimates[name] = replace(null, p=bootstrap_p(estimates["observed"].replicates, null.replicates))
        values[name] = per_seed
    ceiling = ceilings.get(family_of(a))
    if ceiling is not None:
        estimates.update({k: _seed_estimate(v, seed) for k, v in ceiling.items()})
        values.update(ceiling)
    kind = "model seed" if ceiling is not None else "none"
    return DirectionMeasurement(comparison, LINEAR_ARM, f"{a}->{b}", [], direction_statistics(
        estimates, math.nan, kind), {k: e.replicates for k, e in estimates.items()},
        dict.fromkeys([k for k in estimates if k not in ("observed", "ceiling")]), kind,
        per_seed={k: {unit: float(v) for unit, (v, _) in per.items()} for k, per in values.items()})


def seed_table(measured):
    """The per-model-seed values of measurements that keep them (``DirectionMeasurement.per_seed``, the linear
    measure's) as one long table: one row per comparison, arm, direction, statistic and model seed (a ceiling's pair
    of seeds as ``model_seed`` and ``other_seed``)."""
    import pandas as pd
    rows = [dict(comparison=m.comparison, arm=m.arm, direction=m.direction, statistic=name,
                 model_seed=unit[0] if isinstance(unit, tuple) else unit,
                 other_seed=unit[1] if isinstance(unit, tuple) else None, value=value)
            for m in measured for name, per in m.per_seed.items() for unit, value in per.items()]
    return pd.DataFrame(rows, columns=["comparison", "arm", "direction", "statistic", "model_seed", "other_seed",
                                       "value"])


def linear_measures(reps, random, resampling, replicates=200, comparisons=COMPARISONS, permutations=49):
    """The dictionary-free measures of every comparison whose sides have layers in ``reps`` ({(side, model seed):
    (N, D)}; ``random``: {family: the random-init network's layer}): ridge predictivity in both directions as
    ``DirectionMeasurement`` records of the "linear" arm (``linear_direction``), and linear CKA per model seed beside
    its permutation null (``calibrated_cka``), against the random-init network and the family's other seed. Returns
    (measurements, CKA rows)."""
    layers = LinearLayers(reps, random, resampling, replicates)
    seeds_of = {}
    for side, s in reps:
        seeds_of.setdefault(side, []).append(s)
    ceilings = {f: linear_ceiling(layers, f, sorted(seeds_of[f])) for f in seeds_of if not f.endswith("-mapped")}
    measured, cka_rows = [], []
    for name, *sides in comparisons:
        if not all(side in seeds_of for side in sides):
            continue
        shared = sorted(set(seeds_of[sides[0]]) & set(seeds_of[sides[1]]))
        measured += [linear_direction(layers, name, a, b, shared, ceilings) for a, b in (sides, sides[::-1])]
        for s in shared:
            x, y = reps[(sides[0], s)], reps[(sides[1], s)]
            row = dict(comparison=name, model_seed=s, **calibrated_cka(x, y, permutations, resampling.seed))
            b = family_of(sides[1])
            if b in random and not sides[1].endswith("-mapped"):
                row["random_init"] = calibrated_cka(x, random[b], 0)["calibrated"]
            cka_rows.append(row)
    return measured, cka_rows



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

