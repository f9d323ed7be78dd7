"""Prediction 1 as the study runs it (``01_activation_maximization``): the matched objectives of each network, the AM
suite (a trained network and its random-init null, cached), the score table, the effects and comparisons the verdict
reads, and the page's figures and summary."""
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers import profiles, stats, store, verdict
from helpers.actmax import Stacked, channel, class_logit, is_conv, preactivation, render, unit
from helpers.models import fingerprint, record
from helpers.repetition import repetition_score, saturated_share, spectral_score
from helpers.units import NETWORKS, AMGroup

# A unit responds to a set of images when it is positive on more than this share of them: AM can move its image (a
# ReLU unit that is never on has no gradient). Not the SAE's "dead", which is about held-out firing.
RESPONSIVE_SHARE = 0.01


def earlier_layer(model):
    """A layer halfway through the network: a middle conv ReLU (CNN) or a middle block's GELU (MLP)."""
    if hasattr(model, "features"):
        relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
        return relus[len(relus) // 2 - 1]
    return f"blocks.{len(model.blocks) // 2 - 1}.block.1"


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


# The two regularization settings every Prediction 1 comparison runs under: the verdict must not hinge on one. With no
# penalty 13% of the cpu MLP's unit-image pixels were saturated; an L2 pull towards grey of 0.02 per pixel brought
# that to 0.8% at 4% less objective (measured on 12 last-hidden-layer units, 256 steps).
AM_SETTINGS = {"plain": {}, "l2": dict(l2=0.02)}


# The repetition measures, each a function of a batch of images returning one score per image.
MEASURES = {"autocorrelation": lambda images: repetition_score(images)[0], "spectral": spectral_score}


def objective_plan(model, layer, n_units, sample_images, seed=0):
    """The objectives of one network: its 10 class logits, ``n_units`` units of ``layer`` and of an earlier layer
    (a single unit: for a conv layer, one channel at the centre position), and for a conv earlier layer the same
    channels as whole-channel means. Units are picked among those that respond to ``sample_images``."""
    earlier = earlier_layer(model)
    picked = {name: pick_units(model, name, n_units, sample_images, seed) for name in (layer, earlier)}
    plan = {"classes": class_logit(range(10)),
            "units": unit(preactivation(model, layer), picked[layer]),
            "earlier": unit(preactivation(model, earlier), picked[earlier])}
    if is_conv(model, earlier):
        plan["channels"] = channel(preactivation(model, earlier), picked[earlier])
    return plan


@torch.no_grad()
def objective_values(model, objective, images, batch_size=500):
    """Every target's objective value on every image (floats in [0, 1]), without transforms: (len(images), n)."""
    device = next(model.parameters()).device
    layers = objective.layers
    out = []
    for i in range(0, len(images), batch_size):
        with record(model, layers) as acts:
            acts["logits"] = model(images[i:i + batch_size].to(device))
            out.append(objective.values(acts[objective.layer]).cpu())
    return torch.cat(out)


def am_suite(net, random_net, layer, n_units, sample_images, natural_images, seed=0, progress=True, **settings):
    """Every objective of ``objective_plan`` on the trained network and, as its null, on a randomly initialized one
    of the same architecture, each network's objectives rendered as one batch (``Stacked``). {AMGroup: dict} with,
    for each image, its objective value without the optimizer's transforms (``final``), and its target's values on
    ``natural_images`` (``natural``, floats in [0, 1]), from which ``verdict.am_success`` judges it when the tables
    are built. ``settings`` go to ``render``."""
    out = {}
    for network, model in zip(NETWORKS, (net, random_net)):
        plan = objective_plan(model, layer, n_units, sample_images, seed)
        batch = Stacked(plan.values())
        result = render(model, batch, seed=seed, progress=progress, **settings)
        for (kind, objective), rows in zip(plan.items(), batch.slices()):
            images = result.images[rows]
            out[AMGroup(kind, network)] = dict(
                images=images, start=result.start[rows], history=result.history[:, rows], layer=objective.layer,
                name=objective.name, targets=objective.targets,
                final=objective_values(model, objective, images).diagonal(),
                natural=objective_values(model, objective, natural_images))
    return out


def score_table(runs):
    """Long table (pandas): one row per AM image of every run. ``runs``: {(family, setting, am_seed): suite}.
    Columns: family, setting, am_seed, network, objective, group (the label figures show), index, target, success
    (``verdict.am_success``), saturated, final, threshold, and one column per ``MEASURES`` entry."""
    import pandas as pd
    rows = []
    for (family, setting, am_seed), suite in runs.items():
        for group, r in suite.items():
            success, threshold = verdict.am_success(r["final"], r["natural"])
            scores = {name: fn(r["images"]).tolist() for name, fn in MEASURES.items()}
            saturated = saturated_share(r["images"]).tolist()
            for i, target in enumerate(r["targets"]):
                rows.append(dict(family=family, setting=setting, am_seed=am_seed, network=group.network,
                                 objective=group.objective, group=group.label, index=i, target=target,
                                 success=bool(success[i]), saturated=saturated[i], final=float(r["final"][i]),
                                 threshold=float(threshold[i]), **{name: v[i] for name, v in scores.items()}))
    return pd.DataFrame(rows)


def baseline_scores(images):
    """The measures on images that are not AM results (natural images, the optimizer's start images)."""
    import pandas as pd
    return pd.DataFrame({name: fn(images).tolist() for name, fn in MEASURES.items()})


NAN_EFFECT = dict(delta=float("nan"), low=float("nan"), high=float("nan"), p=1.0)


def prediction1_tables(table, replicates=1000, seed=0):
    """Everything Prediction 1's verdict needs, from ``score_table``: (gates, effects, comparisons) as lists of
    dicts. Gates: per (setting, family, network, objective). Effects: Cliff's δ of trained over random-init per
    (setting, measure, family, objective), successful images only, Holm-adjusted by ``verdict.adjust_prediction1``
    (the CNN's channel objective is listed too, outside the verdict). Comparisons: one verdict row per (objective,
    measure, setting) of ``verdict.PREDICTION1_OBJECTIVES`` from ``verdict.prediction1_comparison``."""
    gates, passed, effects, replicate_sets = [], {}, [], {}
    for (setting, family, network, objective), part in table.groupby(
            ["setting", "family", "network", "objective"], sort=False):
        rows = verdict.am_gates(len(part), int(part.success.sum()), float(part.saturated.mean()))
        group = AMGroup(objective, network)
        gates += [dict(setting=setting, family=family, network=network, objective=objective, group=group.label, **g)
                  for g in rows]
        passed[(setting, family, group)] = verdict.gates_passed(rows)
    objectives = [k for k in (*verdict.PREDICTION1_OBJECTIVES, "channels") if k in set(table.objective)]
    for setting in AM_SETTINGS:
        for measure in MEASURES:
            for family in profiles.FAMILIES:
                for objective in objectives:
                    mine = (table.setting == setting) & (table.family == family) & (table.objective == objective)
                    if not mine.any():
                        continue  # the MLP has no channel objective
                    trained = table[mine & (table.network == "trained") & table.success][measure]
                    null = table[mine & (table.network == "random-init") & table.success][measure]
                    if len(trained) < 2 or len(null) < 2:
                        effect, reps = NAN_EFFECT, None
                    else:
                        effect, reps = stats.effect_over_null(trained.values, null.values, replicates, seed)
                    replicate_sets[(setting, measure, family, objective)] = reps
                    group = AMGroup(objective)
                    effects.append(dict(setting=setting, measure=measure, family=family, objective=objective,
                                        n_trained=len(trained), n_null=len(null),
                                        in_verdict=objective in verdict.PREDICTION1_OBJECTIVES,
                                        gates_ok=verdict.all_passed(passed, [(setting, family, group),
                                                                             (setting, family, group.null)]),
                                        **effect))
    verdict.adjust_prediction1(effects)
    find = {(e["setting"], e["measure"], e["family"], e["objective"]): e for e in effects}
    comparisons = []
    for objective in verdict.PREDICTION1_OBJECTIVES:
        for measure in MEASURES:
            for setting in AM_SETTINGS:
                cnn, mlp = (find.get((setting, measure, f, objective)) for f in profiles.FAMILIES)
                if cnn is None or mlp is None:
                    continue
                reps_c, reps_m = (replicate_sets[(setting, measure, f, objective)] for f in profiles.FAMILIES)
                pos = stats.effect_ratio(reps_m, reps_c, mlp["delta"], cnn["delta"]) if reps_c is not None and \
                    reps_m is not None else dict(value=float("nan"), low=float("nan"), high=float("nan"))
                gates_ok = cnn["gates_ok"] and mlp["gates_ok"]
                result, reason = verdict.prediction1_comparison(gates_ok, cnn, mlp, pos)
                comparisons.append(dict(objective=objective, measure=measure, setting=setting, cnn_delta=cnn["delta"],
                                        cnn_low=cnn["low"], cnn_p_holm=cnn["p_holm"], mlp_delta=mlp["delta"],
                                        mlp_low=mlp["low"], mlp_p_holm=mlp["p_holm"], position=pos["value"],
                                        position_low=pos["low"], position_high=pos["high"], gates_ok=gates_ok,
                                        cnn_pattern=verdict.cnn_pattern(cnn), verdict=result, reason=reason))
    return gates, effects, comparisons


# ----------------------------------------------------------------------------- the page: 01_activation_maximization

OBJECTIVE_WORDS = {"classes": "class logits", "units": "last-hidden-layer units", "earlier": "earlier-layer units"}


@dataclass
class AMPage:
    """Prediction 1 on one profile's models, as ``01_activation_maximization`` shows it."""
    profile: str
    model: str = "both"          # "cnn", "mlp" or "both" (the verdict needs both)
    seed: int = 0                # the models' seed, the image picks and the first AM seed
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        from helpers.actmax import cifar_color_matrix
        from helpers.data import load_cifar10, to_float
        from helpers.train import load_trained, random_model
        profiles.check_family(self.model, (*profiles.FAMILIES, "both"))
        profiles.check_seed(self.seed)
        self.settings = profiles.get(self.profile).am.with_overrides(self.overrides)
        self.families = list(profiles.FAMILIES) if self.model == "both" else [self.model]
        self.nets = {f: load_trained(f, self.profile, self.seed) for f in self.families}
        self.random_nets = {f: random_model(f, self.profile, self.seed) for f in self.families}
        test_x, _, self.classes = load_cifar10("test")
        order = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(self.seed))
        self.sample = to_float(test_x[order[:512]])                                      # to pick responsive units
        self.natural = to_float(test_x[order[512:512 + self.settings.natural_images]])   # thresholds, a baseline
        self.color_matrix = cifar_color_matrix()
        self.runs, self.tables = {}, None

    @property
    def both(self):
        return len(self.families) == 2

    def describe(self):
        s = self.settings
        lines = [f"{profiles.FAMILY_NAMES[f]} ({f}), profile {self.profile!r}: "
                 f"{sum(p.numel() for p in net.parameters()):,} parameters; units of {s.layer!r} "
                 f"({net.hidden_layer if s.layer == 'hidden' else s.layer}) and of {earlier_layer(net)!r}"
                 for f, net in self.nets.items()]
        lines.append(f"{s.units} units per layer and AM seed, {s.am_seeds} AM seeds, {s.steps} steps of Adam (lr "
                     f"{s.lr}), {s.parameterization} image, jitter {s.jitter} px, scale ±8%, rotation ±8°; settings: "
                     f"{AM_SETTINGS}")
        return "\n".join(lines)

    def render_all(self):
        """Every (family, regularization setting, AM seed) suite, each cached (``store.AM_SUITE``)."""
        from helpers.actmax import standard_transforms
        s = self.settings
        for f in self.families:
            weights = fingerprint(self.nets[f]), fingerprint(self.random_nets[f])
            for setting, penalty in AM_SETTINGS.items():
                for am_seed in range(self.seed, self.seed + s.am_seeds):
                    render_settings = dict(parameterization=s.parameterization, steps=s.steps, lr=s.lr, **penalty)

                    def compute(f=f, render_settings=render_settings, am_seed=am_seed):
                        suite = am_suite(self.nets[f], self.random_nets[f], s.layer, s.units, self.sample,
                                         self.natural, seed=am_seed, color_matrix=self.color_matrix,
                                         transforms=standard_transforms(jitter_pixels=s.jitter), **render_settings)
                        return {(g.objective, g.network): r for g, r in suite.items()}  # plain keys: a safe load
                    where = dict(profile=self.profile, family=f, setting=setting, am_seed=am_seed)
                    saved = store.AM_SUITE(
                        compute, where, model=weights[0], random_model=weights[1], layer=s.layer, units=s.units,
                        am_seed=am_seed, image_seed=self.seed, natural_images=s.natural_images,
                        render=dict(render_settings, jitter=s.jitter))
                    self.runs[(f, setting, am_seed)] = {AMGroup(*k): r for k, r in saved.items()}
        return self.runs

    def first(self, family, setting="plain"):
        return self.runs[(family, setting, self.seed)]

    def class_figures(self):
        import matplotlib.pyplot as plt

        from helpers.plots import show_images
        for f in self.families:
            show_images(self.first(f)[AMGroup("classes")]["images"], self.classes,
                        suptitle=f"{profiles.FAMILY_NAMES[f]} ({self.profile}): class logits, no penalty")
            plt.savefig(store.path("am_classes_figure", profile=self.profile, family=f), dpi=120)
            plt.show()

    def unit_figures(self):
        """Each objective beside its random-init null (no penalty), then the hidden-layer units under L2."""
        import matplotlib.pyplot as plt

        from helpers.plots import show_images
        for f in self.families:
            suite, name = self.first(f), profiles.FAMILY_NAMES[f]
            for group in [g for g in suite if g.network == "trained"]:
                for g in (group, group.null):
                    r = suite[g]
                    success, _ = verdict.am_success(r["final"], r["natural"])
                    titles = [f"{t}{' ✓' if ok else ''}" for t, ok in zip(r["targets"], success.tolist())]
                    show_images(r["images"][:16], titles[:16], suptitle=f"{name} ({self.profile}): {g.label}, "
                                                                         f"{r['name']}")
                    plt.savefig(store.path("am_group_figure", profile=self.profile, family=f,
                                           group=g.label.replace(" ", "_")), dpi=120)
                    plt.show()
            r = self.first(f, "l2")[AMGroup("units")]
            show_images(r["images"][:16], r["targets"][:16], suptitle=f"{name} ({self.profile}): units, L2 setting")
            plt.show()

    def convergence_figure(self):
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(self.families), figsize=(6 * len(self.families), 3.5), squeeze=False)
        for ax, f in zip(axes[0], self.families):
            for group, r in self.first(f).items():
                h = r["history"] / r["history"][-1].abs().clamp_min(1e-8)  # each target relative to its final value
                ax.plot(h.median(1).values.numpy(), label=group.label)
            ax.set(title=f"{profiles.FAMILY_NAMES[f]} ({self.profile}), no penalty", xlabel="step",
                   ylabel="objective / final value (median)", ylim=(-0.5, 1.2))
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def judge(self):
        """The score table, and with both families the gates, effects and comparisons (each written)."""
        import pandas as pd
        self.table = score_table(self.runs)
        self.table.to_csv(store.path("am_scores", profile=self.profile), index=False)
        if not self.both:
            return None
        s = self.settings
        gates, effects, comparisons = prediction1_tables(self.table, replicates=s.replicates, seed=self.seed)
        self.tables = {name: pd.DataFrame(rows) for name, rows in
                       (("am_gates", gates), ("am_effects", effects), ("am_comparisons", comparisons))}
        for name, frame in self.tables.items():
            frame.to_csv(store.path(name, profile=self.profile), index=False)
        self.verdict, self.per_kind = verdict.prediction1(comparisons)
        return self.tables

    def gate_table(self):
        if self.tables is None and self.judge() is None:
            return self.table.groupby(["setting", "family", "group"]).agg(
                images=("success", "size"), successful=("success", "sum"), saturated=("saturated", "mean"))
        gates = self.tables["am_gates"]
        return gates.assign(value=gates.value.round(3)).pivot(index=["setting", "family", "group"], columns="gate",
                                                              values=["value", "passed"])

    def scores_figure(self):
        """The two repetition scores of the successful images per group and family, beside natural images and the
        optimizer's start images (saved); keeps the medians for ``score_medians``."""
        import matplotlib.pyplot as plt
        import pandas as pd
        import seaborn as sns
        starts = torch.cat([r["start"] for r in self.first(self.families[0]).values()])
        baselines = pd.concat([baseline_scores(self.natural).assign(group="natural CIFAR-10", family="data"),
                               baseline_scores(starts).assign(group="start images", family="data")])
        shown = pd.concat([self.table[self.table.success], baselines])
        fig, axes = plt.subplots(len(MEASURES), 1, figsize=(13, 4 * len(MEASURES)), squeeze=False)
        for ax, measure in zip(axes[:, 0], MEASURES):
            sns.boxplot(data=shown, x="group", y=measure, hue="family", ax=ax, fliersize=2)
            ax.set(xlabel="", ylabel=f"{measure} score",
                   title=f"{measure} score of successful AM images, both settings ({self.profile})")
            ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        plt.savefig(store.path("am_scores_figure", profile=self.profile), dpi=120)
        self.medians = shown.groupby(["family", "group"], sort=False)[list(MEASURES)].median().round(3)
        return fig

    def score_medians(self):
        return self.medians

    def effects_table(self):
        if not self.both:
            return None
        return self.tables["am_effects"].set_index(["setting", "measure", "objective", "family"])[
            ["n_trained", "n_null", "delta", "low", "high", "p", "p_holm", "gates_ok"]].round(4)

    def comparisons_table(self):
        if not self.both:
            return None
        return self.tables["am_comparisons"][
            ["objective", "measure", "setting", "cnn_delta", "cnn_low", "mlp_delta", "mlp_low", "position",
             "position_low", "position_high", "gates_ok", "verdict", "reason"]].round(3)

    def reading(self):
        """Prediction 1's verdict in words, with the numbers it rests on; written with the comparisons to
        ``am_summary.json`` for ``03_compare`` and the front page."""
        from helpers.paths import write_json
        if not self.both:
            return "Prediction 1 needs both families: run with model='both'."
        s, comparisons, gates = self.settings, self.tables["am_comparisons"], self.tables["am_gates"]
        lines = [f"Profile {self.profile!r} ({profiles.get(self.profile).models}); {s.units} units per layer × "
                 f"{s.am_seeds} AM seeds, {s.steps} steps, settings {', '.join(AM_SETTINGS)}."]
        for kind, v in self.per_kind.items():
            part = comparisons[comparisons.objective == kind]
            lines.append(f"- **{OBJECTIVE_WORDS[kind]}: {v}**. CNN δ over its null " + ", ".join(
                f"{r.cnn_delta:.2f} [{r.cnn_low:.2f}, …]" for r in part.itertuples()) + "; MLP δ " + ", ".join(
                f"{r.mlp_delta:.2f} [{r.mlp_low:.2f}, …]" for r in part.itertuples()) +
                f" (per measure and setting: {', '.join(f'{r.measure}/{r.setting}' for r in part.itertuples())}).")
        successes = self.table.groupby(["family", "group"]).success.agg(["sum", "size"])
        lines.append("- Successful images: " + "; ".join(
            f"{profiles.FAMILY_NAMES[f]} {g} {int(r['sum'])}/{int(r['size'])}" for (f, g), r in successes.iterrows())
            + ".")
        failed = gates[~gates.passed.astype(bool)]
        if len(failed):
            lines.append("- Failed gates: " + "; ".join(f"{r.setting} {r.family} {r.group}: {r.gate} {r.value:.3g}"
                                                       for r in failed.itertuples()) + ".")
        lines.append(f"**Prediction 1 on this profile: {self.verdict}.**")
        reading = "\n".join(lines)
        write_json(store.path("am_summary", profile=self.profile), dict(
            profile=self.profile, units=s.units, am_seeds=s.am_seeds, steps=s.steps, prediction1=self.verdict,
            per_kind=self.per_kind, reading=reading, comparisons=comparisons.to_dict("records"),
            settings=dict(s.as_dict(), overrides=self.overrides),
            summary=self.medians.reset_index().to_dict("records")))
        return reading

    def explorer(self):
        from helpers.explore import am_explorer
        return am_explorer({profiles.FAMILY_NAMES[f]: net for f, net in self.nets.items()}, layer=self.settings.layer,
                           steps=min(self.settings.steps, 128), lr=self.settings.lr, color_matrix=self.color_matrix)
