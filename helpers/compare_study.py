"""Prediction 2 as the study runs it (``03_compare``): the two families' dictionaries compared at one study layer,
against the nulls and the ceiling, with linear CKA beside them, the best-matched pairs, and the conclusions."""
from dataclasses import dataclass, field

import torch

from helpers import compare, profiles, store, verdict
from helpers import sae_study as saes
from helpers.paths import write_json

WHERE = {"hidden": "the last hidden layers", "mid": "the best-aligned mid-depth layers, L1 arm only"}


@dataclass
class Prediction2:
    """Prediction 2 at one study layer: the held-out statistics (measured by ``compare``), each comparison's and
    direction's verdict (decided by ``verdict``), the per-feature values and the study's verdict."""
    stats: object           # one row per (comparison, arm, direction, statistic)
    directions: object      # one row per (comparison, arm, direction), with its verdict
    per_feature: object     # one row per feature of every observed match, and the nulls' and ceilings' held-out r
    verdict: str
    per_arm: dict
    reasons: dict


@dataclass
class ComparePage:
    """Prediction 2 at one study layer, as ``03_compare`` shows it. ``statistics`` returns its measurements and
    verdicts (a ``Prediction2``), which the tables, figures and conclusions take."""
    profile: str
    layer: str = "hidden"
    seed: int = 0                # the image split, the shuffles and the bootstrap
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        import json

        from helpers.activations import predicted_classes
        from helpers.data import load_cifar10
        from helpers.train import load_trained
        profiles.check_layer(self.layer)
        profiles.check_seed(self.seed)
        p = profiles.get(self.profile)
        self.settings, self.model_seeds = p.compare.with_overrides(self.overrides), p.model_seeds
        self.am_summary = json.loads(store.require("am_summary", profile=self.profile).read_text())
        self.families = p.families
        self.summary = saes.load_summaries(self.profile, self.layer)
        self.features = {spec.id: saes.load_features(self.profile, self.layer, spec) for spec in self.summary}
        self.test_images, self.test_labels, _ = load_cifar10("test")
        self.nets = {(f, s): load_trained(f, self.profile, s) for f in self.families for s in self.model_seeds}
        self.predicted = {key: predicted_classes(net, self.test_images) for key, net in self.nets.items()}
        self.groups = {s: compare.prediction_groups(self.test_labels, self.predicted[("cnn", s)],
                                                    self.predicted[("mlp", s)]) for s in self.model_seeds}
        self.layer_map = saes.layer_map(self.profile)  # read once: the mid-depth pair and the figure come from it
        self.modules = {f: self.layer_map["choice"][f] if self.layer == "mid" else self.layer for f in self.families}

    def where(self):
        return dict(profile=self.profile, layer=self.layer)

    def describe(self):
        g = self.groups[self.model_seeds[0]]
        return (f"profile {self.profile!r}, layers {self.modules}: {len(self.model_seeds)} trained model(s) per "
                f"family, {len(self.summary)} SAEs, {len(self.test_labels):,} test images; conditional-shuffle "
                f"groups: {len(g.unique())}, {(g.bincount() == 1).sum().item()} images alone in their group (they "
                f"stay aligned, which makes that null conservative)")

    def gates(self):
        """Every SAE's alive share, L0, explained variance and failed gates, from ``02_sae``'s summaries."""
        import pandas as pd
        return pd.DataFrame([dict(variant=spec.id, arm=spec.arm, network=spec.net, model_seed=spec.model_seed,
                                  alive_share=s["alive_share"], l0=s["metrics"]["l0"],
                                  explained_variance=s["metrics"]["explained_variance"],
                                  failed=", ".join(g["gate"] for g in s["gates"] if not g["passed"]))
                             for spec, s in self.summary.items()]).set_index("variant")

    def gate_table(self):
        gates = self.gates()
        gates.to_csv(store.path("compare_gates", **self.where()))
        return gates.round(3)

    def statistics(self):
        """Every arm's held-out statistics and per-feature values (``compare.prediction2_arm``) with each
        comparison's and direction's verdict (``verdict.prediction2_arm``), written; and the study's verdict
        (``verdict.prediction2``)."""
        import pandas as pd
        gates_ok = {spec.id: s["gates_passed"] for spec, s in self.summary.items()}
        alive_share = {spec.id: s["alive_share"] for spec, s in self.summary.items()}
        rows, directions, per_feature = [], [], []
        for arm in profiles.get(self.profile).arms(self.layer):
            measured, f = compare.prediction2_arm(
                self.features, list(self.summary), alive_share, arm, self.predicted, self.test_labels,
                seed=self.seed, shuffles=self.settings.shuffles, permutations=self.settings.permutations,
                replicates=self.settings.replicates)
            s, d = verdict.prediction2_arm(measured, gates_ok)
            rows, directions, per_feature = rows + s, directions + d, per_feature + f
        stats, directions = pd.DataFrame(rows), pd.DataFrame(directions)
        per_feature = compare.per_feature_table(per_feature)
        stats.to_csv(store.path("compare_statistics", **self.where()), index=False)
        directions.to_csv(store.path("compare_directions", **self.where()), index=False)
        per_feature.round(4).to_csv(store.path("compare_features", **self.where()), index=False)
        return Prediction2(stats, directions, per_feature, *verdict.prediction2(directions.to_dict("records")))

    def statistics_table(self, result):
        stats = result.stats
        shown = stats.assign(statistic=stats.statistic.map(compare.LABELS),
                             comparison=stats.comparison.map(compare.COMPARISON_LABELS))
        return shown.set_index(["comparison", "arm", "direction", "statistic"])[
            ["value", "low", "high", "diff", "diff_low", "p", "p_holm", "valid"]].round(4)

    def statistics_figure(self, result):
        """Each comparison's observation, nulls and ceiling with their intervals, one row of panels per comparison
        (saved)."""
        from helpers.plots import statistics_figure
        fig = statistics_figure(result.stats, compare.COMPARISONS, ["observed", *verdict.NULLS, "ceiling",
                                                                    "ceiling-null"],
                                compare.COMPARISON_LABELS, profiles.side_name,
                                f"Held-out feature correlation with 95% intervals ({self.profile} profile, layers "
                                f"{', '.join(self.modules.values())}; grey: an invalid null)")
        fig.savefig(store.path("compare_figure", **self.where()), dpi=110)
        return fig

    def distributions_figure(self, result):
        """Per-feature held-out r, as cumulative distributions: each side's features matched in every other side,
        beside the conditional-shuffle null and the side's ceiling (saved)."""
        from helpers.plots import distributions_figure
        fig = distributions_figure(result.per_feature, [f for f in ("cnn", "mlp") if f in self.families],
                                   profiles.side_name,
                                   f"Per-feature held-out correlation ({self.profile} profile, layers "
                                   f"{', '.join(self.modules.values())}, every model and SAE seed)")
        fig.savefig(store.path("compare_distributions", **self.where()), dpi=110)
        return fig

    def directions_table(self, result):
        d = result.directions.assign(comparison=result.directions.comparison.map(compare.COMPARISON_LABELS))
        return d[["comparison", "arm", "direction", "observed", "strongest_null", "null_value", "ceiling",
                  "ceiling_kind", "ceiling_null", "position", "position_low", "position_high", "median",
                  "reproducible_matched_share", "mutual_share", "code_cka", "gates_ok", "verdict",
                  "reason"]].round(3)

    def reference_share(self, result):
        """The MLP's position as a share of the reference pair's, per arm and direction from VGG (reported beside
        the verdict; it does not decide it)."""
        d = result.directions.set_index(["comparison", "arm", "direction"])
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
        """Linear CKA between the two layers compared (the first model seed), against shuffled-image and random-init
        nulls and the model-seed ceiling (written)."""
        import pandas as pd

        from helpers.activations import harvest_activations
        from helpers.train import random_model
        first = self.model_seeds[0]
        reps = {f: harvest_activations(self.nets[(f, first)], self.modules[f], "test")[0] for f in self.families}
        rand = {f: harvest_activations(random_model(f, self.profile, first), self.modules[f], "test")[0]
                for f in profiles.FAMILIES}
        cka = compare.linear_cka
        rows = [("CNN vs MLP hidden layer", cka(reps["cnn"], reps["mlp"])),
                ("null: images shuffled within (class, predictions)", sum(
                    cka(reps["cnn"], compare.shuffle_rows(reps["mlp"], self.seed + r, self.groups[first]))
                    for r in range(3)) / 3),
                ("null: image order shuffled", sum(
                    cka(reps["cnn"], compare.shuffle_rows(reps["mlp"], self.seed + r)) for r in range(3)) / 3),
                ("null: CNN vs random-init MLP", cka(reps["cnn"], rand["mlp"])),
                ("null: random-init CNN vs MLP", cka(rand["cnn"], reps["mlp"]))]
        if profiles.REFERENCE in reps:
            rows.append(("reference: CNN vs ResNet", cka(reps["cnn"], reps[profiles.REFERENCE])))
        if len(self.model_seeds) > 1:
            second = self.model_seeds[1]
            rows += [(f"ceiling: {f.upper()} seed {first} vs {f.upper()} seed {second}", cka(
                reps[f], harvest_activations(self.nets[(f, second)], self.modules[f], "test")[0]))
                for f in profiles.FAMILIES]
        table = pd.DataFrame([dict(comparison=c, cka=v) for c, v in rows])
        table.to_csv(store.path("compare_cka", **self.where()), index=False)
        return table.round(3)

    def pair_figures(self):
        """The best-matched feature pairs of the primary SAEs (L1 arm, first model and SAE seed): each feature's AM
        image with its repetition scores, and its most activating test images."""
        import matplotlib.pyplot as plt

        from helpers import actmax
        from helpers.data import CLASSES
        from helpers.plots import show_images
        from helpers.repetition import MEASURES
        specs = {f: saes.primary_spec(f, self.profile) for f in profiles.FAMILIES}
        fc_all, fm_all = (self.features[specs[f].id] for f in profiles.FAMILIES)
        matched = compare.top_pairs(fc_all, fm_all, k=self.settings.pairs)
        if not matched:
            return
        color = actmax.cifar_color_matrix()
        encoders = {f: saes.load_sae(self.profile, self.layer, specs[f]).W_enc.detach() for f in profiles.FAMILIES}
        am = {f: actmax.render(self.nets[(f, specs[f].model_seed)],
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

    def conclusions(self, result):
        """Prediction 2's verdict in words with the numbers it rests on; written to ``conclusions_<layer>.json``."""
        shares = self.reference_share(result)
        failed = self.gates().query("network != 'random-init' and failed != ''")
        p = profiles.get(self.profile)
        small = ("Small models trained for minutes on CIFAR-10, far from the 94% VGG13_bn and the ImageNet-21k "
                 "pre-trained B-12/Wi-1024 of the proposal; " if p.small else "")
        reference = ("" if profiles.REFERENCE in self.families else
                     " This profile has no reference ResNet, so only the sanity control checks the instrument.")
        ceiling = ("" if len(self.model_seeds) > 1 else " With one model per family the ceiling is the agreement of "
                   "two SAE seeds of the same model, which bounds what the instrument can read rather than what two "
                   "trained models share.")
        text = f"""
**Profile {self.profile!r}** ({p.models}).

**Prediction 2 (similar dictionaries), {WHERE[self.layer]} ({", ".join(self.modules.values())}): \
{result.verdict}.** Similarity is measured beyond what class and both models' predictions share: each \
observation is placed between its strongest null (0) and the ceiling (1), each over its own conditional \
shuffle.{reference}{ceiling}

{chr(10).join(self.direction_lines(result, shares))}

SAEs of trained models that failed a gate: {', '.join(f'{v} ({r.failed})' for v, r in failed.iterrows()) or 'none'}.

**Limits.** {small}{len(self.model_seeds)} training seed(s) per family and {len(p.sae_seeds)} SAE seeds per model; a \
convolutional layer is read as its channels averaged over a 2×2 grid of positions.
"""
        write_json(store.path("conclusions", **self.where()), dict(
            profile=self.profile, layer=self.layer, modules=self.modules, prediction2=result.verdict,
            per_arm=result.per_arm, reasons=result.reasons, directions=result.directions.to_dict("records"),
            reference_share={f"{arm} {direction}": v for (arm, direction), v in shares.items()}, markdown=text,
            settings=dict(self.settings.as_dict(), overrides=self.overrides)))
        return text

    @staticmethod
    def direction_lines(result, shares):
        """One line per arm with its verdict, then one per comparison and direction with the numbers it rests on."""
        def fmt(value, low, high, digits=3):
            return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        d = result.directions.set_index(["comparison", "arm", "direction"])
        st = result.stats.set_index(["comparison", "arm", "direction", "statistic"])
        lines = []
        for arm in dict.fromkeys(result.directions.arm):
            lines.append(f"- **{arm} arm: {result.per_arm[arm]}** ({result.reasons[arm]}).")
            for name, a, b in compare.COMPARISONS:
                for direction in (f"{a}->{b}", f"{b}->{a}"):
                    if (name, arm, direction) not in d.index:
                        continue
                    r = d.loc[(name, arm, direction)]
                    obs = st.loc[(name, arm, direction, "observed")]
                    arrow = " → ".join(profiles.side_name(x) for x in direction.split("->"))
                    share = shares.get((arm, direction))
                    lines.append(
                        f"  - {compare.COMPARISON_LABELS[name]}, {arrow}: **{r.verdict}**; observed "
                        f"{fmt(obs.value, obs.low, obs.high)} (median per feature {r['median']:.3f}), strongest null "
                        f"{r.strongest_null} {r.null_value:.3f}, ceiling ({r.ceiling_kind}) {r.ceiling:.3f} over its "
                        f"null {r.ceiling_null:.3f}; position {fmt(r.position, r.position_low, r.position_high, 2)}"
                        + (f", {share:.0%} of the reference pair's" if share is not None and share == share else "")
                        + f"; mutual matches {r.mutual_share:.0%}, code CKA {r.code_cka:.2f}.")
        return lines
