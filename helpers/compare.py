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


def choose_partners(a_select, b_rows=None, b_wide=None):
    """Each feature of ``a`` that varies on the select images, and the feature of ``b`` that correlates best with it
    there, from ``a``'s select-half z-scores (``standardize(a[select])``) and ``b``'s select rows (or their
    ``standardize_wide``, ``b_wide``, when it is at hand). Returns (a indices, b indices)."""
    za, keep_a = a_select
    zb, kept_b = standardize_wide(b_rows) if b_wide is None else b_wide
    if len(keep_a) == 0 or not kept_b.any():
        return keep_a, keep_a[:0]
    scores = za.T @ zb
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

    def correlations(self, y, replicates=False):
        """Pearson correlation of each column of the prepared side with the same column of ``y``: (k,); with
        ``replicates``, one row per bootstrap weighting, (B, k)."""
        y = _centred_scaled(y)
        if not replicates:
            my, vy = _moments(y)
            return _pearson((self.x * y).mean(0) - self.mean * my, self.var, vy)
        w, total = self.weights, self.total
        my, vy = _moments(y, w, total)
        return _pearson(w @ (self.x * y) / total - self.w_mean * my, self.w_var, vy)


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


def heldout_match(a, b, select, evaluate, weights=None, b_order=None, a_select=None):
    """Held-out best-match correlation of ``a``'s features in ``b`` (see above): (mean, per feature, replicates).

    With bootstrap ``weights`` (B, len(evaluate)) ``replicates`` holds the mean per replicate, shape (B,); without,
    it is None. Partners are chosen once for both. ``b_order``: a permutation of ``b``'s images (a shuffle null,
    ``shuffle_order``), applied by indexing rather than by a shuffled copy; ``a_select``: ``standardize(a[select])``
    when it is already at hand (many b's matched against one a)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    b_select, b_evaluate = (select, evaluate) if b_order is None else (b_order[select], b_order[evaluate])
    ia, ib = choose_partners(standardize(a[select]) if a_select is None else a_select, b[b_select])
    if len(ib) == 0:
        return torch.tensor(0.0), torch.zeros(0), None if weights is None else torch.zeros(len(weights))
    x, y = a[evaluate][:, ia], b[b_evaluate][:, ib]  # rows first: a column gather is the slow one
    prepared = PairedColumns(x, weights)
    per_feature = prepared.correlations(y)
    replicates = None if weights is None else prepared.correlations(y, replicates=True).mean(1)
    return per_feature.mean(), per_feature, replicates


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
SIDE_NAMES = {"cnn": "VGG", "mlp": "MLP", "resnet": "ResNet", "cnn-mapped": "mapped VGG"}

LABELS = {"observed": "observed, same sparsity (mean over model and SAE seeds)",
          "null-conditional-shuffle": "null: images shuffled within (class, both models' predictions)",
          "null-full-shuffle": "null: image order shuffled",
          "null-random-init": "null: SAE of a randomly initialized network of the matched side's family",
          "ceiling": "ceiling: the same family, another training seed (one model: another SAE seed)",
          "ceiling-null": "the ceiling's null: images shuffled within (class, both models' predictions)"}
REPRODUCIBLE = 0.5  # a feature is reproducible when its held-out r with its partner in the other SAE seed exceeds it


def family_of(side):
    return side.removesuffix("-mapped")


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


def prediction2_arm(features, specs, alive_share, gates_ok, arm, predictions, labels, seed=0, shuffles=3,
                    permutations=999, replicates=200, comparisons=COMPARISONS):
    """All held-out statistics of one SAE arm: every comparison whose two sides have SAEs, both directions, each
    direction's verdict (``helpers.verdict``: null validity, the strongest null, the position, Holm, the verdict),
    and the per-feature values.

    features: {SAE id: (N, F) feature activations on the test images}; specs: the ``units.SAESpec`` of every id;
    alive_share, gates_ok: {SAE id: share of alive features / bool}; predictions: {(family, model seed): predicted
    class per test image}; labels: the test labels. Shuffle nulls: their level averages ``shuffles`` shuffles (each
    feature's partner chosen again); their p-value is ``exact_permutation_p`` over ``permutations``, the largest over
    the comparison's (model seed, SAE seed) pairs. Intervals resample images, model seeds and SAE seeds.
    Returns (statistics rows, direction rows, per-feature rows).
    """
    from helpers import verdict as V
    from helpers.units import SAESpec
    n = len(labels)
    select, evaluate = split_halves(n, seed)
    weights = stats.bootstrap_weights(len(evaluate), replicates, seed)
    halves, z_select, wide_select, prepared = {}, {}, {}, {}

    def half(i):
        if i not in halves:  # each SAE's two halves of the images, gathered once
            halves[i] = features[i][select], features[i][evaluate]
        return halves[i]

    def held(a_id, b_id, b_order=None, with_replicates=True):
        """(value, replicates, per-feature r, partners of a's alive features) of a's features matched in b."""
        if a_id not in z_select:  # what matching a against any b needs of a, made once
            z_select[a_id] = standardize(half(a_id)[0])
            prepared[a_id] = PairedColumns(half(a_id)[1][:, z_select[a_id][1]], weights)
        if b_order is None:
            b_select, b_evaluate = half(b_id)
            if b_id not in wide_select:
                wide_select[b_id] = standardize_wide(b_select)
            ia, ib = choose_partners(z_select[a_id], b_wide=wide_select[b_id])
        else:
            b_select, b_evaluate = features[b_id][b_order[select]], features[b_id][b_order[evaluate]]
            ia, ib = choose_partners(z_select[a_id], b_select)
        if len(ib) == 0:
            return 0.0, torch.zeros(replicates), torch.zeros(0), (ia[:0], ib[:0])
        y = b_evaluate[:, ib]
        per_feature = prepared[a_id].correlations(y)
        reps = prepared[a_id].correlations(y, replicates=True).mean(1) if with_replicates else None
        return per_feature.mean().item(), reps, per_feature, (ia, ib)

    permutation_cache = {}

    def permutations_of(groups):
        """The exact tests' permutations of the evaluate images within ``groups`` (shared by every test that
        has the same groups)."""
        key = hash(groups.numpy().tobytes())
        if key not in permutation_cache:
            permutation_cache[key] = stats.within_group_permutations(groups, permutations, seed)
        return permutation_cache[key]

    def groups_of(*keys):
        return prediction_groups(labels, *(predictions[k] for k in keys))

    def mean_of(results):
        values = {u: r[0] for u, r in results.items()}
        reps = {u: r[1] for u, r in results.items()}
        return (sum(values.values()) / len(values),
                stats.nested_average(reps, replicates, seed) if all(r is not None for r in reps.values()) else None)

    ceilings = {}

    def ceiling_of(side):
        """The ceiling of a side's family: its model-seed agreement (another training seed), or with one model its
        SAE-seed agreement; with the ceiling's own conditional-shuffle null and each feature's reproducibility."""
        fam = family_of(side)
        if fam in ceilings:
            return ceilings[fam]
        units = side_units(specs, fam, arm)
        seeds = sorted({s for s, _ in units})
        sae_seeds = sorted({t for _, t in units})
        if len(seeds) > 1:
            pairs = {((i, j), t): (units[(i, t)], units[(j, t)]) for i in seeds for j in seeds if i != j
                     for t in sae_seeds}
            kind, keys = "model seed", {((i, j), t): ((fam, i), (fam, j)) for (i, j), t in pairs}
        elif len(sae_seeds) > 1:
            pairs = {((t, u), 0): (units[(seeds[0], t)], units[(seeds[0], u)]) for t in sae_seeds
                     for u in sae_seeds if u != t}  # the outer level: an ordered pair of SAE seeds
            kind, keys = "SAE seed", {k: ((fam, seeds[0]),) for k in pairs}
        else:
            ceilings[fam] = None
            return None
        results = {k: held(*ids) for k, ids in pairs.items()}
        value, reps = mean_of(results)
        # the level averages every shuffle; its interval is the first shuffle's (the spread between shuffles is
        # small beside the images' bootstrap)
        shuffled = [{k: held(*ids, b_order=shuffle_order(n, seed=2000 + r, labels=groups_of(*keys[k])),
                             with_replicates=r == 0) for k, ids in pairs.items()} for r in range(shuffles)]
        null = [mean_of(sh) for sh in shuffled]
        reproducibility = {}
        for (s, t), a_id in units.items():
            other = [u for u in sae_seeds if u != t]
            if other:
                r = held(a_id, units[(s, other[0])])
                per = torch.zeros(features[a_id].shape[1])
                per[r[3][0]] = r[2]
                reproducibility[(s, t)] = per
        ceilings[fam] = dict(kind=kind, value=value, reps=reps, null=sum(v for v, _ in null) / len(null),
                             null_reps=null[0][1],
                             per_feature=torch.cat([r[2] for r in results.values()]),
                             reproducibility=reproducibility)
        return ceilings[fam]

    rows, directions, per_feature = [], [], []
    for name, side_a, side_b in comparisons:
        units_a, units_b = side_units(specs, side_a, arm), side_units(specs, side_b, arm)
        shared = sorted(set(units_a) & set(units_b))
        if not shared:
            continue
        found = {}
        for a, b, ua, ub in ((side_a, side_b, units_a, units_b), (side_b, side_a, units_b, units_a)):
            direction = f"{a}->{b}"
            key = {u: ((family_of(a), u[0]), (family_of(b), u[0])) for u in shared}
            obs = {u: held(ua[u], ub[u]) for u in shared}
            found[direction] = obs
            obs_value, obs_reps = mean_of(obs)
            first = shared[0]
            in_sample = similarity(features[ua[first]], features[ub[first]], matching=False)[0]["mean_best_a_to_b"]
            low, high = stats.interval(obs_reps)
            rows.append(dict(comparison=name, arm=arm, direction=direction, statistic="observed", value=obs_value,
                             low=low, high=high, in_sample_best=in_sample, valid=True))
            nulls = {}
            by_group = {"null-conditional-shuffle": True, "null-full-shuffle": False}
            full = torch.zeros(len(evaluate), dtype=torch.long)
            p = {u: exact_permutation_p(
                half(ua[u])[1][:, obs[u][3][0]], half(ub[u])[1][:, obs[u][3][1]],
                [permutations_of(groups_of(*key[u])[evaluate]), permutations_of(full)]) for u in shared}
            for i, (null, grouped) in enumerate(by_group.items()):
                shuffled = [{u: held(ua[u], ub[u], b_order=shuffle_order(
                    n, seed=1000 + r, labels=groups_of(*key[u]) if grouped else None), with_replicates=r == 0)
                    for u in shared} for r in range(shuffles)]
                levels = [mean_of(sh) for sh in shuffled]
                # the largest p over the (model seed, SAE seed) pairs: each pair must beat its null
                nulls[null] = dict(value=sum(v for v, _ in levels) / len(levels), reps=levels[0][1],
                                   p=max(p[u][i] for u in shared), valid=True, per_feature=shuffled[0][first][2])
            random_id = SAESpec(family_of(b), "random-init", 0, arm).id
            if random_id in features:
                rand = {u: held(ua[u], random_id) for u in shared}
                value, reps = mean_of(rand)
                nulls["null-random-init"] = dict(
                    value=value, reps=reps, valid=V.null_valid(alive_share[random_id]),
                    p=stats.sign_flip_p(torch.cat([obs[u][2] - rand[u][2] for u in shared]), seed=seed),
                    per_feature=rand[first][2])
            for null, nl in nulls.items():
                (low, high), (diff_low, diff_high) = stats.interval(nl["reps"]), stats.interval(obs_reps - nl["reps"])
                rows.append(dict(comparison=name, arm=arm, direction=direction, statistic=null, value=nl["value"],
                                 low=low, high=high, p=nl["p"], diff=obs_value - nl["value"], diff_low=diff_low,
                                 diff_high=diff_high, valid=bool(nl["valid"])))
            ceiling = ceiling_of(a)
            entry = dict(comparison=name, arm=arm, direction=direction, observed=obs_value,
                         gates_ok=V.all_passed(gates_ok, [ua[u] for u in shared] + [ub[u] for u in shared]),
                         strongest_null=V.strongest_null({k: v["value"] for k, v in nulls.items()},
                                                         {k: v["valid"] for k, v in nulls.items()}),
                         ceiling_kind=ceiling["kind"] if ceiling else "none")
            if ceiling:
                for statistic, value, reps in (("ceiling", ceiling["value"], ceiling["reps"]),
                                               ("ceiling-null", ceiling["null"], ceiling["null_reps"])):
                    low, high = stats.interval(reps)
                    rows.append(dict(comparison=name, arm=arm, direction=direction, statistic=statistic,
                                     value=value, low=low, high=high, valid=True, ceiling_kind=ceiling["kind"]))
            if entry["strongest_null"] and ceiling:
                strongest = nulls[entry["strongest_null"]]
                position_reps = V.position(obs_reps - strongest["reps"], 0.0, ceiling["reps"] - ceiling["null_reps"])
                low, high = stats.interval(position_reps)
                entry.update(null_value=strongest["value"], ceiling=ceiling["value"], ceiling_null=ceiling["null"],
                             span=ceiling["value"] - ceiling["null"], position_low=low, position_high=high,
                             position=V.position(obs_value - strongest["value"], 0.0,
                                                 ceiling["value"] - ceiling["null"]))
                # the position against each null in turn (the front page's "relative to what")
                entry.update({f"position_vs_{k.removeprefix('null-')}": V.position(obs_value - v["value"], 0.0,
                                                                                  entry["span"])
                              for k, v in nulls.items()})
            else:
                entry.update({k: math.nan for k in ("null_value", "ceiling", "ceiling_null", "span", "position",
                                                    "position_low", "position_high")})
            for statistic, values in [(k, v["per_feature"]) for k, v in nulls.items()] + (
                    [("ceiling", ceiling["per_feature"])] if ceiling else []):
                per_feature += [dict(comparison=name, arm=arm, direction=direction, statistic=statistic,
                                     heldout_r=values)]
            directions.append(entry)
        # per feature: its partner, held-out r, firing frequency, reproducibility, and whether the match is mutual
        # linear CKA of the two codes: high when the dictionaries span one subspace, whatever their bases
        cka_codes = linear_cka(features[units_a[shared[0]]], features[units_b[shared[0]]], dtype=torch.float32)
        for a, b, ua, ub in ((side_a, side_b, units_a, units_b), (side_b, side_a, units_b, units_a)):
            direction, back = f"{a}->{b}", f"{b}->{a}"
            ceiling = ceiling_of(a)
            entry = next(d for d in directions if d["comparison"] == name and d["direction"] == direction)
            reproducible, matched, mutual, total = 0, 0, 0, 0
            for u in shared:
                r, (ia, ib) = found[direction][u][2], found[direction][u][3]
                partner_back = torch.full((features[ub[u]].shape[1],), -1, dtype=torch.long)
                ja, jb = found[back][u][3]
                partner_back[ja] = jb
                is_mutual = partner_back[ib] == ia
                frequency = (features[ua[u]][:, ia] > 0).float().mean(0)
                repro = (ceiling["reproducibility"].get(u) if ceiling and family_of(a) == a else None)
                repro = repro[ia] if repro is not None else torch.full((len(ia),), math.nan)
                keep = repro > REPRODUCIBLE
                reproducible += int(keep.sum())
                matched += int((keep & (r > 0.5)).sum())
                mutual += int(is_mutual.sum())
                total += len(ia)
                per_feature.append(dict(comparison=name, arm=arm, direction=direction, statistic="observed",
                                        model_seed=u[0], sae_seed=u[1], feature=ia, partner=ib, heldout_r=r,
                                        frequency=frequency, reproducibility=repro, mutual=is_mutual))
            all_r = torch.cat([found[direction][u][2] for u in shared])
            entry.update(median=all_r.median().item() if len(all_r) else math.nan,
                         reproducible_share=reproducible / total if total else math.nan,
                         reproducible_matched_share=matched / reproducible if reproducible else math.nan,
                         mutual_share=mutual / total if total else math.nan,
                         code_cka=cka_codes)

    for name, *_ in comparisons:
        V.adjust_prediction2([r for r in rows if r["comparison"] == name])
    for entry in directions:
        nulls = [dict(valid=r["valid"], p_holm=r.get("p_holm", 1.0), diff_low=r["diff_low"]) for r in rows
                 if r["comparison"] == entry["comparison"] and r["direction"] == entry["direction"]
                 and r["statistic"] in V.NULLS]
        entry["verdict"], entry["reason"] = V.prediction2_direction(
            entry["gates_ok"], nulls, dict(value=entry["position"], low=entry["position_low"],
                                           high=entry["position_high"]), entry["span"])
    return rows, directions, per_feature


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

