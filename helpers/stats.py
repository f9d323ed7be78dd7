"""The study's statistics, in one place: effect sizes, bootstrap intervals, permutation and sign-flip p-values,
and Holm's adjustment. Measurement code calls these; ``helpers.verdict`` decides from what they return."""
import math

import numpy as np
import torch


def bootstrap_weights(n, replicates=200, seed=0):
    """Poisson(1) weights (the bootstrap of ``n`` images, in a form that every statistic can share): (B, n)."""
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.ones(replicates, n), generator=g)


# Poisson(1)'s distribution function at 0, 1, ..., 19 (the chance of 20 or more is below 1e-18)
_POISSON_ONE_CDF = torch.tensor([math.exp(-1) * sum(1 / math.factorial(j) for j in range(k + 1)) for k in range(20)],
                                dtype=torch.float64)


def poisson_one(shape, generator):
    """Poisson(1) draws (float64) by inverting the distribution function at uniform draws: the same law as
    ``torch.poisson(torch.ones(shape))``, at about half its cost (the AM bootstrap's hot loop)."""
    return torch.searchsorted(_POISSON_ONE_CDF, torch.rand(shape, generator=generator, dtype=torch.float64),
                              right=True).double()


def interval(replicates, level=0.95):
    """Percentile confidence interval of bootstrap replicates: (low, high)."""
    r = torch.as_tensor(replicates, dtype=torch.float64).flatten()
    if len(r) == 0:
        raise ValueError("interval() needs at least one bootstrap replicate; got none")
    if torch.isnan(r).any():  # as torch.quantile: NaN in, NaN out
        return math.nan, math.nan
    # torch.quantile's linear interpolation, from one sort (cheaper on the power simulations' 200 replicates)
    r = r.sort().values
    out = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        position = q * (len(r) - 1)
        below = int(math.floor(position))
        above = min(below + 1, len(r) - 1)
        out.append((r[below] + (r[above] - r[below]) * (position - below)).item())
    return tuple(out)


def permutation_p(observed, null_values):
    """One-sided empirical p-value of ``observed`` exceeding a null from its R permutation values:
    (permutations at or above it + 1) / (R + 1), never below 1 / (R + 1)."""
    v = torch.as_tensor(null_values, dtype=torch.float64)
    return (int((v >= observed).sum()) + 1) / (len(v) + 1)


def within_group_permutations(groups, permutations, seed=0):
    """``permutations`` random permutations of n items that move each item only within its group: (R, n), row r
    giving the item that takes item i's place. One group (all ids equal) gives unrestricted permutations."""
    groups = torch.as_tensor(groups).long()
    g = torch.Generator().manual_seed(seed)
    base = torch.argsort(groups, stable=True)             # the items ordered by group
    keys = groups[None, :].double() + torch.rand(permutations, len(groups), generator=g, dtype=torch.float64)
    shuffled = torch.argsort(keys, dim=1)                 # ordered by group, randomly within each
    perms = torch.empty_like(shuffled)
    perms[:, base] = shuffled
    return perms


def sign_flip_p(differences, repeats=10000, seed=0):
    """One-sided paired permutation p-value that the mean of ``differences`` (observed minus null, per feature)
    exceeds 0: the signs are flipped at random."""
    d = torch.as_tensor(differences, dtype=torch.float64)
    if len(d) == 0:
        return 1.0
    g = torch.Generator().manual_seed(seed)
    kept = torch.randint(0, 2, (repeats, len(d)), generator=g, dtype=torch.float64)  # 1: the sign kept, 0: flipped
    flipped = (2 * (kept @ d) - d.sum()) / len(d)  # the mean of (2 kept - 1) d, as one product
    return (int((flipped >= d.mean()).sum()) + 1) / (repeats + 1)


def _unit_grid(per_unit, caller):
    """{(outer, inner): (B,) replicates} as its sorted outer keys and one (outer, inner, B) tensor; every (outer,
    inner) pair must be there."""
    outer = sorted({u[0] for u in per_unit}, key=str)
    inner = sorted({u[1] for u in per_unit}, key=str)
    missing = [(o, i) for o in outer for i in inner if (o, i) not in per_unit]
    if missing:
        raise ValueError(f"{caller} needs every (outer, inner) unit, e.g. (model seed, SAE seed); missing {missing}")
    return outer, torch.stack([torch.stack([torch.as_tensor(per_unit[(o, i)]) for i in inner]) for o in outer])


def nested_average(per_unit, replicates, seed):
    """Replicates of the mean over (model seed, SAE seed) units, resampling both levels (model seeds, then the SAE
    seeds within each) on top of the images' bootstrap: ``per_unit`` {(model seed, SAE seed): (B,) replicates}, with
    the same SAE seeds under every model seed."""
    _, stacked = _unit_grid(per_unit, "nested_average")
    n_outer, n_inner, b = stacked.shape
    g = torch.Generator().manual_seed(seed)
    pick_outer = torch.randint(n_outer, (b, n_outer), generator=g)
    pick_inner = torch.randint(n_inner, (b, n_outer, n_inner), generator=g)
    rep = torch.arange(b)[:, None, None]
    return stacked[pick_outer[:, :, None], pick_inner, rep].mean((1, 2))


def pair_average(per_pair, replicates, seed):
    """Replicates of the mean over ordered pairs of distinct seeds (a ceiling: every seed matched in every other),
    ``per_pair`` {((i, j), inner): (B,) replicates}: the seeds are resampled (a pair weighs how often each of its two
    seeds was drawn, so that pairs sharing a seed are not counted as independent), the inner units within each pair,
    and the images. The seeds are drawn as ``nested_average`` draws its outer units with the same ``seed``, so a
    ceiling's replicates go with the observation's. A draw of one seed only (no pair) weighs every pair alike."""
    pairs, stacked = _unit_grid(per_pair, "pair_average")
    seeds = sorted({s for p in pairs for s in p}, key=str)
    n_pairs, n_inner, b = stacked.shape
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(seeds), (b, len(seeds)), generator=g)
    counts = torch.zeros(b, len(seeds), dtype=stacked.dtype).scatter_add_(
        1, picks, torch.ones(b, len(seeds), dtype=stacked.dtype))  # (B, seeds): how often each seed was drawn
    pick_inner = torch.randint(n_inner, (b, n_pairs, n_inner), generator=g)
    values = stacked.permute(2, 0, 1).gather(2, pick_inner).mean(2)  # (B, pairs)
    index = {s: k for k, s in enumerate(seeds)}
    first = torch.tensor([index[p[0]] for p in pairs])
    second = torch.tensor([index[p[1]] for p in pairs])
    weights = counts[:, first] * counts[:, second]
    weights[weights.sum(1) == 0] = 1.0
    return (weights * values).sum(1) / weights.sum(1)


def cliffs_delta(a, b):
    """Cliff's δ = P(a > b) - P(a < b) over all pairs: from -1 (every a below every b) to 1 (every a above)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    diff = a[:, None] - b[None, :]
    return ((diff > 0).double().mean() - (diff < 0).double().mean()).item()


def effect_over_null(trained, null, replicates=1000, seed=0):
    """Cliff's δ of ``trained`` scores over ``null`` scores with a bootstrap 95% interval (both groups resampled)
    and the one-sided Mann-Whitney p-value of trained > null. Returns (dict(delta, low, high, p), replicate δs)."""
    from scipy.stats import mannwhitneyu
    a, b = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (trained, null))
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(len(a), (replicates, len(a)), generator=g)
    ib = torch.randint(len(b), (replicates, len(b)), generator=g)
    diff = a[ia][:, :, None] - b[ib][:, None, :]
    reps = (diff > 0).double().mean((1, 2)) - (diff < 0).double().mean((1, 2))
    low, high = torch.quantile(reps, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    p = float(mannwhitneyu(a.numpy(), b.numpy(), alternative="greater").pvalue)
    return dict(delta=cliffs_delta(a, b), low=low, high=high, p=p), reps


def clustered_effect(trained, null, replicates=1000, seed=0, paired_seeds=True):
    """Cliff's δ of ``trained`` scores over ``null`` scores with a hierarchical bootstrap: model seeds, then the AM
    seeds within each, then the images within each (model seed, AM seed) cell. Both sides are (values, model seeds, AM
    seeds) arrays; the draws of seeds are shared by the two sides (a trained network and its random-init null come
    from one model seed, their images from one AM seed), the images are drawn per side (Poisson weights).
    ``paired_seeds=False``: each side draws its own model seeds (two families' networks of one seed number are
    unrelated; the AM seeds stay shared: one AM seed gives both the same start images). The p-value
    is the bootstrap's: (replicates at or below 0 + 1) / (replicates + 1), which, unlike a Mann-Whitney test, does not
    count the images of one network as independent. Returns (dict(delta, low, high, p), replicate δs)."""
    (a, a_model, a_am), (b, b_model, b_am) = ((np.array(x) for x in side) for side in (trained, null))
    models = sorted(set(a_model.tolist()) | set(b_model.tolist()))
    ams = sorted(set(a_am.tolist()) | set(b_am.tolist()))
    g = torch.Generator().manual_seed(seed)

    def draw_cells():  # how often each (model seed, AM seed) cell was drawn, per replicate
        pick_model = torch.randint(len(models), (replicates, len(models)), generator=g)
        pick_am = torch.randint(len(ams), (replicates, len(models), len(ams)), generator=g)
        cells = torch.zeros(replicates, len(models), len(ams), dtype=torch.float64)
        for slot in range(len(models)):  # each drawn model seed brings its own draw of AM seeds
            counts = torch.zeros(replicates, len(ams), dtype=torch.float64).scatter_add_(
                1, pick_am[:, slot], torch.ones(replicates, len(ams), dtype=torch.float64))
            cells[torch.arange(replicates), pick_model[:, slot]] += counts
        return cells

    def weights(cells, model, am):
        cell = cells[:, [models.index(m) for m in model.tolist()], [ams.index(x) for x in am.tolist()]]
        return cell * poisson_one((replicates, len(model)), g)
    cells_a = draw_cells()
    cells_b = cells_a if paired_seeds else draw_cells()
    wa, wb = weights(cells_a, a_model, a_am), weights(cells_b, b_model, b_am)
    sign = torch.sign(torch.as_tensor(a, dtype=torch.float64)[:, None] - torch.as_tensor(b, dtype=torch.float64)[None])
    total = wa.sum(1) * wb.sum(1)
    # a replicate that drew no image on one side has no δ: NaN, kept in place so that two families' replicates
    # stay aligned (``effect_ratio`` divides them one by one)
    reps = torch.where(total > 0, ((wa @ sign) * wb).sum(1) / total.clamp_min(1e-12), torch.nan)
    low, high = torch.nanquantile(reps, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    drawn = reps[~reps.isnan()]
    p = (int((drawn <= 0).sum()) + 1) / (len(drawn) + 1)
    return dict(delta=cliffs_delta(a, b), low=low, high=high, p=p), reps


def effect_ratio(mlp_reps, cnn_reps, mlp_delta, cnn_delta):
    """The MLP's effect as a share of the CNN's (Prediction 1's position), with the interval of the ratio of their
    bootstrap replicates.

    Undefined (NaN) unless the CNN's effect is above 0 across its 95% interval: a share of an effect that may be 0
    has no bounded interval (the ratio's replicates run to ±1e6). The verdict never reads it then, since the CNN
    shows no pattern (``verdict.cnn_pattern``)."""
    cnn_reps = torch.as_tensor(cnn_reps)
    if cnn_delta <= 0 or torch.nanquantile(cnn_reps.double(), 0.025) <= 0:
        return dict(value=float("nan"), low=float("nan"), high=float("nan"))
    ratio = torch.as_tensor(mlp_reps) / cnn_reps.clamp_min(1e-6)  # NaN where either drew no image
    low, high = torch.nanquantile(ratio, torch.tensor([0.025, 0.975], dtype=ratio.dtype)).tolist()
    return dict(value=mlp_delta / max(cnn_delta, 1e-6), low=low, high=high)


def holm(p_values):
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
