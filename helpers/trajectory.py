"""Alignment along training and scale (``06_training``): how the CNN's representation and each other model's come
to resemble each other as they learn, and whether a larger MLP comes closer.

Every model of the profile keeps a checkpoint after each epoch (``train.epoch_paths``; epoch 0 is its
initialization). At each study layer this module takes linear CKA (Kornblith et al. 2019) between the CNN at every
epoch and each partner at every epoch, on the same held-out test images: the MLPs of two sizes (the question) and the
reference ResNet (two CNNs, the scale of "similar"). Each checkpoint's test accuracy comes from its training record,
so alignment can be read against competence. Nothing here is judged: it is the bridge from the small models to the
proposal's, shown beside the two predictions' verdicts, and Prediction 2's own position is read in at the
checkpoints where it ran (the competence-matched CNNs and the final ones).
"""
import math
from dataclasses import dataclass

import torch

from helpers import compare, profiles, store
from helpers import data as cifar

PARTNERS = ("mlp", "mlp-small", "resnet")  # each set against the CNN; the last is the reference pair


def study_modules(profile, model, layer):
    """(module, grid) a study layer names in ``model`` (``profiles.readout``); None for a further MLP size, which has
    no place in the layer table (it is read at its last hidden layer only)."""
    if model not in profiles.layer_table(profile)[layer]:
        return ("hidden", None) if layer == "hidden" else None
    return profiles.readout(profile, layer, model)


def held_out_images(n, seed=0):
    """``n`` test images drawn with ``seed``: the images every checkpoint is read on."""
    images, _, _ = cifar.load_cifar10("test", verbose=False)
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def checkpoint_grams(model, profile, seed, modules, images):
    """{(layer, epoch): the unit-norm centered Gram matrix} of every epoch checkpoint of (model, profile, seed) at
    the study ``modules`` ({layer: (module name, readout grid)}), flattened (one matrix product then gives CKA for
    every pair)."""
    from helpers.activations import layer_representations
    from helpers.train import load_epoch, training_record
    out = {}
    for entry in training_record(model, profile, seed)["history"]:
        net = load_epoch(model, profile, seed, entry["epoch"], device="cpu")
        # two study layers may read one module (the cpu ResNet's nearest block at half and three quarters of depth)
        reps = layer_representations(net, images, list(dict.fromkeys(m for m, _ in modules.values())),
                                     grids=dict(modules.values()))
        for layer, (module, _) in modules.items():
            gram = compare.centered_gram(reps[module]).float()
            out[(layer, entry["epoch"])] = (gram / gram.norm()).flatten()
    return out


def alignment_table(profile, seed=0):
    """Linear CKA between the CNN and each partner at every pair of epoch checkpoints, per model seed (the CNN of
    seed s with the partner of seed s) and study layer, with both checkpoints' test accuracies: one row per pair.
    Cached by the checkpoints' records and the image draw (``store.TRAJECTORY``)."""
    import pandas as pd

    from helpers.train import training_record
    p = profiles.get(profile)
    n_images = p.compare.trajectory_images
    partners = [m for m in PARTNERS if m in p.trained_models]
    models = ["cnn", *partners]
    seeds = p.model_seeds
    records = {(m, s): training_record(m, profile, s) for m in models for s in p.seeds_of(m)}
    modules = {m: {layer: module for layer in profiles.STUDY_LAYERS
                   if (module := study_modules(profile, m, layer)) is not None} for m in models}

    def compute():
        images = held_out_images(n_images, seed)
        rows = []
        for s in seeds:
            here = [m for m in models if s in p.seeds_of(m)]
            grams = {m: checkpoint_grams(m, profile, s, modules[m], images) for m in here}
            accuracy = {m: {h["epoch"]: h["test_acc"] for h in records[(m, s)]["history"]} for m in here}
            for partner in here[1:]:
                for layer in modules[partner]:
                    cnn_epochs, partner_epochs = sorted(accuracy["cnn"]), sorted(accuracy[partner])
                    a = torch.stack([grams["cnn"][(layer, e)] for e in cnn_epochs])
                    b = torch.stack([grams[partner][(layer, e)] for e in partner_epochs])
                    cka = (a @ b.T).tolist()
                    rows += [dict(model_seed=s, layer=layer, partner=partner, cnn_epoch=i, partner_epoch=j,
                                  cnn_accuracy=accuracy["cnn"][i], partner_accuracy=accuracy[partner][j],
                                  cka=cka[x][y])
                             for x, i in enumerate(cnn_epochs) for y, j in enumerate(partner_epochs)]
        return rows
    rows = store.TRAJECTORY(compute, dict(profile=profile), records=[records[k]["history"] for k in sorted(records)],
                            configs=[records[k]["config"] for k in sorted(records)], modules=modules,
                            n_images=n_images, seed=seed)
    return pd.DataFrame(rows)


def along_training(table):
    """Two readings of the every-pair table, per (layer, partner, model seed, partner epoch): the partner's checkpoint
    against the final CNN, and against the CNN checkpoint whose accuracy is nearest its own (competence matched along
    training)."""
    rows = []
    for (layer, partner, s), part in table.groupby(["layer", "partner", "model_seed"], sort=False):
        final = part[part.cnn_epoch == part.cnn_epoch.max()]
        cnn_acc = part.drop_duplicates("cnn_epoch").set_index("cnn_epoch").cnn_accuracy
        for _, r in final.iterrows():
            nearest = (cnn_acc - r.partner_accuracy).abs().idxmin()
            matched = part[(part.cnn_epoch == nearest) & (part.partner_epoch == r.partner_epoch)].iloc[0]
            rows.append(dict(layer=layer, partner=partner, model_seed=s, partner_epoch=r.partner_epoch,
                             partner_accuracy=r.partner_accuracy, cka_final_cnn=r.cka, matched_cnn_epoch=nearest,
                             matched_cnn_accuracy=matched.cnn_accuracy, cka_matched_cnn=matched.cka))
    import pandas as pd
    return pd.DataFrame(rows)


def trend_table(curve):
    """Per layer and partner: CKA with the final CNN at the partner's initialization and at its last epoch (mean over
    model seeds, with each seed's value), and Spearman's rank correlation of CKA with the partner's accuracy over
    its trained epochs (both seeds pooled)."""
    import pandas as pd
    from scipy.stats import spearmanr
    rows = []
    for (layer, partner), part in curve.groupby(["layer", "partner"], sort=False):
        first = part[part.partner_epoch == 0].cka_final_cnn
        last = part[part.partner_epoch == part.partner_epoch.max()]
        trained = part[part.partner_epoch > 0]
        rho = spearmanr(trained.partner_accuracy, trained.cka_final_cnn).statistic if len(trained) > 2 else float("nan")
        rows.append(dict(layer=layer, partner=partner, cka_at_init=first.mean(), cka_final=last.cka_final_cnn.mean(),
                         cka_final_per_seed=", ".join(f"{v:.3f}" for v in last.cka_final_cnn),
                         cka_matched_final=last.cka_matched_cnn.mean(), partner_accuracy=last.partner_accuracy.mean(),
                         spearman_accuracy=rho))
    return pd.DataFrame(rows)


def scale_difference(curve, layer="hidden"):
    """The larger MLP's final CKA with the final CNN minus the smaller one's (their means over model seeds), with
    Welch's 95% interval over the two sizes' model seeds: what a sentence saying "closer" must clear (with two to four
    seeds a bootstrap of seeds would be far too narrow). A dict of difference, low and high (NaN with one seed)."""
    from scipy.stats import t as student
    part = curve[curve.layer == layer]
    final = {m: torch.tensor(p[p.partner_epoch == p.partner_epoch.max()].cka_final_cnn.values, dtype=torch.float64)
             for m, p in part.groupby("partner") if m in ("mlp", "mlp-small")}
    large, small = final["mlp"], final["mlp-small"]
    difference = (large.mean() - small.mean()).item()
    if min(len(large), len(small)) < 2:
        return dict(difference=difference, low=math.nan, high=math.nan)
    a, b = large.var().item() / len(large), small.var().item() / len(small)
    df = (a + b) ** 2 / max(a * a / (len(large) - 1) + b * b / (len(small) - 1), 1e-300)
    half = student.ppf(0.975, df) * math.sqrt(a + b)
    return dict(difference=difference, low=float(difference - half), high=float(difference + half))


def position_table(profile):
    """Prediction 2's position (L1 arm, "shares features", the question's two directions) at the checkpoints where it
    ran: the CNNs at their competence-matched epochs and at their final ones, each with the CNN's mean test
    accuracy."""
    import json

    import pandas as pd

    from helpers.train import matching_table, training_record
    rows = []
    sources = [(profile, "final")] + [(m, "competence-matched") for m in profiles.matched_profiles(profile)]
    for name, checkpoint in sources:
        path = store.ARTIFACTS["conclusions"].path(profile=name, layer="hidden")
        if not path.exists():
            continue
        if checkpoint == "final":
            accuracy = sum(training_record("cnn", profile, s)["test_accuracy"]
                           for s in profiles.get(profile).model_seeds) / len(profiles.get(profile).model_seeds)
        else:
            t = matching_table(name)
            accuracy = t[t.model == profiles.FAMILY["cnn"].architecture].accuracy.mean()
        conclusions = json.loads(path.read_text())
        for d in conclusions["directions"]:
            if d["arm"] == "l1" and d["comparison"] in ("question", "reference") and d["question"] == "shares":
                rows.append(dict(checkpoint=checkpoint, cnn_accuracy=accuracy, comparison=d["comparison"],
                                 direction=d["direction"], position=d["position"], low=d["position_low"],
                                 high=d["position_high"], verdict=d["verdict"]))
    return pd.DataFrame(rows)


@dataclass
class TrainingPage:
    """``06_training``: the alignment along training and scale, and Prediction 2 at two CNN checkpoints."""
    profile: str
    seed: int = 0

    def __post_init__(self):
        profiles.check_seed(self.seed)
        p = profiles.get(self.profile)
        if not p.scale_models:
            raise ValueError(f"profile={self.profile!r} trains no further model size; the curve along training and "
                             f"scale needs one (profiles with one: "
                             f"{[n for n, q in profiles.PROFILES.items() if q.scale_models and not q.matching]}).")
        self.table = alignment_table(self.profile, self.seed)
        self.curve = along_training(self.table)
        self.table.round(5).to_csv(store.path("trajectory", profile=self.profile), index=False)

    def describe(self):
        from helpers.train import training_record
        p = profiles.get(self.profile)
        parts = []
        for m in ["cnn", *[m for m in PARTNERS if m in p.trained_models]]:
            r = training_record(m, self.profile, p.model_seeds[0])
            accs = ", ".join(f"{training_record(m, self.profile, s)['test_accuracy']:.1%}"
                             for s in p.seeds_of(m))
            parts.append(f"{profiles.FAMILY[m].architecture} ({r['config']['arch']}, {r['parameters']:,} parameters): "
                         f"{r['config']['epochs']} epochs, final test accuracy {accs}")
        return (f"profile {self.profile!r}; linear CKA on {p.compare.trajectory_images:,} held-out test images at "
                f"every pair of epoch checkpoints (epoch 0: initialization), model seeds paired\n" + "\n".join(parts))

    def curve_figure(self):
        """CKA against the partner's test accuracy along its training: with the final CNN (left), and with the CNN
        checkpoint of the nearest accuracy (right); one line per partner and model seed, per layer (saved)."""
        import matplotlib.pyplot as plt
        layers, first = list(dict.fromkeys(self.curve.layer)), profiles.get(self.profile).model_seeds[0]
        fig, axes = plt.subplots(len(layers), 2, figsize=(11, 3.6 * len(layers)), squeeze=False, sharey="row")
        for row, layer in zip(axes, layers):
            for ax, column, title in ((row[0], "cka_final_cnn", "against the final CNN"),
                                      (row[1], "cka_matched_cnn", "against the CNN at the same accuracy")):
                for k, partner in enumerate(PARTNERS):
                    for s, part in self.curve[(self.curve.layer == layer) & (self.curve.partner == partner)].groupby(
                            "model_seed"):
                        ax.plot(part.partner_accuracy, part[column], marker="o", ms=3, color=f"C{k}",
                                ls="-" if s == first else "--", label=f"{profiles.FAMILY[partner].role}, seed {s}")
                ax.set(xlabel="partner's test accuracy along its training", ylabel=f"linear CKA with the CNN ({layer})",
                       title=f"{layer} layers, {title}")
            row[0].legend(fontsize=7)
        fig.suptitle(f"Alignment with the CNN along training and scale ({self.profile} profile; epoch 0 = "
                     "initialization)")
        fig.tight_layout()
        plt.savefig(store.path("trajectory_figure", profile=self.profile), dpi=110)
        return fig

    def pairs_figure(self, layer="hidden"):
        """CKA at every pair of epochs (the first model seed): one heatmap per partner."""
        import matplotlib.pyplot as plt
        seed = profiles.get(self.profile).model_seeds[0]
        part = self.table[(self.table.layer == layer) & (self.table.model_seed == seed)]
        partners = [m for m in PARTNERS if m in set(part.partner)]
        fig, axes = plt.subplots(1, len(partners), figsize=(4.2 * len(partners), 3.6), squeeze=False)
        top = part.cka.max()
        for ax, partner in zip(axes[0], partners):
            grid = part[part.partner == partner].pivot(index="cnn_epoch", columns="partner_epoch", values="cka")
            im = ax.imshow(grid.values, origin="lower", vmin=0, vmax=top, cmap="viridis")
            role = profiles.FAMILY[partner].role
            ax.set(xlabel=f"{role} epoch", ylabel="CNN epoch", title=role,
                   xticks=range(len(grid.columns)), xticklabels=grid.columns, yticks=range(len(grid.index)),
                   yticklabels=grid.index)
        fig.colorbar(im, ax=axes[0].tolist(), label="linear CKA", shrink=0.8)
        fig.suptitle(f"Linear CKA at every pair of epoch checkpoints, {layer} layers ({self.profile} profile, "
                     f"model seed {seed})")
        return fig

    def trend_table(self):
        t = trend_table(self.curve)
        roles = t.partner.map(lambda m: profiles.FAMILY[m].role)
        return t.assign(partner=roles).set_index(["layer", "partner"]).round(3)

    def matching_table(self):
        from helpers.train import matching_table
        matched = profiles.matched_profiles(self.profile)
        return matching_table(matched[0]).round(4) if matched else None

    def position_table(self):
        t = position_table(self.profile)
        return t.set_index(["checkpoint", "comparison", "direction"]).round(3) if len(t) else t

    def reading(self):
        """The page's reading in words, from the table of trends it shows."""
        trend = trend_table(self.curve)
        hidden = trend[trend.layer == "hidden"].set_index("partner")
        lines = []
        for partner in hidden.index:
            r = hidden.loc[partner]
            role = profiles.FAMILY[partner].role
            lines.append(f"- {role} (final accuracy {r.partner_accuracy:.1%}): linear CKA with the "
                         f"final CNN goes from {r.cka_at_init:.3f} at initialization to {r.cka_final:.3f} "
                         f"(seeds: {r.cka_final_per_seed}); Spearman's ρ with accuracy over its epochs "
                         f"{r.spearman_accuracy:.2f}.")
        sizes = [m for m in ("mlp-small", "mlp") if m in hidden.index]
        if len(sizes) == 2:
            d = scale_difference(self.curve)
            word = ("ends closer to the CNN than the smaller one" if d["low"] > 0 else
                    "ends further from the CNN than the smaller one" if d["high"] < 0 else
                    "is not distinguishable from the smaller one in its distance to the CNN (the interval holds 0)")
            lines.append(f"- Scale: the larger MLP {word} (difference in final CKA {d['difference']:+.3f}, 95% "
                         f"interval over model seeds [{d['low']:+.3f}, {d['high']:+.3f}]; per seed "
                         f"{hidden.loc['mlp'].cka_final_per_seed} against {hidden.loc['mlp-small'].cka_final_per_seed})"
                         + (f"; the reference ResNet ends at {hidden.loc['resnet'].cka_final:.3f}"
                            if "resnet" in hidden.index else ""))
        return (f"**At the last hidden layers ({self.profile} profile, model seeds paired):**\n\n"
                + "\n".join(x for x in lines if x))
