"""The study's dictionaries (``02_sae``): which SAEs it trains on each family's layer, training them (cached by
everything they depend on), their held-out evaluation and quality gates, the files ``03_compare`` reads, the
every-layer CKA map (a description), and the page's tables, figures and summary."""
import math
from dataclasses import dataclass, field

import torch

from helpers import data as cifar
from helpers import freeze, profiles, store, verdict
from helpers.activations import POOL, harvest_layers, layer_representations, linear_map
from helpers.models import fingerprint
from helpers.paths import atomic_path, write_json
from helpers.sae import (
    ARMS,
    DENSE_FREQUENCY,
    SparseAutoencoder,
    dead,
    feature_activations,
    iter_saes,
    learning_rate,
    reconstruction_metrics,
    spliced_accuracies,
    write_saelens,
)
from helpers.units import SAESpec

# ----------------------------------------------------------------------------- which SAEs, and their files


SANITY_FAMILY = "cnn"  # the family whose layer, under a random invertible linear map, is Prediction 2's sanity control


def primary_spec(family, profile):
    """The SAE a page shows features of: the L1 arm on the profile's first model seed and first SAE seed."""
    p = profiles.get(profile)
    return SAESpec(family, "trained", p.model_seeds[0], "l1", p.sae_seeds[0])


def variants(family, profile, layer="hidden"):
    """Every SAE the study trains on one family's ``layer``: one per (model seed, arm of the profile at that layer,
    SAE seed of the arm: ``Profile.sae_seeds_of``); one per arm on a randomly initialized network (a null: the
    architecture initialized with the first model seed, the first SAE seed); and for ``SANITY_FAMILY`` one per arm
    on the first model seed's layer under ``activations.linear_map`` (the sanity control), with the first SAE
    seed."""
    p = profiles.get(profile)
    arms, first, first_sae = p.arms(layer), p.model_seeds[0], p.sae_seeds[0]
    out = [SAESpec(family, "trained", s, arm, t) for s in p.model_seeds for arm in arms for t in p.sae_seeds_of(arm)]
    out += [SAESpec(family, "random-init", first, arm, first_sae) for arm in arms]
    if family == SANITY_FAMILY:
        out += [SAESpec(family, "linear-map", first, arm, first_sae) for arm in arms]
    return out


def train_variants(profile, layer, specs, nets, module, acts, settings, fingerprints=None, grid=None):
    """The SAEs of ``specs`` on ``module``, each cached by everything it depends on (``store.SAE_TRAINING``): those
    not cached train first, one arm at a time in stacks (``iter_saes``), each saved as soon as it is trained and let
    go, so that training never holds the page's other SAEs; then all are loaded. ``nets[spec]`` is the network an SAE
    reads, ``acts[spec]`` its training vectors; ``settings`` the profile's SAE settings; ``fingerprints``: {spec: its
    network's ``fingerprint``} where the caller has them; ``grid``: the conv map's readout grid (part of the key, as
    in the harvest's). Returns {spec: (sae, log)}."""
    if fingerprints is None:
        hashed = {id(net): fingerprint(net) for net in nets.values()}  # a hash of the weights: once per network
        fingerprints = {spec: hashed[id(net)] for spec, net in nets.items()}

    def inputs(spec):
        return dict(sae=spec.as_dict(), model=fingerprints[spec], layer=module, pool=grid or POOL,
                    augment_copies=settings.augment_copies, training=settings.training(spec.arm))
    todo = [spec for spec in specs if not store.SAE_TRAINING.has(_sae_fields(profile, layer, spec), **inputs(spec))]
    for spec in todo:  # before training: a page never trains what another profile's folder holds
        store.SAE_TRAINING.check_writer(_sae_fields(profile, layer, spec))

    def train(arm):  # a function, so that nothing of the last stack outlives it
        mine = [spec for spec in todo if spec.arm == arm]
        trained = iter_saes([acts[spec] for spec in mine], arm, [spec.sae_seed for spec in mine],
                             **settings.training(arm))
        for spec, (sae, log) in zip(mine, trained):
            store.SAE_TRAINING.save(_sae_fields(profile, layer, spec), dict(state=sae.to_state(), log=log),
                                    **inputs(spec))
    for arm in ARMS:
        train(arm)
    saved = {spec: store.SAE_TRAINING.load(_sae_fields(profile, layer, spec), **inputs(spec)) for spec in specs}
    return {spec: (SparseAutoencoder.from_state(v["state"]), v["log"]) for spec, v in saved.items()}


def _fields(profile, layer, spec):
    """The fields of ``spec``'s files (``store.owner`` says whose folder holds them)."""
    return dict(profile=profile, layer=layer, sae=spec.id, family=spec.family, network=spec.net)


def _sae_fields(profile, layer, spec):
    """The fields of ``spec``'s trained SAE: those of the first study layer with ``layer``'s readout
    (``profiles.sae_layer``), so that a module read twice on one grid has its SAEs trained once."""
    return _fields(profile, profiles.sae_layer(profile, layer, spec.family), spec)


def load_sae(profile, layer, spec):
    """The SAE that ``train_variants`` saved for ``spec`` (``02_sae`` writes it)."""
    path = store.require("sae", **_sae_fields(profile, layer, spec))
    return SparseAutoencoder.from_state(torch.load(path, map_location="cpu", weights_only=True)["value"]["state"])


def save_features(profile, layer, spec, features, frequency):
    """Feature activations on the test images (float16), which ``03_compare`` reads."""
    with atomic_path(store.path("sae_features", **_fields(profile, layer, spec))) as tmp:
        torch.save(dict(features=features.half(), frequency=frequency), tmp)


def load_features(profile, layer, spec):
    path = store.require("sae_features", **_fields(profile, layer, spec))
    return torch.load(path, map_location="cpu", weights_only=True)["features"].float()


def load_summaries(profile, layer):
    """{SAESpec: its record in ``02_sae``'s summary} for every family of the profile at ``layer``, on the profile's
    model seeds (a competence-matched profile may use fewer seeds than the base whose SAEs it shares)."""
    import json
    p = profiles.get(profile)
    out = {}
    for family in p.families if p.arms(layer) else ():  # a layer without SAEs has none
        path = store.require("sae_summary", profile=profile, layer=layer, family=family)
        out.update({spec: s for s in json.loads(path.read_text()).values()
                    if (spec := SAESpec.from_dict(s)).net != "trained" or spec.model_seed in p.model_seeds})
    return out


# ----------------------------------------------------------------------------- held-out evaluation

@torch.no_grad()
def evaluate_saes(model, layer, saes, test_images, test_labels, acts_mean, outputs=None, grid=None):
    """Held-out metrics of SAEs on one network's ``layer``: each one's ``reconstruction_metrics`` on its test vectors,
    plus the classifier's accuracy and loss with the layer replaced by its reconstruction, beside the untouched and
    the mean-ablated layer (``acts_mean``): all in one pass over the test images (``spliced_accuracies``; from the
    layer's cached ``outputs`` on them where at hand; a conv map read on its readout ``grid``).

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
                                 + [replacement(sae, linear_map) for sae, _, linear_map in saes], outputs=outputs,
                                 grid=grid)
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
    """Linear CKA of every CNN layer against every MLP layer (the first model seed, the profile's ``layer_map_images``
    training images), with two nulls (each family against the other's randomly initialized network), cached
    (``store.LAYER_MAP``); where the profile has the reference ResNet, also every CNN layer against every ResNet
    layer beside its random-init null. A description beside the layer pairs: the pairs themselves are fixed by depth
    (``profiles.layer_table``), not by this map."""
    from helpers import compare
    from helpers.models import representation_layers
    from helpers.train import load_trained, random_model
    p = profiles.get(profile)
    n_images = p.compare.layer_map_images
    first = p.model_seeds[0]
    nets = {(f, kind): net for f in p.families for kind, net in
            (("trained", load_trained(f, profile, first)), ("random-init", random_model(f, profile, first)))}

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
    return store.LAYER_MAP(compute, dict(profile=profile),
                           models=[fingerprint(nets[(f, "trained")]) for f in p.families],
                           random_models=[fingerprint(nets[(f, "random-init")]) for f in p.families],
                           n_images=n_images, seed=seed, pool=POOL)


def study_layer(family, profile, layer):
    """The module name behind a study layer of ``family`` ('hidden', the last hidden layer, or the module at the
    layer's relative depth: ``profiles.readout``)."""
    return profiles.readout(profile, layer, family)[0]


# ----------------------------------------------------------------------------- the page: 02_sae

@dataclass
class Harvest:
    """One family's study layer read by every network of the page: {(net, model seed): vectors}."""
    train: dict           # over the training images (with the augmented copies)
    test: dict            # over the test images
    linear_map: tuple     # the sanity control's (M, M_inv), where the family has one, else None


@dataclass
class Trained:
    """Every SAE of the page, trained (or loaded), evaluated and gated."""
    saes: dict            # {SAESpec: (SparseAutoencoder, training log)}
    summary: dict         # {SAE id: its record, as ``03_compare`` reads it}
    table: object         # metrics per SAE (pandas)
    gates: object         # one row per SAE and gate (pandas)


@dataclass
class Features:
    """The primary SAE's features on the test images, their firing rates, and the alive ones the page shows."""
    sae: object
    acts: object
    frequency: object
    shown: object


@dataclass
class Dimensions:
    """Principal components holding each share of the layer's variance on the test images."""
    counts: dict          # {share: components}
    units: int

    def __str__(self):
        return ", ".join(f"{share:.0%} of the variance: {n} of {self.units} components"
                         for share, n in self.counts.items())


@dataclass
class SAEPage:
    """One family's SAEs at one study layer, as ``02_sae`` shows them. Its compute methods return values (the harvest,
    the trained SAEs, the dimensions, the features), which its tables, figures and text take."""
    profile: str
    model: str
    layer: str = "hidden"
    seed: int = 0                  # the figures' random picks
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        from helpers.train import load_trained, random_model
        profiles.check_family(self.model)
        profiles.check_seed(self.seed)
        p = profiles.get(self.profile)
        self.settings = p.sae_at(self.layer).with_overrides(self.overrides)
        self.name = profiles.FAMILY[self.model].architecture
        self.module, self.grid = profiles.readout(self.profile, self.layer, self.model)
        self.specs = variants(self.model, self.profile, self.layer)
        self.primary = primary_spec(self.model, self.profile)
        self.first = ("trained", p.model_seeds[0])  # the network the figures show, and the mapped layer's
        self.nets = {("trained", s): load_trained(self.model, self.profile, s) for s in p.model_seeds}
        self.nets[("random-init", p.model_seeds[0])] = random_model(self.model, self.profile, p.model_seeds[0])
        self.fingerprints = {k: fingerprint(net) for k, net in self.nets.items()}  # each network's weights hashed once
        self.test_images, self.test_labels, _ = cifar.load_cifar10("test")

    def where(self, **more):
        return dict(profile=self.profile, layer=self.layer, family=self.model, **more)

    def net_of(self, spec):
        """The network whose layer ``spec`` reads (the mapped layer is the first model seed's)."""
        return self.first if spec.net == "linear-map" else spec.network

    # ------------------------------------------------------------------ computing

    def harvest(self):
        """Every network's layer over the training images (with the augmented copies) and the test images; and the
        sanity control's mapped copy of the first model seed's, where the family has one."""
        # every study layer of the family in one pass over the images (the other layers' pages then load it)
        p = profiles.get(self.profile)
        grids = dict(profiles.readout(self.profile, layer, self.model) for layer in p.layer_arms if p.layer_arms[layer])
        train = {k: harvest_layers(net, list(grids), "train", self.settings.augment_copies,
                                   weights=self.fingerprints[k], grids=grids)[self.module][0]
                 for k, net in self.nets.items()}
        test = {k: harvest_layers(net, list(grids), "test", weights=self.fingerprints[k], grids=grids)[self.module][0]
                for k, net in self.nets.items()}
        mapping = None
        if any(spec.net == "linear-map" for spec in self.specs):
            mapping = linear_map(test[self.first].shape[1])
            for acts in (train, test):
                acts[("linear-map", self.first[1])] = acts[self.first] @ mapping[0]
        return Harvest(train, test, mapping)

    def train_all(self, harvest):
        """Every SAE of ``variants`` trained (or loaded), evaluated on the held-out vectors and gated; the summary,
        metrics, gates and the features ``03_compare`` reads written."""
        saes = train_variants(self.profile, self.layer, self.specs, {s: self.nets[self.net_of(s)] for s in self.specs},
                              self.module, {s: harvest.train[s.network] for s in self.specs}, self.settings,
                              {s: self.fingerprints[self.net_of(s)] for s in self.specs}, self.grid)
        evaluated = self.evaluate(harvest, saes)
        summary, rows, gate_rows, frozen = {}, [], [], freeze.digest()
        for spec in self.specs:
            sae, log = saes[spec]
            metrics, frequency = evaluated[spec]
            gates = verdict.sae_gates(metrics, self.settings.target_l0, log)
            self.write_sae(spec, sae, harvest, frequency)
            passed = verdict.gates_passed(gates)
            summary[spec.id] = dict(spec.as_dict(), metrics=metrics, gates=gates, gates_passed=passed,
                                    alive_share=1 - metrics["dead"] / metrics["n_features"],
                                    l1_coefficient=log[-1]["l1_coefficient"],
                                    settings=dict(self.settings.as_dict(), overrides=self.overrides),
                                    freeze=frozen)
            rows.append(dict(spec.as_dict(), **{c: metrics[c] for c in ("explained_variance", "l0", "dead", "dense",
                                                                         "accuracy_spliced", "loss_recovered")},
                             accuracy_original=metrics["accuracy_original"], gates_passed=passed))
            gate_rows += [dict(variant=spec.id, **g) for g in gates]
        return self.write_summary(saes, summary, rows, gate_rows)

    def evaluate(self, harvest, saes):
        """{spec: (held-out metrics, firing frequency)}: every SAE on one network in one pass over the test images."""
        out = {}
        for net_key, net in self.nets.items():
            specs = [spec for spec in self.specs if self.net_of(spec) == net_key]
            mapped = [harvest.linear_map if spec.net == "linear-map" else None for spec in specs]
            results = evaluate_saes(net, self.module, [(saes[spec][0], harvest.test[spec.network], m)
                                                       for spec, m in zip(specs, mapped)],
                                    self.test_images, self.test_labels, harvest.train[net_key].mean(0),
                                    outputs=harvest.test[net_key], grid=self.grid)
            out.update(zip(specs, results))
        return out

    def write_sae(self, spec, sae, harvest, frequency):
        """``spec``'s features on the test images and its SAELens files, where this page's profile holds them (a
        competence-matched page leaves its base's files to the base's page)."""
        if store.owner(self.profile, spec.family, spec.net) != self.profile:
            return
        save_features(self.profile, self.layer, spec, feature_activations(sae, harvest.test[spec.network]), frequency)
        write_saelens(sae, store.path("sae_saelens", **_fields(self.profile, self.layer, spec)), self.module,
                      f"{self.name} ({self.model}, {self.profile} profile, {spec.net}, model seed {spec.model_seed})",
                      dict(spec.as_dict(), profile=self.profile, layer=self.layer,
                           model_fingerprint=self.fingerprints[self.net_of(spec)],
                           training=self.settings.training(spec.arm), augment_copies=self.settings.augment_copies,
                           linear_map=spec.net == "linear-map"))

    def write_summary(self, saes, summary, rows, gate_rows):
        import pandas as pd
        write_json(store.path("sae_summary", **self.where()), summary)
        table = pd.DataFrame(rows).set_index("id")
        table.to_csv(store.path("sae_metrics", **self.where()))
        gates = pd.DataFrame(gate_rows)
        gates.to_csv(store.path("sae_gates", **self.where()), index=False)
        return Trained(saes, summary, table, gates)

    def dimensions(self, harvest):
        """Principal components holding 50/90/99% of the layer's variance on the test images (written)."""
        from helpers.compare import variance_dimensions
        counts = variance_dimensions(harvest.test[self.first])
        write_json(store.path("sae_dimensions", **self.where()), {str(s): n for s, n in counts.items()})
        return Dimensions(counts, harvest.test[self.first].shape[1])

    def features(self, harvest, trained):
        """The primary (L1, first model and SAE seed) SAE's features on the test images, their firing rates, and
        the alive features the page shows (a random pick)."""
        sae = trained.saes[self.primary][0]
        acts = feature_activations(sae, harvest.test[self.first])
        frequency = (acts > 0).float().mean(0)
        alive = torch.nonzero(~dead(frequency)).flatten()
        pick = torch.randperm(len(alive), generator=torch.Generator().manual_seed(self.seed))
        return Features(sae, acts, frequency, alive[pick[:self.settings.features_shown]].sort().values)

    # ------------------------------------------------------------------ tables, figures and text

    def describe(self, harvest):
        s, d = self.settings, harvest.test[self.first].shape[1]
        n_train = len(harvest.train[self.first])
        rates = {arm: round(learning_rate(arm, s.expansion * d), 6)
                 for arm in profiles.get(self.profile).arms(self.layer)}
        where = self.module + (f", channels averaged on a {self.grid}×{self.grid} grid" if self.grid else "")
        return (f"{self.name} ({self.model}), profile {self.profile!r}, layer {self.layer!r} ({where}): {d} "
                f"units; {len(self.nets) - 1} trained model(s) and a random-init one; {n_train:,} training vectors "
                f"each ({n_train // (1 + s.augment_copies):,} images + {s.augment_copies} augmented copies), "
                f"{len(self.test_images):,} held-out test vectors\n"
                f"each SAE: {d} -> {s.expansion * d} features, target L0 {s.target_l0}, batch {s.batch_size}, "
                + ", ".join(f"{arm} {n} steps ({n * s.batch_size / n_train:.1f} epochs)" for arm, n in
                            ((arm, s.training(arm)["steps"]) for arm in rates)) + f", Adam lr {rates}; "
                f"torch threads: {torch.get_num_threads()}")

    def metrics_table(self, trained):
        return trained.table.drop(columns=["family"]).round(4)

    def gate_table(self, trained):
        g = trained.gates
        return g.assign(value=g.value.round(4)).pivot(index="variant", columns="gate", values=["value", "passed"])

    def training_curves(self, trained):
        """Each arm's training curves on the first model seed and SAE seed."""
        from helpers.plots import sae_training_curves
        logs = {spec.arm: log for spec, (_, log) in trained.saes.items()
                if spec.network == self.first and spec.sae_seed == self.primary.sae_seed}
        return sae_training_curves(logs, self.settings.target_l0,
                                   f"{self.name} ({self.profile}), model seed {self.first[1]}: training curves of "
                                   f"each arm")

    def feature_figures(self, features):
        import matplotlib.pyplot as plt

        from helpers.plots import plot_density, plot_feature
        plot_density(features.frequency, f"{self.name} ({self.profile}), L1 SAE")
        plt.show()
        for i in features.shown.tolist():
            plot_feature(features.acts[:, i], self.test_images, self.test_labels, cifar.CLASSES, i,
                         frequency=features.frequency[i].item(), title=self.name)
            plt.show()

    def feature_am_figure(self, features):
        """AM along the encoder directions of the first shown features (saved)."""
        import matplotlib.pyplot as plt

        from helpers import actmax
        from helpers.plots import show_images
        if not (self.settings.am_features and len(features.shown)):
            return None
        picked = features.shown[:self.settings.am_features]
        am = actmax.render(self.nets[self.first], actmax.direction(self.module, features.sae.W_enc.detach()[picked]),
                           steps=self.settings.am_steps, seed=self.seed, color_matrix=actmax.cifar_color_matrix())
        fig = show_images(am.images, [f"feature {i}" for i in picked.tolist()], ncols=len(picked), size=1.8,
                          suptitle=f"{self.name} ({self.profile}): SAE features by AM")
        plt.savefig(store.path("sae_am_figure", **self.where()), dpi=120)
        return fig

    def summary_text(self, trained, dims):
        p, s = trained.table.loc[self.primary.id], self.settings
        failed = [vid for vid, r in trained.summary.items() if r["net"] == "trained" and not r["gates_passed"]]
        models = "small models trained on CPU" if profiles.get(self.profile).small else self.profile
        return (f"**{self.name}, profile {self.profile!r}, layer {self.module}** ({models}): at a target of "
                f"{s.target_l0} active features per image, the L1 SAE of model seed {self.primary.model_seed} (λ "
                f"settled at {trained.summary[self.primary.id]['l1_coefficient']:.3g}) explains "
                f"{p.explained_variance:.3f} of the held-out variance with L0 = {p.l0:.1f}; {int(p.dead)} of "
                f"{trained.saes[self.primary][0].n_features} features are dead and {int(p.dense)} are dense (fire on "
                f"more than {DENSE_FREQUENCY:.0%} of images). Test accuracy "
                f"{p.accuracy_original:.4f} with the original layer, {p.accuracy_spliced:.4f} with the "
                f"reconstruction. The layer puts 90% of its variance in {dims.counts[0.9]} principal components. "
                + (f"**SAEs of trained models that fail a quality gate: {', '.join(failed)}.**" if failed else
                   "Every SAE of a trained model passes its quality gates."))

    def browser(self, features):
        from helpers.explore import feature_browser
        return feature_browser(features.acts, features.frequency, self.test_images, self.test_labels,
                               cifar.CLASSES, title=self.name)
