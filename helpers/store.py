"""The study's artifact store: the one spelling of every file the study writes, which notebook writes it, and the
cached steps, each keyed by the inputs it declares and the source of the modules it runs.

Every path is under the data folder (``helpers.paths.data_dir``). ``path(name, **fields)`` spells a file;
``require(name, **fields)`` returns it or names the notebook to run first; a ``CachedStep`` builds the key of a cached
result from everything that result depends on.
"""
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

from helpers import profiles
from helpers.paths import cached, data_dir, has_cached, load_cached, save_cached


def owner(profile, family=None, network=None, kind="result"):
    """The profile whose folder holds a file of ``profile``'s study about ``family``'s ``network`` ("trained",
    "random-init", ...). A competence-matched profile's models are its base's checkpoints (``kind`` "model"), and its
    results are its base's where its models are (the families it does not match, and every randomly initialized
    network: the same architectures and seeds), so they are read from there and never computed twice; every other
    result, and every page's own rendering (``kind`` "page"), is the profile's own."""
    m = profiles.get(profile).matching
    if m and kind != "page" and (kind == "model" or network == "random-init"
                                 or (family is not None and family not in m.families)):
        return m.base
    return profile


@dataclass(frozen=True)
class Artifact:
    name: str
    template: str   # under the data folder; fields in braces
    notebook: str   # the notebook that writes it
    kind: str = "result"  # "model": a checkpoint or its record; "result": about one model (its family and network
                          # fields); "page": a page's own rendering. ``owner`` says whose folder holds each

    def folder(self, fields):
        """The profile whose folder holds the file with ``fields`` (``owner``)."""
        return owner(fields["profile"], fields.get("family"), fields.get("network"), self.kind)

    def path(self, **fields):
        if "profile" in fields:
            fields = dict(fields, profile=self.folder(fields))
        try:
            return data_dir() / self.template.format(**fields)
        except KeyError as e:
            raise TypeError(f"artifact {self.name!r} ({self.template}) needs the field {e}") from None


_R = "results/{profile}/"
_SAE = _R + "sae/{layer}/"
ARTIFACTS = {a.name: a for a in (
    Artifact("checkpoint", "checkpoints/{family}_{profile}_seed{seed}.pt", "00_train.ipynb", "model"),
    Artifact("training_record", "checkpoints/{family}_{profile}_seed{seed}.json", "00_train.ipynb", "model"),
    Artifact("epoch_checkpoint", "checkpoints/{family}_{profile}_seed{seed}/epoch{epoch}.pt", "00_train.ipynb",
             "model"),
    Artifact("training_state", "checkpoints/{family}_{profile}_seed{seed}/resume.pt", "00_train.ipynb", "model"),
    Artifact("activations", "activations/{model}-{layer}-{split}-aug{augment_copies}-seed{seed}.pt",
             "02_sae.ipynb"),
    Artifact("am_run", _R + "am/{family}{model_seed}_{network}_{setting}_seed{am_seed}.pt",
             "01_activation_maximization.ipynb"),
    Artifact("am_controls", _R + "am_controls.csv", "01_activation_maximization.ipynb"),
    Artifact("am_controls_figure", _R + "am_controls.png", "01_activation_maximization.ipynb"),
    Artifact("am_scores", _R + "am_scores.csv", "01_activation_maximization.ipynb"),
    Artifact("am_gates", _R + "am_gates.csv", "01_activation_maximization.ipynb"),
    Artifact("am_effects", _R + "am_effects.csv", "01_activation_maximization.ipynb"),
    Artifact("am_comparisons", _R + "am_comparisons.csv", "01_activation_maximization.ipynb"),
    Artifact("am_summary", _R + "am_summary.json", "01_activation_maximization.ipynb"),
    Artifact("am_classes_figure", _R + "am_{family}_classes.png", "01_activation_maximization.ipynb", "page"),
    Artifact("am_group_figure", _R + "am_{family}_{group}.png", "01_activation_maximization.ipynb", "page"),
    Artifact("am_scores_figure", _R + "am_repetition_scores.png", "01_activation_maximization.ipynb"),
    Artifact("shift_invariance_cache", _R + "invariance/{family}{model_seed}_{network}.pt",
             "01_activation_maximization.ipynb"),
    Artifact("shift_invariance", _R + "shift_invariance.csv", "01_activation_maximization.ipynb"),
    Artifact("am_dose_response", _R + "am_dose_response.csv", "01_activation_maximization.ipynb"),
    Artifact("am_dose_response_figure", _R + "am_dose_response.png", "01_activation_maximization.ipynb"),
    Artifact("am_pooling", _R + "am_pooling.csv", "01_activation_maximization.ipynb"),
    Artifact("am_natural_path", _R + "am_natural_path.csv", "01_activation_maximization.ipynb"),
    Artifact("am_power", _R + "am_power.csv", "01_activation_maximization.ipynb"),
    Artifact("network_facts", _R + "network_facts.csv", "01_activation_maximization.ipynb"),
    Artifact("shift_invariance_pairs", _R + "shift_invariance_pairs.csv", "01_activation_maximization.ipynb"),
    Artifact("shift_invariance_figure", _R + "shift_invariance.png", "01_activation_maximization.ipynb"),
    Artifact("layer_map", _R + "layer_map.pt", "03_compare.ipynb"),
    Artifact("layer_map_table", _R + "layer_map.csv", "03_compare.ipynb"),
    Artifact("layer_map_figure", _R + "layer_map.png", "03_compare.ipynb"),
    Artifact("sae", _SAE + "{sae}-sae.pt", "02_sae.ipynb"),
    Artifact("sae_features", _SAE + "{sae}-features.pt", "02_sae.ipynb"),
    Artifact("sae_saelens", _SAE + "saelens/{sae}", "02_sae.ipynb"),  # a folder: SAELens's cfg.json + weights
    Artifact("sae_summary", _SAE + "{family}-summary.json", "02_sae.ipynb"),
    Artifact("sae_metrics", _SAE + "{family}-metrics.csv", "02_sae.ipynb"),
    Artifact("sae_gates", _SAE + "{family}-gates.csv", "02_sae.ipynb"),
    Artifact("sae_dimensions", _SAE + "{family}-dimensions.json", "02_sae.ipynb"),
    Artifact("sae_am_figure", _SAE + "{family}-am.png", "02_sae.ipynb"),
    Artifact("compare_gates", _R + "compare_{layer}_gates.csv", "03_compare.ipynb"),
    Artifact("compare_statistics", _R + "compare_{layer}_statistics.csv", "03_compare.ipynb"),
    Artifact("compare_directions", _R + "compare_{layer}_directions.csv", "03_compare.ipynb"),
    Artifact("compare_cka", _R + "compare_{layer}_cka.csv", "03_compare.ipynb"),
    Artifact("compare_linear_seeds", _R + "compare_{layer}_linear_seeds.csv", "03_compare.ipynb"),
    Artifact("compare_features", _R + "compare_{layer}_features.csv.gz", "03_compare.ipynb"),
    Artifact("compare_distributions", _R + "compare_{layer}_distributions.png", "03_compare.ipynb"),
    Artifact("compare_figure", _R + "compare_{layer}_statistics.png", "03_compare.ipynb"),
    Artifact("conclusions", _R + "conclusions_{layer}.json", "03_compare.ipynb"),
    Artifact("atlas", _R + "atlas_{layer}.json", "05_atlas.ipynb"),
    Artifact("landing", _R + "landing.md", "04_answers.ipynb"),  # the answers as the book's landing page states them
    Artifact("trajectory_cache", _R + "trajectory.pt", "06_training.ipynb"),
    Artifact("trajectory", _R + "trajectory.csv", "06_training.ipynb"),
    Artifact("trajectory_figure", _R + "trajectory.png", "06_training.ipynb"),
)}


def path(name, **fields):
    """The file of artifact ``name`` (its folder created), e.g. ``path("am_summary", profile="cpu")``."""
    p = ARTIFACTS[name].path(**fields)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def run_first(name, **fields):
    """The command that writes artifact ``name``: the notebook, with the parameters among ``fields`` it takes."""
    artifact = ARTIFACTS[name]
    given = {"model": fields.get("family"), "profile": fields.get("profile"), "layer": fields.get("layer"),
             "seed": fields.get("seed") if artifact.notebook == "00_train.ipynb" else None}
    flags = " ".join(f"-p {k} {v}" for k, v in given.items() if v is not None)
    return f"papermill notebooks/{artifact.notebook} out.ipynb {flags}".rstrip()


def require(name, **fields):
    """The file of artifact ``name`` if it exists; else FileNotFoundError naming the notebook that writes it."""
    p = ARTIFACTS[name].path(**fields)
    if not p.exists():
        study = f"python -m helpers.study --profile {fields['profile']}" if "profile" in fields else None
        raise FileNotFoundError(f"{p} is missing. Run first: {run_first(name, **fields)}"
                                + (f" (or the whole study: {study})" if study else ""))
    return p


# ----------------------------------------------------------------------------- cache keys

def module_hash(name):
    """A short hash of the source of module ``name`` (e.g. ``'helpers.am_study'``); of a package (``'helpers.sae'``),
    every module in it."""
    module = importlib.import_module(name)
    files = sorted(Path(module.__path__[0]).glob("*.py")) if hasattr(module, "__path__") else [Path(module.__file__)]
    h = hashlib.sha1()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:10]


@dataclass(frozen=True)
class CachedStep:
    """A cached computation. ``inputs``: the names of everything its result depends on besides code (settings,
    model fingerprints, seeds); ``modules``: every module its computation runs. Its key holds both, so a change to
    either recomputes; a call that leaves an input out, or adds an undeclared one, is refused. Its ``where`` (the
    artifact's fields) names the profile of the page asking: a result kept in another profile's folder (``owner``) is
    read there, never written there."""
    name: str
    artifact: str
    inputs: tuple
    modules: tuple

    def key(self, **inputs):
        if set(inputs) != set(self.inputs):
            raise TypeError(f"cached step {self.name!r} takes the inputs {self.inputs}, got {tuple(inputs)}")
        return dict(step=self.name, code={m: module_hash(m) for m in self.modules}, **inputs)

    def __call__(self, compute, where, **inputs):
        """``compute()``, or its result cached at artifact ``self.artifact`` with the fields ``where``; computed only
        where ``where``'s profile may write it (``check_writer``)."""
        def checked():
            self.check_writer(where)
            return compute()
        return cached(path(self.artifact, **where), self.key(**inputs), checked)

    def load(self, where, **inputs):
        """The cached result, or None: for callers that compute several results at once (``save`` each)."""
        return load_cached(path(self.artifact, **where), self.key(**inputs))

    def has(self, where, **inputs):
        """Whether the result is cached, without loading it."""
        return has_cached(path(self.artifact, **where), self.key(**inputs))

    def save(self, where, value, **inputs):
        """Cache ``value`` (``check_writer`` first)."""
        self.check_writer(where)
        return save_cached(path(self.artifact, **where), self.key(**inputs), value)

    def check_writer(self, where):
        """Refuse a result whose folder is another profile's: its own page makes it, and a page of
        ``where["profile"]`` that finds it missing or made from other inputs must not overwrite it. Called before
        computing, so the refusal costs nothing."""
        folder = ARTIFACTS[self.artifact].folder(where) if "profile" in where else None
        if folder is not None and folder != where["profile"]:
            raise RuntimeError(f"{path(self.artifact, **where)} belongs to the {folder!r} profile's results, and the "
                               f"{where['profile']!r} page that reads it found it missing or made from other inputs "
                               f"(settings, code or weights). Run the {folder!r} study first (python -m "
                               f"helpers.study --profile {folder}), without overrides on the {where['profile']!r} "
                               f"page.")


HARVEST = CachedStep("activations", "activations", inputs=("model", "layer", "split", "augment_copies", "seed", "pool"),
                     modules=("helpers.activations", "helpers.models", "helpers.data"))
SAE_TRAINING = CachedStep("sae", "sae", inputs=("sae", "model", "layer", "pool", "augment_copies", "training"),
                          modules=("helpers.sae", "helpers.activations", "helpers.models", "helpers.data"))
AM_SUITE = CachedStep("am", "am_run", inputs=("model", "network", "layers", "kinds", "units", "am_seed",
                                              "image_seed", "natural_images", "render"),
                      modules=("helpers.actmax", "helpers.am_study", "helpers.models", "helpers.data"))
SHIFT_INVARIANCE = CachedStep("shift_invariance", "shift_invariance_cache",
                              inputs=("model", "network", "images", "image_seed"),
                              modules=("helpers.invariance", "helpers.models", "helpers.data"))
LAYER_MAP = CachedStep("layer_map", "layer_map", inputs=("models", "random_models", "n_images", "seed", "pool"),
                       modules=("helpers.activations", "helpers.compare", "helpers.models", "helpers.data"))
TRAJECTORY = CachedStep("trajectory", "trajectory_cache", inputs=("records", "configs", "modules", "n_images", "seed"),
                        modules=("helpers.trajectory", "helpers.activations", "helpers.compare", "helpers.models",
                                 "helpers.train", "helpers.data"))
CACHED_STEPS = (HARVEST, SAE_TRAINING, AM_SUITE, SHIFT_INVARIANCE, LAYER_MAP, TRAJECTORY)
