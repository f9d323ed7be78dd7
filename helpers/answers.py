"""The front page (``04_answers``) and the landing page's answers: both verdicts as the decision rules returned
them, read from the results the other pages wrote, as a reader takes them in: one sentence per prediction, a small
table with readable headers, then the images the verdict is about."""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from helpers import profiles, store
from helpers.paths import atomic_path

WHERE_SHORT = profiles.LAYER_WORDS
P1_HEADERS = {"test": "Test", "objective": "Objective", "measure": "Measure", "setting": "Penalty",
              "cnn": "CNN over its random-init network (Cliff's δ, 95% interval)",
              "mlp": "MLP over its random-init network (δ, interval)", "position": "Position (MLP δ / CNN δ)",
              "direct": "MLP's images over the CNN's directly (δ, interval)", "verdict": "Verdict"}
P2_HEADERS = {"comparison": "Comparison", "arm": "Arm", "direction": "Direction",
              "observed": "Held-out correlation (R² for the linear arm)",
              "position": "Position (0 = null, 1 = ceiling), 95% interval", "verdict": "Verdict"}
ARM_WORDS = {"l1": "L1", "topk": "TopK", "linear": "linear (no dictionary)"}
LAYER_NAMES = {"hidden": "last hidden", "mid": "half depth", "late": "three quarters"}
INVARIANCE_HEADERS = {"layer": "Layer pair", "modules": "VGG / MLP layer",
                      "vgg": "VGG's invariance gained by training (95% interval)", "mlp": "MLP's (interval)",
                      "position": "Position (MLP / VGG)", "power": "Power (planted similar / null)",
                      "verdict": "Has the MLP approximated the VGG's shift invariance?"}
TRANSFER_HEADERS = {"direction": "AM images of → partner in", "features": "Features", "pairs": "Pairs",
                    "percentile": "Partner's mean percentile among the other network's features, 95% interval",
                    "top": "Share of pairs in the top tenth",
                    "p": "p (above the typical features', one-sided Mann–Whitney)"}


def _unique(items):
    return list(dict.fromkeys(items))


def html_table(rows, headers):
    """A small table without an index column, its headers in words."""
    import pandas as pd
    return pd.DataFrame(rows)[list(headers)].rename(columns=headers).to_html(index=False, border=0, escape=True)


# Which pair the front page leads with, fixed before the competence-matched run: the fully trained models, the pair
# the proposal names and every earlier verdict judged. The pair with the CNNs at the MLP's accuracy follows at once,
# with both of its verdicts: whether a verdict moves when the CNN is held at the MLP's accuracy (``MATCHED_LIMITS``).
LEADING_PAIR = "full"
MATCHED_LIMITS = ("It tells whether a verdict moves when each CNN is held at its MLP's test accuracy. It does not "
                  "separate architecture from competence: its MLP half is the full pair's, its CNNs are stopped "
                  "early (an earlier point of the same learning-rate schedule, not networks trained to that "
                  "accuracy), and it has {model_seeds} model seeds and {sae_seeds} SAE seed(s) per model, so a "
                  "verdict that does not move is no evidence that competence plays no part.")
COMPETENCE_HEADERS = {"pair": "Pair", "cnn": "CNN test accuracy (per model seed)", "mlp": "MLP test accuracy",
                      "p1": "Prediction 1", "p1_primary": "CNN δ / MLP δ over random init (primary test)",
                      "p2": "Prediction 2, last hidden layers", "p2_position": "Position VGG → MLP, MLP → VGG (L1)"}


@dataclass
class AnswersPage:
    profile: str

    def __post_init__(self):
        profiles.get(self.profile)
        self.am = json.loads(store.require("am_summary", profile=self.profile).read_text())
        store.require("conclusions", profile=self.profile, layer="hidden")
        self.conclusions = {layer: json.loads(path.read_text()) for layer in profiles.STUDY_LAYERS
                            if (path := store.path("conclusions", profile=self.profile, layer=layer)).exists()}
        self.matched = [AnswersPage(m) for m in profiles.matched_profiles(self.profile)
                        if store.ARTIFACTS["conclusions"].path(profile=m, layer="hidden").exists()]

    # ------------------------------------------------------------------ competence

    def _accuracies(self, family):
        from helpers.train import matching_table, training_record
        p = profiles.get(self.profile)
        if p.matching and family in p.matching.families:
            t = matching_table(self.profile)
            return list(t[t.model == profiles.FAMILY[family].architecture].accuracy)
        return [training_record(family, self.profile, s)["test_accuracy"] for s in p.model_seeds]

    def _competence_row(self, pair):
        p, c = self.am["primary"], self.conclusions["hidden"]
        positions = {d["direction"]: d for d in c["directions"]
                     if d["arm"] == "l1" and d["comparison"] == "question" and d["question"] == "shares"}
        shown = ", ".join(f"{d['position']:.2f} [{d['position_low']:.2f}, {d['position_high']:.2f}]"
                          for d in (positions.get("cnn->mlp"), positions.get("mlp->cnn")) if d)
        return dict(pair=pair, cnn=", ".join(f"{a:.1%}" for a in self._accuracies("cnn")),
                    mlp=", ".join(f"{a:.1%}" for a in self._accuracies("mlp")),
                    p1=self.am["prediction1"] + ("" if self.prediction1_status() == "test" else " (descriptive)"),
                    p1_primary=f"{p['cnn_delta']:.2f} / {p['mlp_delta']:.2f}",
                    p2=c["prediction2"] + ("" if self.prediction2_status("hidden") == "test" else " (descriptive)"),
                    p2_position=shown)

    def prediction1_status(self):
        """"test", or "descriptive" where the rule's power falls short (its reason says so)."""
        return "descriptive" if "descriptive" in self.am["reason"] else "test"

    def prediction1_words(self):
        """Prediction 1's verdict, in bold where it is a test."""
        return _bold_if_test(self.am["prediction1"], self.prediction1_status())

    def prediction2_status(self, layer):
        """The status of the primary question at ``layer``: "test", or why its verdict is descriptive."""
        from helpers.verdict import PRIMARIES
        return self.conclusions[layer]["questions"][PRIMARIES["prediction2"]["question"]]["status"]

    def prediction2_words(self, layer):
        """Prediction 2's verdict at ``layer``, in bold where it is a test, else marked descriptive."""
        status = self.prediction2_status(layer)
        verdict = self.conclusions[layer]["prediction2"]
        return _bold_if_test(verdict, status) + ("" if status == "test" else " (descriptive)")

    def competence_sentence(self):
        """Both verdicts again with the CNNs at the epoch whose accuracy matches the MLP's."""
        if not self.matched:
            return ""
        m = self.matched[0]
        from helpers.train import matching_table
        t = matching_table(m.profile)
        epochs = "; ".join(f"{r.model} seed {r.model_seed}: epoch {r.epoch} of {r.epochs}, {r.accuracy:.1%} (MLP "
                           f"{r.target:.1%})" for r in t.itertuples())
        return (f"**With competence-matched CNNs** (each CNN at the epoch whose test accuracy is nearest the MLP's of "
                f"the same seed: {epochs}): Prediction 1 is {m.prediction1_words()} ({m.am['reason']}); Prediction 2 "
                f"at the last hidden layers (L1 arm) is {m.prediction2_words('hidden')}. "
                + MATCHED_LIMITS.format(model_seeds=len(profiles.get(m.profile).model_seeds),
                                        sae_seeds=len(profiles.get(m.profile).sae_seeds_of("l1"))))

    def competence_table(self):
        """The full pair beside the competence-matched one: accuracies and both verdicts."""
        rows = [self._competence_row("fully trained CNNs")]
        rows += [m._competence_row("CNNs at the MLP's accuracy") for m in self.matched]
        return html_table(rows, COMPETENCE_HEADERS)

    def trajectory_image(self, width=900):
        """The curve of alignment along training and scale (``06_training``), where the profile has it."""
        from helpers.display import Image
        path = store.ARTIFACTS["trajectory_figure"].path(profile=self.profile)
        return Image(filename=str(path), width=width) if path.exists() else None

    # ------------------------------------------------------------------ Prediction 1

    def prediction1_sentence(self):
        am, p = self.am, self.am["primary"]
        return (f"**Prediction 1: {am['prediction1']}.** Why: {am['reason']}. "
                f"The primary test (middle-layer units: the CNN's channels, the MLP's hidden neurons; motif "
                f"measure, no penalty): the CNN's "
                f"images over its random-init network's δ {p['cnn_delta']:.2f} [{p['cnn_low']:.2f}, "
                f"{p['cnn_high']:.2f}], the MLP's δ {p['mlp_delta']:.2f} [{p['mlp_low']:.2f}, {p['mlp_high']:.2f}]. "
                f"The MLP's images over the CNN's directly: δ {p['direct_delta']:.2f} [{p['direct_low']:.2f}, "
                f"{p['direct_high']:.2f}] (the position compares each family's gain over its own random-init "
                f"network; a position of 1 means the MLP's gain over its own random-init network equals the CNN's "
                f"gain over its own, and says nothing of how much either family's images repeat: with a direct δ far "
                f"below 0, the MLP's images repeat less than the CNN's). "
                f"The measure on its known answers and its dose–response: {am['controls']['reason']}. "
                f"{self.earlier_rule_sentence()} {self.power_sentence()} {self.pooling_sentence()} "
                f"Profile `{self.profile}` ({profiles.get(self.profile).models}); {am['units']} units × "
                f"{am['model_seeds']} model seeds × {am['am_seeds']} AM seeds per network, {am['steps']} steps.")

    def earlier_rule_sentence(self):
        """The primary test under the rule before the absolute criterion (``verdict.RULE_CHANGES``): the relative arm
        alone, read from the same numbers."""
        p = self.am["primary"]
        earlier = self.prediction1_without_direct()
        if earlier == p["verdict"]:
            return "Without the absolute criterion (the rule before it was added) the primary test reads the same."
        return (f"Without the absolute criterion (the rule before it was added, after an exploratory run had been "
                f"seen) the primary test would read {earlier}: the verdict turns on that criterion.")

    def prediction1_without_direct(self):
        """Prediction 1's primary verdict under the rule before its absolute criterion, from the same numbers."""
        from helpers import verdict
        p = self.am["primary"]
        side = {f: dict(delta=p[f"{f}_delta"], low=p[f"{f}_low"], high=p[f"{f}_high"], p=p[f"{f}_p"])
                for f in ("cnn", "mlp")}
        position = dict(value=p["position"], low=p["position_low"], high=p["position_high"])
        direct = dict(delta=p["direct_delta"], low=p["direct_low"], high=p["direct_high"])
        return verdict.prediction1_comparison(bool(p["gates_ok"]), side["cnn"], side["mlp"], position, direct,
                                              rule=dict(verdict.PREDICTION1, min_direct=-1.0))[0]

    def earlier_verdicts(self):
        """This run's verdicts under each earlier rule whose inputs it still measures, beside the frozen rule's:
        {key of ``verdict.RULE_CHANGES``' ``earlier``: (earlier verdict, frozen verdict)}."""
        p2 = self.conclusions["hidden"]["questions"]["shares"]
        pooled = self._am_comparison("pooled")
        primary = self.am["primary"]["verdict"]  # the primary comparison's verdict, before the controls' checks
        return dict(
            prediction1_without_direct=(self.prediction1_without_direct(), primary),
            prediction1_pooled=(f"{pooled['verdict']} (the earlier primary objective, judged by the frozen rule)"
                                if pooled else "not measured", primary),
            prediction2_both_directions=(p2.get("both_directions", "not recorded"), p2["verdict"]))

    def rule_history(self):
        return rule_history(earlier=self.earlier_verdicts())

    def power_sentence(self):
        """The rule's simulated power at this run's seeds and noise (01's power table)."""
        pw = self.am.get("power")
        if pw is None:
            return "The rule's power could not be simulated here (too few model seeds or successful images)."
        wrong = pw.get("similar_not_supported")
        error = 0.5 / math.sqrt(pw["studies"])  # the largest standard error of a share over this many studies
        from helpers.freeze import noise_words
        return (f"The rule's power, simulated at {noise_words(self.profile)} and {int(pw['model_seeds'])} model seeds "
                f"({int(pw['studies'])} studies per planting: each share within about ±{2 * error:.0%}): a planted "
                f"MLP like the CNN comes back supported in {pw['similar_supported']:.0%} of studies"
                + (f" (not supported in {wrong:.0%})" if wrong is not None else "")
                + f", a planted null not supported in {pw['null_not_supported']:.0%} "
                + ("(adequate)." if pw["adequate"] else "(short of what the rule needs, `power.REQUIRED`: the verdict "
                                                        "is descriptive).")
                )

    def pooling_sentence(self):
        """The every-shift pooled row beside its artifact control (01's pooling table), primary measure."""
        import pandas as pd
        rows = pd.read_csv(self.figure("am_pooling"))
        rows = rows[rows.measure == "motif"].set_index("family")
        if "mlp" not in rows.index:
            return ""
        r = rows.loc["mlp"]
        if r.over_artifact_delta != r.over_artifact_delta:
            return "The MLP's pooled images: too few succeeded to compare with the artifact control."
        return (f"Pooled over every shift (a secondary row: pooling imposes the invariance under test), the MLP's "
                f"middle-layer images score motif median {r.trained:.3f} against {r.artifact:.3f} for random "
                f"localized ReLU units under the same pooling (δ {r.over_artifact_delta:.2f} "
                f"[{r.over_artifact_low:.2f}, {r.over_artifact_high:.2f}]) and {r.random_init:.3f} for its "
                f"random-init network (δ {r.over_null_delta:.2f} [{r.over_null_low:.2f}, {r.over_null_high:.2f}])."
                + self._pooled_row_words())

    def _am_comparison(self, objective, measure="motif", setting="plain"):
        """One row of Prediction 1's comparisons (``am_summary.json``), or None where the run has none."""
        return next((c for c in self.am["comparisons"] if (c["objective"], c["measure"], c["setting"])
                     == (objective, measure, setting)), None)

    def _pooled_row_words(self):
        """The rule on the pooled row (the symmetric objective: the MLP's units pooled over every shift too)."""
        row = self._am_comparison("mid-pooled")
        if row is None:
            return ""
        return (f" The rule on that row: {row['verdict']} ({row['reason']}); the MLP's pooled images against the "
                f"CNN's directly δ {row['direct_delta']:.2f} [{row['direct_low']:.2f}, {row['direct_high']:.2f}].")

    def prediction1_table(self):
        from helpers.am_study import OBJECTIVE_WORDS

        def interval(c, side):
            return f"{c[side + '_delta']:.2f} [{c[side + '_low']:.2f}, {c[side + '_high']:.2f}]"
        rows = [dict(test="primary" if c["primary"] else "robustness",
                     objective=OBJECTIVE_WORDS.get(c["objective"], c["objective"]), measure=c["measure"],
                     setting="none" if c["setting"] == "plain" else c["setting"], cnn=interval(c, "cnn"),
                     mlp=interval(c, "mlp"), position=f"{c['position']:.2f} [{c['position_low']:.2f}, "
                                                      f"{c['position_high']:.2f}]" if c["position"] == c["position"]
                     else "undefined (the CNN's effect may be 0)", direct=interval(c, "direct"),
                     verdict=c["verdict"] + (f" ({c['reason']})" if c["verdict"] == "not testable" else ""))
                for c in sorted(self.am["comparisons"], key=lambda c: not c["primary"])]
        return html_table(rows, P1_HEADERS)

    def invariance_table(self):
        """The shift-invariance finding at each layer pair (01's last table), as the rule returned it."""
        import pandas as pd
        pairs = pd.read_csv(self.figure("shift_invariance_pairs"))

        def interval(r, name, value):
            if r[value] != r[value]:
                return "undefined (the VGG's gain may be 0)"
            return f"{r[value]:.3f} [{r[name + '_low']:.3f}, {r[name + '_high']:.3f}]"
        rows = [dict(layer=LAYER_NAMES.get(r.layer, r.layer), modules=f"{r.cnn_module} / {r.mlp_module}",
                     vgg=interval(r, "cnn", "cnn_value"), mlp=interval(r, "mlp", "mlp_value"),
                     position=interval(r, "position", "position"),
                     power=f"{r.power_similar_supported:.2f} / {r.power_null_not_supported:.2f}"
                     + ("" if r.power_adequate else " (short: descriptive)"), verdict=r.verdict)
                for _, r in pairs.sort_values("layer", key=lambda c: c.map(DEPTH_ORDER)).iterrows()]
        return html_table(rows, INVARIANCE_HEADERS) + f"<p>{self.invariance_beside_motif(pairs)}</p>"

    def invariance_beside_motif(self, pairs):
        """The MLP's share of the VGG's invariance gain beside its share of the CNN's motif gain (Prediction 1's
        primary position): the proposal's account (the motifs come from shift invariance) has them move together."""
        p = self.am["primary"]
        if p["position"] != p["position"] or pairs.position.isna().all():
            return ""
        apart = (pairs.position_high < p["position_low"]).all()
        return (f"The MLP's share of the VGG's invariance gain ({pairs.position.min():.2f} to "
                f"{pairs.position.max():.2f} across the pairs, upper bounds up to {pairs.position_high.max():.2f}) "
                f"beside its share of the CNN's motif gain in Prediction 1's primary test ({p['position']:.2f} "
                f"[{p['position_low']:.2f}, {p['position_high']:.2f}]): "
                + ("every interval of the first lies below the second's, so the motifs the MLP's images gained with "
                   "training came with a fraction of the CNN's shift invariance, where the proposal's account would "
                   "have the two shares agree." if apart else "their intervals overlap."))

    def figure(self, artifact, **fields):
        return str(store.require(artifact, profile=self.profile, **fields))

    def am_side_by_side(self):
        """The class-logit AM images of the CNN beside the MLP's (the 01 figures, as the verdict saw them)."""
        return self._figures_side_by_side([self.figure("am_classes_figure", family=f) for f in profiles.FAMILIES],
                                          "one image per class logit", (12, 3.6))

    def am_primary_side_by_side(self):
        """The primary test's images: each family's middle-layer units (the 01 gallery)."""
        return self._figures_side_by_side(
            [self.figure("am_group_figure", family=f, group="plain_mid") for f in profiles.FAMILIES],
            "middle-layer units (CNN channels, MLP hidden neurons), trained network", (12, 13), side=True)

    def _figures_side_by_side(self, files, what, size, side=False):
        import matplotlib.image as mpimg
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(*((1, 2) if side else (2, 1)), figsize=size)
        for ax, family, file in zip(axes, profiles.FAMILIES, files):
            ax.imshow(mpimg.imread(file))
            ax.set_title(f"{profiles.side_name(family)}: {what}", fontsize=10)
            ax.axis("off")
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ Prediction 2

    def arm_steps(self, layer):
        """{arm: the steps its SAEs trained at ``layer``} as the run's SAE summaries record them (the settings the
        page ran with, which a later change to the profile does not rewrite)."""
        from helpers.profiles import SAE
        from helpers.sae_study import load_summaries
        out = {}
        for spec, summary in load_summaries(self.profile, layer).items():
            known = {k: v for k, v in summary["settings"].items() if k in SAE.__dataclass_fields__}
            if spec.arm not in out:
                out[spec.arm] = SAE(**known).training(spec.arm)["steps"]
        return out

    def prediction2_primary(self):
        """The frozen primary test of Prediction 2 (``verdict.PRIMARIES``) in one sentence: its verdict and position,
        the reverse direction and what both directions together would read beside it."""
        from helpers.verdict import PRIMARIES, QUESTION_WORDS
        primary = PRIMARIES["prediction2"]
        c = self.conclusions[primary["layer"]]
        q = c["questions"][primary["question"]]
        rows = {d["direction"]: d for d in c["directions"] if (d["arm"], d["comparison"], d["question"])
                == (primary["arm"], "question", primary["question"])}
        first, second = primary["direction"].split("->")
        reverse = rows.get(f"{second}->{first}")

        def where(d):
            return (f"position {d['position']:.2f} [{d['position_low']:.2f}, {d['position_high']:.2f}]"
                    if d and d["position"] == d["position"] else "position undefined (no valid null or ceiling)")
        name = {f: profiles.side_name(f) for f in (first, second)}
        return (f"**The primary test of Prediction 2** (fixed at the freeze: *{QUESTION_WORDS[primary['question']]}*"
                f" at {WHERE_SHORT[primary['layer']]}, the {ARM_WORDS[primary['arm']]} SAEs, the "
                f"{primary['statistic']}, {name[first]} → {name[second]}: are the {name[first]}'s features found in "
                f"the {name[second]}'s dictionary?): **{q['verdict']}**, {where(rows.get(primary['direction']))}; "
                f"{q['status']}. Beside it, {name[second]} → {name[first]}: {reverse['verdict'] if reverse else '–'}, "
                f"{where(reverse)}; both directions together would read "
                f"{q.get('both_directions', 'not recorded (a run before the freeze)')}. "
                f"*Supported* here would be one-way containment, not that the dictionaries are alike.")

    def zero_draws(self):
        """The question's zero in each direction of the L1 arm's *shares features*, this run's beside the level the
        freeze holds from the exploratory runs, and the position this run's observation and span would have at that
        zero: each zero is the SAE of one randomly initialized network (the first model seed's, the first SAE seed),
        whose variance between draws no interval holds. Reported after the confirmatory data had been seen; it
        changes no verdict. "" without a freeze."""
        from helpers.freeze import frozen_noise
        parts = []
        for layer, c in self.conclusions.items():
            noise = frozen_noise("prediction2", self.profile, layer)
            for d in c["directions"]:
                if noise is None or (d["arm"], d["comparison"], d["question"]) != ("l1", "question", "shares"):
                    continue
                explored = noise.levels(reverse=d["direction"] != "cnn->mlp")[0]
                shifted = (d["observed"] - explored) / d["span"]
                parts.append(f"{WHERE_SHORT[layer]}, {_arrow(d['direction'])}: zero {d['null_value']:.3f} "
                             f"(exploratory {explored:.3f}), position {d['position']:.2f} here, {shifted:.2f} at the "
                             f"exploratory zero")
        if not parts:
            return ""
        return ("**The question's zero is one draw.** In each direction it is the SAE of one randomly initialized "
                "network of the matched family (the first model seed's, with the first SAE seed), so its spread "
                "between draws is in no interval. This run's zero beside the exploratory runs' (the freeze's levels), "
                "and the position this run's observation and span would have at the exploratory zero: "
                + "; ".join(parts) + ". A verdict that turns when the zero is set to the other run's rests on one "
                "random-init draw. (This check was added after the confirmatory data had been seen; it changes no "
                "verdict.)")

    def prediction2_sentences(self):
        from helpers.verdict import QUESTION_WORDS
        out = [self.prediction2_primary(), self.zero_draws(),
               "Every verdict below is a secondary, except the one the primary names."]
        for layer, c in self.conclusions.items():
            steps = self.arm_steps(layer)
            words = dict(ARM_WORDS, topk=f"TopK ({steps['topk']:,} steps, the L1 arm {steps['l1']:,})"
                         if steps.get("topk", steps.get("l1")) != steps.get("l1") else "TopK")
            def both(v, arm):  # the verdict both directions together would give (recorded since the freeze)
                found = v.get("per_arm_both", {}).get(arm)
                return f" (both directions: {found})" if found else ""
            answers = "; ".join(
                f"*{QUESTION_WORDS[q]}*: {_bold_if_test(v['verdict'], _simulated(q, v['status']))}{both(v, 'l1')} "
                f"({v['reason']}; {_simulated(q, v['status'])}; other "
                f"arms: " + ", ".join(f"{words.get(arm, arm)} {verdict}{both(v, arm)}"
                                      for arm, (verdict, _) in v["per_arm"].items() if arm != "l1") + ")"
                + (f" — {v['finding']}" if v.get("finding") else "")
                for q, v in sorted(c["questions"].items(), key=lambda item: item[0] != "shares"))
            d = next((d for d in c["directions"] if d["arm"] == "l1" and d["direction"] == "cnn->mlp"
                      and d["question"] == "shares" and "reference_outcome" in d), None)
            beside = "" if d is None else f" Beside the reference pair, the MLP is {d['reference_outcome']}" + (
                f" (its position minus the ResNet's {d['vs_reference']:+.2f}, 95% interval "
                f"[{d['vs_reference_low']:+.2f}, {d['vs_reference_high']:+.2f}])."
                if d.get("vs_reference") == d.get("vs_reference") else ".")
            out.append(f"**Prediction 2 at {WHERE_SHORT[layer]} ({', '.join(_unique(c['modules'].values()))}): "
                       f"{c['prediction2']}.** {answers}." + beside)
        return "\n\n".join(out) + (f"\n\nEach layer's verdict is *shares features* in the L1 arm (the proposal's "
                                   f"SAE): a position of 0 is the random-init null, 1 the ceiling (two trained models "
                                   f"of one family). Profile `{self.profile}`, {profiles.get(self.profile).models}.")

    def prediction2_table(self, layer="hidden"):
        from helpers.compare import COMPARISON_LABELS
        c = self.conclusions[layer]

        def direction(d):
            a, b = d.split("->")
            return f"{profiles.side_name(a)} → {profiles.side_name(b)}"
        rows = [dict(comparison=COMPARISON_LABELS.get(d["comparison"], d["comparison"]),
                     arm=ARM_WORDS.get(d["arm"], d["arm"]), direction=direction(d["direction"]),
                     observed=f"{d['observed']:.3f}",
                     position=(f"{d['position']:.2f} [{d['position_low']:.2f}, {d['position_high']:.2f}]"
                               if d["position"] == d["position"] else "undefined"),
                     verdict=d["verdict"]) for d in c["directions"] if d["question"] == "shares"]
        return html_table(rows, P2_HEADERS)

    def transfer_table(self, layer="hidden"):
        """The atlas's transfer test: do one network's AM images of a feature drive its partner in the other?"""
        from helpers import atlas
        table = atlas.transfer_summary(atlas.load(self.profile, layer))
        rows = [dict(direction=r.direction, features=r.features, pairs=r.pairs,
                     percentile=f"{r.mean_percentile:.2f} [{r.low:.2f}, {r.high:.2f}]", top=f"{r.top_share:.2f}",
                     p="the no-transfer level" if r.p_vs_typical != r.p_vs_typical else f"{r.p_vs_typical:.3g}")
                for r in table.itertuples()]
        return html_table(rows, TRANSFER_HEADERS)

    def matched_pairs(self, layer="hidden"):
        """The best and typical matched feature pairs of the atlas (``05_atlas``), CNN beside MLP."""
        from helpers import atlas
        return atlas.matched_pairs_figure(atlas.load(self.profile, layer))

    # ------------------------------------------------------------------ the landing page

    def landing_text(self):
        """The answers as the book's landing page states them, with links to the pages behind them."""
        from helpers.verdict import PRIMARIES
        primary = PRIMARIES["prediction2"]["layer"]
        q = self.conclusions[primary]["questions"][PRIMARIES["prediction2"]["question"]]
        secondary = "; ".join(f"at {WHERE_SHORT[layer]}, {c['prediction2']}" for layer, c in self.conclusions.items()
                              if layer != primary)
        p2 = (f"primary (VGG → MLP at {WHERE_SHORT[primary]}): {_bold_if_test(q['verdict'], q['status'])} "
              f"({q['status']}); both directions together: {q.get('both_directions', 'not recorded')}; "
              f"secondary: {secondary}")
        short = ("descriptive: the rule is short of power at these seeds; " if "descriptive" in self.am["reason"]
                 else "")
        return (f"**The answers** (profile `{self.profile}`: {profiles.get(self.profile).models}).\n\n"
                f"- **Prediction 1** (recurring patterns in activation maximization): "
                f"{self.prediction1_words()} "
                f"({short}each family's images against its own random-init network's; the MLP's images against the "
                f"CNN's directly: δ {self.am['primary']['direct_delta']:.2f} [{self.am['primary']['direct_low']:.2f}, "
                f"{self.am['primary']['direct_high']:.2f}]).\n"
                f"- **Prediction 2** (are the VGG's features found in the MLP's dictionary?): {p2}.\n"
                + "".join(f"- **With the CNNs at the MLP's accuracy** (an earlier epoch of the same training): "
                          f"Prediction 1 {m.prediction1_words()}; Prediction 2 at the last hidden layers "
                          f"{m.prediction2_words('hidden')}.\n" for m in self.matched)
                + "\n"
                f"Each verdict, the numbers it rests on and the images it is about: "
                f"[the answers]({self.profile}/answers.ipynb). "
                f"Browse the features behind Prediction 2, each beside its best partner in the other network: "
                f"[the feature atlas]({self.profile}/05_atlas.ipynb).")

    def write_landing(self):
        """``landing_text``, written for the book's landing page (``book.write_intro`` reads it)."""
        with atomic_path(store.path("landing", profile=self.profile)) as tmp:
            tmp.write_text(self.landing_text())


# The layer pairs from the input up, for tables read along depth.
DEPTH_ORDER = {"mid": 0, "late": 1, "hidden": 2}


def _simulated(question, status):
    """A question's status as the page states it: the rule's power is simulated for *shares features* (VGG -> MLP,
    the L1 arm: ``helpers.power``) only, so any other question's verdict is a secondary whose power is unknown."""
    from helpers.verdict import PRIMARIES
    if question == PRIMARIES["prediction2"]["question"]:
        return status
    return "a secondary: its power was not simulated"


def _arrow(direction):
    """A matching direction in the book's words, "cnn->mlp" as "VGG → MLP"."""
    return " → ".join(profiles.side_name(f) for f in direction.split("->"))


def _bold_if_test(verdict, status):
    """A verdict in bold where it is a test; a descriptive one (the rule short of power) in plain words."""
    return f"**{verdict}**" if status == "test" else verdict


def _git(*args):
    """What ``git args`` prints in the repository, or "" where git cannot tell."""
    import subprocess
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def freeze_statement():
    """The freeze beside this run, for the methods page: the commit and date that added ``FREEZE.json`` and its hash,
    or that there is none yet (exploratory results, provisional rules); and the commit the run's code is at."""
    from helpers import freeze
    head = _git("show", "-s", "--format=%h %cs", "HEAD").partition(" ")
    changed = _git("status", "--porcelain", "--", "helpers", "notebooks")
    dirty = " with uncommitted changes to its code" if changed else ""
    run = f"This page's code: commit {head[0] or 'unknown'} ({head[2] or 'date unknown'}){dirty}."
    if freeze.load() is None:
        return ("**No freeze yet.** These results come from exploratory seeds under provisional rules; the "
                "confirmatory run fixes its rules, seeds, layer table and primaries in `FREEZE.json` before any of "
                "its training. " + run)
    added = _git("log", "--diff-filter=A", "--format=%h %cs", "--", "FREEZE.json").split("\n")[-1].partition(" ")
    commit = added[0] or "not in this clone's history"
    return (f"**The freeze**: `FREEZE.json` (hash {freeze.digest()}), added at commit {commit}"
            f"{f' ({added[2]})' if added[2] else ''}; every results record of the run carries its hash. " + run
            + " The confirmatory run replicates the exploratory design on fresh model, SAE and AM seeds: the same "
            "CIFAR-10 images, recipes and pipeline, tuned on the exploratory seeds; it tests what exploring chose.")


def rule_history(changes=None, earlier=None):
    """``verdict.RULE_CHANGES`` with each change's commit and date read from git (``git log -S`` finds the commit that
    added a marker); "not in this clone's history" where git cannot tell. With ``earlier``
    (``AnswersPage.earlier_verdicts``), this run's verdict under the rule before each change, beside the frozen
    rule's, where the run still measures what that rule read. An HTML table."""
    from helpers import verdict
    rows = []
    shallow = _git("rev-parse", "--is-shallow-repository") != "false"  # git log -S would name the boundary commit
    for c in verdict.RULE_CHANGES if changes is None else changes:
        if shallow:
            found = ""
        else:
            found = _git("show", "-s", "--format=%h %cs", c["commit"]) if "commit" in c else _git(
                "log", "--reverse", "--format=%h %cs", "-S", c["marker"], "--", "helpers/verdict.py").split("\n")[0]
        commit, _, date = found.partition(" ") if found else ("not in this clone's history", "", "")
        row = dict(commit=commit, date=date, rule=c["rule"], change=c["change"], seen=c["seen"])
        if earlier is not None:
            before, frozen = earlier.get(c.get("earlier"), (None, None))
            row["before"] = before or "not measured by this run (the earlier instrument or bootstrap is not run)"
            row["frozen"] = frozen or "–"
        rows.append(row)
    headers = dict(commit="commit", date="date", rule="rule", change="what changed", seen="what had been seen by then")
    if earlier is not None:
        headers.update(before="this run under the rule before", frozen="this run under the frozen rule")
    return html_table(rows, headers)
