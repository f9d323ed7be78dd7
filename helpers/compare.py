"""Prediction 2: how similar are two sets of features measured on the same images?

Every statistic takes two activation matrices over the same N images (rows) and compares their columns:
best Pearson correlation per feature in both directions, a one-to-one (Hungarian) matching, and linear CKA.
Null baselines permute the rows of one side (across all images, or only within each class).
"""
import numpy as np
import torch


def standardize(acts):
    """Columns with zero mean and unit variance; constant columns (dead features) are dropped.

    Returns (standardized float64 tensor, indices of the kept columns)."""
    a = torch.as_tensor(acts).double()
    a = a - a.mean(0)
    std = a.pow(2).mean(0).sqrt()
    keep = torch.nonzero(std > 1e-10).flatten()
    return a[:, keep] / std[keep], keep


def correlation_matrix(a, b):
    """Pearson correlations between every column of ``a`` and every column of ``b`` (rows are images).

    Returns (matrix (kept a, kept b), kept a indices, kept b indices)."""
    za, keep_a = standardize(a)
    zb, keep_b = standardize(b)
    return (za.T @ zb / len(za)).float(), keep_a, keep_b


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


def shuffle_rows(acts, seed=0, labels=None):
    """Permute the images of one side: across all images, or (with ``labels``) only within each class, which keeps
    class identity aligned while breaking everything finer."""
    g = torch.Generator().manual_seed(seed)
    n = len(acts)
    if labels is None:
        return acts[torch.randperm(n, generator=g)]
    labels = torch.as_tensor(labels)
    order = torch.arange(n)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        order[idx] = idx[torch.randperm(len(idx), generator=g)]
    return acts[order]


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
