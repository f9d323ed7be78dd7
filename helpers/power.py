"""The power of Prediction 2's rule, shown by simulation before it judges: simulated studies, each a synthetic set of
measurements at the study's seeds and noise, go through the real decisions (``verdict.prediction2_arm`` and
``verdict.prediction2``), and we count how often a planted answer comes back.

A simulated study plants a position (0: at the null; ``min_position`` + 0.25: clearly similar) for the question
(VGG <-> MLP, both directions); the sanity control and the reference pair are planted similar. Each model seed draws
its own null, ceiling and ceiling-null levels (between-seed spread), each SAE seed its own offset, and each statistic
carries the images' bootstrap spread. A seed's SAEs fail a gate at the exploratory rate; a failed seed is dropped, as
in the study. The intervals come from the same nested bootstrap (``stats.nested_average``) and the null's p-values
from the bootstrap (``compare.bootstrap_p``), which is no smaller than the study's exact permutation p-values.
"""
import math
from dataclasses import dataclass

import torch

from helpers import stats, verdict
from helpers.compare import DirectionMeasurement, bootstrap_p


@dataclass(frozen=True)
class Noise:
    """The spread a simulated study draws, in units of the statistic (mean held-out r of the entering features).
    Provisional: the exploratory runs set them (the upper end of their estimates) and the confirmatory run freezes
    them."""
    null: float = 0.10          # the question's null level
    ceiling: float = 0.45       # the ceiling (two training seeds of one family)
    ceiling_null: float = 0.10  # the ceiling's own null
    between_seeds: float = 0.03  # SD of a statistic between model seeds
    between_sae_seeds: float = 0.01  # SD between SAE seeds of one model
    images: float = 0.01        # SD of a statistic's bootstrap over images, per (model seed, SAE seed)
    gate_failure: float = 0.05  # chance that a model seed's SAEs fail a gate (the seed is then dropped)


NOISE = Noise()
PLANTED = dict(similar=verdict.PREDICTION2["min_position"] + 0.25, null=0.0)
# what the rule must do, each in this share of the simulated studies at the seeds the study uses
REQUIRED = dict(similar_supported=0.80, null_not_supported=0.80, null_supported_at_most=0.05, coverage=0.90)


def _statistics(levels, noise, seeds, sae_seeds, replicates, g):
    """{statistic: (value, (B,) replicates)} from per-model-seed ``levels`` ({statistic: (S,)}): each (model seed,
    SAE seed) unit adds its SAE-seed offset and its images' bootstrap spread; the mean and its replicates resample
    model seeds, then SAE seeds, then images (``stats.nested_average``)."""
    out = {}
    for name, per_seed in levels.items():
        units = {}
        for i, s in enumerate(seeds):
            for t in range(sae_seeds):
                centre = per_seed[i] + noise.between_sae_seeds * torch.randn((), generator=g)
                units[(s, t)] = centre + noise.images * torch.randn(replicates, generator=g)
        value = sum(u.mean() for u in units.values()).item() / len(units)
        out[name] = (value, stats.nested_average(units, replicates, int(torch.randint(1 << 30, (), generator=g))))
    return out


def _levels(position, noise, n, g, ceiling_at=None):
    """Per-seed levels of one direction: nulls, ceiling and its nulls around the ``noise`` means with between-seed
    spread, and the observation at ``position`` of each seed's span above its null."""
    def draw(mean):
        return mean + noise.between_seeds * torch.randn(n, generator=g)
    ceiling = draw(noise.ceiling if ceiling_at is None else ceiling_at)
    levels = {"ceiling": ceiling}
    for name in verdict.CEILING_NULLS:
        levels[name] = draw(noise.ceiling_null)
    for name in verdict.NULLS:
        levels[name] = draw(noise.null)
    # the observation sits at ``position`` between the question's strongest null and the ceiling, each seed's own
    span = ceiling - levels["ceiling-null-random-init"]
    levels["observed"] = (levels["null-random-init"] + position * span
                          + noise.between_seeds * torch.randn(n, generator=g))
    return levels


def _direction(comparison, direction, levels, noise, seeds, sae_seeds, replicates, g):
    """A synthetic ``compare.DirectionMeasurement`` from per-seed ``levels``."""
    measured = _statistics(levels, noise, seeds, sae_seeds, replicates, g)
    observed = measured["observed"][1]
    statistics, reps = {}, {}
    for name, (value, r) in measured.items():
        low, high = stats.interval(r)
        statistics[name], reps[name] = dict(value=value, low=low, high=high), r
        if name in verdict.NULLS:
            diff_low, diff_high = stats.interval(observed - r)
            statistics[name].update(p=bootstrap_p(observed, r), diff=measured["observed"][0] - value,
                                    diff_low=diff_low, diff_high=diff_high)
    ids = [f"{comparison}-{direction}"]
    return DirectionMeasurement(comparison, "l1", direction, ids, statistics, reps,
                                dict.fromkeys([k for k in statistics if k not in ("observed", "ceiling")]),
                                "model seed")


def simulate_study(position, n_seeds, noise=NOISE, sae_seeds=2, replicates=200, layer="mid", seed=0):
    """One simulated study: the question planted at ``position``, the sanity control and the reference pair
    planted similar (1.0 and 0.9), ``n_seeds`` model seeds of which each fails a gate with ``noise.gate_failure``.
    Returns (the question's verdict in "shares features", its position from VGG, (low, high))."""
    g = torch.Generator().manual_seed(seed)
    kept = [s for s in range(n_seeds) if torch.rand((), generator=g).item() >= noise.gate_failure]
    if not verdict.enough_seeds(len(kept), n_seeds):
        return verdict.NOT_TESTABLE, math.nan, (math.nan, math.nan)
    planted = dict(question=position, sanity=1.0, reference=0.9)
    measured = []
    for comparison, where in planted.items():
        for direction in ("a->b", "b->a"):
            name = "cnn->mlp" if (comparison, direction) == ("question", "a->b") else direction
            levels = _levels(where, noise, len(kept), g)
            measured.append(_direction(comparison, name, levels, noise, kept, sae_seeds, replicates, g))
    _, directions = verdict.prediction2_arm(measured, {m.sae_ids[0]: True for m in measured})
    decided = verdict.prediction2(directions, layer, {"l1": (len(kept), n_seeds)})["shares"]
    mine = next(d for d in directions if d["direction"] == "cnn->mlp" and d["question"] == "shares")
    return decided["verdict"], mine["position"], (mine["position_low"], mine["position_high"])


def power(n_seeds, studies=1000, noise=NOISE, first_seed=0):
    """The rule's behaviour over ``studies`` simulated studies per planted answer at ``n_seeds`` model seeds: the share
    of "supported" for a similar pair, of "not supported" and of "supported" for a pair at the null, and the share of
    95% intervals (from VGG) covering the planted position (both plantings pooled). A dict, with ``adequate``: every
    share meets ``REQUIRED``."""
    outcomes = {}
    for name, where in PLANTED.items():
        outcomes[name] = [simulate_study(where, n_seeds, noise, seed=first_seed + i + (0 if name == "similar" else
                                                                                        1_000_000))
                          for i in range(studies)]
    covered = [low <= PLANTED[name] <= high for name, got in outcomes.items() for _, _, (low, high) in got
               if low == low]
    share = lambda name, v: sum(o[0] == v for o in outcomes[name]) / studies  # noqa: E731
    out = dict(model_seeds=n_seeds, studies=studies,
               similar_supported=share("similar", verdict.SUPPORTED),
               null_not_supported=share("null", verdict.NOT_SUPPORTED),
               null_supported=share("null", verdict.SUPPORTED),
               coverage=sum(covered) / len(covered) if covered else math.nan)
    out["adequate"] = (out["similar_supported"] >= REQUIRED["similar_supported"]
                       and out["null_not_supported"] >= REQUIRED["null_not_supported"]
                       and out["null_supported"] <= REQUIRED["null_supported_at_most"]
                       and out["coverage"] >= REQUIRED["coverage"])
    return out


def noise_from(per_feature, statistics, directions, seeds, arm="l1"):
    """The noise a layer's exploratory measurements show (``compare_study.Prediction2``'s tables), at its upper end
    where there is a choice: the question's null, ceiling and ceiling-null levels (VGG -> MLP, "shares features");
    the largest SD between model seeds, and between SAE seeds of one model, of any comparison's per-seed observation
    (its entering features' mean r per (model seed, SAE seed)); the images' SD per unit, bounded by the observation's
    interval (whose width also holds the seeds' spread): sqrt(units) x width / 3.92; and the share of model seeds
    dropped for a failed gate (at least 0.05). ``seeds``: {arm: (kept, total)}. None without the question's row."""
    import pandas as pd
    if per_feature.empty:
        return None
    rows = per_feature[(per_feature.arm == arm) & (per_feature.statistic == "observed")
                       & per_feature.entering.astype(bool)]
    units = rows.groupby(["comparison", "direction", "model_seed", "sae_seed"]).heldout_r.mean()
    per_model = units.groupby(level=[0, 1, 2])
    between_model = per_model.mean().groupby(level=[0, 1]).std()
    between_sae = per_model.std().groupby(level=[0, 1]).mean()
    d, st = pd.DataFrame(directions), pd.DataFrame(statistics)
    mine = d[(d.arm == arm) & (d.comparison == "question") & (d.direction == "cnn->mlp") & (d.question == "shares")]
    observed = st[(st.arm == arm) & (st.comparison == "question") & (st.direction == "cnn->mlp")
                  & (st.statistic == "observed")]
    if mine.empty or observed.empty:
        return None
    r, o = mine.iloc[0], observed.iloc[0]
    kept, total = seeds[arm]
    n_units = len(units.loc[("question", "cnn->mlp")]) if ("question", "cnn->mlp") in units.index.droplevel(
        [2, 3]) else 1
    return Noise(null=float(r.null_value), ceiling=float(r.ceiling), ceiling_null=float(r.ceiling_null),
                 between_seeds=float(between_model.fillna(0).max()),
                 between_sae_seeds=float(between_sae.fillna(0).max()),
                 images=math.sqrt(n_units) * float(o.high - o.low) / 3.92, gate_failure=max(1 - kept / total, 0.05))
