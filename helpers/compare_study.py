"""Prediction 2 as the study runs it (``03_compare``): the two families' dictionaries compared at one study layer,
against the nulls and the ceiling, with linear CKA beside them, the best-matched pairs, and the conclusions."""
from dataclasses import dataclass, field

import torch

from helpers import compare, profiles, store, verdict
from helpers import sae_study as saes
from helpers.paths import write_json

WHERE = {"hidden": "the last hidden layers", "mid": "the best-aligned mid-depth layers, L1 arm only"}


@dataclass
class ComparePage:
    profile: str
    layer: str = "hidden"
    seed: int = 0                # the image split, the shuffles and the bootstrap
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        import json

        from helpers.data import load_cifar10
        from helpers.train import load_trained, predictions
        profiles.check_layer(self.layer)
        profiles.check_seed(self.seed)
        p = profiles.get(self.profile)
        self.settings, self.model_seeds = p.compare.with_overrides(self.overrides), p.model_seeds
        self.am_summary = json.loads(store.require("am_summary", profile=self.profile).read_text())
        self.families = p.families
        self.summary = saes.load_summaries(self.profile, self.layer)
        self.features = {spec.id: saes.load_features(self.profile, self.layer, spec) for spec in self.summary}
        self.test_images, self.test_labels, _ = load_cifar10("test")
        self.nets = {(f, s): load_trained(f, self.profile, s) for f in self.families for s in range(self.model_seeds)}
        self.predicted = {key: predictions(net, self.test_images) for key, net in self.nets.items()}
        self.groups = {s: compare.prediction_groups(self.test_labels, self.predicted[("cnn", s)],
                                                    self.predicted[("mlp", s)]) for s in range(self.model_seeds)}
        self.layer_map = saes.layer_map(self.profile)  # read once: the mid-depth pair and the figure come from it
        self.modules = {f: self.layer_map["choice"][f] if self.layer == "mid" else self.layer for f in self.families}

    def where(self):
        return dict(profile=self.profile, layer=self.layer)

    def describe(self):
        g = self.groups[0]
        return (f"profile {self.profile!r}, layers {self.modules}: {self.model_seeds} trained model(s) per family, "
                f"{len(self.summary)} SAEs, {len(self.test_labels):,} test images; conditional-shuffle groups: "
                f"{len(g.unique())}, {(g.bincount() == 1).sum().item()} images alone in their group (they stay "
                f"aligned, which makes that null conservative)")

    def gate_table(self):
        import pandas as pd
        self.gates = pd.DataFrame([dict(variant=spec.id, arm=spec.arm, network=spec.net, model_seed=spec.model_seed,
                                        alive_share=s["alive_share"], l0=s["metrics"]["l0"],
                                        explained_variance=s["metrics"]["explained_variance"],
                                        failed=", ".join(g["gate"] for g in s["gates"] if not g["passed"]))
                                   for spec, s in self.summary.items()]).set_index("variant")
        self.gates.to_csv(store.path("compare_gates", **self.where()))
        return self.gates.round(3)

    def statistics(self):
        """Every arm's held-out statistics, each comparison's and direction's verdict, and the per-feature values
        (``compare.prediction2_arm``), written; the study's verdict (``verdict.prediction2``)."""
        import pandas as pd
        gates_ok = {spec.id: s["gates_passed"] for spec, s in self.summary.items()}
        alive_share = {spec.id: s["alive_share"] for spec, s in self.summary.items()}
        rows, directions, per_feature = [], [], []
        for arm in profiles.get(self.profile).arms(self.layer):
            s, d, f = compare.prediction2_arm(
                self.features, list(self.summary), alive_share, gates_ok, arm, self.predicted, self.test_labels,
                seed=self.seed, shuffles=self.settings.shuffles, permutations=self.settings.permutations,
                replicates=self.settings.replicates)
            rows, directions, per_feature = rows + s, directions + d, per_feature + f
        self.stats, self.directions = pd.DataFrame(rows), pd.DataFrame(directions)
        self.per_feature = compare.per_feature_table(per_feature)
        self.stats.to_csv(store.path("compare_statistics", **self.where()), index=False)
        self.directions.to_csv(store.path("compare_directions", **self.where()), index=False)
        self.per_feature.round(4).to_csv(store.path("compare_features", **self.where()), index=False)
        self.verdict, self.per_arm, self.reasons = verdict.prediction2(self.directions.to_dict("records"))
        shown = self.stats.assign(statistic=self.stats.statistic.map(compare.LABELS),
                                  comparison=self.stats.comparison.map(compare.COMPARISON_LABELS))
        return shown.set_index(["comparison", "arm", "direction", "statistic"])[
            ["value", "low", "high", "diff", "diff_low", "p", "p_holm", "valid"]].round(4)

    def statistics_figure(self):
        """Each comparison's observation, nulls and ceiling with their intervals, one row of panels per comparison
        (saved)."""
        import matplotlib.pyplot as plt
        order = ["observed", *verdict.NULLS, "ceiling", "ceiling-null"]
        sides = {c: (a, b) for c, a, b in compare.COMPARISONS if c in set(self.stats.comparison)}
        columns = [(arm, forward) for arm in dict.fromkeys(self.stats.arm) for forward in (True, False)]
        fig, axes = plt.subplots(len(sides), len(columns), figsize=(4 * len(columns), 2.6 * len(sides)),
                                 sharex=True, squeeze=False)
        for row, (name, (a, b)) in zip(axes, sides.items()):
            for ax, (arm, forward) in zip(row, columns):
                direction = f"{a}->{b}" if forward else f"{b}->{a}"
                part = self.stats[(self.stats.comparison == name) & (self.stats.arm == arm)
                                  & (self.stats.direction == direction)].set_index("statistic")
                part = part.reindex([o for o in order if o in part.index])
                y = range(len(part))
                colors = ["C3" if k == "observed" else "C2" if k == "ceiling" else "C7" if k == "ceiling-null" else
                          ("C0" if part.loc[k, "valid"] else "lightgrey") for k in part.index]
                # a shuffle null's value averages every shuffle, its interval is the first shuffle's
                ax.errorbar(part.value, y, xerr=[(part.value - part.low).clip(lower=0),
                                                 (part.high - part.value).clip(lower=0)], fmt="none", ecolor=colors)
                ax.scatter(part.value, y, c=colors, zorder=3)
                ax.set(yticks=list(y), yticklabels=[k.replace("null-", "null: ") for k in part.index],
                       title=f"{compare.COMPARISON_LABELS[name].split(' (')[0]}\n{arm} arm, "
                             + " → ".join(compare.SIDE_NAMES[x] for x in direction.split("->")))
                ax.invert_yaxis()
        for ax in axes[-1]:
            ax.set_xlabel("held-out best-match correlation")
        fig.suptitle(f"Held-out feature correlation with 95% intervals ({self.profile} profile, layers "
                     f"{', '.join(self.modules.values())}; grey: an invalid null)")
        fig.tight_layout()
        plt.savefig(store.path("compare_figure", **self.where()), dpi=110)
        return fig

    def distributions_figure(self):
        """Per-feature held-out r, as cumulative distributions: each side's features matched in every other side,
        beside the conditional-shuffle null and the side's ceiling (saved)."""
        import matplotlib.pyplot as plt
        import numpy as np
        pf = self.per_feature
        arms = list(dict.fromkeys(pf.arm))
        sources = [f for f in ("cnn", "mlp") if f in self.families]
        fig, axes = plt.subplots(len(arms), len(sources), figsize=(6.5 * len(sources), 3.6 * len(arms)),
                                 squeeze=False, sharex=True)
        for row, arm in zip(axes, arms):
            for ax, source in zip(row, sources):
                part = pf[(pf.arm == arm) & pf.direction.str.startswith(source + "->")]
                curves = [(f"matched in {compare.SIDE_NAMES[d.split('->')[1]]}", part[(part.direction == d) &
                                                                                       (part.statistic == "observed")])
                          for d in part.direction.unique()]
                question = part[part.comparison == "question"]
                curves += [("null: shuffled within (class, predictions)",
                            question[question.statistic == "null-conditional-shuffle"]),
                           ("ceiling: another training seed", question[question.statistic == "ceiling"])]
                for i, (label, values) in enumerate(curves):
                    r = np.sort(values.heldout_r.to_numpy())
                    if len(r):
                        ax.plot(r, np.linspace(0, 1, len(r)), label=f"{label} (median {np.median(r):.2f})",
                                ls="--" if label.startswith(("null", "ceiling")) else "-",
                                color="grey" if label.startswith("null") else "C2" if label.startswith("ceiling")
                                else f"C{[0, 3, 1, 4][i % 4]}")
                ax.set(title=f"{compare.SIDE_NAMES[source]}'s features, {arm} arm", xlabel="held-out r",
                       ylabel="share of features at or below")
                ax.legend(fontsize=7, loc="lower right")
        fig.suptitle(f"Per-feature held-out correlation ({self.profile} profile, layers "
                     f"{', '.join(self.modules.values())}, every model and SAE seed)")
        fig.tight_layout()
        plt.savefig(store.path("compare_distributions", **self.where()), dpi=110)
        return fig

    def directions_table(self):
        d = self.directions.assign(comparison=self.directions.comparison.map(compare.COMPARISON_LABELS))
        return d[["comparison", "arm", "direction", "observed", "strongest_null", "null_value", "ceiling",
                  "ceiling_kind", "ceiling_null", "position", "position_low", "position_high", "median",
                  "reproducible_matched_share", "mutual_share", "code_cka", "gates_ok", "verdict",
                  "reason"]].round(3)

    def reference_share(self):
        """The MLP's position as a share of the reference pair's, per arm and direction from VGG (reported beside
        the verdict; it does not decide it)."""
        d = self.directions.set_index(["comparison", "arm", "direction"])
        out = {}
        for arm in d.index.get_level_values("arm").unique():
            for back in (False, True):
                q, r = (("mlp->cnn", "resnet->cnn") if back else ("cnn->mlp", "cnn->resnet"))
                if ("question", arm, q) in d.index and ("reference", arm, r) in d.index:
                    out[(arm, q)] = d.loc[("question", arm, q), "position"] / d.loc[("reference", arm, r), "position"]
        return out

    def layer_map_figure(self):
        """Linear CKA of every layer pair beside its two nulls, the chosen mid-depth pair marked (saved, with the
        trained map as a table); prints the pair."""
        import matplotlib.pyplot as plt
        import pandas as pd
        lm = self.layer_map
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        panels = [("trained CNN vs trained MLP", lm["trained"]),
                  *[(f"trained vs {k}", v) for k, v in lm["nulls"].items()]]
        for ax, (title, m) in zip(axes, panels):
            im = ax.imshow(m.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set(xticks=range(len(lm["mlp_layers"])), xticklabels=lm["mlp_layers"],
                   yticks=range(len(lm["cnn_layers"])), yticklabels=lm["cnn_layers"], title=title,
                   xlabel="MLP layer", ylabel="CNN layer")
            ax.tick_params(axis="x", rotation=60)
        i, j = lm["cnn_layers"].index(lm["choice"]["cnn"]), lm["mlp_layers"].index(lm["choice"]["mlp"])
        axes[0].scatter([j], [i], marker="s", s=120, facecolors="none", edgecolors="red")
        fig.colorbar(im, ax=axes, shrink=0.8, label="linear CKA")
        fig.suptitle(f"Linear CKA, every layer pair ({self.profile} profile); "
                     "red: the mid-depth pair compared in the second SAE comparison")
        plt.savefig(store.path("layer_map_figure", profile=self.profile), dpi=120)
        pd.DataFrame(lm["trained"].numpy(), index=lm["cnn_layers"], columns=lm["mlp_layers"]).to_csv(
            store.path("layer_map_table", profile=self.profile))
        nulls = ", ".join(f"{k} {v[i, j]:.3f}" for k, v in lm["nulls"].items())
        print(f"best-aligned mid-depth pair: CNN {lm['choice']['cnn']}, MLP {lm['choice']['mlp']} "
              f"(CKA {lm['trained'][i, j]:.3f}; nulls {nulls})")
        return fig

    def cka_table(self):
        """Linear CKA between the two layers compared, against shuffled-image and random-init nulls and the
        model-seed ceiling (written)."""
        import pandas as pd

        from helpers.activations import harvest_activations
        from helpers.train import random_model
        reps = {f: harvest_activations(self.nets[(f, 0)], self.modules[f], "test")[0] for f in self.families}
        rand = {f: harvest_activations(random_model(f, self.profile, 0), self.modules[f], "test")[0]
                for f in profiles.FAMILIES}
        cka = compare.linear_cka
        rows = [("CNN vs MLP hidden layer", cka(reps["cnn"], reps["mlp"])),
                ("null: images shuffled within (class, predictions)", sum(
                    cka(reps["cnn"], compare.shuffle_rows(reps["mlp"], self.seed + r, self.groups[0]))
                    for r in range(3)) / 3),
                ("null: image order shuffled", sum(
                    cka(reps["cnn"], compare.shuffle_rows(reps["mlp"], self.seed + r)) for r in range(3)) / 3),
                ("null: CNN vs random-init MLP", cka(reps["cnn"], rand["mlp"])),
                ("null: random-init CNN vs MLP", cka(rand["cnn"], reps["mlp"]))]
        if profiles.REFERENCE in reps:
            rows.append(("reference: CNN vs ResNet", cka(reps["cnn"], reps[profiles.REFERENCE])))
        if self.model_seeds > 1:
            rows += [(f"ceiling: {f.upper()} seed 0 vs {f.upper()} seed 1", cka(reps[f], harvest_activations(
                self.nets[(f, 1)], self.modules[f], "test")[0])) for f in profiles.FAMILIES]
        table = pd.DataFrame([dict(comparison=c, cka=v) for c, v in rows])
        table.to_csv(store.path("compare_cka", **self.where()), index=False)
        return table.round(3)

    def pair_figures(self):
        """The best-matched feature pairs (L1 arm, model seed 0): each feature's AM image with its repetition
        scores, and its most activating test images."""
        import matplotlib.pyplot as plt

        from helpers import actmax
        from helpers.data import CLASSES
        from helpers.plots import show_images
        from helpers.repetition import MEASURES
        specs = {f: saes.primary_spec(f) for f in profiles.FAMILIES}
        fc_all, fm_all = (self.features[specs[f].id] for f in profiles.FAMILIES)
        matched = compare.top_pairs(fc_all, fm_all, k=self.settings.pairs)
        if not matched:
            return
        color = actmax.cifar_color_matrix()
        encoders = {f: saes.load_sae(self.profile, self.layer, specs[f]).W_enc.detach() for f in profiles.FAMILIES}
        am = {f: actmax.render(self.nets[(f, 0)],
                               actmax.direction(self.modules[f], encoders[f][[p[i] for p in matched]]),
                               steps=self.settings.am_steps, seed=self.seed, color_matrix=color, progress=False).images
              for i, f in enumerate(profiles.FAMILIES)}
        scores = {f: {m: fn(am[f]).tolist() for m, fn in MEASURES.items()} for f in am}  # repetition, as in 01
        for j, (fc, fm, r) in enumerate(matched):
            top = {"cnn": fc_all[:, fc].topk(6).indices, "mlp": fm_all[:, fm].topk(6).indices}
            images, titles = [], []
            for f, index in (("cnn", fc), ("mlp", fm)):
                score = " ".join(f"{m[:4]} {v[j]:.2f}" for m, v in scores[f].items())
                images += [am[f][j:j + 1], self.test_images[top[f]].float() / 255]
                titles += [f"{f.upper()} f{index} AM\n{score}"] + [CLASSES[self.test_labels[i]] for i in top[f]]
            show_images(torch.cat(images), titles, ncols=7, size=1.2,
                        suptitle=f"pair {j + 1}: in-sample correlation {r:.3f}")
            plt.show()

    def prediction1_table(self):
        import pandas as pd
        return pd.DataFrame(self.am_summary["comparisons"])[
            ["primary", "objective", "measure", "setting", "cnn_delta", "mlp_delta", "position", "position_low",
             "position_high", "verdict"]].round(3)

    def conclusions(self):
        """Prediction 2's verdict in words with the numbers it rests on; written to ``conclusions_<layer>.json``."""
        def fmt(value, low, high, digits=3):
            return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        d = self.directions.set_index(["comparison", "arm", "direction"])
        st = self.stats.set_index(["comparison", "arm", "direction", "statistic"])
        shares = self.reference_share()
        lines = []
        for arm in dict.fromkeys(self.directions.arm):
            lines.append(f"- **{arm} arm: {self.per_arm[arm]}** ({self.reasons[arm]}).")
            for name, a, b in compare.COMPARISONS:
                for direction in (f"{a}->{b}", f"{b}->{a}"):
                    if (name, arm, direction) not in d.index:
                        continue
                    r = d.loc[(name, arm, direction)]
                    obs = st.loc[(name, arm, direction, "observed")]
                    arrow = " → ".join(compare.SIDE_NAMES[x] for x in direction.split("->"))
                    share = shares.get((arm, direction))
                    lines.append(
                        f"  - {compare.COMPARISON_LABELS[name]}, {arrow}: **{r.verdict}**; observed "
                        f"{fmt(obs.value, obs.low, obs.high)} (median per feature {r['median']:.3f}), strongest null "
                        f"{r.strongest_null} {r.null_value:.3f}, ceiling ({r.ceiling_kind}) {r.ceiling:.3f} over its "
                        f"null {r.ceiling_null:.3f}; position {fmt(r.position, r.position_low, r.position_high, 2)}"
                        + (f", {share:.0%} of the reference pair's" if share is not None and share == share else "")
                        + f"; mutual matches {r.mutual_share:.0%}, code CKA {r.code_cka:.2f}.")
        failed = self.gates[(self.gates.network != "random-init") & (self.gates.failed != "")]
        p = profiles.get(self.profile)
        small = ("Small models trained for minutes on CIFAR-10, far from the 94% VGG13_bn and the ImageNet-21k "
                 "pre-trained B-12/Wi-1024 of the proposal; " if p.small else "")
        reference = ("" if profiles.REFERENCE in self.families else
                     " This profile has no reference ResNet, so only the sanity control checks the instrument.")
        ceiling = ("" if self.model_seeds > 1 else " With one model per family the ceiling is the agreement of two "
                   "SAE seeds of the same model, which bounds what the instrument can read rather than what two "
                   "trained models share.")
        text = f"""
**Profile {self.profile!r}** ({p.models}).

**Prediction 2 (similar dictionaries), {WHERE[self.layer]} ({", ".join(self.modules.values())}): \
{self.verdict}.** Similarity is measured beyond what class and both models' predictions share: each \
observation is placed between its strongest null (0) and the ceiling (1), each over its own conditional \
shuffle.{reference}{ceiling}

{chr(10).join(lines)}

SAEs of trained models that failed a gate: {', '.join(f'{v} ({r.failed})' for v, r in failed.iterrows()) or 'none'}.

**Limits.** {small}{self.model_seeds} training seed(s) per family and {p.sae_seeds} SAE seeds per model; a \
convolutional layer is read as its channels averaged over a 2×2 grid of positions.
"""
        write_json(store.path("conclusions", **self.where()), dict(
            profile=self.profile, layer=self.layer, modules=self.modules, prediction2=self.verdict,
            per_arm=self.per_arm, reasons=self.reasons, directions=self.directions.to_dict("records"),
            reference_share={f"{arm} {direction}": v for (arm, direction), v in shares.items()}, markdown=text,
            settings=dict(self.settings.as_dict(), overrides=self.overrides)))
        return text
