"""The power of Prediction 2's rule, shown by simulation before it judges: simulated studies, each a synthetic set of
measurements at the study's seeds and noise, go through the real decisions (``verdict.prediction2_arm`` and
``verdict.prediction2``), and we count how often a planted answer comes back.

A simulated study plants a position (0: at the null; ``min_position`` + 0.25: clearly similar) for the question
(VGG <-> MLP, both directions); the sanity control and the reference pair are planted similar. Each model seed draws
its own null, ceiling and ceiling-null levels (between-seed spread), each SAE seed its own offset, and each statistic
carries the images' error (in its estimate, and in its bootstrap replicates); a ceiling is a pair of seeds, moving
with both. A seed's SAEs fail a gate at the exploratory rate; a failed seed is dropped, as in the study. The intervals
come from the same bootstraps (``stats.nested_average``, ``stats.pair_average``, one seed for every statistic so that
they are paired) and the nulls' p-values from the bootstrap (``compare.bootstrap_p``; the study's are exact
permutation and sign-flip p-values).
"""
import math
from dataclasses import dataclass

import torch

from helpers import compare, stats, verdict
from helpers.compare import DirectionMeasurement, bootstrap_p


@dataclass(frozen=True)
class Noise:
    """The spread a simulated study draws, in units of the statistic (mean held-out r of the entering features): the
    question's zero (the random-init null), its floor (the full shuffle), the ceiling and the ceiling's matching null;
    SDs between model seeds (of a seed's level, and of a ceiling pair's), between SAE seeds, and of the images'
    bootstrap per (model seed, SAE seed); the chance that a seed's SAEs fail a gate. The exploratory runs set them
    (``noise_from``, the upper end of their estimates); the confirmatory run freezes them."""
    null: float = 0.10
    floor: float = 0.0
    ceiling: float = 0.45
    ceiling_null: float = 0.10
    between_seeds: float = 0.03
    between_sae_seeds: float = 0.01
    images: float = 0.01
    gate_failure: float = 0.05
    # the question's other direction (MLP -> VGG), whose zero, floor, ceiling and ceiling null are its own (the MLP's
    # ceiling spans far less than the VGG's); None: the same as VGG -> MLP
    reverse_null: float = None
    reverse_floor: float = None
    reverse_ceiling: float = None
    reverse_ceiling_null: float = None
    # "beyond class and predictions": the conditional shuffle's level (that question's zero) and the ceiling's own
    # conditional null, in each direction; None: at the random-init null's level (the "shares features" simulations
    # frozen before these were read, which that question's decision does not use)
    conditional: float = None
    ceiling_conditional: float = None
    reverse_conditional: float = None
    reverse_ceiling_conditional: float = None

    def levels(self, reverse=False):
        """(zero, floor, ceiling, ceiling null) of VGG -> MLP, or (``reverse``) of MLP -> VGG."""
        forward = (self.null, self.floor, self.ceiling, self.ceiling_null)
        if not reverse:
            return forward
        other = (self.reverse_null, self.reverse_floor, self.reverse_ceiling, self.reverse_ceiling_null)
        return tuple(f if o is None else o for f, o in zip(forward, other))

    def conditional_levels(self, reverse=False):
        """(the conditional shuffle's level, the ceiling's conditional null) of VGG -> MLP, or (``reverse``) of MLP ->
        VGG; each at that direction's random-init null where it was not measured."""
        null = self.levels(reverse)[0]
        found = ((self.reverse_conditional, self.reverse_ceiling_conditional) if reverse else
                 (self.conditional, self.ceiling_conditional))
        return tuple(null if f is None else f for f in found)


NOISE = Noise()
PLANTED = dict(similar=verdict.PREDICTION2["min_position"] + 0.25, null=0.0)
# what the rule must do, each in this share of the simulated studies at the seeds the study uses (coverage: for each
# planting)
REQUIRED = dict(similar_supported=0.80, null_not_supported=0.80, null_supported_at_most=0.05, coverage=0.90)
_CEILINGS = ("ceiling", "ceiling-null-random-init", "ceiling-null-full-shuffle", "ceiling-null")


def _units(levels, noise, sae_seeds, replicates, g):
    """{(unit, SAE seed): (B,) replicates} from {unit: level}: each unit adds its SAE seed's offset and its images'
    error to its estimate, and its bootstrap replicates spread around that estimate. One draw for every unit (the
    simulation's hot loop)."""
    keys = [(unit, t) for unit in levels for t in range(sae_seeds)]
    level = torch.tensor([float(levels[unit]) for unit, _ in keys])
    z = torch.randn(len(keys), 2 + replicates, generator=g)
    estimate = level + noise.between_sae_seeds * z[:, 0] + noise.images * z[:, 1]
    return dict(zip(keys, estimate[:, None] + noise.images * z[:, 2:]))


def _direction(comparison, direction, position, noise, seeds, sae_seeds, replicates, g, reverse=False,
               question="shares"):
    """A synthetic ``compare.DirectionMeasurement`` of one direction planted at ``position`` of ``question``: per
    model seed, the nulls and the observation (at ``position`` of the ceiling's expected span above the question's
    zero, each over its own ceiling null); per pair of seeds, the ceiling and its nulls (a pair's level moves with
    both of its seeds); the levels of VGG -> MLP, or (``reverse``) of MLP -> VGG (``Noise.levels``,
    ``Noise.conditional_levels``). One bootstrap seed for every statistic, so that their replicates are paired as the
    study's are."""
    null, floor, ceiling, ceiling_null = noise.levels(reverse)
    conditional, ceiling_conditional = noise.conditional_levels(reverse)
    def seed_levels(mean):
        return {s: mean + noise.between_seeds * torch.randn((), generator=g) for s in seeds}

    def pair_levels(mean):
        z = {s: torch.randn((), generator=g) for s in seeds}
        return {(i, j): mean + noise.between_seeds * (z[i] + z[j]) / math.sqrt(2) for i in seeds for j in seeds
                if i < j}  # the study's pairs (``compare.ceiling_pairs``)
    means = {"null-random-init": null, "null-full-shuffle": floor, "null-conditional-shuffle": conditional,
             "ceiling": ceiling, "ceiling-null-random-init": ceiling_null, "ceiling-null-full-shuffle": floor,
             "ceiling-null": ceiling_conditional}
    q = verdict.QUESTIONS[question]
    span = means["ceiling"] - means[q.ceiling_null]
    levels = {name: seed_levels(means[name]) for name in ("null-random-init", "null-full-shuffle",
                                                          "null-conditional-shuffle")}
    levels["observed"] = {s: v + position * span + noise.between_seeds * torch.randn((), generator=g)
                          for s, v in levels[q.zero].items()}
    for name in _CEILINGS:
        levels[name] = pair_levels(means[name])
    boot = int(torch.randint(1 << 30, (), generator=g))
    measured = {}
    for name, per in levels.items():
        units = _units(per, noise, sae_seeds, replicates, g)
        value = torch.stack(list(units.values())).mean().item()  # the estimates' mean
        average = stats.pair_average if name in _CEILINGS else stats.nested_average
        measured[name] = (value, average(units, replicates, boot))
    observed = measured["observed"][1]
    statistics, reps = {}, {}
    for name, (value, r) in measured.items():
        low, high = stats.interval(r)
        statistics[name], reps[name] = dict(value=value, low=low, high=high), r
        if name in verdict.NULLS:
            diff_low, diff_high = stats.interval(observed - r)
            statistics[name].update(p=bootstrap_p(observed, r), diff=measured["observed"][0] - value,
                                    diff_low=diff_low, diff_high=diff_high)
    return DirectionMeasurement(comparison, "l1", direction, [f"{comparison}-{direction}"], statistics, reps,
                                dict.fromkeys([k for k in statistics if k not in ("observed", "ceiling")]),
                                "model seed")


def simulate_study(position, n_seeds, noise=NOISE, sae_seeds=2, replicates=200, layer="mid", seed=0,
                   question="shares"):
    """One simulated study of ``question`` ("shares features", or "beyond" class and predictions): the question
    planted at ``position``, the sanity control and the reference pair planted similar (1.0 and 0.9), ``n_seeds``
    model seeds of which each fails a gate with ``noise.gate_failure`` (dropped, as the study drops them). Returns
    (the question's verdict, its position from VGG, (low, high))."""
    g = torch.Generator().manual_seed(seed)
    kept = [s for s in range(n_seeds) if torch.rand((), generator=g).item() >= noise.gate_failure]
    if not verdict.enough_seeds(len(kept), n_seeds):
        return verdict.NOT_TESTABLE, math.nan, (math.nan, math.nan)
    planted = dict(question=position, sanity=1.0, reference=0.9)
    measured = []
    for comparison, where in planted.items():
        for direction in ("a->b", "b->a"):
            name = "cnn->mlp" if (comparison, direction) == ("question", "a->b") else direction
            reverse = (comparison, direction) == ("question", "b->a")  # MLP -> VGG, at its own levels
            measured.append(_direction(comparison, name, where, noise, kept, sae_seeds, replicates, g, reverse,
                                       question))
    _, directions = verdict.prediction2_arm(measured, {m.sae_ids[0]: True for m in measured})
    decided = verdict.prediction2(directions, layer, {"l1": (len(kept), n_seeds)})[question]
    mine = next(d for d in directions if d["direction"] == "cnn->mlp" and d["question"] == question)
    return decided["verdict"], mine["position"], (mine["position_low"], mine["position_high"])


def power(n_seeds, studies=1000, noise=NOISE, first_seed=0, sae_seeds=2, question="shares"):
    """The rule's behaviour in ``question`` over ``studies`` simulated studies per planted answer at ``n_seeds``
    model seeds and ``sae_seeds`` SAE seeds per model (the L1 arm's, ``Profile.sae_seeds_of``; 1 for the linear
    measure): the share of "supported" for a similar pair, of "not supported" and of "supported" for a pair at the
    null, and for each planting the share of 95% intervals (from VGG) covering the planted position. A dict, with
    ``adequate``: every share meets ``REQUIRED``."""
    outcomes = {name: [simulate_study(where, n_seeds, noise, sae_seeds, seed=first_seed + i + k * 1_000_000,
                                      question=question)
                       for i in range(studies)] for k, (name, where) in enumerate(PLANTED.items())}
    return power_table({name: [(o[0], o[2]) for o in found] for name, found in outcomes.items()}, PLANTED, n_seeds)


def power_table(outcomes, planted, n_seeds):
    """The power table of simulated outcomes, {planting: [(verdict, (interval low, high))]} for the plantings
    "similar" and "null" of ``planted`` ({planting: planted value}): the shares ``REQUIRED`` names and ``adequate``."""
    studies = len(outcomes["similar"])

    def coverage(name):
        covered = [low <= planted[name] <= high for _, (low, high) in outcomes[name] if low == low]
        return sum(covered) / len(covered) if covered else math.nan

    def share(name, v):
        return sum(o[0] == v for o in outcomes[name]) / studies
    out = dict(model_seeds=n_seeds, studies=studies, similar_supported=share("similar", verdict.SUPPORTED),
               null_not_supported=share("null", verdict.NOT_SUPPORTED), null_supported=share("null", verdict.SUPPORTED),
               coverage_similar=coverage("similar"), coverage_null=coverage("null"))
    out["adequate"] = (out["similar_supported"] >= REQUIRED["similar_supported"]
                       and out["null_not_supported"] >= REQUIRED["null_not_supported"]
                       and out["null_supported"] <= REQUIRED["null_supported_at_most"]
                       and min(out["coverage_similar"], out["coverage_null"]) >= REQUIRED["coverage"])
    return out


def noise_from(per_feature, statistics, directions, seeds, arm="l1", gate_floor=0.05):
    """The noise a layer's exploratory measurements show (``compare_study.Prediction2``'s tables), at its upper end
    where there is a choice: the question's null, ceiling and ceiling-null levels in each direction ("shares
    features"; MLP -> VGG's as ``reverse_*``), and the conditional shuffle's with the ceiling's conditional null
    ("beyond class and predictions", ``conditional*``);
    the largest SD between model seeds, and between SAE seeds of one model, of any comparison's per-seed observation
    (its entering features' mean r per (model seed, SAE seed)); the images' SD per unit, bounded by the observation's
    interval (whose width also holds the seeds' spread): sqrt(units) x width / 3.92; and the share of model seeds
    dropped for a failed gate (at least ``gate_floor``: 0.05 for SAEs, 0 for a measure without gates).
    ``seeds``: {arm: (kept, total)}. None without the question's row or without a seed kept."""
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

    def question_row(direction, question="shares"):
        row = d[(d.arm == arm) & (d.comparison == "question") & (d.direction == direction) & (d.question == question)]
        return None if row.empty or row.iloc[0].null_value != row.iloc[0].null_value else row.iloc[0]

    def question_rows(direction):
        row = question_row(direction)
        stats_ = st[(st.arm == arm) & (st.comparison == "question") & (st.direction == direction)].set_index(
            "statistic")
        if row is None or "observed" not in stats_.index:
            return None
        floor_ = float(stats_.loc["null-full-shuffle", "value"]) if "null-full-shuffle" in stats_.index else 0.0
        return row, stats_, floor_
    found, back = question_rows("cnn->mlp"), question_rows("mlp->cnn")
    kept, total = seeds[arm]
    if found is None or kept == 0:  # no seed left: the noise, and so the power, is undefined
        return None
    r, question, floor = found
    o = question.loc["observed"]
    reverse = {} if back is None else dict(reverse_null=float(back[0].null_value), reverse_floor=back[2],
                                           reverse_ceiling=float(back[0].ceiling),
                                           reverse_ceiling_null=float(back[0].ceiling_null))
    for prefix, direction in (("", "cnn->mlp"), ("reverse_", "mlp->cnn")):
        beyond = question_row(direction, "beyond")
        if beyond is not None:
            reverse.update({f"{prefix}conditional": float(beyond.null_value),
                            f"{prefix}ceiling_conditional": float(beyond.ceiling_null)})
    n_units = len(units.loc[("question", "cnn->mlp")]) if ("question", "cnn->mlp") in units.index.droplevel(
        [2, 3]) else 1
    return Noise(null=float(r.null_value), floor=floor, ceiling=float(r.ceiling), ceiling_null=float(r.ceiling_null),
                 between_seeds=float(between_model.fillna(0).max()),
                 between_sae_seeds=float(between_sae.fillna(0).max()),
                 images=math.sqrt(n_units) * float(o.high - o.low) / 3.92,
                 gate_failure=max(1 - kept / total, gate_floor), **reverse)


def linear_noise(seed_values, statistics, directions, n_seeds):
    """``noise_from`` for the dictionary-free measure, from its per-model-seed held-out R² (``compare.seed_table``):
    each model seed one unit, no SAE seeds, no gates (every seed is kept)."""
    observed = seed_values[seed_values.other_seed.isna()].assign(heldout_r=seed_values.value, sae_seed=0,
                                                                 entering=True)
    return noise_from(observed, statistics, directions, {compare.LINEAR_ARM: (n_seeds, n_seeds)},
                      arm=compare.LINEAR_ARM, gate_floor=0.0)


# ----------------------------------------------------------------------------- the shift-invariance rule's power

@dataclass(frozen=True)
class GainNoise:
    """The spread of the shift-invariance measurement at one layer pair (``invariance.training_gains``): the VGG's
    mean training gain, the SD of a model seed's mean gain (each family's) and of an image block's gain within a seed
    (the larger family's)."""
    cnn_gain: float
    cnn_seeds: float
    mlp_seeds: float
    blocks: float


PLANTED_GAIN = dict(similar=verdict.SHIFT_INVARIANCE["min_position"] + 0.25, null=0.0)


def sd_upper(sd, n, level=0.8):
    """The upper ``level`` confidence bound of an SD estimated from ``n`` values: with four model seeds the estimate
    has three degrees of freedom, and the true spread may be well above it."""
    from scipy.stats import chi2
    return sd * math.sqrt((n - 1) / chi2.ppf(1 - level, n - 1)) if n > 1 else sd


def gain_noise(gains, modules):
    """The ``GainNoise`` of one layer pair (``modules``: {family: module}) in a ``training_gains`` table, its SDs at
    the upper end of their estimates (``sd_upper``)."""
    part = {f: gains[(gains.family == f) & (gains.layer == m)] for f, m in modules.items()}
    per_seed = {f: p.groupby("model_seed").gain for f, p in part.items()}
    n = {f: p.model_seed.nunique() for f, p in part.items()}
    return GainNoise(cnn_gain=float(per_seed["cnn"].mean().mean()),
                     cnn_seeds=sd_upper(float(per_seed["cnn"].mean().std()), n["cnn"]),
                     mlp_seeds=sd_upper(float(per_seed["mlp"].mean().std()), n["mlp"]),
                     blocks=max(float(per_seed[f].std().mean()) for f in part))


def simulate_gains(position, n_seeds, noise, blocks=None, replicates=200, seed=0):
    """One simulated shift-invariance measurement with the MLP's gain planted at ``position`` times the VGG's, through
    the real ``invariance.pair_gains`` and ``verdict.shift_invariance_verdict``: (verdict, (position low, high))."""
    import pandas as pd

    from helpers import invariance
    blocks = blocks or invariance.IMAGE_BLOCKS
    g = torch.Generator().manual_seed(seed)
    rows = []
    for family, level, sd in (("cnn", noise.cnn_gain, noise.cnn_seeds), ("mlp", position * noise.cnn_gain,
                                                                         noise.mlp_seeds)):
        seeds = level + sd * torch.randn(n_seeds, generator=g)
        values = seeds[:, None] + noise.blocks * torch.randn(n_seeds, blocks, generator=g)
        rows += [dict(family=family, model_seed=s, block=b, layer=family, gain=float(values[s, b]))
                 for s in range(n_seeds) for b in range(blocks)]
    m = invariance.pair_gains(pd.DataFrame(rows), {"cnn": "cnn", "mlp": "mlp"}, replicates, seed)
    return verdict.shift_invariance_verdict(m["cnn"], m["position"])[0], (m["position"]["low"], m["position"]["high"])


def gain_power(n_seeds, noise, studies=1000, first_seed=0):
    """``power``'s table for the shift-invariance rule at one layer pair's ``GainNoise``."""
    outcomes = {name: [simulate_gains(where, n_seeds, noise, seed=first_seed + i + k * 1_000_000)
                       for i in range(studies)] for k, (name, where) in enumerate(PLANTED_GAIN.items())}
    return power_table(outcomes, PLANTED_GAIN, n_seeds)


# ----------------------------------------------------------------------------- Prediction 1's rule

@dataclass(frozen=True)
class MotifNoise:
    """The spread of Prediction 1's primary measurement (the motif score of successful AM images): per family its
    random-init images' mean score; the VGG's gain from training (trained minus random-init mean); SDs of a model
    seed's mean, of an AM seed's mean within a model seed and of an image within an (model seed, AM seed) cell, each
    the larger family's; successful images per cell."""
    cnn_null: float
    mlp_null: float
    cnn_gain: float
    model_seeds: float
    am_seeds: float
    images: float
    per_cell: int


# "similar": the MLP's images as the CNN's (same null level, same gain: position 1, direct δ 0); "apart": the same gain
# from the MLP's own null level (the position alike, the images far apart: the absolute criterion's case); "null": no
# gain. The rule must support "similar" and reject "null" (``REQUIRED``); "apart" is reported.
PLANTED_MOTIF = dict(similar=("cnn_null", 1.0), apart=("mlp_null", 1.0), null=("mlp_null", 0.0))


def motif_noise(table, rule=verdict.PREDICTION1):
    """The ``MotifNoise`` of Prediction 1's primary test in an ``am_study.score_table`` (successful images of the
    primary objective and setting), or None where it cannot be estimated (a group without images, or fewer than two
    model seeds). The variance components by the method of moments (a seed's mean carries its AM seeds' and images'
    variance, which the simulation adds again: they are subtracted, floored at 0), the model seeds' SD at the upper
    end of its estimate (``sd_upper``); each component the larger family's."""
    import numpy as np
    rows = table[table.success & (table.objective == rule["objective"]) & (table.setting == rule["setting"])]
    value = rule["measure"]
    level, parts = {}, {"model": [], "am": [], "images": []}
    for (family, network), part in rows.groupby(["family", "network"]):
        cells = part.groupby(["model_seed", "am_seed"])[value]
        per_cell, am_seeds = cells.size().mean(), part.groupby("model_seed").am_seed.nunique().mean()
        images = float(np.nanmean(cells.var()))                                       # within a cell
        am = float(np.nanmean(cells.mean().groupby("model_seed").var())) - images / per_cell
        seeds = part.groupby("model_seed")[value].mean()
        model = float(seeds.var()) - max(am, 0.0) / am_seeds - images / (am_seeds * per_cell)
        level[(family, network)] = float(part[value].mean())
        parts["images"].append(images)
        parts["am"].append(max(am, 0.0) if am == am else 0.0)
        parts["model"].append(sd_upper(math.sqrt(max(model, 0.0)), len(seeds)) if len(seeds) > 1 else math.nan)
    groups = [(f, n) for f in ("cnn", "mlp") for n in ("trained", "random-init")]
    if any(g not in level for g in groups) or any(v != v for v in parts["model"] + parts["images"]):
        return None
    return MotifNoise(cnn_null=level[("cnn", "random-init")], mlp_null=level[("mlp", "random-init")],
                      cnn_gain=level[("cnn", "trained")] - level[("cnn", "random-init")],
                      model_seeds=max(parts["model"]), am_seeds=math.sqrt(max(parts["am"])),
                      images=math.sqrt(max(parts["images"])),
                      per_cell=int(rows.groupby(["family", "network", "model_seed", "am_seed"]).size().median()))


def simulate_motifs(planted, n_seeds, am_seeds, noise, replicates=200, seed=0, rule=verdict.PREDICTION1):
    """One simulated Prediction 1 primary test, ``planted`` a key of ``PLANTED_MOTIF``: a score table drawn at
    ``noise`` through the real ``am_study.prediction1_tables`` (and so ``verdict.prediction1_comparison``). Returns
    (verdict, (position low, high))."""
    import pandas as pd

    from helpers.am_study import prediction1_tables
    base, share = PLANTED_MOTIF[planted]
    levels = {("cnn", "random-init"): noise.cnn_null, ("cnn", "trained"): noise.cnn_null + noise.cnn_gain,
              ("mlp", "random-init"): getattr(noise, base), ("mlp", "trained"): getattr(noise, base)
              + share * noise.cnn_gain}
    g = torch.Generator().manual_seed(seed)
    frames = []
    for (family, network), level in levels.items():
        cells = (level + noise.model_seeds * torch.randn(n_seeds, 1, 1, generator=g)
                 + noise.am_seeds * torch.randn(n_seeds, am_seeds, 1, generator=g)
                 + noise.images * torch.randn(n_seeds, am_seeds, noise.per_cell, generator=g))
        m, a, _ = torch.meshgrid(torch.arange(n_seeds), torch.arange(am_seeds), torch.arange(noise.per_cell),
                                 indexing="ij")
        frames.append(pd.DataFrame({rule["measure"]: cells.flatten().numpy(), "model_seed": m.flatten().numpy(),
                                    "am_seed": a.flatten().numpy()}).assign(
            family=family, network=network, objective=rule["objective"], setting=rule["setting"], success=True,
            saturated=0.0))
    _, _, comparisons = prediction1_tables(pd.concat(frames, ignore_index=True), replicates, seed,
                                           measures=(rule["measure"],))
    primary = next(c for c in comparisons if c["primary"])
    return primary["verdict"], (primary["position_low"], primary["position_high"])


def motif_power(n_seeds, am_seeds, noise, studies=200, first_seed=0):
    """``power_table`` of Prediction 1's rule at ``noise``: how often each planting of ``PLANTED_MOTIF`` comes back
    supported, not supported and inconclusive, and whether the rule meets ``REQUIRED``."""
    outcomes = {name: [simulate_motifs(name, n_seeds, am_seeds, noise, seed=first_seed + i + k * 1_000_000)
                       for i in range(studies)] for k, name in enumerate(PLANTED_MOTIF)}
    planted = {name: share for name, (_, share) in PLANTED_MOTIF.items()}
    table = power_table(outcomes, planted, n_seeds)
    table["apart_not_supported"] = sum(v == verdict.NOT_SUPPORTED for v, _ in outcomes["apart"]) / studies
    # the error the rule must not make: a truly similar MLP read as not supported
    table["similar_not_supported"] = sum(v == verdict.NOT_SUPPORTED for v, _ in outcomes["similar"]) / studies
    return table
