"""The study's dictionaries (``02_sae``): which SAEs it trains on each family's layer, training them (cached by
everything they depend on), their held-out evaluation and quality gates, the files ``03_compare`` reads, the layer
map that picks the mid-depth layers, and the page's tables, figures and summary."""
import math
from dataclasses import dataclass, field

import torch

from helpers import data as cifar
from helpers import profiles, store, verdict
from helpers.activations import POOL, harvest_layers, layer_representations, linear_map
from helpers.models import fingerprint
from helpers.paths import atomic_path, write_json
from helpers.sae import (
    ARMS,
    DENSE_FREQUENCY,
    SparseAutoencoder,
    dead,
    feature_activations,
    learning_rate,
    reconstruction_metrics,
    spliced_accuracies,
    train_saes,
    write_saelens,
)
from helpers.units import SAESpec

# ----------------------------------------------------------------------------- which SAEs, and their files


SANITY_FAMILY = "cnn"  # the family whose layer, under a random invertible linear map, is Prediction 2's sanity control


def primary_spec(family):
    """The SAE a page shows features of: the L1 arm on model seed 0, SAE seed 0."""
    return SAESpec(family, "trained", 0, "l1")


def variants(family, profile, layer="hidden"):
    """Every SAE the study trains on one family's ``layer``: one per (model seed, arm of the profile at that layer,
    SAE seed); one per arm on a randomly initialized network (a null); and for ``SANITY_FAMILY`` one per arm on
    model seed 0's layer under ``activations.linear_map`` (the sanity control)."""
    p = profiles.get(profile)
    arms = p.arms(layer)
    out = [SAESpec(family, "trained", s, arm, t) for s in range(p.model_seeds) for arm in arms
           for t in range(p.sae_seeds)]
    out += [SAESpec(family, "random-init", 0, arm) for arm in arms]
    if family == SANITY_FAMILY:
        out += [SAESpec(family, "linear-map", 0, arm) for arm in arms]
    return out


def train_variants(profile, layer, specs, nets, module, acts, settings):
    """The SAEs of ``specs`` on ``module``, each cached by everything it depends on (``store.SAE_TRAINING``): those
    not cached train together, one ``SAEStack`` per arm. ``nets[spec]`` is the network an SAE reads, ``acts[spec]``
    its training vectors; ``settings`` the profile's SAE settings. Returns {spec: (sae, log)}."""
    fingerprints = {id(net): fingerprint(net) for net in nets.values()}  # a hash of the weights: once per network

    def inputs(spec):
        return dict(sae=spec.as_dict(), model=fingerprints[id(nets[spec])], layer=module,
                    augment_copies=settings.augment_copies, training=settings.training())
    saved = {spec: store.SAE_TRAINING.load(_fields(profile, layer, spec), **inputs(spec)) for spec in specs}
    for arm in ARMS:
        todo = [spec for spec in specs if spec.arm == arm and saved[spec] is None]
        if todo:
            trained = train_saes([acts[spec] for spec in todo], arm, [spec.sae_seed for spec in todo],
                                 **settings.training())
            for spec, (sae, log) in zip(todo, trained):
                saved[spec] = store.SAE_TRAINING.save(_fields(profile, layer, spec),
                                                      dict(state=sae.to_state(), log=log), **inputs(spec))
    return {spec: (SparseAutoencoder.from_state(v["state"]), v["log"]) for spec, v in saved.items()}


def _fields(profile, layer, spec):
    if spec.net == "random-init":  # the same network in a competence-matched profile as in its base: the base's SAE
        profile = profiles.base_profile(profile)
    return dict(profile=profile, layer=layer, sae=spec.id, family=spec.family)


def load_sae(profile, layer, spec):
    """The SAE that ``train_variants`` saved for ``spec`` (``02_sae`` writes it)."""
    path = store.require("sae", **_fields(profile, layer, spec))
    return SparseAutoencoder.from_state(torch.load(path, map_location="cpu", weights_only=True)["value"]["state"])


def save_features(profile, layer, spec, features, frequency):
    """Feature activations on the test images (float16), which ``03_compare`` reads."""
    with atomic_path(store.path("sae_features", **_fields(profile, layer, spec))) as tmp:
        torch.save(dict(features=features.half(), frequency=frequency), tmp)


def load_features(profile, layer, spec):
    path = store.require("sae_features", **_fields(profile, layer, spec))
    return torch.load(path, map_location="cpu", weights_only=True)["features"].float()


def load_summaries(profile, layer):
    """{SAESpec: its record in ``02_sae``'s summary} for every family of the profile at ``layer``."""
    import json
    out = {}
    for family in profiles.get(profile).families:
        path = store.require("sae_summary", profile=profile, layer=layer, family=family)
        out.update({SAESpec.from_dict(s): s for s in json.loads(path.read_text()).values()})
    return out


# ----------------------------------------------------------------------------- held-out evaluation

@torch.no_grad()
def evaluate_saes(model, layer, saes, test_images, test_labels, acts_mean):
    """Held-out metrics of SAEs on one network's ``layer``: each one's ``reconstruction_metrics`` on its test vectors,
    plus the classifier's accuracy and loss with the layer replaced by its reconstruction, beside the untouched and
    the mean-ablated layer (``acts_mean``): all in one pass over the test images (``spliced_accuracies``).

    ``saes``: (sae, test vectors, linear map) triples. The map is (M, M_inv) when the SAE reads the layer mapped (its
    test vectors are then mapped too), else None; its reconstruction is mapped back to splice it. Returns one
    (metrics, frequency) per SAE."""
    device = next(model.parameters()).device

    def replacement(sae, linear_map):
        sae = sae.to(device)
        if linear_map is None:
            return lambda a: sae(a)[0]
        m, m_inv = (t.to(device) for t in linear_map)
        return lambda a: sae(a @ m)[0] @ m_inv
    spliced = spliced_accuracies(model, layer, test_images, test_labels,
                                 [lambda a: a, lambda a: acts_mean.to(a.device).expand_as(a)]
                                 + [replacement(sae, linear_map) for sae, _, linear_map in saes])
    original, mean_ablated = spliced[:2]
    gap = mean_ablated["loss"] - original["loss"]
    out = []
    for (sae, test_acts, _), result in zip(saes, spliced[2:]):
        metrics, frequency = reconstruction_metrics(sae, test_acts)
        metrics.update(accuracy_original=original["accuracy"], accuracy_spliced=result["accuracy"],
                       accuracy_mean_ablated=mean_ablated["accuracy"],
                       loss_recovered=(mean_ablated["loss"] - result["loss"]) / gap if gap else math.nan)
        out.append((metrics, frequency))
    return out


# ----------------------------------------------------------------------------- the layer map

def layer_map(profile, seed=0):
    """Linear CKA of every CNN layer against every MLP layer (model seed 0, the profile's ``layer_map_images``
    training images), with two nulls (each family against the other's randomly initialized network), cached
    (``store.LAYER_MAP``); and the mid-depth pair that ``verdict.best_aligned_pair`` picks among
    ``verdict.mid_layer_candidates``: the layers of the study's second SAE comparison. Where the profile has the
    reference ResNet, also every CNN layer against every ResNet layer, and the ResNet block best aligned with the
    chosen CNN layer beyond its random-init null (the reference pair's mid-depth layer)."""
    from helpers import compare
    from helpers.models import representation_layers
    from helpers.train import load_trained, random_model
    p = profiles.get(profile)
    n_images = p.compare.layer_map_images
    nets = {(f, kind): net for f in p.families for kind, net in
            (("trained", load_trained(f, profile, 0)), ("random-init", random_model(f, profile)))}

    def compute():
        images, _, _ = cifar.load_cifar10("train", verbose=False)
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_images]]
        grams, layers = {}, {}
        for (family, kind), net in nets.items():
            layers[family] = representation_layers(net)
            reps = layer_representations(net, images, layers[family])
            grams[(family, kind)] = [compare.centered_gram(reps[name]) for name in layers[family]]
        cnn = grams[("cnn", "trained")]
        trained = compare.cka_map(cnn, grams[("mlp", "trained")])
        nulls = {"random-init MLP": compare.cka_map(cnn, grams[("mlp", "random-init")]),
                 "random-init CNN": compare.cka_map(grams[("cnn", "random-init")], grams[("mlp", "trained")])}
        out = dict(cnn_layers=layers["cnn"], mlp_layers=layers["mlp"], trained=trained, nulls=nulls)
        if profiles.REFERENCE in p.families:
            ref = profiles.REFERENCE
            out.update(reference_layers=layers[ref], reference=compare.cka_map(cnn, grams[(ref, "trained")]),
                       reference_null=compare.cka_map(cnn, grams[(ref, "random-init")]))
        return out
    maps = store.LAYER_MAP(compute, dict(profile=profile),
                           models=[fingerprint(nets[(f, "trained")]) for f in p.families],
                           random_models=[fingerprint(nets[(f, "random-init")]) for f in p.families],
                           n_images=n_images, seed=seed, pool=POOL)
    rows, cols = verdict.mid_layer_candidates(maps["cnn_layers"], maps["mlp_layers"])
    i, j = verdict.best_aligned_pair(maps["trained"], maps["nulls"].values(), rows, cols)
    choice = dict(cnn=maps["cnn_layers"][i], mlp=maps["mlp_layers"][j])
    if "reference" in maps:
        blocks = verdict.reference_candidates(maps["reference_layers"])
        _, k = verdict.best_aligned_pair(maps["reference"], [maps["reference_null"]], [i], blocks)
        choice[profiles.REFERENCE] = maps["reference_layers"][k]
    return dict(maps, candidates=dict(cnn=rows, mlp=cols), choice=choice)


def study_layer(family, profile, layer):
    """The module name behind a study layer: 'hidden' (the last hidden layer) or 'mid' (the best-aligned mid-depth
    layer of ``layer_map``)."""
    profiles.check_layer(layer)
    return layer_map(profile)["choice"][family] if layer == "mid" else layer


# ----------------------------------------------------------------------------- the page: 02_sae

@dataclass
class SAEPage:
    """One family's SAEs at one study layer, as ``02_sae`` shows them."""
    profile: str
    model: str
    layer: str = "hidden"
    seed: int = 0                  # the figures' random picks
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        from helpers.train import load_trained, random_model
        profiles.check_family(self.model)
        profiles.check_seed(self.seed)
        self.settings = profiles.get(self.profile).sae.with_overrides(self.overrides)
        self.name = profiles.FAMILY_NAMES[self.model]
        self.module = study_layer(self.model, self.profile, self.layer)
        self.specs = variants(self.model, self.profile, self.layer)
        self.nets = {("trained", s): load_trained(self.model, self.profile, s)
                     for s in range(profiles.get(self.profile).model_seeds)}
        self.nets[("random-init", 0)] = random_model(self.model, self.profile, 0)
        self.test_images, self.test_labels, _ = cifar.load_cifar10("test")

    def where(self, **more):
        return dict(profile=self.profile, layer=self.layer, family=self.model, **more)

    def harvest(self):
        """Every network's layer over the training images (with the augmented copies) and the test images; and the
        sanity control's mapped copy of model seed 0's, where the family has one."""
        # every study layer of the family in one pass over the images (the other layer's page then loads it)
        layers = [self.module] + [study_layer(self.model, self.profile, layer)
                                  for layer in profiles.get(self.profile).layer_arms if layer != self.layer]
        self.train_acts = {k: harvest_layers(net, layers, "train", self.settings.augment_copies)[self.module][0]
                           for k, net in self.nets.items()}
        self.test_acts = {k: harvest_layers(net, layers, "test")[self.module][0] for k, net in self.nets.items()}
        self.linear_map = None
        if any(spec.net == "linear-map" for spec in self.specs):
            self.linear_map = linear_map(self.test_acts[("trained", 0)].shape[1])
            for acts in (self.train_acts, self.test_acts):
                acts[("linear-map", 0)] = acts[("trained", 0)] @ self.linear_map[0]
        return self.describe()

    def describe(self):
        s, d = self.settings, self.test_acts[("trained", 0)].shape[1]
        n_train = len(self.train_acts[("trained", 0)])
        rates = {arm: round(learning_rate(arm, s.expansion * d), 6)
                 for arm in profiles.get(self.profile).arms(self.layer)}
        return (f"{self.name} ({self.model}), profile {self.profile!r}, layer {self.layer!r} ({self.module}): {d} "
                f"units; {len(self.nets) - 1} trained model(s) and a random-init one; {n_train:,} training vectors "
                f"each ({n_train // (1 + s.augment_copies):,} images + {s.augment_copies} augmented copies), "
                f"{len(self.test_images):,} held-out test vectors\n"
                f"each SAE: {d} -> {s.expansion * d} features, target L0 {s.target_l0}, batch {s.batch_size}, "
                f"{s.steps} steps ({s.steps * s.batch_size / n_train:.1f} epochs), Adam lr {rates}; "
                f"torch threads: {torch.get_num_threads()}")

    def train_all(self):
        """Every SAE of ``variants`` trained (or loaded), evaluated on the held-out vectors and gated; the summary,
        metrics and gates written for ``03_compare``. Returns the metrics table."""
        import pandas as pd
        rows, self.logs, gate_rows, summary = [], {}, [], {}
        net_of = {spec: ("trained", 0) if spec.net == "linear-map" else spec.network for spec in self.specs}
        mapped = {spec: self.linear_map if spec.net == "linear-map" else None for spec in self.specs}
        trained = train_variants(self.profile, self.layer, self.specs, {s: self.nets[net_of[s]] for s in self.specs},
                                 self.module, {s: self.train_acts[s.network] for s in self.specs}, self.settings)
        evaluated = {}
        for net_key, net in self.nets.items():  # every SAE on one network in one pass over the test images
            specs = [spec for spec in self.specs if net_of[spec] == net_key]
            results = evaluate_saes(net, self.module, [(trained[spec][0], self.test_acts[spec.network], mapped[spec])
                                                       for spec in specs],
                                    self.test_images, self.test_labels, self.train_acts[net_key].mean(0))
            evaluated.update(zip(specs, results))
        for spec in self.specs:
            k, net_key = spec.network, net_of[spec]  # the mapped layer is seed 0's
            sae, self.logs[spec] = trained[spec]
            metrics, frequency = evaluated[spec]
            gates = verdict.sae_gates(metrics, self.settings.target_l0, self.logs[spec])
            save_features(self.profile, self.layer, spec, feature_activations(sae, self.test_acts[k]), frequency)
            owner = _fields(self.profile, self.layer, spec)
            write_saelens(sae, store.path("sae_saelens", **owner), self.module,
                          f"{self.name} ({self.model}, {owner['profile']} profile, {spec.net}, model seed "
                          f"{spec.model_seed})", dict(spec.as_dict(), profile=owner["profile"], layer=self.layer,
                                                     model_fingerprint=fingerprint(self.nets[net_key]),
                                                     training=self.settings.training(),
                                                     augment_copies=self.settings.augment_copies,
                                                     linear_map=mapped[spec] is not None))
            passed = verdict.gates_passed(gates)
            summary[spec.id] = dict(spec.as_dict(), metrics=metrics, gates=gates, gates_passed=passed,
                                    alive_share=1 - metrics["dead"] / metrics["n_features"],
                                    l1_coefficient=self.logs[spec][-1]["l1_coefficient"],
                                    settings=dict(self.settings.as_dict(), overrides=self.overrides))
            rows.append(dict(spec.as_dict(), **{c: metrics[c] for c in ("explained_variance", "l0", "dead", "dense",
                                                                         "accuracy_spliced", "loss_recovered")},
                             accuracy_original=metrics["accuracy_original"], gates_passed=passed))
            gate_rows += [dict(variant=spec.id, **g) for g in gates]
        self.summary = summary
        write_json(store.path("sae_summary", **self.where()), summary)
        self.table = pd.DataFrame(rows).set_index("id")
        self.table.to_csv(store.path("sae_metrics", **self.where()))
        self.gates = pd.DataFrame(gate_rows)
        self.gates.to_csv(store.path("sae_gates", **self.where()), index=False)
        return self.table.drop(columns=["family"]).round(4)

    def gate_table(self):
        g = self.gates
        return g.assign(value=g.value.round(4)).pivot(index="variant", columns="gate", values=["value", "passed"])

    def training_curves(self):
        import matplotlib.pyplot as plt
        import pandas as pd
        fig, axes = plt.subplots(1, 4, figsize=(15, 3))
        for spec in [s for s in self.specs if s.network == ("trained", 0) and s.sae_seed == 0]:
            log = pd.DataFrame(self.logs[spec])
            for ax, column in zip(axes, ["l0", "explained_variance", "silent", "l1_coefficient"]):
                ax.plot(log.step, log[column], label=spec.arm)
                ax.set(xlabel="step", title=column.replace("_", " ") + " (training batches)")
        axes[0].axhline(self.settings.target_l0, color="grey", lw=0.8, ls="--")
        axes[3].set_yscale("log")
        axes[0].legend()
        fig.suptitle(f"{self.name} ({self.profile}), model seed 0: training curves of each arm")
        fig.tight_layout()
        return fig

    def dimensions(self):
        """Principal components holding 50/90/99% of the layer's variance on the test images (written)."""
        from helpers.compare import variance_dimensions
        self.dims = variance_dimensions(self.test_acts[("trained", 0)])
        write_json(store.path("sae_dimensions", **self.where()), {str(s): n for s, n in self.dims.items()})
        d = self.test_acts[("trained", 0)].shape[1]
        return ", ".join(f"{share:.0%} of the variance: {n} of {d} components" for share, n in self.dims.items())

    @property
    def primary(self):
        return primary_spec(self.model)

    def features(self):
        """The primary (L1, model seed 0) SAE's features on the test images, their firing rates, and the alive
        features the page shows (a random pick)."""
        self.sae = load_sae(self.profile, self.layer, self.primary)
        self.feature_acts = feature_activations(self.sae, self.test_acts[("trained", 0)])
        self.frequency = (self.feature_acts > 0).float().mean(0)
        alive = torch.nonzero(~dead(self.frequency)).flatten()
        pick = torch.randperm(len(alive), generator=torch.Generator().manual_seed(self.seed))
        self.shown = alive[pick[:self.settings.features_shown]].sort().values

    def feature_figures(self):
        import matplotlib.pyplot as plt

        from helpers.plots import plot_density, plot_feature
        self.features()
        plot_density(self.frequency, f"{self.name} ({self.profile}), L1 SAE")
        plt.show()
        for i in self.shown.tolist():
            plot_feature(self.feature_acts[:, i], self.test_images, self.test_labels, cifar.CLASSES, i,
                         frequency=self.frequency[i].item(), title=self.name)
            plt.show()

    def feature_am_figure(self):
        """AM along the encoder directions of the first shown features (saved)."""
        import matplotlib.pyplot as plt

        from helpers import actmax
        from helpers.plots import show_images
        if not (self.settings.am_features and len(self.shown)):
            return None
        picked = self.shown[:self.settings.am_features]
        am = actmax.render(self.nets[("trained", 0)], actmax.direction(self.module, self.sae.W_enc.detach()[picked]),
                           steps=self.settings.am_steps, seed=self.seed, color_matrix=actmax.cifar_color_matrix())
        fig = show_images(am.images, [f"feature {i}" for i in picked.tolist()], ncols=len(picked), size=1.8,
                          suptitle=f"{self.name} ({self.profile}): SAE features by AM")
        plt.savefig(store.path("sae_am_figure", **self.where()), dpi=120)
        return fig

    def summary_text(self):
        p, s = self.table.loc[self.primary.id], self.settings
        failed = [vid for vid, r in self.summary.items() if r["net"] == "trained" and not r["gates_passed"]]
        models = "small models trained on CPU" if profiles.get(self.profile).small else self.profile
        return (f"**{self.name}, profile {self.profile!r}, layer {self.module}** ({models}): at a target of "
                f"{s.target_l0} active features per image, the L1 SAE of model seed 0 (λ settled at "
                f"{self.summary[self.primary.id]['l1_coefficient']:.3g}) explains {p.explained_variance:.3f} of the "
                f"held-out variance with L0 = {p.l0:.1f}; {int(p.dead)} of {self.sae.n_features} "
                f"features are dead and {int(p.dense)} are dense (fire on more than "
                f"{DENSE_FREQUENCY:.0%} of images). Test accuracy "
                f"{p.accuracy_original:.4f} with the original layer, {p.accuracy_spliced:.4f} with the "
                f"reconstruction. The layer puts 90% of its variance in {self.dims[0.9]} principal components. "
                + (f"**SAEs of trained models that fail a quality gate: {', '.join(failed)}.**" if failed else
                   "Every SAE of a trained model passes its quality gates."))

    def browser(self):
        from helpers.explore import feature_browser
        return feature_browser(self.feature_acts, self.frequency, self.test_images, self.test_labels,
                               cifar.CLASSES, title=self.name)

