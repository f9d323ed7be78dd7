"""Prediction 1 as the study runs it (``01_activation_maximization``): the objectives of each network (pre-activations
of privileged units, the primary ones the middle layer's), the AM suite (a trained network and its random-init null,
cached), the score table, the effects and comparisons the verdict reads, and the page's figures and summary."""
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers import freeze, profiles, stats, store, verdict
from helpers.actmax import Stacked, channel, class_logit, is_conv, preactivation, render, shift_grid, shift_pooled, unit
from helpers.actmax.transforms import circular_shift
from helpers.models import fingerprint, record
from helpers.repetition import (
                                MEASURES,
                                PRIMARY_MEASURE,
                                dose_response_images,
                                measure_controls,
                                phase_randomized,
                                saturated_share,
)
from helpers.units import NETWORKS, AMGroup

# A unit responds to a set of images when it is positive on more than this share of them: AM can move its image (a
# ReLU unit that is never on has no gradient). Not the SAE's "dead", which is about held-out firing.
RESPONSIVE_SHARE = 0.01
POOL_STRIDE = 8  # the last-layer shift-pooled objective's grid: 16 circular shifts of a 32-pixel image
# Each objective kind's pooling stride (0: not pooled; 1: every circular shift), in the AM cache key.
KIND_POOLING = {"mid": 0, "mid-pooled": 1, "pooled": POOL_STRIDE, "classes": 0, "residual": 0}
# A pooled objective is evaluated (``objective_values``) over its whole grid when it has at most this many shifts,
# else over this many drawn from it (seeded, the same for every image): the middle layer's every-shift pooling has
# 1,024, and an unbiased estimate of their mean is what its images were optimized for.
EVAL_SHIFTS = 16
# Prediction 1's power table: simulated studies per planting and seed count. Each runs the whole table code (about
# 0.1 s on a CPU); 150 put a share near the required 0.8 within about ±0.03 (one standard error).
MOTIF_POWER_STUDIES = 150
ARTIFACT_SIZE = 5  # the artifact control's template: a random localized ReLU unit of this many pixels a side


def is_mlp(model):
    return isinstance(getattr(model, "blocks", None), nn.ModuleList)


def neuron_layers(model):
    """The layers whose units Prediction 1 visualizes, each named by the module *before* its nonlinearity (no
    objective reads a ReLU's or GELU's output: see ``actmax.NONLINEARITIES``).

    ``mid``: the middle layer pair of the study's layer table (``profiles.LAYER_DEPTHS``, half of each network's
    depth), where the primary test sits: the CNN's conv layer (pre-ReLU; its channels are the objective, the object of
    Olah et al.'s recurring patterns), the MLP's block at that depth (its 4×-wide hidden neurons, pre-GELU: a
    privileged basis). ``last``: the last hidden layer's neurons (the CNN's classifier neurons, pre-ReLU; the MLP's
    last block's hidden neurons, pre-GELU). ``residual`` (MLP only): the residual stream after the last block, whose
    coordinates are not a privileged basis; reported apart."""
    from helpers.models import layer_at_depth
    mid = layer_at_depth(model, profiles.LAYER_DEPTHS["mid"])
    if is_mlp(model):
        block = int(mid.rpartition(".")[2])  # residual.i: the stream after block i
        return dict(mid=f"blocks.{block}.block.0", last=f"blocks.{len(model.blocks) - 1}.block.0",
                    residual=model.hidden_layer)
    return dict(mid=preactivation(model, mid), last=preactivation(model, model.hidden_layer))


@torch.no_grad()
def pick_units(model, layer, n, images, seed=0):
    """``n`` random units (channels for conv layers) of ``layer`` that respond to ``images`` (``RESPONSIVE_SHARE``)."""
    device = next(model.parameters()).device
    with record(model, [layer]) as acts:
        model(images.to(device))
    act = acts[layer]
    act = act.mean((2, 3)) if act.ndim == 4 else act
    responsive = torch.nonzero((act > 0).float().mean(0) > RESPONSIVE_SHARE).flatten().cpu()
    if len(responsive) == 0:
        raise ValueError(f"no unit of layer {layer!r} responds to the sample images.")
    order = torch.randperm(len(responsive), generator=torch.Generator().manual_seed(seed))
    return responsive[order[:n]].sort().values


# The two regularization settings. "plain": no penalty (Adam is invariant to an objective's scale, so this treats every
# network alike). "contrast": a pull towards grey weighed on each target's own natural-image scale, (value - median) /
# (99th percentile - median), so it is as strong for a random-init network's small logits as for a trained one's: an
# image as contrasted as the average natural image pays ``contrast`` of the span from a natural image's median to
# its 99th percentile. It runs the primary objective only.
AM_SETTINGS = {"plain": dict(contrast=0.0), "contrast": dict(contrast=0.5)}
PRIMARY_KIND = verdict.PREDICTION1["objective"]
SETTING_KINDS = {"plain": None, "contrast": (PRIMARY_KIND,)}  # None: every kind


def kind_units(kind, n_units):
    """How many units ``kind`` renders per model seed and AM seed: ``n_units`` for the primary objective, half as
    many for each robustness row (the residual stream a quarter; the class logits are always their 10). The rows
    beside the primary describe, and at four model seeds their halves fit the study's budget (the README's first
    cut of the AM stage)."""
    if kind == "classes":
        return 10
    return n_units if kind == PRIMARY_KIND else max(1, n_units // (4 if kind == "residual" else 2))


def setting_units(setting, n_units):
    """The units per objective that ``setting`` starts from: all of them under the primary's setting, half under
    the contrast robustness row."""
    return n_units if setting == verdict.PREDICTION1["setting"] else max(1, n_units // 2)


def suite_kinds(setting, am_seed, am_seeds):
    """The objective kinds one suite renders (None: every kind): the setting's (``SETTING_KINDS``) at the first AM
    seed; at the others the primary test only (the primary objective without a penalty: its AM seeds enter its
    hierarchical interval; the robustness rows keep one), and nothing under the other setting."""
    if am_seed == am_seeds[0]:
        return SETTING_KINDS[setting]
    return (PRIMARY_KIND,) if setting == verdict.PREDICTION1["setting"] else ()


def objective_plan(model, n_units, sample_images, seed=0, kinds=None):
    """The objectives of one network, {kind: Objective}, each of ``kind_units`` units: ``mid`` (the primary:
    ``n_units`` units of the middle layer, each family's own: a CNN channel's mean over positions, an MLP block's
    hidden neuron), ``mid-pooled`` (half of the same units pooled over every circular shift: a secondary row, since
    pooling imposes the very invariance under test; see ``artifact_control``), ``pooled`` (last-hidden-layer
    neurons, shift-pooled), ``classes`` (the 10 class logits) and, for the MLP, ``residual`` (residual-stream
    coordinates). Units are picked among those that respond to ``sample_images`` (a smaller pick of a layer is a
    subset of a larger one). ``kinds``: only these (None: all)."""
    layers = neuron_layers(model)
    mid_objective = channel if is_conv(model, layers["mid"]) else unit

    def picked(kind, layer):
        return pick_units(model, layers[layer], kind_units(kind, n_units), sample_images, seed)
    plan = {"mid": lambda: mid_objective(layers["mid"], picked("mid", "mid")),
            "mid-pooled": lambda: shift_pooled(mid_objective(layers["mid"], picked("mid-pooled", "mid")),
                                               KIND_POOLING["mid-pooled"]),
            "pooled": lambda: shift_pooled(unit(layers["last"], picked("pooled", "last")), KIND_POOLING["pooled"]),
            "classes": lambda: class_logit(range(10))}
    if "residual" in layers:
        plan["residual"] = lambda: unit(layers["residual"], picked("residual", "residual"))
    return {k: make() for k, make in plan.items() if kinds is None or k in kinds}


def evaluated_shifts(size, stride, most=EVAL_SHIFTS, seed=0):
    """The circular shifts a pooled objective is evaluated over: its whole grid (``shift_grid``) when it has at most
    ``most`` shifts (None: always), else ``most`` of them drawn without replacement (seeded); no pooling: none."""
    if not stride:
        return torch.zeros(1, 2).long()
    grid = shift_grid(size, stride)
    if most is None or len(grid) <= most:
        return grid
    return grid[torch.randperm(len(grid), generator=torch.Generator().manual_seed(seed))[:most]]


@torch.no_grad()
def objective_values(model, objective, images, batch_size=500, most_shifts=EVAL_SHIFTS):
    """Every target's objective value on every image (floats in [0, 1]), without the optimizer's random transforms:
    (len(images), n). A shift-pooled objective is averaged over ``evaluated_shifts``."""
    device = next(model.parameters()).device
    layers = objective.layers
    shifts = evaluated_shifts(images.shape[-1], objective.pool_stride, most_shifts)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        total = 0
        for dy, dx in shifts.tolist():
            shifted = circular_shift(x, torch.full((len(x),), dy), torch.full((len(x),), dx)) if dy or dx else x
            with record(model, layers) as acts:
                acts["logits"] = model(shifted)
                total = total + objective.values(acts[objective.layer]).cpu()
        out.append(total / len(shifts))
    return torch.cat(out)


class LocalizedUnits(nn.Module):
    """The artifact control of shift pooling: ``n`` random localized ReLU units, each a random mean-free
    ``size``-pixel colour template read at the image's centre (a circular convolution, then ReLU; module
    ``response``). Pooled over every circular shift, such a unit asks for its template at every position of the
    image: its images show the repetition that pooling alone puts into an image."""

    def __init__(self, n, size=ARTIFACT_SIZE, seed=0):
        super().__init__()
        self.templates = nn.Conv2d(3, n, size, padding=size // 2, padding_mode="circular", bias=False)
        w = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
        w = w - w.mean((1, 2, 3), keepdim=True)  # mean-free: a flat image does not drive it, only its pattern does
        with torch.no_grad():
            self.templates.weight.copy_(w / w.flatten(1).norm(dim=1)[:, None, None, None])
        self.response = nn.ReLU()

    def forward(self, x):
        return self.response(self.templates(x))


def artifact_control(n, seed=0, **settings):
    """The artifact control's images: ``LocalizedUnits`` pooled over every circular shift, rendered as the AM suite
    renders (``settings`` go to ``render``). Returns (images, start images)."""
    model = LocalizedUnits(n, seed=seed)
    result = render(model, shift_pooled(unit("response", range(n)), 1), seed=seed, **settings)
    return result.images, result.start


def natural_contrast(images):
    """The mean squared distance from mid-grey per pixel of ``images``: the contrast penalty's unit."""
    return float(((torch.as_tensor(images).float() - 0.5) ** 2).mean())


def am_suite(net, random_net, n_units, sample_images, natural_images, seed=0, kinds=None, contrast=0.0,
             progress=True, networks=NETWORKS[:2], **settings):
    """Every objective of ``objective_plan`` (``kinds`` only, if given) on the trained network and, as its null, on a
    randomly initialized one of the same architecture (``networks``: which of the two, each rendered on its own, so
    either part can be cached apart); each network's objectives, shift-pooled and plain, are rendered as one batch
    (``Stacked``). {AMGroup: dict} with, for each image, its objective value without the
    optimizer's transforms (``final``), the same on its start image (``start_value``), and its target's values on
    ``natural_images`` (``natural``, floats in [0, 1]), from which ``verdict.am_success`` judges it when the tables
    are built. ``contrast``: the contrast penalty's weight on each target's natural-image scale (0: none).
    ``settings`` go to ``render``."""
    out = {}
    unit_penalty = contrast / (natural_contrast(natural_images) * natural_images[0].numel())
    for network, model in zip(NETWORKS, (net, random_net)):
        if network not in networks:
            continue
        plan = objective_plan(model, n_units, sample_images, seed, kinds)
        natural = {kind: objective_values(model, o, natural_images) for kind, o in plan.items()}
        batch = Stacked(plan.values())
        median = torch.cat([natural[k].median(0).values for k in plan])
        span = (torch.cat([torch.quantile(natural[k], 0.99, dim=0) for k in plan]) - median).clamp_min(1e-6)
        result = render(model, batch, seed=seed, progress=progress, l2=unit_penalty, offset=median, span=span,
                        **settings)
        for (kind, objective), rows in zip(plan.items(), batch.slices()):
            images, start = result.images[rows], result.start[rows]
            out[AMGroup(kind, network)] = dict(
                images=images, start=start, history=result.history[:, rows], layer=objective.layer,
                name=objective.name, targets=objective.targets,
                final=objective_values(model, objective, images).diagonal(),
                start_value=objective_values(model, objective, start).diagonal(), natural=natural[kind])
    return out


def am_where(profile, family, network, setting, model_seed, am_seed):
    """The fields of one cached AM run (``store.AM_SUITE``; ``store.owner`` says whose folder holds it)."""
    return dict(profile=profile, family=family, network=network, setting=setting, model_seed=model_seed,
                am_seed=am_seed)


def score_table(runs):
    """Long table (pandas): one row per AM image of every run. ``runs``: {(family, setting, model_seed, am_seed):
    suite}. Columns: family, setting, model_seed, am_seed, network, objective, group (the label figures show), index,
    target, success (``verdict.am_success``, judged now from the cached values), gain (final - start value),
    natural_quantile (the share of natural images the final value beats), saturated, final, threshold, and one column
    per ``MEASURES`` entry."""
    import pandas as pd
    rows = []
    for (family, setting, model_seed, am_seed), suite in runs.items():
        for group, r in suite.items():
            success, threshold = verdict.am_success(r["final"], r["natural"], r["start_value"])
            quantile = (r["natural"] < r["final"][None]).float().mean(0).tolist()
            scores = {name: fn(r["images"]).tolist() for name, fn in MEASURES.items()}
            saturated = saturated_share(r["images"]).tolist()
            for i, target in enumerate(r["targets"]):
                rows.append(dict(family=family, setting=setting, model_seed=model_seed, am_seed=am_seed,
                                 network=group.network, objective=group.objective, group=group.label, index=i,
                                 target=target, success=bool(success[i]),
                                 gain=float(r["final"][i] - r["start_value"][i]), natural_quantile=quantile[i],
                                 saturated=saturated[i], final=float(r["final"][i]), threshold=float(threshold[i]),
                                 **{name: v[i] for name, v in scores.items()}))
    return pd.DataFrame(rows)


def baseline_scores(images):
    """The measures on images that are not AM results (natural images, the optimizer's start images)."""
    import pandas as pd
    return pd.DataFrame({name: fn(images).tolist() for name, fn in MEASURES.items()})


def control_table(controls):
    """The primary measure on ``repetition.measure_controls``'s images: one row per image (control, expected,
    score)."""
    import pandas as pd
    return pd.concat([pd.DataFrame(dict(control=name, expected=expected, score=MEASURES[PRIMARY_MEASURE](x).tolist()))
                      for name, (x, expected) in controls.items()])


def controls_verdict(controls):
    """``verdict.measure_controls_passed`` on a ``control_table``."""
    medians = controls.groupby("control", sort=False).score.median().to_dict()
    expected = controls.groupby("control", sort=False).expected.first().to_dict()
    return verdict.measure_controls_passed(medians, expected)


def dose_table(doses):
    """The primary measure and its companion (``periodic``) on ``repetition.dose_response_images``: one row per
    image (factor, level, motif, periodic)."""
    import pandas as pd
    return pd.concat([pd.DataFrame(dict(factor=factor, level=level, motif=MEASURES[PRIMARY_MEASURE](x).tolist(),
                                        periodic=MEASURES["periodic"](x).tolist())) for factor, level, x in doses])


def dose_verdict(doses):
    """``verdict.dose_response_monotone`` on a ``dose_table``'s medians of the primary measure."""
    medians = doses.groupby(["factor", "level"], sort=False)[PRIMARY_MEASURE].median()
    return verdict.dose_response_monotone({f: medians[f].tolist() for f in doses.factor.unique()})


def natural_path(model, groups, natural, layer, low=0.01, high=0.99):
    """Whether each group of images ({label: images}) takes the natural path (Geirhos et al. 2024) at ``layer``: for
    each image the share of the layer's values (every unit and position) inside the ``low``-``high`` quantile range
    of the same value on ``natural`` images, the range read once for all groups. Natural images score about
    ``high - low``; an image that drives the layer where no natural image does scores less. {label: shares}."""
    from helpers.invariance import layer_outputs
    lo, hi = torch.quantile(layer_outputs(model, natural, [layer])[layer], torch.tensor([low, high]), dim=0)
    out = {}
    for label, images in groups.items():
        v = layer_outputs(model, images, [layer])[layer]
        out[label] = ((v >= lo) & (v <= hi)).float().mean(1)
    return out


NAN_EFFECT = dict(delta=float("nan"), low=float("nan"), high=float("nan"), p=1.0)


def _effect(a, b, measure, replicates, seed, paired_seeds=True):
    """``stats.clustered_effect`` of score-table rows ``a`` over rows ``b`` on ``measure``."""
    if len(a) < 2 or len(b) < 2:
        return NAN_EFFECT, None
    return stats.clustered_effect(*((t[measure].values, t.model_seed.values, t.am_seed.values) for t in (a, b)),
                                  replicates, seed, paired_seeds)


def prediction1_tables(table, replicates=1000, seed=0, measures=tuple(MEASURES)):
    """Everything Prediction 1's verdict needs, from ``score_table``: (gates, effects, comparisons) as lists of dicts.
    Gates: per (setting, family, network, objective). Effects: Cliff's δ of trained over random-init per (setting,
    measure, family, objective), successful images only, with each objective's own gates and a hierarchical
    interval (``stats.clustered_effect``: model seed, AM seed, image); and per (setting, measure, objective) of
    both families the MLP's trained images over the CNN's (``family="mlp-vs-cnn"``, direct: the rule's absolute
    criterion; each family's model seeds drawn apart). Comparisons: one verdict row per (objective, measure, setting)
    of ``verdict.PREDICTION1_OBJECTIVES`` from ``verdict.prediction1_comparison``; ``primary`` marks the pre-registered
    one (``verdict.PREDICTION1``). ``measures``: the score columns read (the power simulation has the primary only)."""
    gates, passed, effects, replicate_sets = [], {}, [], {}
    for (setting, family, network, objective), part in table.groupby(
            ["setting", "family", "network", "objective"], sort=False):
        rows = verdict.am_gates(len(part), int(part.success.sum()), float(part.saturated.mean()))
        group = AMGroup(objective, network)
        gates += [dict(setting=setting, family=family, network=network, objective=objective, group=group.label, **g)
                  for g in rows]
        passed[(setting, family, group)] = verdict.gates_passed(rows)
    for setting, objective in table[["setting", "objective"]].drop_duplicates().itertuples(index=False):
        kind = (table.setting == setting) & (table.objective == objective)
        present = set(table[kind].family)  # the MLP has no channel objective, the CNN no residual stream
        mine = kind & table.success
        for measure in measures:
            for k, family in enumerate(f for f in profiles.FAMILIES if f in present):
                here = mine & (table.family == family)
                # each family's seeds drawn on their own: the CNN and the MLP of one seed number are unrelated
                # networks, and a shared draw would tie their replicates (and the position's interval) to the labels
                effect, reps = _effect(table[here & (table.network == "trained")],
                                       table[here & (table.network == "random-init")], measure, replicates,
                                       seed + 1_000 * k)
                replicate_sets[(setting, measure, family, objective)] = reps
                group = AMGroup(objective)
                effects.append(dict(setting=setting, measure=measure, family=family, objective=objective,
                                    n_trained=int((here & (table.network == "trained")).sum()),
                                    n_null=int((here & (table.network == "random-init")).sum()),
                                    gates_ok=verdict.all_passed(passed, [(setting, family, group),
                                                                         (setting, family, group.null)]), **effect))
            trained = mine & (table.network == "trained")
            if present >= set(profiles.FAMILIES):
                direct, _ = _effect(table[trained & (table.family == "mlp")],
                                    table[trained & (table.family == "cnn")], measure, replicates, seed,
                                    paired_seeds=False)
                effects.append(dict(setting=setting, measure=measure, family="mlp-vs-cnn", objective=objective,
                                    n_trained=int((trained & (table.family == "mlp")).sum()),
                                    n_null=int((trained & (table.family == "cnn")).sum()), gates_ok=True, **direct))
    find = {(e["setting"], e["measure"], e["family"], e["objective"]): e for e in effects}
    rule, comparisons = verdict.PREDICTION1, []
    for objective in verdict.PREDICTION1_OBJECTIVES:
        for measure in measures:
            for setting in AM_SETTINGS:
                cnn, mlp = (find.get((setting, measure, f, objective)) for f in profiles.FAMILIES)
                if cnn is None or mlp is None:
                    continue
                reps_c, reps_m = (replicate_sets[(setting, measure, f, objective)] for f in profiles.FAMILIES)
                pos = stats.effect_ratio(reps_m, reps_c, mlp["delta"], cnn["delta"]) if reps_c is not None and \
                    reps_m is not None else dict(value=float("nan"), low=float("nan"), high=float("nan"))
                gates_ok = cnn["gates_ok"] and mlp["gates_ok"]
                direct = find[(setting, measure, "mlp-vs-cnn", objective)]
                result, reason = verdict.prediction1_comparison(gates_ok, cnn, mlp, pos, direct)
                comparisons.append(dict(
                    objective=objective, measure=measure, setting=setting,
                    primary=(objective, measure, setting) == (rule["objective"], rule["measure"], rule["setting"]),
                    cnn_delta=cnn["delta"], cnn_low=cnn["low"], cnn_high=cnn["high"], cnn_p=cnn["p"],
                    mlp_delta=mlp["delta"], mlp_low=mlp["low"], mlp_high=mlp["high"], mlp_p=mlp["p"],
                    direct_delta=direct["delta"], direct_low=direct["low"], direct_high=direct["high"],
                    position=pos["value"], position_low=pos["low"], position_high=pos["high"], gates_ok=gates_ok,
                    cnn_pattern=verdict.cnn_pattern(cnn), verdict=result, reason=reason))
    return gates, effects, comparisons


def channel_control(effects):
    """The CNN's middle-layer channels on the primary measure and setting (the primary's CNN side): the measure's
    positive control on real AM images (``verdict.prediction1``)."""
    rule = verdict.PREDICTION1
    for e in effects:
        if (e["setting"], e["measure"], e["family"], e["objective"]) == (rule["setting"], rule["measure"], "cnn",
                                                                          rule["objective"]):
            return e
    return dict(NAN_EFFECT, gates_ok=False)


# ----------------------------------------------------------------------------- the page: 01_activation_maximization

OBJECTIVE_WORDS = {"mid": "middle-layer units, CNN channels and MLP neurons",
                   "mid-pooled": "middle-layer units pooled over every circular shift",
                   "pooled": "last-hidden-layer neurons, shift-pooled", "classes": "class logits",
                   "residual": "residual-stream coordinates (MLP)"}


@dataclass
class Controls:
    """The primary measure on its known answers and across its range: the images, one score per image, and whether
    it passed both."""
    images: dict    # {control: (images, "high" or "low")}
    rows: object    # ``control_table``
    passed: bool
    reason: str
    doses: object = None  # ``dose_table``


@dataclass
class Judged:
    """What Prediction 1 rests on: the score table and, with both families, its gates, effects and comparisons, the
    channel control, the verdict; and the scores beside natural and start images (``scored``) with their medians."""
    table: object
    scored: object
    medians: object
    tables: dict = None       # {"am_gates", "am_effects", "am_comparisons": DataFrame}
    channel: dict = None
    verdict: str = None
    reason: str = None
    power: object = None      # ``power.motif_power`` at the run's seeds and at twice as many (DataFrame)


@dataclass
class AMPage:
    """Prediction 1 on one profile's models, as ``01_activation_maximization`` shows it. Its compute methods return
    values (the runs, the controls, the judged tables), which its tables, figures and text take."""
    profile: str
    model: str = "both"          # "cnn", "mlp" or "both" (the verdict needs both)
    seed: int = 0                # the image picks (the AM seeds are the profile's)
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        from helpers.actmax import cifar_color_matrix
        from helpers.data import load_cifar10, to_float
        from helpers.train import load_trained, random_model
        profiles.check_family(self.model, (*profiles.FAMILIES, "both"))
        profiles.check_seed(self.seed)
        profile = profiles.get(self.profile)
        self.settings = profile.am.with_overrides(self.overrides)
        self.families = list(profiles.FAMILIES) if self.model == "both" else [self.model]
        self.model_seeds = list(profile.model_seeds)
        self.nets = {(f, m): load_trained(f, self.profile, m) for f in self.families for m in self.model_seeds}
        self.random_nets = {(f, m): random_model(f, self.profile, m) for f in self.families for m in self.model_seeds}
        self.weights = {(k, network): fingerprint(net) for network, nets in zip(NETWORKS, (self.nets, self.random_nets))
                        for k, net in nets.items()}  # each network's identity in the cache keys, hashed once
        test_x, test_y, self.classes = load_cifar10("test")
        order = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(self.seed))
        self.sample = to_float(test_x[order[:512]])                                      # to pick responsive units
        natural = order[512:512 + self.settings.natural_images]
        self.natural = to_float(test_x[natural])                                        # thresholds, a baseline
        self.natural_uint8, self.natural_labels = test_x[natural], test_y[natural]      # accuracy under shifts
        self.color_matrix = cifar_color_matrix()

    @property
    def both(self):
        return len(self.families) == 2

    def describe(self):
        s = self.settings
        lines = []
        for f in self.families:
            net = self.nets[(f, self.model_seeds[0])]
            layers = neuron_layers(net)
            lines.append(f"{profiles.FAMILY[f].architecture} ({f}), profile {self.profile!r}, model seeds "
                         f"{self.model_seeds}: {sum(p.numel() for p in net.parameters()):,} parameters; neurons of "
                         + ", ".join(f"{k} {v!r}" for k, v in layers.items()))
        lines.append(f"{s.units} middle-layer units (the primary: CNN channels, MLP hidden neurons) per model seed "
                     f"and AM seed, {len(self.model_seeds)} model seeds × {len(s.am_seeds)} AM seeds; at the first AM "
                     f"seed also {kind_units('mid-pooled', s.units)} of the same middle-layer units pooled over "
                     f"every circular shift, {kind_units('pooled', s.units)} last-hidden-layer neurons (shift-pooled "
                     f"over {len(shift_grid(32, POOL_STRIDE))} circular shifts), the class logits and "
                     f"{kind_units('residual', s.units)} MLP residual-stream coordinates; {s.steps} steps of "
                     f"Adam (lr {s.lr}), {s.parameterization} image, jitter {s.jitter} px, scale ±8%, rotation ±8°; "
                     f"settings: {AM_SETTINGS} (the contrast setting on {setting_units('contrast', s.units)} of the "
                     f"primary objective's units only)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ computing

    def render_all(self):
        """Every suite: {(family, setting, model seed, AM seed): {AMGroup: run}} (``suite``)."""
        return {(f, setting, m, am_seed): self.suite(f, setting, m, am_seed) for f in self.families
                for m in self.model_seeds for setting in AM_SETTINGS for am_seed in self.settings.am_seeds
                if self.kinds(setting, am_seed) != ()}

    def suite(self, family, setting, model_seed, am_seed):
        """One suite of ``am_suite``: the trained network's part and its random-init null's, each cached apart
        (``store.AM_SUITE``, keyed by ``suite_inputs``)."""
        out = {}
        for network in NETWORKS[:2]:
            saved = store.AM_SUITE(lambda n=network: self.render(family, setting, model_seed, am_seed, n),
                                   am_where(self.profile, family, network, setting, model_seed, am_seed),
                                   **self.suite_inputs(family, setting, model_seed, am_seed, network))
            out.update({AMGroup(*k): r for k, r in saved.items()})
        return out

    def kinds(self, setting, am_seed):
        return suite_kinds(setting, am_seed, self.settings.am_seeds)

    def render_settings(self, setting):
        s = self.settings
        return dict(parameterization=s.parameterization, steps=s.steps, lr=s.lr, **AM_SETTINGS[setting])

    def suite_inputs(self, family, setting, model_seed, am_seed, network):
        """Everything one cached part depends on besides code."""
        s = self.settings
        net = self.nets[(family, model_seed)]
        kinds = self.kinds(setting, am_seed)
        return dict(model=self.weights[((family, model_seed), network)], network=network,
                    layers=neuron_layers(net), kinds=tuple(KIND_POOLING) if kinds is None else kinds,
                    units=setting_units(setting, s.units), am_seed=am_seed, image_seed=self.seed,
                    natural_images=s.natural_images,
                    render=dict(self.render_settings(setting), jitter=s.jitter, pooling=KIND_POOLING,
                                eval_shifts=EVAL_SHIFTS))

    def render(self, family, setting, model_seed, am_seed, network):
        """One network's part of a suite, keyed by plain (objective, network) pairs (a safe load)."""
        from helpers.actmax import standard_transforms
        s, key = self.settings, (family, model_seed)
        suite = am_suite(self.nets[key], self.random_nets[key], setting_units(setting, s.units), self.sample,
                         self.natural, seed=am_seed, kinds=self.kinds(setting, am_seed), color_matrix=self.color_matrix,
                         networks=(network,),
                         transforms=standard_transforms(jitter_pixels=s.jitter), **self.render_settings(setting))
        return {(g.objective, g.network): r for g, r in suite.items()}

    def first(self, runs, family, setting="plain"):
        """The suite of the first model seed and AM seed."""
        return runs[(family, setting, self.model_seeds[0], self.settings.am_seeds[0])]

    def starts(self, runs):
        """The optimizer's start images (of the first suite)."""
        return torch.cat([r["start"] for r in self.first(runs, self.families[0]).values()])

    def controls(self, runs):
        """The primary measure on its known answers and its dose–response (``am_controls.csv``,
        ``am_dose_response.csv``); it passes when both do."""
        images = measure_controls(self.natural, self.starts(runs), seed=self.seed)
        rows = control_table(images)
        rows.to_csv(store.path("am_controls", profile=self.profile), index=False)
        g = torch.Generator().manual_seed(self.seed)
        backgrounds = {"natural images, phase-randomized": phase_randomized(self.natural[:32], g),
                       "the AM start images": self.starts(runs)[:32]}
        doses = dose_table(dose_response_images(backgrounds, seed=self.seed))
        doses.to_csv(store.path("am_dose_response", profile=self.profile), index=False)
        (known, known_reason), (monotone, dose_reason) = controls_verdict(rows), dose_verdict(doses)
        return Controls(images, rows, known and monotone, f"{known_reason}; {dose_reason}", doses)

    def dose_response_figure(self, controls, judged):
        """The primary measure and its companion along each dose factor, with every AM group's median read against
        them (saved)."""
        from helpers.plots import dose_response_figure
        fig = dose_response_figure(controls.doses, judged.medians, ("motif", "periodic"))
        fig.savefig(store.path("am_dose_response_figure", profile=self.profile), dpi=110)
        return fig

    def pooling_control(self, runs, judged):
        """The every-shift pooled row beside its artifact control: ``artifact_control``'s images (random localized
        ReLU units under the same pooling and render), each family's pooled images of the middle layer's units,
        trained and random-init, on every measure; and Cliff's δ of each trained group over the artifact control
        (images only: the control has no model seed; its images are not success-judged, having no natural-image
        scale) and over its random-init null (``prediction1_tables``' hierarchical effect). Written to
        ``am_pooling.csv``; (None, images) on a one-family page."""
        import pandas as pd

        from helpers.actmax import standard_transforms
        s = self.settings
        images, _ = artifact_control(kind_units("mid-pooled", s.units), seed=self.seed, progress=False,
                                     color_matrix=self.color_matrix,
                                     transforms=standard_transforms(jitter_pixels=s.jitter),
                                     parameterization=s.parameterization, steps=s.steps, lr=s.lr)
        artifact = {name: fn(images).numpy() for name, fn in MEASURES.items()}
        if judged.tables is None:
            return None, images  # the comparison needs both families' tables
        table, rows = judged.table, []
        pooled = table[(table.objective == "mid-pooled") & (table.setting == "plain") & table.success]
        effects = judged.tables["am_effects"].set_index(["setting", "measure", "family", "objective"])
        for family in self.families:
            mine = pooled[pooled.family == family]
            trained, null = mine[mine.network == "trained"], mine[mine.network == "random-init"]
            for name in MEASURES:
                over_artifact = stats.effect_over_null(trained[name].values, artifact[name], s.replicates,
                                                       self.seed)[0] if len(trained) > 1 else NAN_EFFECT
                over_null = effects.loc[("plain", name, family, "mid-pooled")]  # hierarchical, as every effect
                rows.append(dict(family=family, measure=name, trained=float(trained[name].median()),
                                 random_init=float(null[name].median()), artifact=float(pd.Series(artifact[name])
                                                                                       .median()),
                                 **{f"over_artifact_{k}": over_artifact[k] for k in ("delta", "low", "high")},
                                 **{f"over_null_{k}": over_null[k] for k in ("delta", "low", "high")}))
        out = pd.DataFrame(rows)
        out.to_csv(store.path("am_pooling", profile=self.profile), index=False)
        return out, images

    def natural_path(self, runs):
        """Per family, network and objective group (plain setting): the median share of an AM image's values at the
        network's quarter-depth layer inside the natural images' 1-99% range (``natural_path``), beside held-out
        natural images' own. Written to ``am_natural_path.csv``."""
        import pandas as pd

        from helpers.models import layer_at_depth
        rows = []
        held_out = self.sample[:len(self.natural)]
        for (family, setting, model_seed, am_seed), suite in runs.items():
            if setting != "plain" or am_seed != self.settings.am_seeds[0]:
                continue
            for network, model in zip(NETWORKS, (self.nets[(family, model_seed)],
                                                 self.random_nets[(family, model_seed)])):
                layer = layer_at_depth(model, 0.25)
                groups = {g.label: r["images"] for g, r in suite.items() if g.network == network}
                groups["natural images (held out)"] = held_out
                for label, inside in natural_path(model, groups, self.natural, layer).items():
                    rows.append(dict(family=family, model_seed=model_seed, network=network, layer=layer,
                                     group=label, inside=float(inside.median())))
        out = pd.DataFrame(rows)
        out.to_csv(store.path("am_natural_path", profile=self.profile), index=False)
        return out.groupby(["family", "network", "group"], sort=False).inside.agg(["median", "min", "max"]).round(3)

    def network_facts(self):
        """Each trained and random-init network's accuracy under circular shifts and, for the MLP, its first layer's
        locality and shifted copies (``invariance.network_facts``), on the page's natural images. Written to
        ``network_facts.csv``; returned with the mean and range over model seeds."""
        import pandas as pd

        from helpers import invariance
        rows = [dict(family=f, model_seed=m, network=network,
                     **invariance.network_facts(model, self.natural_uint8, self.natural_labels))
                for (f, m), net in self.nets.items()
                for network, model in zip(NETWORKS, (net, self.random_nets[(f, m)]))]
        out = pd.DataFrame(rows)
        out.to_csv(store.path("network_facts", profile=self.profile), index=False)
        return out.drop(columns="model_seed").groupby(["family", "network"]).agg(["mean", "min", "max"]).round(3)

    def judge(self, runs, controls):
        """The score table and, with both families, the gates, effects and comparisons (each written), the channel
        control and the verdict (``verdict.prediction1``)."""
        import pandas as pd
        table = score_table(runs)
        table.to_csv(store.path("am_scores", profile=self.profile), index=False)
        baselines = pd.concat([baseline_scores(self.natural).assign(group="natural CIFAR-10", family="data"),
                               baseline_scores(self.starts(runs)).assign(group="start images", family="data")])
        scored = pd.concat([table[table.success & (table.setting == "plain")], baselines])
        medians = scored.groupby(["family", "group"], sort=False)[list(MEASURES)].median().round(3)
        if not self.both:
            return Judged(table, scored, medians)
        s = self.settings
        gates, effects, comparisons = prediction1_tables(table, replicates=s.replicates, seed=self.seed)
        tables = {name: pd.DataFrame(rows) for name, rows in
                  (("am_gates", gates), ("am_effects", effects), ("am_comparisons", comparisons))}
        for name, frame in tables.items():
            frame.to_csv(store.path(name, profile=self.profile), index=False)
        primary = next(c for c in comparisons if c["primary"])
        channel = channel_control(effects)
        result, reason = verdict.prediction1(primary, (controls.passed, controls.reason), channel)
        rule_power = self.rule_power(table)
        if result != verdict.NOT_TESTABLE:
            if rule_power is None:
                reason += "; descriptive: the rule's power cannot be simulated (too few model seeds or images)"
            elif not rule_power.adequate.iloc[0]:
                reason += "; descriptive: the rule's simulated power at these seeds falls short"
        return Judged(table, scored, medians, tables, channel, result, reason, rule_power)

    def rule_power(self, table):
        """Prediction 1's rule on simulated studies at the freeze's noise, or before the freeze at the noise this run
        shows (``power.motif_noise``; the confirmatory run never sets its own rule's power), at its model
        seeds and at twice as many (``power.motif_power``), or None where the noise cannot be estimated. Written to
        ``am_power.csv``."""
        import pandas as pd

        from helpers import power
        noise = freeze.power_noise("prediction1", self.profile, lambda: power.motif_noise(table))
        if noise is None:
            return None
        studies = min(profiles.get(self.profile).compare.power_studies, MOTIF_POWER_STUDIES)
        out = pd.DataFrame([dict(power.motif_power(n, len(self.settings.am_seeds), noise, studies, self.seed),
                                 **{f"noise_{k}": v for k, v in vars(noise).items()})
                            for n in (len(self.model_seeds), 2 * len(self.model_seeds))])
        out.to_csv(store.path("am_power", profile=self.profile), index=False)
        return out

    def power_table(self, judged):
        if judged.power is None:
            return "The rule's power cannot be simulated here (too few model seeds or successful images)."
        return judged.power[["model_seeds", "studies", "similar_supported", "apart_not_supported",
                             "null_not_supported", "null_supported", "coverage_similar", "coverage_null",
                             "adequate"]].round(2)

    # ------------------------------------------------------------------ the bias itself, without AM

    def shift_invariance(self, images=500):
        """Every network's invariance to circular shifts along depth (``invariance.network_rows``, each network
        cached apart) on ``images`` test images (the natural-image baseline's), and at each study layer pair the
        training gains, the MLP's share of the VGG's and the rule's verdict (``verdict.shift_invariance_verdict``).
        Writes both tables. Returns (rows, pairs) as DataFrames."""
        import pandas as pd

        from helpers import invariance
        x = self.natural[:images]
        frames = []
        for (family, model_seed), net in self.nets.items():
            for network, model in zip(NETWORKS, (net, self.random_nets[(family, model_seed)])):
                rows = store.SHIFT_INVARIANCE(
                    lambda m=model: invariance.network_rows(m, x),
                    dict(profile=self.profile, family=family, model_seed=model_seed, network=network),
                    model=self.weights[((family, model_seed), network)], network=network, images=len(x),
                    image_seed=self.seed)  # the page's seed draws which test images are read
                frames.append(pd.DataFrame(rows).assign(family=family, model_seed=model_seed, network=network))
        table = pd.concat(frames, ignore_index=True)
        table.to_csv(store.path("shift_invariance", profile=self.profile), index=False)
        if not self.both:
            return table, None
        from helpers import power
        gains = invariance.training_gains(table[table.layer != "pixels"])
        pairs, studies = [], profiles.get(self.profile).compare.power_studies
        for layer in profiles.STUDY_LAYERS:
            modules = {f: self._module(f, layer) for f in self.families}
            m = invariance.pair_gains(gains, modules, self.settings.replicates, self.seed)
            result, reason = verdict.shift_invariance_verdict(m["cnn"], m["position"])
            noise = freeze.power_noise("shift_invariance", self.profile,
                                       lambda: power.gain_noise(gains, modules), layer)
            nan = float("nan")  # no frozen noise for this pair: the power is undefined, the verdict descriptive
            rule_power = power.gain_power(len(self.model_seeds), noise, studies, self.seed) if noise else dict(
                similar_supported=nan, null_not_supported=nan, adequate=False)
            if not rule_power["adequate"]:
                reason += "; descriptive: the rule's simulated power at these seeds falls short"
            pairs.append(dict(layer=layer, cnn_module=modules["cnn"], mlp_module=modules["mlp"],
                              **{f"{k}_{q}": m[k][q] for k in ("cnn", "mlp") for q in ("value", "low", "high")},
                              position=m["position"]["value"], position_low=m["position"]["low"],
                              position_high=m["position"]["high"], verdict=result, reason=reason,
                              **{f"power_{k}": v for k, v in rule_power.items() if k != "model_seeds"}))
        pairs = pd.DataFrame(pairs)
        pairs.to_csv(store.path("shift_invariance_pairs", profile=self.profile), index=False)
        return table, pairs

    def invariance_table(self, pairs):
        """The layer pairs' shift-invariance verdicts, rounded, an undefined position said in words."""
        if pairs is None:
            return None
        shown = pairs.copy()
        for side in ("cnn", "mlp", "position"):
            value = side if side == "position" else f"{side}_value"
            shown[side if side == "position" else f"{side}_gain"] = [
                "undefined (the VGG's gain may be 0)" if r[value] != r[value] else
                f"{r[value]:.3f} [{r[f'{side}_low']:.3f}, {r[f'{side}_high']:.3f}]" for _, r in pairs.iterrows()]
        shown["power"] = [f"{r.power_similar_supported:.2f} / {r.power_null_not_supported:.2f}"
                          + ("" if r.power_adequate else " (short)") for r in pairs.itertuples()]
        return shown[["layer", "cnn_module", "mlp_module", "cnn_gain", "mlp_gain", "position", "verdict", "power",
                      "reason"]]

    def _module(self, family, layer):
        from helpers.models import resolve_layer
        module, _ = profiles.readout(self.profile, layer, family)
        return resolve_layer(self.nets[(family, self.model_seeds[0])], module)[0]  # 'hidden': the network's name

    def shift_invariance_figure(self, table):
        """Invariance gained by training (trained minus random-init, the mean over ``invariance.GAIN_SHIFTS``)
        along relative depth, one line per family and model seed, and the raw invariance per shift at the middle
        layer pair (saved)."""
        import matplotlib.pyplot as plt

        from helpers import invariance
        gains = invariance.training_gains(table[table.layer != "pixels"])
        depth = table.drop_duplicates(["family", "layer"]).set_index(["family", "layer"]).depth
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4))
        colors = {"cnn": "tab:blue", "mlp": "tab:orange"}
        for (family, model_seed), part in gains.groupby(["family", "model_seed"]):
            per_layer = part.groupby("layer").gain.mean()
            xs = [depth[(family, layer)] for layer in per_layer.index]
            order = sorted(range(len(xs)), key=xs.__getitem__)
            ax.plot([xs[i] for i in order], [per_layer.iloc[i] for i in order], "o-", color=colors.get(family),
                    alpha=0.6, label=profiles.FAMILY[family].short if model_seed == self.model_seeds[0] else None)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="relative depth", ylabel="invariance gained by training",
               title=f"shifts of {', '.join(map(str, invariance.GAIN_SHIFTS))} px")
        ax.legend()
        for family in self.families:
            module = self._module(family, "mid")
            for network, style in (("trained", "-"), ("random-init", ":")):
                rows = table[(table.family == family) & (table.layer == module) & (table.network == network)]
                curve = rows.groupby("shift").invariance.mean()
                bx.plot(curve.index, curve.values, style, color=colors.get(family),
                        label=f"{profiles.FAMILY[family].short} {module}, {network}")
        pixels = table[table.layer == "pixels"].groupby("shift").invariance.mean()
        bx.plot(pixels.index, pixels.values, "k--", label="pixels")
        bx.set(xlabel="shift (px)", ylabel="mean unit correlation with the shifted image", title="middle layer pair")
        bx.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(store.path("shift_invariance_figure", profile=self.profile), dpi=110)
        return fig

    # ------------------------------------------------------------------ tables and figures

    def gate_table(self, judged):
        if judged.tables is None:
            return judged.table.groupby(["setting", "family", "group"]).agg(
                images=("success", "size"), successful=("success", "sum"), saturated=("saturated", "mean"))
        gates = judged.tables["am_gates"]
        return gates.assign(value=gates.value.round(3)).pivot(index=["setting", "family", "group"], columns="gate",
                                                              values=["value", "passed"])

    def success_table(self, judged):
        """Per group: images, successes, and the medians of the two success criteria (gain over the start image,
        the natural-image quantile reached)."""
        return judged.table.groupby(["setting", "family", "group"], sort=False).agg(
            images=("success", "size"), successful=("success", "sum"), median_gain=("gain", "median"),
            median_natural_quantile=("natural_quantile", "median")).round(3)

    def controls_figure(self, controls):
        """One example of each control and the primary measure's scores on all of them, against the thresholds."""
        from helpers.plots import controls_figure
        fig = controls_figure(controls.images, controls.rows, verdict.MEASURE_CONTROLS, PRIMARY_MEASURE)
        fig.savefig(store.path("am_controls_figure", profile=self.profile), dpi=120)
        return fig

    def class_figures(self, runs):
        import matplotlib.pyplot as plt

        from helpers.plots import show_images
        for f in self.families:
            show_images(self.first(runs, f)[AMGroup("classes")]["images"], self.classes,
                        suptitle=f"{profiles.FAMILY[f].architecture} ({self.profile}): class logits, no penalty")
            plt.savefig(store.path("am_classes_figure", profile=self.profile, family=f), dpi=120)
            plt.show()

    def group(self, runs, judged, family, group, setting="plain"):
        """A group's images over every model seed and AM seed, in the score table's order: (images, rows)."""
        table = judged.table
        images = [r[group]["images"] for (f, st, _, _), r in runs.items() if f == family and st == setting
                  and group in r]
        rows = table[(table.family == family) & (table.setting == setting) & (table.objective == group.objective)
                     & (table.network == group.network)]
        return torch.cat(images), rows

    def gallery(self, runs, judged, setting="plain"):
        """Every group's images at reading size: the trained network's beside its random-init null's, each titled
        with its target, its motif score and ✓ when it succeeded (saved per group)."""
        import matplotlib.pyplot as plt

        from helpers.plots import am_gallery
        for f in self.families:
            for group in [g for g in self.first(runs, f, setting) if g.network == "trained"]:
                for g in (group, group.null):
                    images, rows = self.group(runs, judged, f, g, setting)
                    am_gallery(images, rows, PRIMARY_MEASURE,
                               f"{profiles.FAMILY[f].architecture} ({self.profile}): {OBJECTIVE_WORDS[g.objective]}, "
                               f"{g.network}, {setting} setting")
                    plt.savefig(store.path("am_group_figure", profile=self.profile, family=f,
                                           group=f"{setting}_{g.label.replace(' ', '_')}"), dpi=100)
                    plt.show()

    def convergence_figure(self, runs):
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(self.families), figsize=(6 * len(self.families), 3.5), squeeze=False)
        for ax, f in zip(axes[0], self.families):
            for group, r in self.first(runs, f).items():
                h = r["history"] / r["history"][-1].abs().clamp_min(1e-8)  # each target relative to its final value
                ax.plot(h.median(1).values.numpy(), label=group.label)
            ax.set(title=f"{profiles.FAMILY[f].architecture} ({self.profile}), no penalty", xlabel="step",
                   ylabel="objective / final value (median)", ylim=(-0.5, 1.2))
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def scores_figure(self, judged):
        """The measures of the successful images per group and family, beside natural images and the optimizer's
        start images (saved)."""
        from helpers.plots import scores_figure
        fig = scores_figure(judged.scored, list(MEASURES), PRIMARY_MEASURE, self.profile)
        fig.savefig(store.path("am_scores_figure", profile=self.profile), dpi=120)
        return fig

    def effects_table(self, judged):
        if judged.tables is None:
            return None
        return judged.tables["am_effects"].set_index(["setting", "measure", "objective", "family"])[
            ["n_trained", "n_null", "delta", "low", "high", "p", "gates_ok"]].round(4)

    def comparisons_table(self, judged):
        if judged.tables is None:
            return None
        return judged.tables["am_comparisons"][
            ["primary", "objective", "measure", "setting", "cnn_delta", "cnn_low", "cnn_p", "mlp_delta", "mlp_low",
             "mlp_p", "position", "position_low", "position_high", "direct_delta", "gates_ok", "verdict",
             "reason"]].round(3)

    # ------------------------------------------------------------------ the reading

    def reading(self, judged, controls):
        """Prediction 1's verdict in words, with the numbers it rests on; written with the comparisons to
        ``am_summary.json`` for ``03_compare`` and the front page."""
        from helpers.paths import write_json
        if judged.tables is None:
            return "Prediction 1 needs both families: run with model='both'."
        s, comparisons = self.settings, judged.tables["am_comparisons"]
        reading = "\n".join(self._reading_lines(judged, controls))
        write_json(store.path("am_summary", profile=self.profile), dict(
            profile=self.profile, units=s.units, model_seeds=len(self.model_seeds), am_seeds=len(s.am_seeds),
            steps=s.steps, prediction1=judged.verdict, reason=judged.reason,
            per_kind={f"{r.objective}/{r.measure}/{r.setting}": r.verdict for r in comparisons.itertuples()},
            controls=dict(passed=bool(controls.passed), reason=controls.reason),
            channel_control={k: (v if isinstance(v, bool) else float(v)) for k, v in judged.channel.items()
                             if isinstance(v, (bool, int, float))},
            primary=comparisons[comparisons.primary].iloc[0].to_dict(), reading=reading,
            power=None if judged.power is None else judged.power.iloc[0].to_dict(),
            comparisons=comparisons.to_dict("records"), settings=dict(s.as_dict(), overrides=self.overrides),
            summary=judged.medians.reset_index().to_dict("records"), freeze=freeze.digest()))
        return reading

    def _reading_lines(self, judged, controls):
        s, comparisons, gates = self.settings, judged.tables["am_comparisons"], judged.tables["am_gates"]
        p, ch = comparisons[comparisons.primary].iloc[0], judged.channel
        lines = [f"Profile {self.profile!r} ({profiles.get(self.profile).models}); {s.units} middle-layer units "
                 f"(CNN channels, MLP hidden neurons) × {len(self.model_seeds)} model seeds × {len(s.am_seeds)} AM "
                 f"seeds per network, {s.steps} steps.",
                 f"- **The instrument.** {controls.reason[0].upper() + controls.reason[1:]}; on the "
                 f"CNN's channel images (the premise, and the measure's positive control on real AM images) δ "
                 f"{ch['delta']:.2f} [{ch['low']:.2f}, {ch['high']:.2f}] over their null (p {ch['p']:.3g}).",
                 f"- **The primary test** (middle-layer units, {PRIMARY_MEASURE}, no penalty): "
                 f"CNN δ {p.cnn_delta:.2f} [{p.cnn_low:.2f}, {p.cnn_high:.2f}] over its null (p {p.cnn_p:.3g}); "
                 f"MLP δ {p.mlp_delta:.2f} [{p.mlp_low:.2f}, {p.mlp_high:.2f}] (p {p.mlp_p:.3g}); position "
                 f"{p.position:.2f} [{p.position_low:.2f}, {p.position_high:.2f}]; MLP over CNN directly δ "
                 f"{p.direct_delta:.2f} [{p.direct_low:.2f}, {p.direct_high:.2f}].",
                 "- **Robustness checks** (the same rule, other objectives, measures and settings): " + ", ".join(
                     f"{OBJECTIVE_WORDS[r.objective]}/{r.measure}/{r.setting}: {r.verdict}"
                     for r in comparisons[~comparisons.primary].itertuples()) + "."]
        successes = judged.table.groupby(["setting", "family", "group"], sort=False).success.agg(["sum", "size"])
        lines.append("- Successful images: " + "; ".join(
            f"{st} {profiles.FAMILY[f].architecture} {g} {int(r['sum'])}/{int(r['size'])}"
            for (st, f, g), r in successes.iterrows()) + ".")
        failed = gates[~gates.passed.astype(bool)]
        if len(failed):
            lines.append("- Failed gates: " + "; ".join(f"{r.setting} {r.family} {r.group}: {r.gate} {r.value:.3g}"
                                                       for r in failed.itertuples()) + ".")
        if judged.power is not None:
            pw = judged.power.iloc[0]
            lines.append(f"- **Power** (simulated at {freeze.noise_words(self.profile)}, {int(pw.model_seeds)} model "
                         f"seeds): the rule "
                         f"supports a planted MLP like the CNN in {pw.similar_supported:.0%} of studies, rejects a "
                         f"planted null in {pw.null_not_supported:.0%} (adequate: {bool(pw.adequate)}).")
        lines.append(f"**Prediction 1 on this profile: {judged.verdict}** ({judged.reason}).")
        return lines

    def explorer(self):
        from helpers.explore import am_explorer
        nets = {profiles.FAMILY[f].architecture: self.nets[(f, self.model_seeds[0])] for f in self.families}
        return am_explorer(nets, {name: neuron_layers(net)["last"] for name, net in nets.items()},
                           steps=min(self.settings.steps, 128), lr=self.settings.lr, color_matrix=self.color_matrix)
